#!/usr/bin/env bash
# Coalescing, measured side by side on one private redis-server (BENCHMARKS.md):
#   (a) closed loop, 3 alternating rounds: redis-benchmark -c 50 -P 16 EVALSHA of the
#       single-decision script, then loadgen with 64 and 256 tasks (coalesced) and 64 tasks
#       with --no-coalesce;
#   (b) open loop: loadgen --rate at a quarter and half of (a)'s coalesced 64-task median;
#   (c) local leases: loadgen --lease with 1, 8 and 64 tasks (one thread, then 8 tasks on two
#       worker threads), on a throttle whose budget (1e8/s) is above any demand.
# Usage: scripts/bench-coalesce.sh [SECONDS]   (default 8 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
scripts/deps.sh >/dev/null
cargo build --release --quiet --example loadgen

source scripts/private-redis.sh
sha=$(redis-cli -p "$port" script load "$(scripts/lua-source.sh token_bucket.lua)")
lg() { target/release/examples/loadgen --redis "$url" --seconds "$secs" "$@"; }
rate() { sed -E 's/.*"calls_per_sec":([0-9.]+).*/\1/'; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

echo "== (a) closed loop"
rb=(); c64=(); c256=(); n64=()
for round in 1 2 3; do
  rb+=("$(redis-benchmark -p "$port" -c 50 -P 16 -n $((secs * 150000)) --csv \
    evalsha "$sha" 2 throttle:rb throttle:rb:knobs 1000000000 1 1 604800 1 | awk -F'","' 'NR==2 {print $2}')")
  out=$(lg --throttle c64 --concurrency 64); echo "coalesced, 64 tasks:  $out"; c64+=("$(rate <<<"$out")")
  out=$(lg --throttle c256 --concurrency 256); echo "coalesced, 256 tasks: $out"; c256+=("$(rate <<<"$out")")
  out=$(lg --throttle n64 --concurrency 64 --no-coalesce); echo "one call each, 64:   $out"; n64+=("$(rate <<<"$out")")
done
echo "redis-benchmark -c 50 -P 16 EVALSHA calls/s: ${rb[*]} (median $(median3 "${rb[@]}"))"
echo "loadgen coalesced 64 tasks decisions/s:      ${c64[*]} (median $(median3 "${c64[@]}"))"
echo "loadgen coalesced 256 tasks decisions/s:     ${c256[*]} (median $(median3 "${c256[@]}"))"
echo "loadgen one call each, 64 tasks calls/s:     ${n64[*]} (median $(median3 "${n64[@]}"))"

echo "== (b) open loop"
ceiling=$(median3 "${c64[@]}")
for share in 4 2; do
  r=$(python3 -c "print(round($ceiling / $share))")
  echo "rate $r/s (1/$share of the ceiling): $(lg --throttle "open$share" --rate "$r")"
done

echo "== (c) local leases"
for c in 1 8 64; do
  echo "leased, $c tasks:      $(lg --throttle "lease$c" --concurrency "$c" --lease --rps 1e8)"
done
echo "leased, 8 tasks, 2 threads: $(lg --throttle lease-mt --concurrency 8 --threads 2 --lease --rps 1e8)"
