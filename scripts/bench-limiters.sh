#!/usr/bin/env bash
# Every limiter side by side, in one run, on one private redis-server and on one private
# three-master Redis Cluster: loadgen calls/s (64 tasks, one client) and the server's cost of
# each decision (INFO commandstats, EVALSHA and EVAL summed over every node).
# Rounds alternate the limiters; medians are reported.
# Usage: scripts/bench-limiters.sh [SECONDS] [ROUNDS]   (default 3 s per run, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
rounds=${2:-3}
kinds=(token-bucket leaky continuous semaphore scheduled memory)
scripts/deps.sh >/dev/null
cargo build --release --quiet --example loadgen

# A free loopback port whose cluster bus port (port + 10000) is free too.
free_port() {
  python3 -c '
import random, socket
while True:
    p = random.randint(20000, 50000)
    try:
        for q in (p, p + 10000):
            socket.socket().bind(("127.0.0.1", q))
    except OSError:
        continue
    print(p)
    break'
}
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

start_redis() { # port, extra args...
  local port=$1; shift
  mkdir -p "$dir/$port"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir/$port" \
    --logfile "$dir/$port/redis.log" --daemonize no "$@" &
  pids+=($!)
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
}

standalone=$(free_port)
start_redis "$standalone"
cluster=()
for _ in 1 2 3; do
  p=$(free_port)
  start_redis "$p" --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf"
  cluster+=("$p")
done
redis-cli --cluster create "${cluster[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
  >/dev/null
for p in "${cluster[@]}"; do
  until redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok'; do sleep 0.1; done
done

# Sum of script calls and their server time over the given ports: "calls usec".
script_stats() {
  for p in "$@"; do redis-cli -p "$p" info commandstats; done | tr -d '\r' | awk -F'[=,:]' '
    /^cmdstat_(evalsha|eval):/ { for (i = 1; i < NF; i++) { if ($i == "calls") c += $(i+1); if ($i == "usec") u += $(i+1) } }
    END { printf "%d %d\n", c, u }'
}

run() { # topology, kind -> "calls_per_sec server_usec_per_decision script_calls_per_decision"
  local topo=$1 kind=$2 ports url flags=()
  if [[ $topo == cluster ]]; then ports=("${cluster[@]}"); flags=(--cluster); else ports=("$standalone"); fi
  url="redis://127.0.0.1:${ports[0]}"
  for p in "${ports[@]}"; do redis-cli -p "$p" config resetstat >/dev/null; done
  local out
  out=$(target/release/examples/loadgen --redis "$url" "${flags[@]}" --limiter "$kind" \
    --throttle "bench-$kind" --concurrency 64 --seconds "$secs")
  read -r calls usec < <(script_stats "${ports[@]}")
  python3 - "$out" "$calls" "$usec" <<'PY'
import json, sys
out = json.loads(sys.argv[1]); calls, usec = int(sys.argv[2]), int(sys.argv[3])
n = out["calls"] + 1  # loadgen makes one call before its clock starts
print(out["calls_per_sec"], round(usec / n, 2) if calls else "-", round(calls / n, 2) if calls else "-")
PY
}

declare -A results
for topo in standalone cluster; do
  for ((r = 1; r <= rounds; r++)); do
    for kind in "${kinds[@]}"; do
      [[ $kind == memory && $topo == cluster ]] && continue
      line=$(run "$topo" "$kind")
      echo "$topo round $r $kind: $line"
      results[$topo/$kind]+="$line;"
    done
  done
done

echo "== medians over $rounds rounds of $secs s (64 tasks, one client)"
for k in "${!results[@]}"; do echo "$k ${results[$k]}"; done | sort | python3 -c '
import sys, statistics
order = ["token-bucket", "leaky", "continuous", "semaphore", "scheduled", "memory"]
rows = {}
for line in sys.stdin:
    key, data = line.split(" ", 1)
    runs = [r.split() for r in data.strip().strip(";").split(";")]
    rows[key] = runs
def med(runs, i):
    vals = [float(r[i]) for r in runs if r[i] != "-"]
    return statistics.median(vals) if vals else None
head = ("topology", "limiter", "calls/s", "x token", "server us/decision", "x token", "scripts/decision")
print("{:<11} {:<13} {:>10} {:>8} {:>19} {:>8} {:>17}".format(*head))
for topo in ["standalone", "cluster"]:
    base = rows.get(f"{topo}/token-bucket")
    b_rate, b_us = med(base, 0), med(base, 1)
    for kind in order:
        runs = rows.get(f"{topo}/{kind}")
        if not runs:
            continue
        rate, us, per = med(runs, 0), med(runs, 1), med(runs, 2)
        us_s = f"{us:.2f}" if us is not None else "-"
        us_x = f"{us / b_us:.2f}" if us is not None else "-"
        per_s = f"{per:.2f}" if per is not None else "-"
        print(f"{topo:<11} {kind:<13} {rate:>10.0f} {rate / b_rate:>8.2f} {us_s:>19} {us_x:>8} {per_s:>17}")
'
