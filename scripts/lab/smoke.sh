#!/usr/bin/env bash
# Drill: the classic curl smoke test. Place an order over HTTP, follow it to CONFIRMED, list it.
#
# What it shows: POST /order answers at once (201, status PLACED); the saga then runs
# asynchronously (order-svc -> inventory-svc -> order-svc) and the order becomes CONFIRMED a
# moment later. Run against the demo from scripts/up.sh; see common.sh for the environment.
#
#   scripts/lab/smoke.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

heading "1. Place an order: POST $ORDER_URL/order"
expect '{"order_id":"<uuid>","status":"PLACED"} and HTTP 201'
body='{"item":"burger","qty":2,"student_id":"s1"}'
post_order_shown "$body"

heading "2. Follow it: GET $ORDER_URL/order/$id until it is final"
note "The answer came before any stock was reserved: the rest of the saga runs over RabbitMQ."
expect "CONFIRMED within moments (you may not even catch it PLACED); its history shows PLACED -> CONFIRMED"
printf '$ curl -s %s/order/%s   (every 0.2 s, up to 15 s)\n' "$ORDER_URL" "$id"
last=
seen() {
  local status
  status=$(order_status "$id")
  if [ "$status" != "$last" ]; then
    printf '   status: %s\n' "${status:-<no answer>}"
    last=$status
  fi
  [ "$status" = CONFIRMED ] || [ "$status" = FAILED ]
}
eventually 15 seen || fail "order $id is still ${last:-unknown} after 15 s (is inventory-svc running?)"
curl -s -m 5 "$ORDER_URL/order/$id"
echo
if [ "$last" != CONFIRMED ]; then
  fail "order $id is $last, not CONFIRMED (out of burgers? sagactl stock set burger 100)"
fi

heading "3. List orders: GET $ORDER_URL/orders?limit=3"
expect '{"orders":[...newest first...],"count":3,"total":<all orders>,"offset":0,"limit":3}'
show curl -s -m 5 "$ORDER_URL/orders?limit=3"
echo
listed=$("$SAGACTL" order list --limit 50 --json |
  json_get 'any(o["order_id"] == a[0] for o in d["orders"])' "$id") ||
  fail "order-svc does not answer GET /orders"
[ "$listed" = true ] || fail "order $id is not among the newest orders"

pass "order $id went PLACED -> CONFIRMED and is listed"
