#!/usr/bin/env bash
# Drill: persistence. Stop everything (services, RabbitMQ, Redis), start it all again, and every
# order is still there with the status it had, the stock where it was.
#
# What it shows: the services keep no state of their own. Redis holds the orders, the stock, the
# dedupe records and the outbox in an append-only file (deploy/redis.conf: AOF, fsync every
# second) in a directory a reboot leaves alone (${SAGA_STATE_DIR:-/var/lib/saga}/redis); RabbitMQ
# keeps its durable queues. scripts/down.sh --all stops both in an orderly way and loses nothing.
#
# Not in run_all.sh: it restarts RabbitMQ and Redis (half a minute or so), which the other drills
# do not expect; CI runs it after them. Run it against the demo from scripts/up.sh, on a quiet
# demo: the stock check assumes nobody else orders meanwhile.
#
#   scripts/lab/persistence.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# A mix that ends in both final statuses: three that fit the default stock, one far too large.
ORDERS=("salad 2" "sushi 1" "pizza 1" "salad 10000")

# GET /orders's "total": how many orders order-svc keeps.
orders_total() { "$SAGACTL" order list --limit 1 --json | json_get 'd["total"]'; }

heading "1. Place ${#ORDERS[@]} orders and wait until each is final"
ids=()
for order in "${ORDERS[@]}"; do
  read -r item qty <<<"$order"
  answer=$(curl -fsS -m 10 -XPOST "$ORDER_URL/order" -H 'content-type: application/json' \
    -d "{\"item\":\"$item\",\"qty\":$qty,\"student_id\":\"persistence\"}") ||
    fail "POST /order ($qty $item) was refused (is the demo up? scripts/up.sh)"
  id=$(order_id_of <<<"$answer")
  [ -n "$id" ] || fail "no order_id in the answer to POST /order: $answer"
  ids+=("$id")
done
statuses=()
for id in "${ids[@]}"; do
  eventually 30 is_final "$id" || fail "order $id is still $(order_status "$id") after 30 s"
  statuses+=("$(order_status "$id")")
done
for i in "${!ids[@]}"; do printf '   %-12s %s  %s\n' "${ORDERS[$i]}" "${ids[$i]}" "${statuses[$i]}"; done

heading "2. Record what Redis holds"
stock_before=$("$SAGACTL" stock show) || fail "inventory-svc does not answer at $INVENTORY_URL"
total_before=$(orders_total) || fail "order-svc does not answer GET /orders"
printf '%s\n' "$stock_before"
printf '   orders kept by order-svc: %s\n' "$total_before"

heading "3. Stop everything: scripts/down.sh --all"
note "The services stop, then RabbitMQ, then Redis (SHUTDOWN flushes its append-only file)."
show bash "$LAB_ROOT/scripts/down.sh" --all || fail "scripts/down.sh --all failed"

heading "4. Start everything again: scripts/up.sh"
note "Redis reads its append-only file back before it answers; the services find their state there."
show bash "$LAB_ROOT/scripts/up.sh" || fail "scripts/up.sh failed after the restart"

heading "5. Every order is still there, with the same status; the stock did not move"
expect "the same ids and statuses, the same stock table, the same number of orders"
lost=0
for i in "${!ids[@]}"; do
  now=$(order_status "${ids[$i]}")
  printf '   %s  before %s, now %s\n' "${ids[$i]}" "${statuses[$i]}" "${now:-<not found>}"
  [ "$now" = "${statuses[$i]}" ] || lost=$((lost + 1))
done
[ "$lost" = 0 ] || fail "$lost of ${#ids[@]} orders lost or changed by the restart (is Redis running with AOF? redis-cli info persistence)"
stock_after=$("$SAGACTL" stock show) || fail "inventory-svc does not answer after the restart"
printf '%s\n' "$stock_after"
[ "$stock_after" = "$stock_before" ] ||
  fail "the stock changed across the restart (before and after above): Redis did not keep it"
total_after=$(orders_total) || fail "order-svc does not answer GET /orders after the restart"
printf '   orders kept by order-svc: %s\n' "$total_after"
[ "$total_after" = "$total_before" ] || fail "order-svc kept $total_before orders before the restart, $total_after after"

pass "${#ids[@]} orders, the stock and all $total_after orders survived scripts/down.sh --all + scripts/up.sh"
