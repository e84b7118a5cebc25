#!/usr/bin/env bash
# Drill: the dead-letter queue. A malformed OrderPlaced is isolated in dlq_queue with the reason,
# the consumer keeps serving the messages behind it, and replaying it does not make it valid.
#
# What it shows: poison is about the message, not the moment. Retrying it would block the queue
# forever, so inventory-svc moves it aside (byte for byte, with x-dlq-* headers saying why) and
# goes on. Run against the demo from scripts/up.sh, ideally quiet: the drill counts the DLQ.
#
#   scripts/lab/dlq.sh    (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DLQ=${DLQ_QUEUE:-dlq_queue}
REASON='missing required field qty'

# The 1-based position of the DLQ message about order $1: its body names it (empty if none).
dlq_position() {
  "$SAGACTL" dlq list --limit 100000 --json | json_get '
    next((e["position"] for e in d["entries"]
          if e["order_id"] == a[0] or a[0] in e["body_preview"]), None)' "$1"
}

# Whether the reason of DLQ message N (position) mentions $2: true or false.
dlq_reason_mentions() {
  "$SAGACTL" dlq list --limit "$1" --json | json_get '
    any(e["position"] == int(a[0]) and a[1] in e["reason"] for e in d["entries"])' "$1" "$2"
}

# What a class needs to see of DLQ message N: its ids, why it is there, where it came from
# (the x-dlq-* and x-original-routing-key headers) and its body.
show_dead_letter() {
  printf '$ sagactl dlq show %s\n' "$1"
  "$SAGACTL" dlq show "$1" --json | json_get '"\n".join(
    ["  %-15s %s" % (p, d["properties"][p] or "-") for p in ("message_id", "correlation_id")]
    + ["    %-24s %s" % (k, v) for k, v in d["headers"].items()
       if k.startswith("x-dlq-") or k == "x-original-routing-key"]
    + [d["body"]])'
}

heading "1. The DLQ before"
before=$(queue_depth "$DLQ") || true
[ -n "$before" ] || fail "cannot read the depth of $DLQ (is RabbitMQ up? RABBITMQ_URL?)"
printf '   %s holds %s message(s)\n' "$DLQ" "$before"

id=$(fresh_id dlq)
heading "2. Publish a poison OrderPlaced: no qty"
expect "confirmed by the broker; inventory-svc will not be able to use it"
sagactl publish --sample missing-qty --order-id "$id" || fail "could not publish (is RabbitMQ up? RABBITMQ_URL?)"

heading "3. It is in the DLQ, with the reason"
in_dlq() { [ -n "$(dlq_position "$id")" ]; }
eventually 10 in_dlq || fail "order $id did not reach $DLQ within 10 s"
n=$(dlq_position "$id")
expect "reason '$REASON', from inventory-svc, routing key order.placed"
listing=$("$SAGACTL" dlq list --limit "$n")
printf '$ sagactl dlq list --limit %s\n' "$n"
if [ "$n" -le 5 ]; then
  printf '%s\n' "$listing"
else
  printf '%s\n   ...\n' "$(head -n1 <<<"$listing")"
  tail -n3 <<<"$listing"
fi
[ "$(dlq_reason_mentions "$n" "$REASON")" = true ] ||
  fail "message #$n does not carry the reason '$REASON'"
note "Listing takes messages without acking and gives them all back: looking loses nothing."

heading "4. The consumer kept going: a valid order right behind it is processed"
answer=$("$SAGACTL" order place --item salad --qty 1 --student dlq-drill --json) ||
  fail "order-svc refused the valid order (is it up at $ORDER_URL?)"
printf '$ sagactl order place --item salad --qty 1 --student dlq-drill --json\n%s\n' "$answer"
valid=$(order_id_of <<<"$answer")
[ -n "$valid" ] || fail "order-svc did not accept the valid order"
valid_decided() { is_final "$valid"; }
eventually 15 valid_decided || fail "the valid order $valid was not decided within 15 s: is inventory-svc stuck?"
printf '   order %s is %s\n' "$valid" "$(order_status "$valid")"

heading "5. Replay it: back to order_events with routing key order.placed"
note "Replay republishes the body unchanged (confirmed) and only then removes it from the DLQ."
sagactl dlq replay "$n" || fail "the replay was not confirmed; the message is still in $DLQ"
expect "back in the DLQ at once: same message_id, same reason, dead-lettered again (x-dlq-at)"
eventually 10 in_dlq || fail "the replayed message did not come back to $DLQ"
n=$(dlq_position "$id")
show_dead_letter "$n"
note "It is still poison: replaying sends the same bytes, and they still lack qty. A replay is for"
note "messages that failed because of a bug since fixed in the consumer; this one needs a fixed"
note "producer (or a corrected copy published by hand)."

heading "6. Nothing else in the DLQ was touched"
after=$(queue_depth "$DLQ") || fail "cannot read the depth of $DLQ"
printf '   %s: %s message(s) before, %s now (ours is #%s)\n' "$DLQ" "$before" "$after" "$n"
[ "$after" = $((before + 1)) ] || fail "expected $((before + 1)) messages in $DLQ, found $after"
note "It stays there for you to inspect: sagactl dlq show $n. (sagactl dlq purge would empty"
note "the whole DLQ, other people's messages too, so the drill does not.)"

pass "poison order $id was isolated with its reason, replayed, and isolated again; valid orders flowed"
