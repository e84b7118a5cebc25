#!/usr/bin/env bash
# Stop the board and the three services started by scripts/up.sh (or scripts/svc.sh).
#
#   scripts/down.sh            the board and the services; RabbitMQ and Redis keep running
#   scripts/down.sh --all      also RabbitMQ and Redis
#
# With --all, RabbitMQ stops with rabbitmqctl stop (node from RABBITMQ_NODENAME if set) and Redis
# with scripts/redis-server.sh stop (port from REDIS_PORT, default 6379). Both keep their data:
# RabbitMQ its durable queues and messages, Redis its append-only file, so scripts/up.sh brings
# back every order. Idempotent: what is not running is skipped.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_PORT=${REDIS_PORT:-6379}
STATE_DIR=${SAGA_STATE_DIR:-/var/lib/saga} # as in scripts/deps.sh

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

# A plain SHUTDOWN (in scripts/redis-server.sh), no longer SHUTDOWN NOSAVE: with AOF on, both flush
# and fsync the append-only file, so either keeps every answered write; NOSAVE only skips an RDB
# snapshot (there are none: deploy/redis.conf sets save ""). Plain is the orderly one and stays
# right if someone adds save points. The data stays in the directory scripts/deps.sh gave Redis.
if ! command -v redis-cli >/dev/null 2>&1; then
  say "redis not installed; nothing to stop"
else
  # A Redis without AOF (an older scripts/deps.sh started it so) would lose everything at this
  # shutdown. Starting it "again" through scripts/redis-server.sh turns AOF on and moves its files
  # out of /tmp to where deps.sh will look, exactly as deps.sh would have done; then it stops.
  if redis-cli -p "$REDIS_PORT" info persistence 2>/dev/null | grep '^aof_enabled:0' >/dev/null; then
    bash "$ROOT/scripts/redis-server.sh" start "$REDIS_PORT" "$STATE_DIR/redis" ||
      say "WARNING: could not make redis on port $REDIS_PORT durable first: what it holds is lost now"
  fi
  bash "$ROOT/scripts/redis-server.sh" stop "$REDIS_PORT" || die "could not stop redis on port $REDIS_PORT (see above)"
fi
say "done: services, RabbitMQ and Redis are stopped, their data kept (scripts/up.sh starts everything again)"
