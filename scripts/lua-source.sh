#!/usr/bin/env bash
# Prints lua/<file> as Redis runs it: each line `--#include <fragment>` replaced by
# lua/<fragment> (the token bucket's scripts share their core this way; the daemon and the
# client assemble them the same way, in src/client/scripts.rs).
#   scripts/lua-source.sh token_bucket.lua
set -euo pipefail
cd "$(dirname "$0")/.."
awk '/^--#include / { f = "lua/" $2; while ((getline line < f) > 0) print line; close(f); next } { print }' "lua/$1"
