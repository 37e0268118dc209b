#!/usr/bin/env bash
# Bytes sent by the live event stream (issue 8, item 7), before and after.
#
#   sudo bench/sse.sh AFTER_BINARY [BEFORE_BINARY]
#
# Each binary serves in the scanner namespace of harbormaster-testnet (--mode
# syn --max-rate 10, so a service test runs for well over a minute); the
# visitor 198.18.0.2 starts a service test, waits 10 s, then:
#   A. flood: 200 streams of that test opened at once, each read for 2 s;
#   B. reconnects: 200 clients, 4 at a time, each connects for 0.5 s, then
#      reconnects with the Last-Event-ID it saw (what EventSource does after a
#      dropped connection) for 0.5 s; only the reconnect's bytes are counted.
# Prints bytes and HTTP statuses for each. Traffic stays inside the two
# namespaces harbormaster-testnet creates (198.18.0.0/16).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "sse.sh needs root (network namespaces)" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: bench/sse.sh AFTER_BINARY [BEFORE_BINARY]" >&2; exit 2; }
TN=${TN:-$PWD/target/debug/harbormaster-testnet}
[ -x "$TN" ] || cargo build --quiet -p harbormaster-testnet
URL=http://198.18.0.1:8080

tmp=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  if [ -n "${NET_PID:-}" ]; then
    exec {NET[1]}>&- 2>/dev/null || true
    wait "$NET_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

coproc NET { "$TN" --spec visitor; }
read -r SNS TNS <&"${NET[0]}"
in_t() { ip netns exec "$TNS" "$@"; }

run() {
  local label=$1 hm=$2
  rm -rf "$tmp/data" && mkdir -p "$tmp/data"
  ip netns exec "$SNS" "$hm" serve --listen 198.18.0.1:8080 --allow-private --no-reverse-dns \
    --mode syn --max-rate 10 --data-dir "$tmp/data" 2> "$tmp/serve.log" &
  server=$!
  for _ in $(seq 100); do in_t curl -s -o /dev/null --max-time 1 "$URL/" && break; sleep 0.1; done
  local token id
  token=$(in_t curl -s "$URL/" | grep -o 'name="token" value="[0-9a-f]*"' | head -1 | cut -d'"' -f4)
  id=$(in_t curl -s -o /dev/null -w '%{redirect_url}' --data "token=$token&kind=service" "$URL/scan")
  id=${id##*/scan/}
  sleep 10
  # A: 200 streams at once.
  mkdir -p "$tmp/a"
  local pids=()
  for i in $(seq 200); do
    in_t curl -sN --max-time 2 -o "$tmp/a/$i" -w '%{http_code}\n' "$URL/scan/$id/events" > "$tmp/a/$i.code" 2>/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  local a_bytes a_codes
  a_bytes=$(find "$tmp/a" -type f ! -name '*.code' -exec cat {} + | wc -c)
  a_codes=$(cat "$tmp"/a/*.code | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  # B: 200 reconnects, 4 at a time.
  mkdir -p "$tmp/b"
  for batch in $(seq 50); do
    pids=()
    for j in 1 2 3 4; do
      (
        f=$tmp/b/$batch-$j
        in_t curl -sN --max-time 0.5 -o "$f.first" "$URL/scan/$id/events" 2>/dev/null || true
        last=$(grep '^id: ' "$f.first" | tail -1 | cut -c5- || true)
        hdr=()
        [ -n "$last" ] && hdr=(-H "Last-Event-ID: $last")
        in_t curl -sN --max-time 0.5 "${hdr[@]}" -o "$f.again" -w '%{http_code}\n' \
          "$URL/scan/$id/events" > "$f.code" 2>/dev/null || true
      ) &
      pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null || true
    sleep 0.2
  done
  local b_bytes b_codes
  b_bytes=$(cat "$tmp"/b/*.again | wc -c)
  b_codes=$(cat "$tmp"/b/*.code | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  local results
  results=$(in_t curl -s "$URL/api/scans/$id" | grep -o '"port":' | wc -l)
  echo "$label: A (200 streams at once, 2 s): $a_bytes bytes, statuses $a_codes"
  echo "$label: B (200 reconnects with Last-Event-ID, 0.5 s each): $b_bytes bytes, statuses $b_codes"
  echo "$label: results in the test when done measuring: $results"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  rm -rf "$tmp/a" "$tmp/b"
}

[ $# -ge 2 ] && run before "$2"
run after "$1"
