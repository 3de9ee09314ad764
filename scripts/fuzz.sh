#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after the other, from the seeds
# in fuzz/seeds and the corpus earlier runs left in fuzz/corpus. A crash stops the run with the
# input in fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ so
# crates/regulator-daemon/tests/fuzz_corpus.rs replays it on every `make test`, then fix the cause.
#
#   scripts/fuzz.sh            # 10 minutes per target, the recorded runs in docs/fuzzing.md
#   scripts/fuzz.sh 20         # a smoke run (CI)
#
# Needs the nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz; installs
# cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: the nightly toolchain is missing; install it with: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

cd fuzz
cargo +nightly fuzz build -O
for target in config stored_knobs prometheus_answer; do
  mkdir -p "corpus/$target"
  seeds=()
  [[ -d seeds/$target ]] && seeds=("seeds/$target")
  echo "fuzz: $target for ${seconds}s"
  rc=0
  cargo +nightly fuzz run -O "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
    >"target/$target.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+[[:space:]]+(DONE|INITED)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|SUMMARY)' \
    "target/$target.log" || true
  if ((rc != 0)); then
    tail -40 "target/$target.log" >&2
    echo "fuzz: $target failed (exit $rc): a crash is in fuzz/artifacts/$target/; full log in fuzz/target/$target.log" >&2
    exit 1
  fi
  echo "fuzz: $target corpus: $(find "corpus/$target" -type f | wc -l) inputs"
done
