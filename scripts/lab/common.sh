# Sourced by every lab drill: where sagactl is, where the services are, and small helpers to
# show a class what happens (a heading, the command, its output), to wait with a deadline, and to
# read what sagactl says: the drills decide from `sagactl ... --json`, one JSON document with
# stable field names, read with python3 (always on Debian; no jq needed), never from a table.
#
#   . scripts/lab/common.sh    (sourced, not run; the drills take no arguments)
#
# Environment (all optional; the defaults are the demo that scripts/up.sh starts):
#   SAGACTL        the sagactl binary (default: target/release/sagactl, else target/debug/sagactl)
#   ORDER_URL, INVENTORY_URL   the services (default: what scripts/svc.sh url says, i.e. the
#                  *_HTTP_ADDR settings, default ports 5001 and 5002)
#   SAGA_RUN_DIR   pid and log files of scripts/svc.sh (default /tmp/saga-run)
#   RABBITMQ_URL, REDIS_URL, REDIS_PREFIX   passed through to sagactl (defaults: local, vhost /, "saga")
# shellcheck shell=bash

# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SVC=$LAB_ROOT/scripts/svc.sh
# shellcheck disable=SC2034 # used by the drills that read service logs
RUN_DIR=${SAGA_RUN_DIR:-/tmp/saga-run}

# The log of every inventory-svc instance (the cluster profile runs two on one queue, so a
# message may be handled by either), one path a line.
inventory_logs() {
  local log
  for log in "$RUN_DIR"/inventory-svc.log "$RUN_DIR"/inventory-svc-[0-9].log; do
    [ -r "$log" ] && printf '%s\n' "$log"
  done
  return 0
}

# --- printing -------------------------------------------------------------------------------

heading() { printf '\n== %s\n' "$*"; }
# Why this step matters, in a line or two.
note() { printf '   %s\n' "$*"; }
# What the class should see.
expect() { printf '   expect: %s\n' "$*"; }
# Print a command, then run it; its output follows.
show() {
  printf '$ %s\n' "$*"
  "$@"
}
fail() {
  printf '\nFAIL: %s\n' "$*" >&2
  exit 1
}
pass() { printf '\nPASS: %s\n' "$*"; }

# --- tools ----------------------------------------------------------------------------------

if [ -z "${SAGACTL:-}" ]; then
  if [ -x "$LAB_ROOT/target/release/sagactl" ]; then
    SAGACTL=$LAB_ROOT/target/release/sagactl
  elif [ -x "$LAB_ROOT/target/debug/sagactl" ]; then
    SAGACTL=$LAB_ROOT/target/debug/sagactl
  else
    fail "no sagactl binary: build it (cargo build --release -p sagactl) or set SAGACTL"
  fi
fi
[ -x "$SAGACTL" ] || fail "SAGACTL=$SAGACTL is not an executable"
command -v curl >/dev/null 2>&1 || fail "curl is needed (apt-get install -y curl)"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read sagactl --json (apt-get install -y python3)"

# sagactl reads these; default them from svc.sh so both agree on where the services are.
service_url() { "$SVC" url "$1" 2>/dev/null || printf 'http://127.0.0.1:%s' "$2"; }
ORDER_URL=${ORDER_URL:-$(service_url order-svc 5001)}
INVENTORY_URL=${INVENTORY_URL:-$(service_url inventory-svc 5002)}
export ORDER_URL INVENTORY_URL

# sagactl with its path shortened for display: what a student would type.
sagactl() {
  printf '$ sagactl %s\n' "$*"
  "$SAGACTL" "$@"
}

# --- waiting --------------------------------------------------------------------------------

# eventually SECS CMD...: run CMD every 0.2 s until it succeeds; fail once SECS have passed.
eventually() {
  local secs=$1
  shift
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- reading JSON ---------------------------------------------------------------------------

# json_get EXPR [ARG...]: the value of the Python expression EXPR over the JSON document on
# stdin, which EXPR sees as `d` (and the ARGs as the list `a`, so no value is ever pasted into
# code). A string prints bare, None prints nothing, anything else as JSON (true, 3, [...]).
# Input that is not JSON: one line on stderr, exit 1.
json_get() {
  python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError as e:
    sys.exit("json_get: not JSON: %s" % e)
v = eval(sys.argv[1].strip(), {"d": d, "a": sys.argv[2:]})
if v is not None:
    print(v if isinstance(v, str) else json.dumps(v))
' "$@"
}

# --- the saga, as sagactl --json tells it -----------------------------------------------------

# A fresh id for a hand-made order, recognisable in logs and in the DLQ.
fresh_id() { printf 'lab-%s-%s' "$1" "$(cut -c1-8 /proc/sys/kernel/random/uuid)"; }

# The order_id in an answer to POST /order ({"order_id":"...","status":"PLACED"}); nothing if
# there is none, so that the drill says so in its own words.
order_id_of() { json_get 'd.get("order_id") if isinstance(d, dict) else None' 2>/dev/null || true; }

# POST /order with BODY as a student would type it: show the curl command, the answer and its
# HTTP status; fail unless it is 201 with an order_id, which is left in $id.
post_order_shown() {
  local body=$1 answer code
  printf "$ curl -s -XPOST %s/order -H 'content-type: application/json' -d '%s'\n" "$ORDER_URL" "$body"
  answer=$(curl -s -m 10 -w '\n%{http_code}' -XPOST "$ORDER_URL/order" \
    -H 'content-type: application/json' -d "$body") ||
    fail "order-svc does not answer at $ORDER_URL (is the demo up? scripts/up.sh)"
  code=$(tail -n1 <<<"$answer")
  answer=$(sed '$d' <<<"$answer")
  printf '%s\nHTTP %s\n' "$answer" "$code"
  [ "$code" = 201 ] || fail "expected HTTP 201, got $code"
  id=$(order_id_of <<<"$answer")
  [ -n "$id" ] || fail "no order_id in the answer"
}

# An order's current status (nothing if order-svc does not answer or does not know it).
order_status() { "$SAGACTL" order get "$1" --json 2>/dev/null | json_get 'd["status"]' 2>/dev/null; }

is_final() {
  case $(order_status "$1") in CONFIRMED | FAILED | CANCELLED) return 0 ;; *) return 1 ;; esac
}

# Units of ITEM in column COLUMN (available, initial, reserved, released) of
# `sagactl stock show --json`; nothing if inventory-svc does not list the item.
stock_of() {
  "$SAGACTL" stock show --json | json_get 'd["stock"].get(a[0], {}).get(a[1])' "$1" "${2:-available}"
}

# Messages ready in QUEUE, from `sagactl queues --json` (a passive declare: exact); nothing if
# the queue does not exist.
queue_depth() {
  "$SAGACTL" queues --json |
    json_get 'next((q["messages"] for q in d["queues"] if q["queue"] == a[0]), None)' "$1"
}
