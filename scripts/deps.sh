#!/usr/bin/env bash
# Installs what the demo, tests and benchmarks need, skipping whatever is already there:
#   - redis-server, redis-cli/redis-benchmark, prometheus (with promtool) and systemd-analyze,
#     from Debian packages (as root; otherwise prints the exact command and fails);
#   - cargo-nextest, from crates.io, when missing;
#   - a Python venv in .venv with limitlion, redis and kubernetes-validate from PyPI
#     (scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
# systemd-analyze checks the unit in deploy/ (make lint).
command -v systemd-analyze >/dev/null || missing+=(systemd)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing ${missing[*]}; install them with: sudo apt-get update && sudo $cmd" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  $cmd -qq >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

stamp=.venv/.requirements
if ! cmp -s scripts/requirements.txt "$stamp" 2>/dev/null \
   || ! .venv/bin/python -c 'import limitlion, redis' 2>/dev/null; then
  echo "deps: creating .venv with $(grep -v '^#' scripts/requirements.txt | xargs)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$stamp"
fi
echo "deps: redis-server $(redis-server --version | grep -o 'v=[^ ]*'), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3), limitlion $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("limitlion"))')"
