#!/usr/bin/env bash
# UDP exposure benchmark: Harbormaster's `scan --udp` against `nmap -sU` on the
# same host and port list (the UDP exposure list), with real Debian daemons
# in the target namespace (harbormaster-testnet --daemons: dnsmasq as an open
# resolver, chronyd, snmpd, memcached on UDP, miniupnpd), optionally behind
# an emulated path. Traffic stays inside the test namespaces (198.18.0.0/16).
#
#   sudo bench/udp.sh                 # direct veth
#   sudo bench/udp.sh --delay 75      # 150 ms round trip
#
# Appends a table to bench/results/udp.md. Needs root, nmap and the
# daemons (scripts/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
path_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --delay | --jitter | --path-loss | --rate | --queue)
      [ $# -ge 2 ] || { echo "$1 takes a value" >&2; exit 2; }
      path_args+=("$1" "$2"); shift ;;
    *) echo "unknown argument $1; usage: udp.sh [--delay MS] [--jitter MS] [--path-loss PERCENT] [--rate MBIT] [--queue MS]" >&2; exit 2 ;;
  esac
  shift
done
command -v nmap >/dev/null || { echo "nmap is not installed" >&2; exit 1; }
cargo build --quiet --release -p harbormaster-cli -p harbormaster-testnet
HM=$PWD/target/release/harbormaster
TN=$PWD/target/release/harbormaster-testnet
PORTS=7,17,19,53,69,111,123,137,161,389,443,500,520,623,1194,1434,1900,3283,3702,5060,5353,5683,10001,11211
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report=bench/results/udp.md
mkdir -p bench/results
[ -f "$report" ] || echo "# UDP benchmarks (appended by bench/udp.sh)" > "$report"
{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ): path ${path_args[*]:-none (direct veth)}"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), load $(cut -d' ' -f1 /proc/loadavg)."
  echo "Host: dnsmasq (open resolver), chronyd, snmpd, memcached -U, miniupnpd; every other UDP port closed (ICMP port unreachable, kernel limit off); ports: the UDP exposure list ($PORTS)."
  echo
  echo "| tool | command | time (s) | open | closed | open\\|filtered / no reply | notes |"
  echo "|---|---|---|---|---|---|---|"
} >> "$report"

coproc NET { trap '' INT TERM; exec "$TN" --daemons "${path_args[@]}"; }
read -r ns _target <&"${NET[0]}"

measure() { # LABEL OUTFILE CMD...
  local label=$1 outfile=$2; shift 2
  /usr/bin/time -f "%e" -o "$tmp/time" ip netns exec "$ns" "$@" > "$outfile" 2> "$tmp/stderr" || {
    echo "$label failed: $(tail -3 "$tmp/stderr")" >&2; return 1; }
  cat "$tmp/time"
}

secs=$(measure harbormaster "$tmp/hm.json" "$HM" scan 198.18.0.2 --udp -p "$PORTS" --format json)
python3 - "$secs" "$tmp/hm.json" "$HM scan 198.18.0.2 --udp -p <list> --format json" >> "$report" <<'PY'
import json, sys
secs, path, cmd = sys.argv[1:]
d = json.load(open(path))
t = d["targets"][0]
rs = t["results"]
count = lambda s: sum(1 for r in rs if r["state"] == s)
opened = ",".join(str(r["port"]) for r in rs if r["state"] == "open")
amp = "; ".join(f'{x["port"]}/{x["protocol"]} {x["factor"]}×' for x in t.get("exposure", []))
scan = t["summary"]["elapsed_s"]
print(f"| harbormaster | `{cmd}` | {secs} | {count('open')} ({opened}) | {count('closed')} | {count('stealth') + count('filtered')} | UDP scan {scan:.2f} s, then the exposure step; amplification measured: {amp} |")
PY
secs=$(measure "nmap -sU" "$tmp/nmap.xml" nmap -sU -n -Pn --reason -p "$PORTS" -oX - 198.18.0.2)
python3 - "$secs" "$tmp/nmap.xml" "nmap -sU -n -Pn --reason -p <list> 198.18.0.2" >> "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
secs, path, cmd = sys.argv[1:]
root = ET.parse(path).getroot()
states = {}
for p in root.iter("port"):
    states[int(p.get("portid"))] = p.find("state").get("state")
for ep in root.iter("extraports"):
    for r in ep.iter("extrareasons"):
        pass
count = lambda s: sum(1 for v in states.values() if v == s)
listed = len(states)
extra = sum(int(e.get("count")) for e in root.iter("extraports"))
closed = count("closed") + sum(int(e.get("count")) for e in root.iter("extraports") if e.get("state") == "closed")
opened = ",".join(str(p) for p, v in sorted(states.items()) if v == "open")
print(f"| nmap -sU | `{cmd}` | {secs} | {count('open')} ({opened}) | {closed} | {count('open|filtered') + count('filtered')} | no amplification figures |")
PY
exec {NET[1]}>&-
wait "$NET_PID" 2>/dev/null || true
tail -2 "$report"
