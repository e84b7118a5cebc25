#!/usr/bin/env bash
# Stop the board and the three services started by scripts/up.sh (or scripts/svc.sh). With --all,
# also stop RabbitMQ (rabbitmqctl stop; node from RABBITMQ_NODENAME if set) and Redis (redis-cli
# shutdown nosave; port from REDIS_PORT, default 6379). Idempotent: what is not running is skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_PORT=${REDIS_PORT:-6379}

say() { printf 'down: %s\n' "$*"; }
die() { printf 'down: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

all=false
case "${1:-}" in
  '') ;;
  --all) all=true ;;
  *) printf 'usage: %s [--all]   (--all: also stop RabbitMQ and Redis)\n' "$0" >&2; exit 2 ;;
esac

say "stopping the board and the services"
# The board first: it would only show the services going away (and a Redis it stopped for a
# drill is started again as it exits).
"$ROOT/scripts/svc.sh" stop board || die "could not stop the board (see above)"
"$ROOT/scripts/svc.sh" stop all || die "could not stop every service (see above)"

if ! $all; then
  say "done (RabbitMQ and Redis left running; scripts/down.sh --all stops them too)"
  exit 0
fi

node=()
[ -n "${RABBITMQ_NODENAME:-}" ] && node=(-n "$RABBITMQ_NODENAME")
if ! command -v rabbitmqctl >/dev/null 2>&1; then
  say "rabbitmq not installed; nothing to stop"
elif as_root rabbitmqctl "${node[@]}" -q status >/dev/null 2>&1; then
  say "stopping rabbitmq${RABBITMQ_NODENAME:+ node $RABBITMQ_NODENAME}"
  as_root rabbitmqctl "${node[@]}" -q stop >/dev/null || die "rabbitmqctl stop failed"
  say "rabbitmq stopped"
else
  say "rabbitmq not running"
fi

if ! command -v redis-cli >/dev/null 2>&1; then
  say "redis not installed; nothing to stop"
elif redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  say "stopping redis on port $REDIS_PORT"
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  stopped=false
  for _ in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG || { stopped=true; break; }
    sleep 0.1
  done
  $stopped || die "redis on port $REDIS_PORT still answers after shutdown"
  say "redis stopped"
else
  say "redis not running on port $REDIS_PORT"
fi
say "done: services, RabbitMQ and Redis are stopped (scripts/up.sh starts everything again)"
