#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine: installs what the
# tests need (see scripts/deps.sh), then runs every unit, integration and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo test --workspace --locked "$@"
