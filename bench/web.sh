#!/usr/bin/env bash
# Web-service benchmarks of issue 4.
#
#   sudo bench/web.sh            # both parts (about two and a half minutes)
#   sudo bench/web.sh --part1    # throughput only
#   sudo bench/web.sh --part2    # 100 visitors only
#
# Part 1, throughput: wrk against `harbormaster serve --mode connect` GET
# /port/{n} (a curated and an uncurated port) and, in the same run and under
# the same wrk settings, against nginx serving a saved copy of exactly the same
# pages from a temp dir. Both servers and wrk run on the loopback of one
# network namespace the script creates. Target: harbormaster >= 50 % of nginx.
#
# Part 2, 100 visitors at once: `harbormaster serve --mode syn` in the scanner
# namespace of harbormaster-testnet; bench/visitors.py in the target namespace
# drives 100 visitors (198.18.0.2-198.18.0.101) concurrently through GET /,
# POST /scan kind=service and polling /api/scans/{id}, then checks all 1056
# port results of every visitor against the truth file. Target: 0 incorrect.
#
# Traffic stays on the loopback of a namespace the script creates and inside
# the two namespaces harbormaster-testnet creates (198.18.0.0/16); nothing else
# is contacted. Results: bench/results/web-latest.md (and stdout), written
# when the run completes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "web.sh needs root (network namespaces, raw sockets)" >&2
  exit 2
fi
part1=1 part2=1
case "${1:-}" in
  --part1) part2=0 ;;
  --part2) part1=0 ;;
  "") ;;
  *) echo "usage: bench/web.sh [--part1|--part2]" >&2; exit 2 ;;
esac

bench/web-setup.sh
cargo build --quiet --release -p harbormaster-cli -p harbormaster-testnet
HM=$PWD/target/release/harbormaster
TN=$PWD/target/release/harbormaster-testnet
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
WRK_SECS=10
WRK_ARGS=(-t2 -c64 "-d${WRK_SECS}s" --latency)
ROUNDS=3                   # per page and server, alternating; medians reported
PORTS=(22 40000)           # curated (ssh) and uncurated (IANA-registered only)
VISITORS=100

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
webns=""
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  [ -n "$webns" ] && ip netns del "$webns" 2>/dev/null
  if [ -n "${NET_PID:-}" ]; then
    exec {NET[1]}>&- 2>/dev/null || true
    wait "$NET_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bench/results
final=bench/results/web-latest.md
report=$tmp/web-latest.md   # copied to $final when every part has run
{
  echo "# Web benchmark (issue 4), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(python3 --version)."
  echo "Script: \`bench/web.sh\` (setup: \`bench/web-setup.sh\`; visitor driver: \`bench/visitors.py\`)."
} > "$report"

# Bounded wait until `curl` in namespace $1 gets an answer from URL $2 (extra curl args after).
wait_http() {
  local ns=$1 url=$2
  shift 2
  local i
  for i in $(seq 1 100); do
    if ip netns exec "$ns" curl -s -o /dev/null --max-time 1 "$@" "$url"; then
      return 0
    fi
    sleep 0.1
  done
  echo "no answer from $url" >&2
  return 1
}

# Fields of /proc/PID/status in kB, e.g. VmHWM.
proc_kb() {
  awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"
}

# CPU seconds (user+system) a process has used.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

if [ $part1 -eq 1 ]; then
  webns=hm-web$$
  ip netns add "$webns"
  ip -n "$webns" link set lo up
  HPORT=8080 NPORT=8081
  mkdir -p "$tmp/data1" "$tmp/www/port" "$tmp/nginx"
  hm_cmd=("$HM" serve --listen "127.0.0.1:$HPORT" --mode connect --no-reverse-dns --data-dir "$tmp/data1")
  ip netns exec "$webns" "${hm_cmd[@]}" 2> "$tmp/serve1.log" &
  hm_pid=$!
  pids+=("$hm_pid")
  wait_http "$webns" "http://127.0.0.1:$HPORT/port/22"
  # The saved pages. From loopback the visitor is refused (no probe offer, no
  # token), so the page is the same on every request and a static copy is exact.
  for p in "${PORTS[@]}"; do
    ip netns exec "$webns" curl -sf -o "$tmp/www/port/$p" "http://127.0.0.1:$HPORT/port/$p"
  done
  chmod -R a+rX "$tmp/www"
  cat > "$tmp/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  types { }
  default_type "text/html; charset=utf-8";
  server {
    listen 127.0.0.1:$NPORT;
    root $tmp/www;
  }
}
EOF
  ng_cmd=("$NGINX" -c "$tmp/nginx/nginx.conf" -g "daemon off;")
  ip netns exec "$webns" "${ng_cmd[@]}" 2> "$tmp/nginx.log" &
  ng_pid=$!
  pids+=("$ng_pid")
  wait_http "$webns" "http://127.0.0.1:$NPORT/port/22"
  for p in "${PORTS[@]}"; do
    ip netns exec "$webns" curl -sf -o "$tmp/check" "http://127.0.0.1:$NPORT/port/$p"
    cmp -s "$tmp/check" "$tmp/www/port/$p" || { echo "nginx does not serve the saved /port/$p" >&2; exit 1; }
  done
  {
    echo
    echo "## Part 1: throughput of GET /port/{n}, harbormaster vs nginx (static copy)"
    echo
    echo "Both servers and wrk on the loopback of one fresh network namespace. For each page, $ROUNDS rounds of (harbormaster, then nginx) with the same wrk settings; the table shows the median round of each server and the range over the rounds. wrk, the server under test and the idle other server share the $(nproc) cores."
    echo
    echo "- harbormaster: \`${hm_cmd[*]}\` (tokio multi-thread runtime, one worker per core)"
    echo "- nginx: \`${ng_cmd[*]:0:4} '${ng_cmd[4]}'\` with \`worker_processes auto\` ($(nproc) workers), \`access_log off\`, \`sendfile on\`, \`keepalive_requests 1000000\` (so neither server closes wrk's keep-alive connections), serving the pages fetched once from harbormaster (byte-identical, checked with cmp)"
    echo "- load: \`wrk ${WRK_ARGS[*]} http://127.0.0.1:PORT/port/N\`, after a 3 s warm-up of each server"
    echo
    echo "| page | body (bytes) | server | requests/s (median) | range over $ROUNDS rounds | latency avg | latency p99 | errors / non-2xx (all rounds) | harbormaster / nginx (medians) | ratio per round |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
  } >> "$report"
  for url in "http://127.0.0.1:$HPORT/port/22" "http://127.0.0.1:$NPORT/port/22"; do
    ip netns exec "$webns" wrk -t2 -c64 -d3s "$url" > /dev/null
  done
  hm_cpu=0
  # wrk_run URL: prints "requests/s latency-avg p99 errors".
  wrk_run() {
    ip netns exec "$webns" wrk "${WRK_ARGS[@]}" "$1" > "$tmp/wrk.out"
    cat "$tmp/wrk.out" >&2
    awk '
      /Requests\/sec:/ {rps = $2}
      /^    Latency/ && !avg {avg = $2}
      /^ +99%/ {p99 = $2}
      /Socket errors:/ {e += $4 + $6 + $8 + $10}
      /Non-2xx or 3xx responses:/ {n = $5}
      END {printf "%s %s %s %d\n", rps, avg, p99, e + n}' "$tmp/wrk.out"
  }
  for p in "${PORTS[@]}"; do
    : > "$tmp/runs"
    for r in $(seq 1 "$ROUNDS"); do
      c0=$(cpu_s "$hm_pid")
      echo "harbormaster $(wrk_run "http://127.0.0.1:$HPORT/port/$p")" >> "$tmp/runs"
      c1=$(cpu_s "$hm_pid")
      hm_cpu=$(awk -v t="$hm_cpu" -v a="$c0" -v b="$c1" 'BEGIN {print t + b - a}')
      echo "nginx $(wrk_run "http://127.0.0.1:$NPORT/port/$p")" >> "$tmp/runs"
    done
    kind=uncurated
    [ "$p" = 22 ] && kind=curated
    python3 - "$tmp/runs" "/port/$p ($kind)" "$(stat -c %s "$tmp/www/port/$p")" >> "$report" <<'PY'
import statistics, sys
runs, page, size = sys.argv[1:]
by = {}
for line in open(runs):
    server, rps, avg, p99, err = line.split()
    by.setdefault(server, []).append((float(rps), avg, p99, int(err)))
rounds = ", ".join(f"{100 * h[0] / n[0]:.0f} %" for h, n in zip(by["harbormaster"], by["nginx"]))
med = {}
for server in ("harbormaster", "nginx"):
    rs = sorted(by[server])
    m = rs[len(rs) // 2]  # the median round (odd count)
    med[server] = statistics.median(r[0] for r in rs)
    ratio = f'{100 * med["harbormaster"] / med["nginx"]:.0f} %' if server == "nginx" else ""
    per_round = rounds if server == "nginx" else ""
    print(f'| {page} | {size} | {server} | {med[server]:.0f} | {rs[0][0]:.0f}-{rs[-1][0]:.0f} | {m[1]} | {m[2]} | {sum(r[3] for r in rs)} | {ratio} | {per_round} |')
PY
    tail -2 "$report"
  done
  {
    echo
    echo "harbormaster: peak RSS (VmHWM) $(awk -v k="$(proc_kb "$hm_pid" VmHWM)" 'BEGIN {printf "%.1f MB", k / 1024}'); CPU used in its $((ROUNDS * ${#PORTS[@]})) measured runs: $(awk -v t="$hm_cpu" -v n="$((ROUNDS * ${#PORTS[@]}))" -v d="$WRK_SECS" 'BEGIN {printf "%.1f s (%.2f cores on average over %d s)", t, t / (d * n), d * n}'). Load average after part 1: $(cut -d' ' -f1-3 /proc/loadavg)."
  } >> "$report"
  kill "$hm_pid" "$ng_pid"
  wait "$hm_pid" "$ng_pid" 2>/dev/null || true
  pids=()
  ip netns del "$webns"
  webns=""
fi

if [ $part2 -eq 1 ]; then
  # The test host ignores Ctrl-C / TERM sent to the whole process group: it
  # removes its namespaces when its stdin closes, i.e. when this script ends.
  coproc NET { trap '' INT TERM HUP; exec "$TN" --spec visitor --visitors "$VISITORS" --truth "$tmp/truth"; }
  read -r sns tns <&"${NET[0]}"
  first=198.18.0.2
  last=198.18.0.$((1 + VISITORS))
  # Every visitor address must be reachable from the scanner namespace.
  for ip in $first $last; do
    ip -n "$sns" neigh show "$ip" dev veth0 | grep -q . || { echo "no neighbour entry for $ip in $sns" >&2; exit 1; }
  done
  ip -n "$tns" -o -4 addr show dev veth1 | grep -q " $last/" || { echo "$last missing in $tns" >&2; exit 1; }
  mkdir -p "$tmp/data2"
  serve_cmd=("$HM" serve --listen 198.18.0.1:8080 --allow-private --no-reverse-dns --mode syn
    --max-concurrent 128 --scans-per-hour 1000 --data-dir "$tmp/data2")
  ip netns exec "$sns" "${serve_cmd[@]}" 2> "$tmp/serve2.log" &
  srv_pid=$!
  pids+=("$srv_pid")
  wait_http "$tns" "http://198.18.0.1:8080/static/style.css" --interface "$last"
  rss_idle=$(proc_kb "$srv_pid" VmRSS)
  drv=(python3 bench/visitors.py 198.18.0.1:8080 "$tmp/truth" "$first")
  # One visitor alone first (the baseline per-visitor time), then all at once.
  ip netns exec "$tns" timeout 400 "${drv[@]}" 1 > "$tmp/one.json"
  cpu0=$(cpu_s "$srv_pid")
  ip netns exec "$tns" timeout 400 "${drv[@]}" "$VISITORS" > "$tmp/many.json"
  cpu1=$(cpu_s "$srv_pid")
  hwm=$(proc_kb "$srv_pid" VmHWM)
  rss_end=$(proc_kb "$srv_pid" VmRSS)
  kill "$srv_pid"
  wait "$srv_pid" 2>/dev/null || true
  pids=()
  exec {NET[1]}>&-
  wait "$NET_PID" 2>/dev/null || true
  NET_PID=""
  {
    echo
    echo "## Part 2: $VISITORS visitors at once (SYN mode, service test 0-1055)"
    echo
    echo "Test host: \`$TN --spec visitor --visitors $VISITORS --truth TRUTH\` — target namespace with $first to $last on one veth, each with $(awk '$1 <= 1055 && $2 == "open"' "$tmp/truth" | wc -l) open, $(awk '$1 <= 1055 && $2 == "stealth"' "$tmp/truth" | wc -l) dropped (stealth), $(awk '$1 <= 1055 && $2 == "filtered"' "$tmp/truth" | wc -l) rejected (filtered, ICMP admin-prohibited) and $(awk '$1 <= 1055 && $2 == "closed"' "$tmp/truth" | wc -l) closed ports in 0-1055; no loss."
    echo
    echo "- server (scanner namespace): \`${serve_cmd[*]}\` (default \`--max-rate 20000\` packets/s shared by all tests)"
    echo "- driver (target namespace): \`ip netns exec TARGET_NS ${drv[*]} COUNT\` — one thread per visitor address, all released together: GET / (token), POST /scan token=…&kind=service, poll GET /api/scans/{id} every 0.25 s until not running; then every result is compared with the truth file and the scan's target with the visitor's address. Per-visitor time = from its GET / until it sees the scan finished."
    echo
    echo "| visitors | finished (status) | wall time (s) | per visitor min / median / max (s) | port results checked | incorrect | missing | wrong target | errors |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for f in one many; do
      python3 - "$tmp/$f.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pv = r["per_visitor_s"]
st = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())) or "-"
print(f'| {r["visitors"]} | {r["completed"]} ({st}) | {r["wall_s"]} | {pv["min"]} / {pv["median"]} / {pv["max"]} | '
      f'{r["port_results_checked"]} | {r["incorrect_port_results"]} | {r["missing_port_results"]} | {r["wrong_target"]} | {r["error_count"]} |')
PY
    done
    echo
    echo "Server memory: VmRSS $(awk -v k="$rss_idle" 'BEGIN {printf "%.1f MB", k / 1024}') idle before the visitors, peak (VmHWM over the whole life of the process, both runs) $(awk -v k="$hwm" 'BEGIN {printf "%.1f MB", k / 1024}'), VmRSS $(awk -v k="$rss_end" 'BEGIN {printf "%.1f MB", k / 1024}') after. Server CPU during the $VISITORS-visitor run: $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f s", b - a}')."
    python3 - "$tmp/many.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["correct_by_state"]
print(f'\nCorrect results by state ({r["visitors"]} visitors): open {c["open"]}, closed {c["closed"]}, filtered {c["filtered"]}, stealth {c["stealth"]}.')
n = r["probes_sent"]
print(f'\nPort probes sent (sum of the results\' `tries`): {n}, plus 3 pings per visitor; at the default --max-rate of 20000 packets/s shared by all tests, sending them takes at least {(n + 3 * r["visitors"]) / 20000:.1f} s, a lower bound for the wall time.')
if r["wrong_examples"]:
    print("\nIncorrect results (first 10): " + "; ".join(r["wrong_examples"]) + ".")
if r["errors"]:
    print("\nErrors (first 20): " + "; ".join(r["errors"]) + ".")
PY
  } >> "$report"
  echo "Load average after part 2: $(cut -d' ' -f1-3 /proc/loadavg)." >> "$report"
  tail -8 "$report"
  if [ -s "$tmp/serve2.log" ]; then
    echo "server log (tail):" >&2
    tail -5 "$tmp/serve2.log" >&2
  fi
fi
cp "$report" "$final"
echo
echo "Written to $final"
