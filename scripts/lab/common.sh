# Sourced by every lab drill: where sagactl is, where the services are, and small helpers to
# show a class what happens (a heading, the command, its output) and to wait with a deadline.
#
# Environment (all optional; the defaults are the demo that scripts/up.sh starts):
#   SAGACTL        the sagactl binary (default: target/release/sagactl, else target/debug/sagactl)
#   ORDER_URL, INVENTORY_URL   the services (default: what scripts/svc.sh url says, i.e. the
#                  *_HTTP_ADDR settings, default ports 5001 and 5002)
#   SAGA_RUN_DIR   pid and log files of scripts/svc.sh (default /tmp/saga-run)
#   RABBITMQ_URL, REDIS_URL, REDIS_PREFIX   passed through to sagactl (defaults: local, vhost /, "saga")
# shellcheck shell=bash

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

# --- the order API without jq ---------------------------------------------------------------

# A fresh id for a hand-made order, recognisable in logs and in the DLQ.
fresh_id() { printf 'lab-%s-%s' "$1" "$(cut -c1-8 /proc/sys/kernel/random/uuid)"; }

# The order_id in POST /order's answer ({"order_id":"...","status":"PLACED"}).
order_id_of() { grep -o '"order_id":"[^"]*"' | head -n1 | cut -d'"' -f4; }

# An order's current status. The answer also holds a history whose entries have a "status" of
# their own, so the history is cut out first (its entries hold no nested brackets).
order_status() {
  curl -fsS -m 5 "$ORDER_URL/order/$1" 2>/dev/null |
    sed 's/"history":\[[^]]*\]//' | grep -o '"status":"[A-Z]*"' | head -n1 | cut -d'"' -f4
}

is_final() {
  case $(order_status "$1") in CONFIRMED | FAILED | CANCELLED) return 0 ;; *) return 1 ;; esac
}

# Units of ITEM in column COLUMN (available, initial, reserved, released) of `sagactl stock show`.
stock_of() {
  local item=$1 column=${2:-available}
  "$SAGACTL" stock show | awk -v item="$item" -v col="$column" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    $1 == item { print $c }'
}

# Messages ready in QUEUE, from `sagactl queues` (a passive declare: exact).
queue_depth() { "$SAGACTL" queues | awk -v q="$1" '$1 == q { print $2 }'; }
