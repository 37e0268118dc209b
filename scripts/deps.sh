#!/usr/bin/env bash
# Installs the system packages Harbormaster's tests use, when they are missing.
# Network-namespace tests need iproute2 (`ip`) and nftables (`nft`); they run
# only as root and say they were skipped otherwise, so without root this script
# just reports what is missing.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]} (not root, not installing; namespace tests will be skipped)" >&2
  exit 0
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
