#!/usr/bin/env bash
# Drill: idempotency. The same OrderPlaced delivered twice reserves stock once.
#
# What it shows: RabbitMQ delivers at least once, so a consumer must expect duplicates (a
# redelivery after a crash, a publisher's retry). inventory-svc records its decision per order
# in the same atomic Redis step that takes the stock; the second copy finds the record, takes
# nothing, and only re-sends the recorded outcome. Run it on a quiet demo (scripts/up.sh): the
# stock check assumes nobody else orders burgers meanwhile.
#
#   scripts/lab/idempotency.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ITEM=burger
QTY=3
mapfile -t LOGS < <(inventory_logs)
[ ${#LOGS[@]} -gt 0 ] || fail "no inventory-svc log in $RUN_DIR (services started by scripts/svc.sh? set SAGA_RUN_DIR)"

heading "1. $ITEM stock before"
sagactl stock show || fail "inventory-svc does not answer at $INVENTORY_URL (is the demo up? scripts/up.sh)"
available_before=$(stock_of "$ITEM" available)
reserved_before=$(stock_of "$ITEM" reserved)
[ -n "$available_before" ] || fail "inventory-svc does not list $ITEM"
[ "$available_before" -ge "$QTY" ] || fail "only $available_before $ITEM left; sagactl stock set $ITEM 100"

id=$(fresh_id idem)
heading "2. Publish one OrderPlaced twice: same body, same message_id"
expect "2 copies confirmed by the broker, one order_id, one message_id"
sagactl publish --sample order --order-id "$id" --item "$ITEM" --qty "$QTY" --times 2 ||
  fail "could not publish (is RabbitMQ up? RABBITMQ_URL?)"

heading "3. inventory-svc saw both copies"
expect "one 'Reserved $QTY $ITEM for order $id' line, then one 'Duplicate detected for order $id' line"
both_seen() { grep -qF "Duplicate detected for order $id" "${LOGS[@]}"; }
eventually 15 both_seen || {
  grep -hF "$id" "${LOGS[@]}" || true
  fail "inventory-svc did not log both copies of $id within 15 s"
}
printf '$ grep %s %s\n' "$id" "${LOGS[*]}"
grep -F "$id" "${LOGS[@]}"
reserved_lines=$(cat "${LOGS[@]}" | grep -cF "Reserved $QTY $ITEM for order $id" || true)
[ "$reserved_lines" = 1 ] || fail "expected 1 'Reserved $QTY $ITEM for order $id' line, found $reserved_lines"

heading "4. The stock moved by exactly $QTY, once"
sagactl stock show || fail "inventory-svc stopped answering"
available_after=$(stock_of "$ITEM" available)
reserved_after=$(stock_of "$ITEM" reserved)
taken=$((available_before - available_after))
booked=$((reserved_after - reserved_before))
printf '   %s available: %s -> %s (taken %s); reserved: %s -> %s (+%s)\n' "$ITEM" \
  "$available_before" "$available_after" "$taken" "$reserved_before" "$reserved_after" "$booked"
[ "$taken" = "$QTY" ] || fail "available moved by $taken, not $QTY"
[ "$booked" = "$QTY" ] || fail "reserved moved by $booked, not $QTY"
note "The duplicate was acked and its outcome re-sent with the same event id, so order-svc and"
note "notification-svc deduplicate it too; nothing was skipped silently."

pass "two deliveries of order $id reserved $QTY $ITEM once"
