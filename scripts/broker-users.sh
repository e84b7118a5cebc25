#!/usr/bin/env bash
# The hardened broker: one RabbitMQ user per service, each allowed only what it does.
#
#   scripts/broker-users.sh [VHOST]          create or update the users (default vhost: saga)
#   scripts/broker-users.sh --remove [VHOST] delete them and their credentials file
#
# In the lab's default setup every program is guest, and guest may publish anything: a student's
# script can publish an order.cancelled for someone else's CONFIRMED order and inventory-svc gives
# the stock back. Here each program has its own user, and RabbitMQ's topic permissions decide
# which routing keys it may publish to the saga's exchange; a refused publish closes the channel
# with 403 ACCESS_REFUSED, before any consumer sees it.
#
#   user (prefix + ...)  publishes to the exchange     may also
#   order-svc            order.*                       publish to dlq_queue (default exchange)
#   inventory-svc        inventory.*, product.*        publish to dlq_queue (default exchange)
#   notification-svc     nothing                       publish to dlq_queue (default exchange)
#   instructor           anything (sagactl, the board) the management API (administrator tag)
#   student              order.placed only             declare the lab's queues; no default exchange
#
# Every service declares the whole topology at start-up, so each may configure the saga's
# exchange and queues (and their .retry and .retry.due queues); publishing to the DLQ goes through the default
# exchange (write on amq.default), and parked retries come back by the broker's own
# dead-lettering, which needs no permission. Known gap (docs/SECURITY.md): write on amq.default
# lets a service's user publish to any queue directly; the student has no such write.
#
# Passwords are generated once (kept on re-runs) into a file only root can read:
# ${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}, shell syntax, with one URL per program:
#   ORDER_RABBITMQ_URL, INVENTORY_RABBITMQ_URL, NOTIFICATION_RABBITMQ_URL,
#   INSTRUCTOR_RABBITMQ_URL, INSTRUCTOR_MANAGEMENT_URL, STUDENT_RABBITMQ_URL.
# scripts/svc.sh starts each service with its own URL when SAGA_BROKER=hardened (scripts/up.sh
# --hardened does all of this).
#
# Settings: RABBITMQ_NODE (rabbitmqctl -n; default: the local node), SAGA_BROKER_USER_PREFIX
# (default saga-), SAGA_AMQP_ADDR (127.0.0.1:5672; a cluster's nodes: a comma-separated list),
# SAGA_MANAGEMENT_ADDR (127.0.0.1:15672),
# EXCHANGE (order_events), and the queue names as the services read them (INVENTORY_QUEUE, ...).
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

say() { printf 'broker-users: %s\n' "$*"; }
die() { printf 'broker-users: error: %s\n' "$*" >&2; exit 1; }

remove=no
if [ "${1:-}" = --remove ]; then
  remove=yes
  shift
fi
VHOST=${1:-saga}
FILE=${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}
PREFIX=${SAGA_BROKER_USER_PREFIX:-saga-}
AMQP_ADDR=${SAGA_AMQP_ADDR:-127.0.0.1:5672}
MANAGEMENT_ADDR=${SAGA_MANAGEMENT_ADDR:-127.0.0.1:15672}
EXCHANGE=${EXCHANGE:-order_events}
QUEUES=("${INVENTORY_QUEUE:-inventory_queue}" "${ORDER_STATUS_QUEUE:-order_status_queue}"
  "${NOTIFICATION_QUEUE:-notification_queue}" "${DLQ_QUEUE:-dlq_queue}"
  "${ORDER_CATALOG_QUEUE:-order_catalog_queue}")
ROLES=(order inventory notification instructor student)

[ "$(id -u)" = 0 ] || die "run as root: the credentials file is root's alone"
command -v rabbitmqctl >/dev/null 2>&1 || die "rabbitmqctl not found (scripts/deps.sh installs RabbitMQ)"
ctl() { rabbitmqctl ${RABBITMQ_NODE:+-n "$RABBITMQ_NODE"} -q "$@"; }

user_of() { echo "${PREFIX}$1"; }
# Every rabbitmqctl call starts an Erlang VM (about a second): list the users once.
USERS=$(ctl list_users --no-table-headers 2>/dev/null | awk '{print $1}')
user_exists() { grep -qxF "$1" <<<"$USERS"; }

if [ "$remove" = yes ]; then
  for role in "${ROLES[@]}"; do
    user=$(user_of "$role")
    if user_exists "$user"; then ctl delete_user "$user" >/dev/null && say "deleted user $user"; fi
  done
  rm -f "$FILE"
  say "removed $FILE"
  exit 0
fi

# A regular expression that matches exactly the given names (RabbitMQ permissions are regexes).
names_regex() {
  local out= name
  for name in "$@"; do out+="${out:+|}${name//./\\.}"; done
  echo "^($out)$"
}
saga=("$EXCHANGE")
# Each consumed queue has a retry queue, and the queue its parked messages come back through.
for queue in "${QUEUES[@]}"; do saga+=("$queue" "$queue.retry" "$queue.retry.due"); done
SAGA_RESOURCES=$(names_regex "${saga[@]}")
DEFAULT_EXCHANGE='amq\.default'

# The password a role had in the file (kept across runs), else a fresh one: 24 letters and
# digits, safe in a URL without escaping.
password_of() {
  local var=${1^^}_PASSWORD value=
  if [ -r "$FILE" ]; then value=$(sed -n "s/^${var}=//p" "$FILE" | head -n1); fi
  if [ -z "$value" ]; then value=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24); fi
  echo "$value"
}

# The vhost as the last segment of an AMQP URL: `/` is %2f; other names used here need no escape.
vhost_path=${VHOST//\//%2f}

if ! ctl list_vhosts --no-table-headers 2>/dev/null | grep -qxF "$VHOST"; then
  ctl add_vhost "$VHOST" >/dev/null
  say "created vhost $VHOST"
fi

declare -A pw
for role in "${ROLES[@]}"; do
  user=$(user_of "$role")
  pw[$role]=$(password_of "$role")
  if user_exists "$user"; then
    ctl change_password "$user" "${pw[$role]}" >/dev/null
  else
    ctl add_user "$user" "${pw[$role]}" >/dev/null
    say "created user $user"
  fi
done

# set ROLE CONFIGURE WRITE READ TOPIC_WRITE: vhost permissions, then the exchange's topic permission.
grant() {
  local user
  user=$(user_of "$1")
  ctl set_permissions -p "$VHOST" "$user" "$2" "$3" "$4" >/dev/null
  ctl set_topic_permissions -p "$VHOST" "$user" "$EXCHANGE" "$5" '.*' >/dev/null
}
service_write="^(${SAGA_RESOURCES:2:-2}|$DEFAULT_EXCHANGE)$"
grant order "$SAGA_RESOURCES" "$service_write" "$SAGA_RESOURCES" '^order\.'
grant inventory "$SAGA_RESOURCES" "$service_write" "$SAGA_RESOURCES" '^(inventory|product)\.'
# '^$': no routing key it could use (the saga's bindings never match an empty key).
grant notification "$SAGA_RESOURCES" "$service_write" "$SAGA_RESOURCES" '^$'
grant instructor '.*' '.*' '.*' '.*'
grant student "$SAGA_RESOURCES" "$(names_regex "$EXCHANGE")" "$(names_regex "$EXCHANGE")" '^order\.placed$'
# The board closes other users' connections (a fault drill) through the management API.
ctl set_user_tags "$(user_of instructor)" administrator >/dev/null

# One URL per node of SAGA_AMQP_ADDR (a cluster: host:port,host:port,...), comma-separated, as
# RABBITMQ_URL takes them.
url() {
  local out= addr
  IFS=, read -ra addrs <<<"$AMQP_ADDR"
  for addr in "${addrs[@]}"; do out+="${out:+,}amqp://$(user_of "$1"):${pw[$1]}@$addr/$vhost_path"; done
  echo "$out"
}
mkdir -p "$(dirname "$FILE")"
chmod 700 "$(dirname "$FILE")" 2>/dev/null || true
umask 077
tmp=$(mktemp "$FILE.XXXXXX")
{
  echo "# The hardened broker's users for vhost $VHOST, written by scripts/broker-users.sh."
  echo "# Root only: these are the services' broker passwords. Re-running keeps them."
  echo "SAGA_BROKER_VHOST=$VHOST"
  for role in "${ROLES[@]}"; do echo "${role^^}_PASSWORD=${pw[$role]}"; done
  for role in "${ROLES[@]}"; do echo "${role^^}_RABBITMQ_URL=$(url "$role")"; done
  echo "INSTRUCTOR_MANAGEMENT_URL=http://$(user_of instructor):${pw[instructor]}@$MANAGEMENT_ADDR"
} >"$tmp"
chmod 600 "$tmp"
mv "$tmp" "$FILE"
say "users ${PREFIX}{$(IFS=,; echo "${ROLES[*]}")} ready in vhost $VHOST; credentials in $FILE (root only)"
