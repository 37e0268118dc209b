#!/bin/sh
# Screenshots of the visitor's key pages (start, port, search, errors, a running
# and a finished scan) at 390 and 1280 px, light and dark start page, for review.
# A real `harbormaster serve` runs in the scanner's network namespace and
# Chromium in the visitor's, as in crates/cli/tests/browser.rs. Needs root and
# what scripts/deps.sh installs. PNGs go to OUTDIR; do not commit them.
#
#   sudo bench/screenshots.sh OUTDIR
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
HARBORMASTER_SCREENSHOTS="$out" cargo test -p harbormaster-cli --test browser \
    screenshots_of_the_key_pages -- --ignored --nocapture
ls -1 "$out"/*.png
