#!/usr/bin/env bash
# The blocking client's round trip against redis-benchmark's, alternating in one run on one
# private redis-server (BENCHMARKS.md): each round runs `redis-benchmark -c 1` on the
# token bucket script's EVALSHA (the same script, keys and arguments a consume sends), then
# crates/regulator-daemon/examples/blocking_rtt (blocking::TokenBucket::consume one after another), and prints both
# p50s and their ratio; the last line gives the medians.
# Usage: scripts/bench-blocking.sh [ROUNDS] [CALLS]   (default 5 rounds of 20,000 calls)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
calls=${2:-20000}
scripts/deps.sh >/dev/null
cargo build --release --quiet --example blocking_rtt

source scripts/private-redis.sh
sha=$(redis-cli -p "$port" script load "$(scripts/lua-source.sh token_bucket.lua)")
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rb=(); bl=(); ratios=()
for round in $(seq 1 "$rounds"); do
  # p50_latency_ms is the fifth CSV column of redis-benchmark 7.
  rb_ms=$(redis-benchmark -p "$port" -c 1 -n "$calls" --csv \
    evalsha "$sha" 2 throttle:rtt throttle:rtt:knobs 1000000000 1 1 604800 1 |
    awk -F'","' 'NR==2 {print $5}')
  rb_us=$(python3 -c "print(round($rb_ms * 1000, 1))")
  out=$(target/release/examples/blocking_rtt --redis "redis://127.0.0.1:$port/0" --calls "$calls")
  bl_us=$(sed -E 's/.*"p50_us":([0-9.]+).*/\1/' <<<"$out")
  ratio=$(python3 -c "print(round($bl_us / $rb_us, 2))")
  echo "round $round: redis-benchmark -c 1 p50 ${rb_us} us; blocking consume $out; ratio $ratio"
  rb+=("$rb_us"); bl+=("$bl_us"); ratios+=("$ratio")
done
echo "medians: redis-benchmark -c 1 p50 $(median "${rb[@]}") us, blocking consume p50 $(median "${bl[@]}") us, ratio $(median "${ratios[@]}") (rounds: ${ratios[*]})"
