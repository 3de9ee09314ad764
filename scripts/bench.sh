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

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" --daemonize no &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -p "$port" "$@"; }
until cli ping >/dev/null 2>&1; do sleep 0.05; done
url="redis://127.0.0.1:$port/0"

ours_sha=$(cli script load "$(cat lua/token_bucket.lua)")
ll_lua=$(.venv/bin/python -c 'import limitlion, pathlib; print(pathlib.Path(limitlion.__file__).parent / "throttle.lua")')
ll_sha=$(cli script load "$(cat "$ll_lua")")
requests=$((secs * 150000))

# redis-benchmark prints "rps" in CSV as "test","rps",...; keep the rate.
rb() { redis-benchmark -p "$port" -c 50 -P 16 -n "$requests" --csv "$@" | awk -F'","' 'NR==2 {print $2}'; }
usec_per_call() { cli info commandstats | tr -d '\r' | awk -F'usec_per_call=' '/^cmdstat_evalsha:/ {split($2,a,","); print a[1]}'; }

echo "== (a) throughput on one server: redis-benchmark EVALSHA vs loadgen"
cli config resetstat >/dev/null
rb_ours=$(rb evalsha "$ours_sha" 2 throttle:rb throttle:rb:knobs 1000000000 1 1 1 604800)
ours_usec=$(usec_per_call)
echo "redis-benchmark -c 50 -P 16 EVALSHA token_bucket.lua: $rb_ours calls/s"
lg=$(target/release/examples/loadgen --redis "$url" --throttle lg --concurrency 64 --seconds "$secs")
echo "loadgen --concurrency 64 (one connection): $lg"
lg_rate=$(sed -E 's/.*"calls_per_sec":([0-9.]+).*/\1/' <<<"$lg")

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

echo "== (c) server cost per call, same redis-benchmark load"
cli config resetstat >/dev/null
rb_ll=$(rb evalsha "$ll_sha" 0 throttle:rbll 1000000000 1 1 1 604800)
ll_usec=$(usec_per_call)
echo "ours: $ours_usec usec_per_call ($rb_ours calls/s); limitlion: $ll_usec usec_per_call ($rb_ll calls/s)"

echo "== ratios"
python3 - "$lg_rate" "$rb_ours" "$ll_rate" "$ours_usec" "$ll_usec" <<'PY'
import sys
lg, rb, ll, ou, lu = map(float, sys.argv[1:])
print(f"(a) loadgen / redis-benchmark       = {lg/rb:.2f}  (target >= 0.9)")
print(f"(b) loadgen / limitlion loop        = {lg/ll:.1f}  (target >= 10)")
print(f"(c) our usec_per_call / limitlion's = {ou/lu:.2f}  (target <= 0.8)")
PY
