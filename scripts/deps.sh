#!/usr/bin/env bash
# Make RabbitMQ (with its management and Prometheus plugins) and Redis available on this machine,
# without Docker.
# Installs them from the OS packages when absent, starts them when not running, and waits until
# both answer. Safe to run any number of times; says what it did.
#
#   scripts/deps.sh            (no arguments)
#
# Environment: REDIS_PORT (6379), AMQP_PORT (5672), SAGA_STATE_DIR (/var/lib/saga: Redis's data).
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_PORT=${AMQP_PORT:-5672}
# Redis keeps the demo's orders, stock, dedupe records and outbox here: a place a reboot leaves
# alone (not /tmp), so scripts/down.sh --all and a reboot keep them. Wipe: remove $STATE_DIR/redis.
STATE_DIR=${SAGA_STATE_DIR:-/var/lib/saga}

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_packages() {
  local missing=()
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # The lab drills read `sagactl ... --json` with it; Debian has it, slim images may not.
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ ${#missing[@]} -eq 0 ]; then
    say "rabbitmq-server, redis-server, curl and python3 already installed"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and no apt-get here: install them by hand"
  say "installing ${missing[*]} from the OS packages"
  as_root apt-get update -qq
  # The packages try to start themselves through policy-rc.d, which containers refuse; we start them below.
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Through scripts/redis-server.sh, the one definition of how this project runs Redis (settings in
# deploy/redis.conf: AOF, fsync every second). It keeps a Redis already answering on the port, but
# turns AOF on if that one runs without it (an older deps.sh started it so, with AOF off, in
# /tmp/saga-deps) and moves its files out of /tmp into $STATE_DIR/redis once: a store that a restart
# empties, while RabbitMQ keeps its durable messages, loses every order, so "already running" must
# not mean "left non-durable". It says so when it does either.
start_redis() {
  local dir=$STATE_DIR/redis
  # /var/lib needs root to create; the Redis itself then runs as the user who runs this script.
  if [ ! -d "$dir" ] && ! mkdir -p "$dir" 2>/dev/null; then
    if ! as_root mkdir -p "$dir" || ! as_root chown "$(id -u):$(id -g)" "$dir"; then
      die "cannot create $dir (set SAGA_STATE_DIR to a directory you own)"
    fi
  fi
  bash "$ROOT/scripts/redis-server.sh" start "$REDIS_PORT" "$dir" || die "redis did not start (see above)"
}

start_rabbitmq() {
  if port_open "$AMQP_PORT" && as_root rabbitmqctl -q status >/dev/null 2>&1; then
    say "rabbitmq already running on port $AMQP_PORT"
  else
    say "starting rabbitmq-server (about 15 s from cold)"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    # await_startup gives up at once while the node is still registering, so poll it with a deadline.
    local deadline=$((SECONDS + 120))
    until as_root rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || die "rabbitmq did not start within 120 s (see /var/log/rabbitmq/)"
      sleep 1
    done
    say "rabbitmq ready"
  fi
  if ! as_root rabbitmq-plugins -q list -e 2>/dev/null | grep -q rabbitmq_management; then
    say "enabling the management plugin (UI and API on port 15672)"
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
  fi
  # Per-queue metrics for Prometheus and the alert rules (deploy/prometheus/): depth, unacked and
  # consumers of each queue at /metrics/detailed on port 15692.
  if ! as_root rabbitmq-plugins -q list -e 2>/dev/null | grep -q rabbitmq_prometheus; then
    say "enabling the Prometheus plugin (metrics on port 15692)"
    as_root rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
  fi
  for _ in $(seq 1 300); do port_open "$AMQP_PORT" && break; sleep 0.1; done
  port_open "$AMQP_PORT" || die "rabbitmq port $AMQP_PORT not open"
  # The tests create their vhosts through the management API: wait for it too.
  for _ in $(seq 1 300); do port_open 15672 && break; sleep 0.1; done
  port_open 15672 || die "rabbitmq management port 15672 not open"
  # The alert tests scrape it.
  for _ in $(seq 1 300); do port_open 15692 && return; sleep 0.1; done
  die "rabbitmq prometheus port 15692 not open"
}

install_packages
start_redis
start_rabbitmq
say "ready: amqp://127.0.0.1:$AMQP_PORT, redis://127.0.0.1:$REDIS_PORT, management http://127.0.0.1:15672 (guest/guest), metrics http://127.0.0.1:15692/metrics"
