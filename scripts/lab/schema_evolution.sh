#!/usr/bin/env bash
# Drill: schema evolution. An order of several lines travels as OrderPlaced version 2; an
# inventory-svc not upgraded yet (ORDER_PLACED_READS=1) dead-letters it at once with the reason,
# the upgraded one (the default, 1,2) serves it once it is replayed from the DLQ.
#
# What it shows: a reader states the versions it reads and refuses the others before parsing,
# so a new producer never makes an old consumer misread an order; the message waits in the DLQ,
# byte for byte, until a consumer that reads it is deployed, and a replay finishes the saga.
# Steps: restart inventory-svc reading version 1 only (scripts/svc.sh restart, the environment
# passed through), place an order of two lines, find it in the DLQ and check its reason, restart
# inventory-svc with the default, replay the message, wait until the order is CONFIRMED.
# Whatever happens, inventory-svc is left running with the default settings (a trap). Run it
# against the demo from scripts/up.sh; it needs 2 burgers and 1 pizza in stock.
#
#   scripts/lab/schema_evolution.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DLQ=${DLQ_QUEUE:-dlq_queue}
REASON='OrderPlaced version 2.0 is not read by inventory-svc; it reads 1'
LINES=("burger 2" "pizza 1")

# inventory-svc as the demo runs it: every setting from the environment, ORDER_PLACED_READS
# unset (its default, 1,2), whatever the caller's shell holds.
restart_upgraded() { env -u ORDER_PLACED_READS "$SVC" restart inventory-svc; }

# Whatever happens below, leave inventory-svc reading every version, as the demo runs it, and
# say how to finish an order whose event a failed run left in the DLQ.
downgraded=false
id=
clean_up() {
  local n
  if $downgraded; then
    printf '\n   (leaving the demo as it was: inventory-svc restarted with the default ORDER_PLACED_READS)\n'
    restart_upgraded >/dev/null 2>&1 || printf '   could not restart inventory-svc: run scripts/svc.sh restart inventory-svc\n' >&2
  fi
  if [ -n "$id" ] && n=$(dlq_position "$id" 2>/dev/null) && [ -n "$n" ]; then
    printf '   order %s is still in %s as message #%s: sagactl dlq replay %s finishes it\n' "$id" "$DLQ" "$n" "$n"
  fi
  return 0
}
trap clean_up EXIT

# The 1-based position of the DLQ message about order $1 (empty if none).
dlq_position() {
  "$SAGACTL" dlq list --limit 100000 --json | json_get '
    next((e["position"] for e in d["entries"]
          if e["order_id"] == a[0] or a[0] in e["body_preview"]), None)' "$1"
}

# The reason DLQ message N (position) was dead-lettered for.
dlq_reason() {
  "$SAGACTL" dlq list --limit "$1" --json |
    json_get 'next((e["reason"] for e in d["entries"] if e["position"] == int(a[0])), None)' "$1"
}

# What a class needs to see of DLQ message N: its id, why it is there, where it came from, the
# version it was written in, and its body.
show_dead_letter() {
  printf '$ sagactl dlq show %s\n' "$1"
  "$SAGACTL" dlq show "$1" --json | json_get '"\n".join(
    ["  %-15s %s" % ("message_id", d["properties"]["message_id"] or "-")]
    + ["    %-24s %s" % (k, v) for k, v in d["headers"].items()
       if k.startswith("x-dlq-") or k in ("x-original-routing-key", "x-schema-version")]
    + [d["body"]])'
}

# An order's lines as a person reads them: "2 x burger, 1 x pizza".
order_lines() {
  "$SAGACTL" order get "$1" --json |
    json_get '", ".join("%s x %s" % (l["qty"], l["item"]) for l in d["lines"])'
}

# ORDER_PLACED_READS of every running inventory-svc instance, from its environment ("unset" when
# it has none, i.e. the default), one "NAME (pid N): VALUE" a line; the pid files are svc.sh's.
reads_setting() {
  local file pid value
  for file in "$RUN_DIR"/inventory-svc.pid "$RUN_DIR"/inventory-svc-[0-9].pid; do
    [ -r "$file" ] || continue
    pid=$(tr -dc 0-9 <"$file")
    value=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^ORDER_PLACED_READS=//p') ||
      value='?'
    printf '%s (pid %s): %s\n' "$(basename "$file" .pid)" "$pid" "${value:-unset}"
  done
}

# Every inventory-svc runs with ORDER_PLACED_READS=$1 ("unset": the default).
reads_are() {
  local settings
  settings=$(reads_setting)
  printf '%s\n' "$settings" | sed 's/^/   /'
  [ -n "$settings" ] && ! grep -qv ": $1\$" <<<"$settings"
}

"$SVC" status inventory-svc >/dev/null 2>&1 ||
  fail "inventory-svc is not running: start the demo first (scripts/up.sh)"
for line in "${LINES[@]}"; do
  read -r item qty <<<"$line"
  left=$(stock_of "$item") || fail "inventory-svc does not answer at $INVENTORY_URL (is the demo up?)"
  [ "${left:-0}" -ge "$qty" ] ||
    fail "the demo has ${left:-no} $item left and the drill orders $qty (PUT $INVENTORY_URL/stock/$item sets it)"
done

heading "1. Play an inventory-svc not upgraded yet: ORDER_PLACED_READS=1"
note "The same binary, told to read version 1 of OrderPlaced only (the lab's orders of one line)."
downgraded=true
printf '$ ORDER_PLACED_READS=1 scripts/svc.sh restart inventory-svc\n'
ORDER_PLACED_READS=1 "$SVC" restart inventory-svc || fail "inventory-svc did not restart with ORDER_PLACED_READS=1"
reads_are 1 || fail "inventory-svc is not running with ORDER_PLACED_READS=1"
printf '   ok: inventory-svc runs again, reading OrderPlaced version 1 only\n'

heading "2. Place an order of several lines: it travels as OrderPlaced version 2"
expect "HTTP 201, PLACED; order-svc writes version 2 (x-schema-version 2.0, a lines array)"
body=$(python3 -c '
import json, sys
lines = [l.split() for l in sys.argv[1:]]
print(json.dumps({"items": [{"item": i, "qty": int(q)} for i, q in lines], "student_id": "schema-drill"}))
' "${LINES[@]}")
post_order_shown "$body"
printf '   ok: order %s accepted (%s)\n' "$id" "$(order_lines "$id")"

heading "3. The old reader dead-letters it at once, with the reason"
expect "in $DLQ, reason '$REASON'; no retries"
in_dlq() { [ -n "$(dlq_position "$id")" ]; }
eventually 15 in_dlq || fail "order $id did not reach $DLQ within 15 s"
n=$(dlq_position "$id")
show_dead_letter "$n"
reason=$(dlq_reason "$n")
[[ $reason == *"$REASON"* ]] || fail "message #$n is dead-lettered for '$reason', not '$REASON'"
status=$(order_status "$id")
[ "$status" = PLACED ] || fail "order $id should still be PLACED while its event waits in the DLQ, it is $status"
printf '   ok: message #%s in %s: "%s"; the order is still PLACED\n' "$n" "$DLQ" "$reason"
note "Refused before parsing: a version-1 parser never sees a body it would misread."

heading "4. Upgrade: restart inventory-svc with the default, ORDER_PLACED_READS=1,2"
printf '$ scripts/svc.sh restart inventory-svc      (ORDER_PLACED_READS unset: 1,2)\n'
restart_upgraded || fail "inventory-svc did not restart with the default settings"
downgraded=false
reads_are unset || fail "inventory-svc is not running with the default ORDER_PLACED_READS"
status=$(order_status "$id")
[ "$status" = PLACED ] || fail "order $id changed to $status before the replay"
printf '   ok: inventory-svc reads versions 1 and 2; order %s is still PLACED (nothing redelivers by itself)\n' "$id"

heading "5. Replay it from the DLQ: back to order_events, routing key order.placed, byte for byte"
n=$(dlq_position "$id")
[ -n "$n" ] || fail "order $id's message is no longer in $DLQ"
sagactl dlq replay "$n" || fail "the replay was not confirmed; the message is still in $DLQ"
printf '   ok: message #%s republished (confirmed) and removed from %s\n' "$n" "$DLQ"

heading "6. The upgraded reader serves it: the order becomes CONFIRMED"
eventually 30 is_final "$id" || fail "order $id is still $(order_status "$id") 30 s after the replay"
status=$(order_status "$id")
[ "$status" = CONFIRMED ] || fail "order $id ended $status, not CONFIRMED"
[ -z "$(dlq_position "$id")" ] || fail "order $id's message came back to $DLQ after the replay"
printf '$ sagactl order get %s --json   (status, lines, history, dlq_hops)\n' "$id"
"$SAGACTL" order get "$id" --json | json_get '"\n".join(
    ["   status    %s" % d["status"], "   lines     %s" % ", ".join("%s x %s" % (l["qty"], l["item"]) for l in d["lines"])]
    + ["   history   %s by %s (%s)" % (h["status"], h["service"], h["event"]) for h in d["history"]]
    + ["   dlq hop   %s: %s" % (h["service"], h["reason"]) for h in d.get("dlq_hops", [])])'
printf '   ok: order %s is CONFIRMED with its lines: %s\n' "$id" "$(order_lines "$id")"

pass "version 2 was dead-lettered by the version-1 reader with its reason, replayed after the upgrade, and CONFIRMED"
