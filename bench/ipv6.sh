#!/usr/bin/env bash
# Full 0-65535 SYN sweeps of the benchmark host over IPv6 (fd00:198:18::2)
# and IPv4 (198.18.0.2) with the release binaries, with and without the
# open-port verification, three runs each; every port scored against the
# host's truth file.
#
#   sudo bench/ipv6.sh [harbormaster-testnet flags, e.g. --loss 2]
#
# Traffic stays inside the two network namespaces the test host creates
# (198.18.0.0/16, fd00:198:18::/64); nothing else is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "ipv6.sh needs root (network namespaces, raw sockets)" >&2
  exit 2
fi
cargo build --release --locked -p harbormaster-cli -p harbormaster-testnet >&2
bin=target/release
work=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/hold"
"$bin/harbormaster-testnet" --ipv6 --truth "$work/truth" "$@" <"$work/hold" >"$work/ns" &
exec 3>"$work/hold"
for _ in $(seq 200); do [ -s "$work/ns" ] && break; sleep 0.1; done
read -r scanner _ <"$work/ns"
for target in fd00:198:18::2 198.18.0.2; do
  for verify in "" --no-verify; do
    for run in 1 2 3; do
      /usr/bin/time -f "%e s, %M KB" -o "$work/time" \
        ip netns exec "$scanner" "$bin/harbormaster" scan "$target" -p all --mode syn \
        --format ndjson $verify >"$work/out" 2>/dev/null
      score=$(python3 - "$work/truth" "$work/out" <<'PY'
import json, sys
truth = {int(l.split()[0]): l.split()[1] for l in open(sys.argv[1])}
seen = {}
for line in open(sys.argv[2]):
    v = json.loads(line)
    if "port" in v:
        seen[v["port"]] = v["state"]
print(f"{len(seen)} ports, {sum(1 for p, s in seen.items() if truth[p] != s)} wrong")
PY
)
      echo "$target ${verify:-(verified)} run $run: $(cat "$work/time"), $score"
    done
  done
done
