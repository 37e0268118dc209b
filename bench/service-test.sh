#!/usr/bin/env bash
# How long one visitor's Service test (0-1055) takes in the web service, on a
# LAN and behind the emulated home router at 150 ms (issue 9 §5).
#
#   sudo bench/service-test.sh [RUNS]      # default 5 runs per path
#
# For each path: harbormaster-testnet builds the two namespaces (and the
# delay line), `harbormaster serve --mode syn` listens in the scanner one,
# and bench/visitors.py, in the target one, runs RUNS Service tests one
# after the other as the visitor 198.18.0.2, each checked against the truth
# file. The figures are the server's own log line per finished test: the
# scan (first probe to last port result) and the whole test (until it is
# stored, after the ping and unsolicited-packet watch), in milliseconds.
# What the visitor's HTTP requests add over the path is not counted. The
# LAN host is `--spec visitor`: the benchmark host drops ports above 1055
# too, and a visitor HTTP connection from one of those source ports gets
# no answer (with it, a visitor's test timed out now and then).
# HM=BINARY measures another build.
#
# Traffic stays inside the two namespaces harbormaster-testnet creates
# (198.18.0.0/16). Prints a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "service-test.sh needs root (network namespaces, raw sockets)" >&2
  exit 2
fi
runs=${1:-5}
case "$runs" in
  '' | *[!0-9]*) echo "usage: bench/service-test.sh [RUNS], RUNS 1-50" >&2; exit 2 ;;
esac
if [ "$runs" -lt 1 ] || [ "$runs" -gt 50 ]; then
  echo "usage: bench/service-test.sh [RUNS], RUNS 1-50" >&2
  exit 2
fi

cargo build --quiet --release -p harbormaster-cli -p harbormaster-testnet
HM=${HM:-$PWD/target/release/harbormaster}
TN=$PWD/target/release/harbormaster-testnet
tmp=$(mktemp -d)
srv=""
NET_PID=""
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  if [ -n "$NET_PID" ]; then
    exec {NET[1]}>&- 2>/dev/null || true
    wait "$NET_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One path: $1 its name, the rest harbormaster-testnet's flags.
path() {
  local name=$1
  shift
  coproc NET { trap '' INT TERM HUP; exec "$TN" "$@" --truth "$tmp/truth"; }
  local sns tns i
  read -r sns tns <&"${NET[0]}"
  rm -rf "$tmp/data"
  mkdir -p "$tmp/data"
  ip netns exec "$sns" "$HM" serve --listen 198.18.0.1:8080 --allow-private \
    --no-reverse-dns --mode syn --scans-per-hour 1000 --data-dir "$tmp/data" \
    2> "$tmp/serve.log" &
  srv=$!
  for i in $(seq 1 100); do
    ip netns exec "$tns" curl -s -o /dev/null --max-time 1 http://198.18.0.1:8080/static/style.css && break
    [ "$i" -eq 100 ] && { echo "the server did not answer" >&2; exit 1; }
    sleep 0.1
  done
  for i in $(seq 1 "$runs"); do
    ip netns exec "$tns" python3 bench/visitors.py 198.18.0.1:8080 \
      "$tmp/truth" 198.18.0.2 1 --poll 0.02 --timeout 60 > "$tmp/one.json"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if d["error_count"] or d["incorrect_port_results"] or d["missing_port_results"]:
    sys.exit("a test failed or got ports wrong: %s" % d)' "$tmp/one.json"
  done
  kill "$srv"
  wait "$srv" 2>/dev/null || true
  srv=""
  exec {NET[1]}>&-
  wait "$NET_PID" 2>/dev/null || true
  NET_PID=""
  # "test ID (service, 1056 port(s)) done: scan N ms, whole test M ms, P probe(s)"
  sed -n 's/.*(service, 1056 port(s)) done: scan \([0-9]*\) ms, whole test \([0-9]*\) ms, \([0-9]*\) probe(s).*/\1 \2 \3/p' \
    "$tmp/serve.log" | awk -v name="$name" '
      { s = s sep $1; w = w sep $2; p = p sep $3; sep = ", " }
      END { printf "| %s | %s | %s | %s |\n", name, s, w, p }'
}

echo "Machine: $(nproc) cores, kernel $(uname -r); $runs runs per path, all exact."
echo
echo "| path | scan (ms) | whole test (ms) | probes |"
echo "|---|---|---|---|"
path "LAN, the web benchmark's visitor host" --spec visitor
path "home router, 150 ms RTT (±5 ms), 2 % loss each way, 50 Mbit/s, 50 ms queue" \
  --spec router --delay 75 --jitter 5 --path-loss 2 --rate 50 --queue 50
