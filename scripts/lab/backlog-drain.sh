#!/usr/bin/env bash
# Drill: backlog drain. With inventory-svc down, orders are still accepted and pile up in the
# durable inventory_queue; when it comes back it drains the backlog and every order is decided.
#
# What it shows: temporal decoupling. The broker holds the work while a consumer is away;
# nothing is lost and nobody had to retry by hand. Run against the demo from scripts/up.sh.
#
#   scripts/lab/backlog-drain.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ORDERS=20
QUEUE=${INVENTORY_QUEUE:-inventory_queue}

# Whatever happens below, leave inventory-svc running as we found it (and no watch behind).
watcher=
clean_up() {
  if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null || true; fi
  "$SVC" start inventory-svc >/dev/null 2>&1 || true
}
trap clean_up EXIT

heading "1. Stop inventory-svc (the consumer of $QUEUE)"
show "$SVC" stop inventory-svc || fail "could not stop inventory-svc"

heading "2. Place $ORDERS orders while it is down"
note "order-svc does not need inventory-svc to accept an order: every POST still answers 201."
ids=()
for i in $(seq 1 "$ORDERS"); do
  answer=$(curl -fsS -m 10 -XPOST "$ORDER_URL/order" -H 'content-type: application/json' \
    -d "{\"item\":\"burger\",\"qty\":1,\"student_id\":\"backlog-$i\"}") ||
    fail "POST /order #$i was refused (is order-svc up at $ORDER_URL?)"
  ids+=("$(order_id_of <<<"$answer")")
done
printf '   placed %s orders, e.g. %s\n' "${#ids[@]}" "$answer"

heading "3. The backlog waits in the durable queue"
expect "$QUEUE with at least $ORDERS messages and 0 consumers"
deep_enough() { [ "$(queue_depth "$QUEUE")" -ge "$ORDERS" ]; }
eventually 15 deep_enough || { sagactl queues; fail "$QUEUE never reached $ORDERS messages"; }
sagactl queues
for id in "${ids[0]}" "${ids[-1]}"; do
  [ "$(order_status "$id")" = PLACED ] || fail "order $id is not PLACED while inventory is down"
done
note "Every one of them is still PLACED: nothing has decided them yet."

heading "4. Start inventory-svc and watch it drain"
note "The watch starts first, so it sees the backlog before the consumer takes it."
expect "the depth falls from $ORDERS to 0 within seconds of the start"
sagactl watch --queue "$QUEUE" --until-empty --timeout 60 &
watcher=$!
sleep 0.5 # let the watch take its first reading of the full queue
show "$SVC" start inventory-svc || fail "inventory-svc did not start again"
drained=0
wait "$watcher" || drained=$?
watcher=
[ "$drained" = 0 ] || fail "$QUEUE did not drain within 60 s"

heading "5. Every order was decided"
all_final() {
  local id
  for id in "${ids[@]}"; do is_final "$id" || return 1; done
}
eventually 30 all_final || fail "not all $ORDERS orders were final 30 s after the drain"
declare -A tally=()
for id in "${ids[@]}"; do
  status=$(order_status "$id")
  tally[$status]=$((${tally[$status]:-0} + 1))
done
for status in "${!tally[@]}"; do printf '   %-10s %s\n' "$status" "${tally[$status]}"; done
note "FAILED would mean out of stock: a business outcome, still a decided order."

pass "$ORDERS orders waited out the outage in $QUEUE and were all decided after the restart"
