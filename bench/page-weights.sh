#!/bin/sh
# Page weights of the visitor's pages: bytes as sent plain and gzip-compressed.
#   bench/page-weights.sh ORIGIN [X-Forwarded-For address]
# The visitor address (default 198.51.100.7) is given through X-Forwarded-For,
# so run the server with `--trusted-proxy 127.0.0.1/32 --allow-private`; no
# test is started, so nothing is ever sent to that address.
set -eu
origin=${1:?usage: $0 ORIGIN [VISITOR]}
visitor=${2:-198.51.100.7}
printf '| page | status | plain bytes | gzip bytes |\n|---|---|---|---|\n'
for path in / /port/22 /port/3389 /port/4 '/search?q=remote+desktop' '/search?tag=remote-access' /no/such/page /port/abc /static/style.css /static/home.js /favicon.ico; do
    plain=$(curl -s -o /dev/null -H "X-Forwarded-For: $visitor" -w '%{http_code} %{size_download}' "$origin$path")
    gz=$(curl -s -o /dev/null -H "X-Forwarded-For: $visitor" -H 'Accept-Encoding: gzip' -w '%{size_download}' "$origin$path")
    printf '| `%s` | %s | %s | %s |\n' "$path" "${plain% *}" "${plain#* }" "$gz"
done
