#!/usr/bin/env bash
# A worker that depends on regulator (the client crate) must get the client alone:
# no HTTP server or client, no Prometheus crate.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p regulator --no-default-features -e normal --prefix none)
bad=$(grep -E '^(hyper|axum|reqwest|prometheus|prometheus-client|prometheus-http-query|tower|h2|clap) ' <<<"$tree" || true)
if [[ -n $bad ]]; then
  echo "client-only build pulls in crates it must not:" >&2
  echo "$bad" | sort -u >&2
  exit 1
fi
echo "client-only dependency tree: $(sort -u <<<"$tree" | wc -l) crates, no HTTP or Prometheus crates"
