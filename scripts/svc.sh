#!/usr/bin/env bash
# Start, stop and inspect the saga's services as background processes, without Docker.
#
#   scripts/svc.sh start|stop|restart|status NAME     NAME: order-svc, inventory-svc, notification-svc,
#                                                     or board (saga-board, the classroom board)
#   scripts/svc.sh start|stop|restart|status all      the three services (not the board)
#   scripts/svc.sh url NAME                           print the service's base URL
#
# SAGA_INVENTORY_INSTANCES=N (default 1) runs N inventory-svc on the same queue (competing
# consumers; the cluster profile runs 2): the first is inventory-svc, the others inventory-svc-2 ...
# (own pid, log and INVENTORY_<K>_HTTP_ADDR, default port 5002 + 10*(K-1)). NAME inventory-svc then
# means all of them (stopping "the inventory" stops every instance); inventory-svc-K just that one.
#
# Binaries come from ${SAGA_BIN_DIR:-target/release} (relative to the repository root); pid and log
# files go to ${SAGA_RUN_DIR:-/tmp/saga-run}/NAME.pid and NAME.log (the log is appended to).
# The environment is passed through (RABBITMQ_URL, REDIS_URL, REDIS_PREFIX, RUST_LOG, ...), except
# HTTP_ADDR, which is set per service: ORDER_HTTP_ADDR (default 0.0.0.0:5001),
# INVENTORY_HTTP_ADDR (0.0.0.0:5002), NOTIFICATION_HTTP_ADDR (0.0.0.0:5003).
# The board listens on BOARD_ADDR (default 127.0.0.1:8080: fault buttons work only on loopback)
# and is started with --allow-faults --allow-redis-stop unless BOARD_ALLOW_FAULTS /
# BOARD_ALLOW_REDIS_STOP say false; it finds the services at their URLs and this run directory.
# SAGA_BROKER=hardened: each service connects as its own broker user (scripts/broker-users.sh;
# the URLs come from ${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}), the board as the instructor.
# Deadlines: SAGA_START_TIMEOUT (s, default 30) for /health, SAGA_STOP_TIMEOUT (s, default 15).
# `status` exits 0 when every named service runs, 3 otherwise.
# A second copy beside a running one needs its own vhost (RABBITMQ_URL=amqp://.../VHOST), REDIS_PREFIX,
# *_HTTP_ADDR and SAGA_RUN_DIR: with only another prefix, both copies consume the same queues.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${SAGA_BIN_DIR:-target/release}
case $BIN_DIR in /*) ;; *) BIN_DIR=$ROOT/$BIN_DIR ;; esac
RUN_DIR=${SAGA_RUN_DIR:-/tmp/saga-run}
START_TIMEOUT=${SAGA_START_TIMEOUT:-30}
STOP_TIMEOUT=${SAGA_STOP_TIMEOUT:-15}
INVENTORY_INSTANCES=${SAGA_INVENTORY_INSTANCES:-1}
[[ $INVENTORY_INSTANCES =~ ^[1-9]$ ]] || { printf 'svc: error: SAGA_INVENTORY_INSTANCES=%s: use 1 to 9\n' "$INVENTORY_INSTANCES" >&2; exit 2; }
INVENTORIES=(inventory-svc)
for k in $(seq 2 "$INVENTORY_INSTANCES"); do INVENTORIES+=("inventory-svc-$k"); done
SERVICES=(order-svc "${INVENTORIES[@]}" notification-svc)
NAMES=("${SERVICES[@]}" board)

say() { printf 'svc: %s\n' "$*"; }
warn() { printf 'svc: warning: %s\n' "$*" >&2; }
die() { printf 'svc: error: %s\n' "$*" >&2; exit 1; }
usage() {
  printf 'usage: %s start|stop|restart|status NAME|all   (NAME: %s)\n' "$0" "${NAMES[*]}" >&2
  printf '       %s url NAME\n' "$0" >&2
  exit 2
}

# The HTTP_ADDR a service is started with.
http_addr() {
  local k var
  case $1 in
    order-svc) echo "${ORDER_HTTP_ADDR:-0.0.0.0:5001}" ;;
    inventory-svc) echo "${INVENTORY_HTTP_ADDR:-0.0.0.0:5002}" ;;
    inventory-svc-*)
      k=${1#inventory-svc-}
      var=INVENTORY_${k}_HTTP_ADDR
      echo "${!var:-0.0.0.0:$((5002 + 10 * (k - 1)))}"
      ;;
    notification-svc) echo "${NOTIFICATION_HTTP_ADDR:-0.0.0.0:5003}" ;;
    board) echo "${BOARD_ADDR:-127.0.0.1:8080}" ;;
  esac
}

# The hardened broker: every program its own user (scripts/broker-users.sh wrote the URLs).
if [ "${SAGA_BROKER:-lab}" = hardened ]; then
  users_file=${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}
  [ -r "$users_file" ] || die "SAGA_BROKER=hardened but $users_file is not readable (run scripts/broker-users.sh as root)"
  # shellcheck disable=SC1090 # written by scripts/broker-users.sh
  . "$users_file"
  export RABBITMQ_URL=$INSTRUCTOR_RABBITMQ_URL RABBITMQ_MANAGEMENT_URL=$INSTRUCTOR_MANAGEMENT_URL
fi

# The broker URL a service connects with: its own user's on the hardened broker, else RABBITMQ_URL.
broker_url_of() {
  case $1 in
    order-svc) echo "${ORDER_RABBITMQ_URL:-${RABBITMQ_URL:-}}" ;;
    inventory-svc*) echo "${INVENTORY_RABBITMQ_URL:-${RABBITMQ_URL:-}}" ;;
    notification-svc) echo "${NOTIFICATION_RABBITMQ_URL:-${RABBITMQ_URL:-}}" ;;
    *) echo "${RABBITMQ_URL:-}" ;;
  esac
}

# The binary behind a name, and the arguments it is started with.
binary_of() { case $1 in board) echo saga-board ;; inventory-svc-*) echo inventory-svc ;; *) echo "$1" ;; esac; }
args_of() {
  case $1 in
    board)
      local args=()
      case ${BOARD_ALLOW_FAULTS:-true} in false | 0 | no) ;; *) args+=(--allow-faults) ;; esac
      case ${BOARD_ALLOW_REDIS_STOP:-true} in false | 0 | no) ;; *) [ "${#args[@]}" -gt 0 ] && args+=(--allow-redis-stop) ;; esac
      [ "${#args[@]}" -eq 0 ] || printf '%s\n' "${args[@]}"
      ;;
  esac
}


# host and port to reach a service on from here (a wildcard address is reached on loopback).
probe_host() {
  local addr host
  addr=$(http_addr "$1")
  host=${addr%:*}
  case $host in '' | 0.0.0.0 | '[::]' | '::') host=127.0.0.1 ;; esac
  echo "$host"
}
probe_port() { local addr; addr=$(http_addr "$1"); echo "${addr##*:}"; }
base_url() { echo "http://$(probe_host "$1"):$(probe_port "$1")"; }

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$RUN_DIR/$1.log"; }

# Is PID alive (and not a zombie waiting to be reaped)?
alive() {
  local state
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Is PID alive and running the binary of NAME?
# (Guards against a recycled pid.)
is_ours() {
  local pid=$1 name=$2 argv
  alive "$pid" || return 1
  argv=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [ "$(basename -- "$(head -n1 <<<"$argv")")" = "$(binary_of "$name")" ]
}

# Print the pid of NAME if it is running from our pid file; clean a stale pid file.
running_pid() {
  local name=$1 file pid
  file=$(pid_file "$name")
  [ -f "$file" ] || return 1
  pid=$(tr -dc 0-9 <"$file")
  if is_ours "$pid" "$name"; then
    echo "$pid"
    return 0
  fi
  rm -f "$file"
  say "$name: removed a stale pid file (pid ${pid:-none} is not $name)" >&2
  return 1
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# /health answers, and it is this service answering (every inventory instance says inventory-svc).
healthy() {
  local said=$1
  case $1 in inventory-svc-*) said=inventory-svc ;; esac
  curl -fsS -m 2 "$(base_url "$1")/health" 2>/dev/null | grep -Eq "\"service\" *: *\"$said\""
}

start_one() {
  local name=$1 bin pid file log addr host port deadline args=()
  bin=$BIN_DIR/$(binary_of "$name")
  mapfile -t args < <(args_of "$name")
  file=$(pid_file "$name")
  log=$(log_file "$name")
  addr=$(http_addr "$name")
  host=$(probe_host "$name")
  port=$(probe_port "$name")
  if pid=$(running_pid "$name"); then
    if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == *" (deleted)" ]]; then
      say "$name already running (pid $pid, $(base_url "$name")) from an older build; scripts/svc.sh restart $name runs the new one"
    else
      say "$name already running (pid $pid, $(base_url "$name"))"
    fi
    return 0
  fi
  [ -x "$bin" ] || die "$name: no binary at $bin (build it: cargo build --release --workspace --bins)"
  if [ "$name" = board ]; then
    # The board watches the services this script starts, in this run directory.
    export ORDER_URL=${ORDER_URL:-$(base_url order-svc)}
    export INVENTORY_URL=${INVENTORY_URL:-$(base_url inventory-svc)}
    export SAGA_RUN_DIR=$RUN_DIR SAGA_SCRIPTS_DIR=$ROOT/scripts BOARD_ADDR=$addr
  fi
  command -v curl >/dev/null 2>&1 || die "curl is needed for the health check (apt-get install -y curl)"
  if port_open "${host//[\[\]]/}" "$port"; then
    die "$name: port $port is already in use by another process (see: ss -ltnp); set the service's *_HTTP_ADDR to use another"
  fi
  mkdir -p "$RUN_DIR"
  printf '\n--- svc.sh: starting %s at %s (HTTP_ADDR=%s) ---\n' "$name" "$(date '+%F %T')" "$addr" >>"$log"
  rm -f "$file"
  # The wrapper writes its own pid and then becomes the service (exec), so the pid file is exact
  # whether or not setsid had to fork. setsid: its own session, so a terminal's Ctrl-C or hang-up
  # does not reach it; only `svc.sh stop` does.
  # shellcheck disable=SC2016 # $$ and $1 are the wrapper's own, expanded by the inner bash
  local launch_env=("HTTP_ADDR=$addr") broker
  broker=$(broker_url_of "$name")
  [ -z "$broker" ] || launch_env+=("RABBITMQ_URL=$broker")
  env "${launch_env[@]}" nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' svc-wrapper "$file" "$bin" "${args[@]}" \
    >>"$log" 2>&1 </dev/null &
  disown "$!" 2>/dev/null || true  # no "Killed" job notice from this shell if it has to be killed
  deadline=$((SECONDS + START_TIMEOUT))
  pid=
  while [ $SECONDS -lt "$deadline" ]; do
    [ -n "$pid" ] || pid=$(tr -dc 0-9 2>/dev/null <"$file" || true)
    if [ -n "$pid" ] && ! is_ours "$pid" "$name"; then
      # Either still exec-ing (argv0 is bash for a moment) or already gone.
      if ! alive "$pid"; then
        rm -f "$file"
        printf 'svc: %s exited during start-up; last 20 lines of %s:\n' "$name" "$log" >&2
        tail -n 20 "$log" >&2
        die "$name did not start"
      fi
    elif [ -n "$pid" ] && healthy "$name"; then
      say "$name started (pid $pid, $(base_url "$name"), log $log)"
      return 0
    fi
    sleep 0.2
  done
  printf 'svc: %s did not answer %s/health within %s s; last 20 lines of %s:\n' \
    "$name" "$(base_url "$name")" "$START_TIMEOUT" "$log" >&2
  tail -n 20 "$log" >&2
  # We started this pid moments ago, so it is ours even if it is not (yet) NAME.
  if alive "$pid"; then terminate "$pid" "$name"; fi
  rm -f "$file"
  die "$name did not become healthy (stopped it again)"
}

# SIGTERM (the service stops taking work, drains in-flight messages and exits 0), wait up to
# STOP_TIMEOUT, then SIGKILL. The caller has checked that PID is the service.
terminate() {
  local pid=$1 name=$2 deadline
  local ticks=$((STOP_TIMEOUT * 5))
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid" && [ "$ticks" -gt 0 ]; do sleep 0.2; ticks=$((ticks - 1)); done
  if alive "$pid"; then
    warn "$name (pid $pid) still running ${STOP_TIMEOUT} s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while alive "$pid" && [ $SECONDS -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then die "$name (pid $pid) survived SIGKILL"; fi
  fi
}

stop_one() {
  local name=$1 pid file
  file=$(pid_file "$name")
  if ! pid=$(running_pid "$name"); then
    say "$name not running"
    return 0
  fi
  terminate "$pid" "$name"
  rm -f "$file"
  say "$name stopped (pid $pid)"
}

status_one() {
  local name=$1 pid ready probe=/ready
  [ "$name" != board ] || probe=/health
  if pid=$(running_pid "$name"); then
    ready=$(curl -s -m 3 "$(base_url "$name")$probe" | tr -d '\n') || true
    say "$name running (pid $pid, $(base_url "$name")) ready: ${ready:-no answer from /ready}"
    return 0
  fi
  say "$name stopped"
  return 3
}

[ $# -eq 2 ] || usage
action=$1
target=$2
if [ "$target" = all ]; then
  [ "$action" != url ] || usage
  names=("${SERVICES[@]}")
elif [ "$target" = inventory-svc ] && [ "$action" != url ]; then
  names=("${INVENTORIES[@]}")
else
  case " ${NAMES[*]} " in *" $target "*) names=("$target") ;; *) usage ;; esac
fi

case $action in
  start) for n in "${names[@]}"; do start_one "$n"; done ;;
  stop)
    # order-svc first: the front door closes, then the consumers drain what is in flight.
    for n in "${names[@]}"; do stop_one "$n"; done
    ;;
  restart) for n in "${names[@]}"; do stop_one "$n"; start_one "$n"; done ;;
  status)
    rc=0
    for n in "${names[@]}"; do status_one "$n" || rc=3; done
    exit "$rc"
    ;;
  url) base_url "$target" ;;
  *) usage ;;
esac
