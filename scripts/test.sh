#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine: installs what the
# tests need (see scripts/deps.sh), then runs every unit, integration and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# As root the namespace tests can run, so they must: a missing prerequisite fails them.
if [ "$(id -u)" -eq 0 ]; then
  export HARBORMASTER_REQUIRE_NETNS=1
fi
cargo test --workspace --locked "$@"
