#!/usr/bin/env bash
# Compares Harbormaster's probe engine with nmap (-sS, -sT), masscan and RustScan
# on the same namespaced test host, at 0 % and 2 % random loss each way, plus a
# fully silent host. Reports wall time, peak RSS and per-state accuracy.
#
#   sudo bench/compare.sh            # everything (a few minutes; nmap at 2 % loss is slow)
#   sudo bench/compare.sh --quick    # Harbormaster only (written to bench/results/quick.md)
#   sudo bench/compare.sh --router [--ports all|service] [--delay MS] [--jitter MS]
#        [--path-loss PERCENT] [--rate MBIT] [--queue MS] [--quick]
#        # Harbormaster and nmap -sS on a stealth-heavy home router behind an
#        # emulated path (both directions alike; see crates/testnet/src/path.rs),
#        # appended to bench/results/path.md
#
# Traffic stays inside two network namespaces the script creates (198.18.0.0/16);
# nothing else is contacted. Results: bench/results/latest.md (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "compare.sh needs root (network namespaces, raw sockets)" >&2
  exit 2
fi
quick=0
router=0
ports=all
path_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --router) router=1 ;;
    --ports)
      case ${2:-} in all | service) ports=$2 ;; *) echo "--ports takes all or service" >&2; exit 2 ;; esac
      shift ;;
    --delay | --jitter | --path-loss | --rate | --queue)
      [ $# -ge 2 ] || { echo "$1 takes a number" >&2; exit 2; }
      path_args+=("$1" "$2")
      shift ;;
    *) echo "unknown argument $1; usage: compare.sh [--quick] [--router [--ports all|service] [--delay MS] [--jitter MS] [--path-loss PERCENT] [--rate MBIT] [--queue MS]]" >&2; exit 2 ;;
  esac
  shift
done
[ $router -eq 1 ] || [ ${#path_args[@]} -eq 0 ] || { echo "path flags need --router" >&2; exit 2; }
# Flags every test host of this run gets.
net_flags=()
[ $router -eq 1 ] && net_flags=(--spec router "${path_args[@]}")

scripts/deps.sh
# The router comparison needs only nmap; setup.sh would also build RustScan.
if [ $quick -eq 0 ] && ! { [ $router -eq 1 ] && command -v nmap >/dev/null; }; then
  bench/setup.sh
fi
cargo build --quiet --release -p harbormaster-cli -p harbormaster-testnet
HM=$PWD/target/release/harbormaster
TN=$PWD/target/release/harbormaster-testnet
RUSTSCAN=$PWD/bench/.tools/bin/rustscan
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p bench/results
# A quick run must not overwrite the full comparison.
report=bench/results/latest.md
[ $quick -eq 1 ] && report=bench/results/quick.md
[ $router -eq 1 ] && report=bench/results/path.md

# The test host's port mix, counted from its truth file.
coproc PROBE { trap '' INT TERM; exec "$TN" "${net_flags[@]}" --truth "$tmp/truth"; }
read -r _ _ <&"${PROBE[0]}"
exec {PROBE[1]}>&-
wait "$PROBE_PID" 2>/dev/null || true
host_counts=$(awk '{n[$2]++} END {printf "%d open, %d closed, %d filtered (ICMP admin-prohibited), %d stealth (dropped)", n["open"], n["closed"], n["filtered"], n["stealth"]}' "$tmp/truth")

if [ $router -eq 1 ]; then
  [ -f "$report" ] || echo "# Path benchmarks (appended by bench/compare.sh --router)" > "$report"
  {
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ): path ${path_args[*]:-none (direct veth)}, ports $ports"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
    echo "Host: home router, $host_counts; path flags apply to each direction."
    echo
    echo "| tool | command | loss | ports | time (s) | peak RSS (MB) | open | closed | filtered | stealth | misclassified | notes |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  } >> "$report"
else
{
  echo "# Probe benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
  echo "Host: $host_counts (from its truth file); veth between two namespaces; loss on the target's input and output."
  echo
  echo "| tool | command | loss | ports | time (s) | peak RSS (MB) | open | closed | filtered | stealth | misclassified | notes |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$report"
fi

# run LABEL LOSS SILENT RANGE FORMAT OUTFILE CMD...
run() {
  local label=$1 loss=$2 silent=$3 range=$4 fmt=$5 outfile=$6
  shift 6
  local flags=(--loss "$loss" --truth "$tmp/truth" "${net_flags[@]}")
  [ "$silent" = 1 ] && flags+=(--silent)
  # The test host ignores Ctrl-C/TERM sent to our process group: it must live until
  # its stdin closes (when this script ends) so it can remove its namespaces.
  coproc NET { trap '' INT TERM; exec "$TN" "${flags[@]}"; }
  local ns
  read -r ns _target_ns <&"${NET[0]}"
  local tmac
  tmac=$(ip -n "$_target_ns" -o link show veth1 | awk '{for (i=1;i<=NF;i++) if ($i=="link/ether") print $(i+1)}')
  local cmd=("$@")
  cmd=("${cmd[@]//@TMAC@/$tmac}")
  cmd=("${cmd[@]//@OUT@/$tmp/out}")
  rm -f "$tmp/out"
  local status=0
  timeout 1200 /usr/bin/time -f "%e %M" -o "$tmp/time" \
    ip netns exec "$ns" "${cmd[@]}" > "$tmp/stdout" 2> "$tmp/stderr" || status=$?
  [ "$outfile" = stdout ] && cp "$tmp/stdout" "$tmp/out"
  exec {NET[1]}>&-
  wait "$NET_PID" 2>/dev/null || true
  local secs rss score
  secs=$(awk 'END {print $(NF-1)}' "$tmp/time")
  rss=$(awk 'END {printf "%.1f", $NF/1024}' "$tmp/time")
  if [ $status -ne 0 ]; then
    score='{"states":"failed","correct":{},"expected":{},"misclassified":"exit '"$status"'"}'
  else
    score=$(python3 bench/score.py "$tmp/truth" "$fmt" "$tmp/out" "$range")
  fi
  python3 - "$label" "$loss" "$range" "$secs" "$rss" "$score" "${cmd[*]}" >> "$report" <<'PY'
import json, sys
label, loss, rng, secs, rss, score, cmd = sys.argv[1:]
s = json.loads(score)
def cell(state):
    if s["states"] == "failed":
        return "-"
    if s["states"] == "open-only" and state != "open":
        return "n/a"
    return f'{s["correct"].get(state, 0)}/{s["expected"].get(state, 0)}'
notes = f'min tries on a stealth port: {s["min_stealth_tries"]}' if s.get("min_stealth_tries") else ""
print(f"| {label} | `{cmd}` | {loss} % | {rng} | {secs} | {rss} | {cell('open')} | {cell('closed')} | {cell('filtered')} | {cell('stealth')} | {s['misclassified']} | {notes} |")
PY
  tail -1 "$report"
}

if [ $router -eq 1 ]; then
  if [ "$ports" = all ]; then
    run harbormaster 0 0 0-65535 ndjson stdout \
      "$HM" scan 198.18.0.2 -p all --mode syn --format ndjson
    [ $quick -eq 1 ] || run "nmap -sS" 0 0 0-65535 nmap-xml file \
      nmap -sS -T4 -p0-65535 -n -Pn --reason -oX @OUT@ 198.18.0.2
  else
    run harbormaster 0 0 0-1055 ndjson stdout \
      "$HM" scan 198.18.0.2 -p service --mode syn --format ndjson
    [ $quick -eq 1 ] || run "nmap -sS" 0 0 0-1055 nmap-xml file \
      nmap -sS -T4 -p0-1055 -n -Pn --reason -oX @OUT@ 198.18.0.2
  fi
  echo
  echo "Appended to $report"
  exit 0
fi

for loss in 0 2; do
  run harbormaster "$loss" 0 0-65535 ndjson stdout \
    "$HM" scan 198.18.0.2 -p all --mode syn --format ndjson
  [ $quick -eq 1 ] && continue
  run "nmap -sS" "$loss" 0 0-65535 nmap-xml file \
    nmap -sS -T4 -p0-65535 -n -Pn --reason -oX @OUT@ 198.18.0.2
  run "nmap -sT" "$loss" 0 0-65535 nmap-xml file \
    nmap -sT -T4 -p0-65535 -n -Pn --reason -oX @OUT@ 198.18.0.2
  run masscan "$loss" 0 0-65535 masscan-json file \
    masscan 198.18.0.2 -p0-65535 --rate 1000000 --adapter veth0 --adapter-ip 198.18.0.1 \
    --router-mac @TMAC@ -oJ @OUT@
  run rustscan "$loss" 0 1-65535 rustscan-grep stdout \
    "$RUSTSCAN" -a 198.18.0.2 -r 1-65535 -g --ulimit 65535
done
run "harbormaster (silent host)" 0 1 0-1055 ndjson stdout \
  "$HM" scan 198.18.0.2 -p service --mode syn --format ndjson
if [ $quick -eq 0 ]; then
  run "nmap -sS (silent host)" 0 1 0-1055 nmap-xml file \
    nmap -sS -T4 -p0-1055 -n -Pn --reason -oX @OUT@ 198.18.0.2
fi
echo
echo "Written to $report"
