#!/usr/bin/env bash
# Take a screenshot of the classroom board in headless Chromium, e.g. for docs/board.png.
#
#   scripts/board-screenshot.sh [URL] [OUT.png] [ORDER_ID]
#
# URL defaults to the demo's board (http://127.0.0.1:8080), OUT to docs/board.png. With an
# ORDER_ID, that order is clicked first so its swimlane is on the picture. Drives Chromium over
# WebDriver with nothing but curl (chromium and chromium-driver from the OS packages, as
# scripts/test.sh installs them); the window is tall enough for the whole board.
# CHROMEDRIVER_PORT (default 9555) is where chromedriver listens meanwhile.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

URL=${1:-http://127.0.0.1:8080}
OUT=${2:-docs/board.png}
ORDER_ID=${3:-}
PORT=${CHROMEDRIVER_PORT:-9555}
WD=http://127.0.0.1:$PORT

die() { printf 'board-screenshot: error: %s\n' "$*" >&2; exit 1; }
command -v chromedriver >/dev/null 2>&1 || die "no chromedriver: apt-get install -y chromium chromium-driver"
curl -fsS -m 5 "$URL/health" >/dev/null || die "no board answers at $URL (scripts/up.sh starts one)"

chromedriver --port="$PORT" >/dev/null 2>&1 &
driver=$!
session=
clean_up() {
  [ -z "$session" ] || curl -s -X DELETE "$WD/session/$session" >/dev/null || true
  kill "$driver" 2>/dev/null || true
}
trap clean_up EXIT
for _ in $(seq 1 50); do curl -fsS -m 1 "$WD/status" >/dev/null 2>&1 && break; sleep 0.1; done

wd() { curl -fsS -m 30 -H 'content-type: application/json' "$@"; }
session=$(wd -X POST "$WD/session" -d '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{
  "binary":"/usr/bin/chromium",
  "args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--hide-scrollbars","--window-size=1400,1750"]}}}}' |
  grep -o '"sessionId":"[^"]*"' | cut -d'"' -f4)
[ -n "$session" ] || die "chromedriver did not start a session"

run_js() { wd -X POST "$WD/session/$session/execute/sync" -d "{\"script\":$1,\"args\":[]}" >/dev/null; }
wd -X POST "$WD/session/$session/url" -d "{\"url\":\"$URL\"}" >/dev/null
sleep 3 # the live stream fills every panel within a second or two
if [ -n "$ORDER_ID" ]; then
  run_js "\"const row = document.querySelector('tr[data-order-id=\\\"$ORDER_ID\\\"]'); if (row) row.click();\""
  sleep 2
fi
mkdir -p "$(dirname "$OUT")"
wd "$WD/session/$session/screenshot" | sed -e 's/^{"value":"//' -e 's/"}$//' | base64 -d >"$OUT"
printf 'board-screenshot: %s (%s bytes)\n' "$OUT" "$(wc -c <"$OUT")"
