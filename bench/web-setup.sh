#!/usr/bin/env bash
# Installs what bench/web.sh needs, from Debian: wrk (HTTP load generator),
# nginx (the static-file baseline), curl, GNU time, and iproute2/nftables for
# the namespaced test hosts. Python 3 (stdlib only) drives the visitors.
set -euo pipefail
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends; nginx's package would also start a system nginx
  # on port 80 through its init script, which policy-rc.d prevents below.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
  [ $created_policy -eq 1 ] && rm -f "$policy"
  [ $status -eq 0 ] || exit $status
fi
echo "wrk: $(wrk --version 2>&1 | head -1)"
echo "nginx: $( (command -v nginx >/dev/null && nginx -v || /usr/sbin/nginx -v) 2>&1)"
