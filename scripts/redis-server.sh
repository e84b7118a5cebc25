#!/usr/bin/env bash
# The one way this project runs redis-server. The demo (scripts/deps.sh, hence scripts/up.sh and
# scripts/bench.sh) and the tests' private servers (tests/src/private.rs) all start it here, with
# the persistence settings of deploy/redis.conf (AOF, fsync every second), which compose.yaml
# mounts into its redis container too.
#
#   scripts/redis-server.sh start PORT DIR   run it on 127.0.0.1:PORT, its files in DIR; wait for PONG
#   scripts/redis-server.sh stop PORT        shut it down (the AOF is flushed) and wait until gone
#
# Files in DIR: appendonlydir/ (the data), redis.log, redis.pid (the process to kill -9 in a test).
# Both commands are idempotent. `start` keeps a Redis that already answers on PORT, but never a
# non-durable one: without AOF it turns AOF on first (see adopt below).
# On failure: one line `redis-server.sh: error: ...` on stderr and exit 1 (2 for a usage error).
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF=$ROOT/deploy/redis.conf
# How long to wait for PONG. Generous: a Redis with a large AOF answers LOADING until it has
# read it all.
TIMEOUT=${REDIS_START_TIMEOUT:-30}

say() { printf 'redis: %s\n' "$*"; }
die() { printf 'redis-server.sh: error: %s\n' "$*" >&2; exit 1; }
usage() {
  printf 'usage: %s start PORT DIR | stop PORT\n' "$0" >&2
  exit 2
}

cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
ready() { cli ping 2>/dev/null | grep PONG >/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
# The value of FIELD in INFO persistence (e.g. aof_enabled -> 0 or 1).
persistence() { cli info persistence 2>/dev/null | tr -d '\r' | sed -n "s/^$1://p"; }
config() { cli config get "$1" 2>/dev/null | sed -n 2p; }

# Wait until the Redis on $port answers PONG. A Redis that just started listens first and answers
# LOADING while it reads its AOF, so an open port alone is not enough.
wait_ready() {
  local deadline=$((SECONDS + TIMEOUT)) pid
  until ready; do
    # It wrote its pidfile once it was listening: if that process is gone, it will never answer.
    if [ -n "${1:-}" ] && [ -s "$1/redis.pid" ]; then
      pid=$(cat "$1/redis.pid")
      kill -0 "$pid" 2>/dev/null || die "redis on port $port exited: $(tail -n 1 "$1/redis.log" 2>/dev/null)"
    fi
    [ "$SECONDS" -lt "$deadline" ] ||
      die "redis on port $port did not answer within $TIMEOUT s${1:+: $(tail -n 1 "$1/redis.log" 2>/dev/null)}"
    sleep 0.1
  done
}

launch() {
  local dir=$1
  mkdir -p "$dir" 2>/dev/null || die "cannot create $dir"
  dir=$(cd "$dir" && pwd) # redis-server chdirs into --dir: every path it gets must be absolute
  [ -w "$dir" ] || die "$dir is not writable by $(id -un)"
  # A pidfile left by a kill -9 names a dead (or, worse, reused) pid: redis-server writes a fresh
  # one once it listens, so remove the stale one and wait_ready trusts only that.
  rm -f "$dir/redis.pid"
  say "starting redis-server on 127.0.0.1:$port (settings: deploy/redis.conf; data: $dir)"
  # The settings file first; the options after it add what is particular to this server.
  # A bad setting fails here, before it daemonizes, with the reason on stderr.
  local err
  err=$(redis-server "$CONF" --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" 2>&1 >/dev/null) ||
    die "redis-server refused to start: $(printf '%s' "$err" | grep -v '^ *$' | tail -n 1)"
  wait_ready "$dir"
  say "redis ready on port $port (AOF $(config appendfsync); keys: $(cli dbsize))"
}

# Shut the Redis on $port down and wait until it is gone. A plain SHUTDOWN, not SHUTDOWN NOSAVE:
# both flush and fsync the AOF, so either keeps every answered write; plain is the orderly one
# (it would also write an RDB snapshot if someone configured save points), and nothing here is
# gained by skipping that.
shutdown_redis() {
  cli shutdown >/dev/null 2>&1 || true
  local deadline=$((SECONDS + TIMEOUT))
  while port_open; do
    [ "$SECONDS" -lt "$deadline" ] || die "redis on port $port still answers $TIMEOUT s after SHUTDOWN"
    sleep 0.1
  done
}

# A Redis already answers on $port. Keep it (restarting it for nothing would only interrupt the
# services using it), but not as a non-durable store: a Redis without AOF loses everything at its
# next restart while RabbitMQ keeps its durable messages. The usual case is the demo's Redis left
# running by an older scripts/deps.sh (AOF off, files under /tmp/saga-deps).
adopt() {
  local dir want=$1 answered_dir
  answered_dir=$(config dir)
  if [ "$(persistence aof_enabled)" = 1 ]; then
    say "redis already running on port $port (AOF $(config appendfsync), data in $answered_dir)"
    # Kept as it is; but someone asking for DIR should know that the data they see lives elsewhere.
    local want_abs=$want
    if [ -d "$want" ]; then want_abs=$(cd "$want" && pwd); fi
    if [ "$want_abs" != "$answered_dir" ]; then
      say "note: not in $want (started with another directory; stop it to start it from $want)"
    fi
    return
  fi
  say "WARNING: the redis on port $port runs WITHOUT AOF (data in $answered_dir): a restart would lose it all"
  # CONFIG SET appendonly yes turns AOF on while it runs: Redis writes its whole data set to a fresh
  # AOF in the background and appends every write from then on. Nothing is lost and no client is
  # interrupted; it is durable as soon as that first rewrite is done, which we wait for.
  say "turning AOF on now (CONFIG SET appendonly yes, appendfsync everysec: the settings of deploy/redis.conf)"
  # (redis-cli exits 0 on an error reply: look at the reply itself.)
  local reply
  for setting in "appendfsync everysec" "appendonly yes"; do
    # shellcheck disable=SC2086 # the setting is two words on purpose
    reply=$(cli config set $setting 2>&1 || true)
    [ "$reply" = OK ] || die "CONFIG SET $setting refused on port $port: $reply"
  done
  local deadline=$((SECONDS + TIMEOUT))
  until [ "$(persistence aof_rewrite_in_progress)" = 0 ] && [ "$(persistence aof_rewrite_scheduled)" = 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "redis on port $port: the AOF rewrite did not finish within $TIMEOUT s"
    sleep 0.1
  done
  [ "$(persistence aof_last_bgrewrite_status)" = ok ] ||
    die "redis on port $port could not write its AOF (see its log; is $answered_dir full or read-only?)"
  say "AOF on: the data of the redis on port $port is durable from now on"

  # Its directory cannot follow (CONFIG SET dir is refused since Redis 7). Under /tmp, where the
  # older deps.sh put it, a reboot would wipe the AOF just written, and our next start would look in
  # $want anyway: so move the data there once, with a restart (a second or so, during which the
  # services retry). A Redis elsewhere was set up by someone else: leave it where it is.
  case $answered_dir in
    /tmp | /tmp/*) ;;
    *)
      say "note: it keeps its files in $answered_dir, and AOF stays on only until it restarts with its own settings"
      return
      ;;
  esac
  mkdir -p "$want" 2>/dev/null || die "cannot create $want"
  dir=$(cd "$want" && pwd)
  [ "$dir" != "$answered_dir" ] || return 0
  local aofdir
  aofdir=$(config appenddirname)
  if [ -e "$dir/$aofdir" ]; then
    say "note: not moving its data to $dir, which already holds an AOF; it stays in $answered_dir (a reboot wipes /tmp)"
    return
  fi
  local keys
  keys=$(cli dbsize)
  say "moving its data ($keys keys) out of /tmp, to $dir: restarting it"
  shutdown_redis
  cp -a "$answered_dir/$aofdir" "$dir/$aofdir" || die "could not copy $answered_dir/$aofdir to $dir"
  launch "$dir"
  # Not an exact comparison: the services may already be writing again. But an empty store after
  # a non-empty one means the copy was not loaded.
  if [ "$keys" != 0 ] && [ "$(cli dbsize)" = 0 ]; then
    die "redis on port $port came back empty (its old AOF is still in $answered_dir/$aofdir)"
  fi
}

# Whatever listens on $port must be a Redis (PONG, or LOADING while it reads its AOF), or we stop.
is_redis() {
  local reply
  reply=$(cli ping 2>&1 || true)
  case $reply in
    *PONG* | *LOADING*) ;;
    *) die "port $port is in use, but not by a Redis that answers PING (${reply:-no answer})" ;;
  esac
}

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/deps.sh installs it)"
done
[ -r "$CONF" ] || die "missing $CONF (the project's Redis settings)"

case "${1:-}" in
  start)
    [ $# = 3 ] || usage
    port=$2
    [[ $port =~ ^[0-9]+$ ]] || usage
    if port_open; then
      # Something listens: a Redis (perhaps still loading its AOF), or a stranger on our port.
      is_redis
      wait_ready
      adopt "$3"
    else
      launch "$3"
    fi
    ;;
  stop)
    [ $# = 2 ] || usage
    port=$2
    [[ $port =~ ^[0-9]+$ ]] || usage
    if ! port_open; then
      say "redis not running on port $port"
      exit 0
    fi
    is_redis
    say "stopping redis on port $port (SHUTDOWN: flushes its AOF)"
    shutdown_redis
    say "redis on port $port stopped"
    ;;
  *) usage ;;
esac
