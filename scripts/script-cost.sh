#!/usr/bin/env bash
# Server instructions per call of our token-bucket script against limitlion's, counted by
# valgrind's callgrind in redis-server: repeatable whatever else the machine is doing, unlike
# INFO commandstats timings. Each case runs a fresh redis-server under callgrind twice, with 0
# and with N calls, and reports the difference divided by N.
# Usage: scripts/script-cost.sh [N]   (default 20000; needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
scripts/deps.sh >/dev/null
ll_lua=$(.venv/bin/python -c 'import limitlion, pathlib; print(pathlib.Path(limitlion.__file__).parent / "throttle.lua")')
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# run SCRIPT KNOBS(yes|no) CALLS -> total instructions of the server
run() {
  local script=$1 knobs=$2 calls=$3 port args sha
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" redis-server --port "$port" \
    --save "" --appendonly no --dir "$work" >/dev/null 2>"$work/valgrind.log" &
  local pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.2; done
  sha=$(redis-cli -p "$port" script load "$(cat "$script")")
  if [[ $knobs == yes ]]; then
    redis-cli -p "$port" hset throttle:x:knobs rps 1000000000 burst 1 window 1 >/dev/null
  fi
  if [[ $script == "$ll_lua" ]]; then
    args=(0 throttle:x 1000000000 1 1 1 604800)
  else
    args=(2 throttle:x throttle:x:knobs 1000000000 1 1 604800 1)
  fi
  if ((calls > 0)); then
    redis-benchmark -p "$port" -c 1 -P 100 -n "$calls" evalsha "$sha" "${args[@]}" >/dev/null
  fi
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out"
}

per_call() { echo $(( ($(run "$1" "$2" "$n") - $(run "$1" "$2" 0)) / n )); }
scripts/lua-source.sh token_bucket.lua >"$work/token_bucket.lua"
for knobs in no yes; do
  ours=$(per_call "$work/token_bucket.lua" "$knobs")
  theirs=$(per_call "$ll_lua" "$knobs")
  python3 -c "import sys; o,t=int(sys.argv[1]),int(sys.argv[2]); print(f'knobs stored: {sys.argv[3]:3}  ours {o} instructions/call, limitlion {t}: ratio {o/t:.2f}')" "$ours" "$theirs" "$knobs"
done
