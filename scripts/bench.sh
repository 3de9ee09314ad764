#!/usr/bin/env bash
# Side-by-side measurements for BENCHMARKS.md, all in one run on one private redis-server:
#   (a) loadgen (64 tasks, one connection) vs redis-benchmark -c 50 -P 16 EVALSHA of our script
#   (b) loadgen vs a single-process limitlion Python loop
#   (c) server cost per call (INFO commandstats usec_per_call): our script vs limitlion's, both
#       driven by the same redis-benchmark load
# Usage: scripts/bench.sh [SECONDS]   (default 10 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
scripts/deps.sh >/dev/null
cargo build --release --quiet --example loadgen

source scripts/private-redis.sh

ours_sha=$(cli script load "$(scripts/lua-source.sh token_bucket.lua)")
ll_lua=$(.venv/bin/python -c 'import limitlion, pathlib; print(pathlib.Path(limitlion.__file__).parent / "throttle.lua")')
ll_sha=$(cli script load "$(cat "$ll_lua")")
requests=$((secs * 150000))

# redis-benchmark prints "rps" in CSV as "test","rps",...; keep the rate.
rb() { redis-benchmark -p "$port" -c 50 -P 16 -n "$requests" --csv "$@" | awk -F'","' 'NR==2 {print $2}'; }
usec_per_call() { cli info commandstats | tr -d '\r' | awk -F'usec_per_call=' '/^cmdstat_evalsha:/ {split($2,a,","); print a[1]}'; }

echo "== (a) throughput on one server: redis-benchmark EVALSHA vs loadgen, 3 alternating rounds"
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
rb_all=(); lg_all=()
for round in 1 2 3; do
  rb_all+=("$(rb evalsha "$ours_sha" 2 throttle:rb throttle:rb:knobs 1000000000 1 1 604800 1)")
  lg=$(target/release/examples/loadgen --redis "$url" --throttle lg --concurrency 64 --seconds "$secs")
  echo "loadgen --concurrency 64 (one connection): $lg"
  lg_all+=("$(sed -E 's/.*"calls_per_sec":([0-9.]+).*/\1/' <<<"$lg")")
done
rb_ours=$(median3 "${rb_all[@]}"); lg_rate=$(median3 "${lg_all[@]}")
echo "redis-benchmark -c 50 -P 16 EVALSHA token_bucket.lua: ${rb_all[*]} calls/s (median $rb_ours)"
echo "loadgen calls/s: ${lg_all[*]} (median $lg_rate)"

echo "== (b) a single-process limitlion Python loop"
ll_rate=$(.venv/bin/python - "$url" "$secs" <<'PY'
import sys, time, redis, limitlion
r = redis.Redis.from_url(sys.argv[1]); limitlion.throttle_configure(r)
secs = float(sys.argv[2]); n = 0; end = time.time() + secs
while time.time() < end:
    limitlion.throttle("ll-bench", 1e9, 1, 1); n += 1
print(round(n / secs))
PY
)
echo "limitlion loop: $ll_rate calls/s"

echo "== (c) server cost per call: the same redis-benchmark load on each script, 5 alternating rounds"
cost() { # sha, args... -> usec_per_call of one round
  cli config resetstat >/dev/null
  redis-benchmark -p "$port" -c 50 -P 16 -n $((requests / 4)) evalsha "$@" >/dev/null
  usec_per_call
}
median() { printf '%s\n' "$@" | sort -g | sed -n 3p; }
# c1: no knobs stored (workers on their defaults); c2: knobs stored, as the daemon keeps them.
cli hset throttle:k:knobs rps 1000000000 burst 1 window 1 >/dev/null
cli hset throttle:kll:knobs rps 1000000000 burst 1 window 1 >/dev/null
for case in c1 c2; do
  ours_all=(); ll_all=()
  if [[ $case == c1 ]]; then ours_key=throttle:c; ll_key=throttle:cll; else ours_key=throttle:k; ll_key=throttle:kll; fi
  for round in 1 2 3 4 5; do
    ours_all+=("$(cost "$ours_sha" 2 "$ours_key" "$ours_key:knobs" 1000000000 1 1 604800 1)")
    ll_all+=("$(cost "$ll_sha" 0 "$ll_key" 1000000000 1 1 1 604800)")
  done
  declare "${case}_ours=$(median "${ours_all[@]}")" "${case}_ll=$(median "${ll_all[@]}")"
  echo "$case ours usec_per_call: ${ours_all[*]}"
  echo "$case limitlion usec_per_call: ${ll_all[*]}"
done

echo "== ratios"
python3 - "$lg_rate" "$rb_ours" "$ll_rate" "$c1_ours" "$c1_ll" "$c2_ours" "$c2_ll" <<'PY'
import sys
lg, rb, ll, o1, l1, o2, l2 = map(float, sys.argv[1:])
print(f"(a)  loadgen / redis-benchmark                      = {lg/rb:.2f}  (target >= 0.9)")
print(f"(b)  loadgen / limitlion loop                       = {lg/ll:.1f}  (target >= 10)")
print(f"(c1) usec_per_call ours / limitlion's, no knobs     = {o1/l1:.2f}  ({o1} / {l1}; target <= 0.8)")
print(f"(c2) usec_per_call ours / limitlion's, knobs stored = {o2/l2:.2f}  ({o2} / {l2}; target <= 0.8)")
PY
