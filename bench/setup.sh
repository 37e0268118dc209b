#!/usr/bin/env bash
# Installs the scanners Harbormaster is compared against, from the package
# registries: nmap and masscan from Debian, RustScan from crates.io (built into
# bench/.tools, outside the workspace), and GNU time for peak memory.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v nmap >/dev/null || need+=(nmap)
command -v masscan >/dev/null || need+=(masscan)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x .tools/bin/rustscan ]; then
  cargo install --quiet --locked --root .tools rustscan
fi
echo "nmap: $(nmap --version | head -1)"
echo "masscan: $(masscan --version 2>&1 | grep -m1 -i version)"
echo "rustscan: $(.tools/bin/rustscan --version)"
