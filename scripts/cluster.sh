#!/usr/bin/env bash
# The cluster profile, on one machine and without Docker: a 3-node RabbitMQ cluster whose vhost makes
# quorum (replicated) queues by default, Redis master + 2 replicas watched by 3 Sentinels, and the
# three services (two inventory-svc) pointed at them with node lists. scripts/up.sh (one broker, one
# Redis, the classic lab queues) stays the default demo; this is the one that survives losing a node.
#
#   scripts/cluster.sh up            start what is not running (idempotent), print the URLs
#   scripts/cluster.sh down [--wipe] stop services, Sentinels, Redis, RabbitMQ (data kept; --wipe deletes it)
#   scripts/cluster.sh status        who runs, which Redis is master, which node leads each queue
#   scripts/cluster.sh kill NODE     kill -9 one node: rabbit1..3, redis1..3, sentinel1..3,
#                                    redis-master (whichever it is now), leader:QUEUE (the RabbitMQ
#                                    node leading QUEUE); prints "killed NAME"
#   scripts/cluster.sh start NODE    start that node again (rabbit1..3, redis1..3, sentinel1..3)
#   scripts/cluster.sh env           print the settings as `export` lines, for sagactl and the lab
#                                    drills: eval "$(scripts/cluster.sh env)"; scripts/lab/run_all.sh
#
# Environment (all optional):
#   CLUSTER_NAME       node name prefix (default saga: saga-rabbit1@localhost, ...)
#   CLUSTER_DIR        data, logs, pid files (default ${SAGA_STATE_DIR:-/var/lib/saga}/cluster)
#   CLUSTER_PORT_BASE  B (default 5680): AMQP B+1..3 (5681-5683), management B+10001..3 (15681-15683),
#                      Erlang distribution B+20001..3, Redis B+701..3 (6381-6383), Sentinel
#                      B+20701..3 (26381-26383), services' HTTP B+91 (order), B+92, B+93
#                      (inventory), B+94 (notification). With B <= 12064 every port stays below
#                      32768, out of Linux's ephemeral range (a port in it can be taken by an
#                      outgoing connection at any moment)
#   CLUSTER_VHOST      the quorum-default vhost (default saga)
#   CLUSTER_REDIS_MASTER  the name Sentinel monitors the master under (default saga)
#   CLUSTER_SERVICES   0: start the brokers and stores only, no services (default 1)
#   CLUSTER_DELIVERY_LIMIT  deliveries of one message before the broker dead-letters it (default
#                      1000: a bound on crash loops only; see setup_vhost for why it is high)
#   SAGA_BIN_DIR       binaries to run (default: a release build, made by this script)
#   and what scripts/svc.sh passes through (REDIS_PREFIX, RUST_LOG, INITIAL_STOCK, ...).
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=$ROOT/scripts/svc.sh
NAME=${CLUSTER_NAME:-saga}
DIR=${CLUSTER_DIR:-${SAGA_STATE_DIR:-/var/lib/saga}/cluster}
BASE=${CLUSTER_PORT_BASE:-5680}
VHOST=${CLUSTER_VHOST:-saga}
MASTER=${CLUSTER_REDIS_MASTER:-saga}
WITH_SERVICES=${CLUSTER_SERVICES:-1}
DELIVERY_LIMIT=${CLUSTER_DELIVERY_LIMIT:-1000}
INVENTORY_QUEUE=${INVENTORY_QUEUE:-inventory_queue}
ORDER_STATUS_QUEUE=${ORDER_STATUS_QUEUE:-order_status_queue}
NOTIFICATION_QUEUE=${NOTIFICATION_QUEUE:-notification_queue}
DLQ_QUEUE=${DLQ_QUEUE:-dlq_queue}
ORDER_CATALOG_QUEUE=${ORDER_CATALOG_QUEUE:-order_catalog_queue}
NODES=(1 2 3)

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
# The usage text is the comment block at the top, from the first verb to the last environment
# line: printed from the file itself, so it cannot drift from what the script says it does.
usage() {
  sed -n '/^#   scripts\/cluster.sh up/,/^set -euo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Is the process in pid file $1 alive?
pid_alive() { [ -s "$1" ] && kill -0 "$(tr -dc 0-9 <"$1")" 2>/dev/null; }

[[ $BASE =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1024 ] && [ "$BASE" -le 44800 ] ||
  die "CLUSTER_PORT_BASE=$BASE: use a number from 1024 to 44800 (the highest port used is B+20703)"
[[ $NAME =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "CLUSTER_NAME=$NAME: letters, digits, - and _ only"

amqp_port() { echo $((BASE + $1)); }
mgmt_port() { echo $((BASE + 10000 + $1)); }
dist_port() { echo $((BASE + 20000 + $1)); }
redis_port() { echo $((BASE + 700 + $1)); }
sentinel_port() { echo $((BASE + 20700 + $1)); }
rabbit_node() { echo "$NAME-rabbit$1@localhost"; }
rabbit_dir() { echo "$DIR/rabbit$1"; }
redis_dir() { echo "$DIR/redis$1"; }
sentinel_dir() { echo "$DIR/sentinel$1"; }

# --- settings the services get ----------------------------------------------------------------

node_list() {
  local i urls=()
  for i in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$i")/$VHOST"); done
  (IFS=,; echo "${urls[*]}")
}
sentinel_url() {
  local i hosts=()
  for i in "${NODES[@]}"; do hosts+=("127.0.0.1:$(sentinel_port "$i")"); done
  echo "redis+sentinel://$(IFS=,; echo "${hosts[*]}")/$MASTER"
}
# What scripts/svc.sh and sagactl need to find this profile's services, brokers and store.
profile_env() {
  cat <<EOF
export SAGA_RUN_DIR=$DIR/run
export RABBITMQ_URL=$(node_list)
export REDIS_URL=$(sentinel_url)
export RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:$(mgmt_port 1)
export ORDER_HTTP_ADDR=0.0.0.0:$((BASE + 91))
export INVENTORY_HTTP_ADDR=0.0.0.0:$((BASE + 92))
export INVENTORY_2_HTTP_ADDR=0.0.0.0:$((BASE + 93))
export NOTIFICATION_HTTP_ADDR=0.0.0.0:$((BASE + 94))
export SAGA_INVENTORY_INSTANCES=2
export ORDER_URL=http://127.0.0.1:$((BASE + 91))
export INVENTORY_URL=http://127.0.0.1:$((BASE + 92))
EOF
  if [ -n "${SAGA_BIN_DIR:-}" ]; then echo "export SAGA_BIN_DIR=$SAGA_BIN_DIR"; fi
}

# --- packages ---------------------------------------------------------------------------------

# The same packages scripts/deps.sh installs; deps.sh would also start the single-node demo's
# broker and Redis, which this profile does not need (a fourth Erlang VM on two cores).
install_packages() {
  local missing=()
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and no apt-get here: install them by hand"
  say "installing ${missing[*]} from the OS packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- RabbitMQ ---------------------------------------------------------------------------------

ctl() {
  local i=$1
  shift
  as_root rabbitmqctl -q -n "$(rabbit_node "$i")" "$@"
}
rabbit_alive() { pid_alive "$(rabbit_dir "$1")/pid"; }

start_rabbit() {
  local i=$1 d
  d=$(rabbit_dir "$i")
  if rabbit_alive "$i"; then
    say "rabbit$i already running ($(rabbit_node "$i"), AMQP port $(amqp_port "$i"))"
    return
  fi
  mkdir -p "$d"
  echo '[rabbitmq_management].' >"$d/enabled_plugins"
  # A small Raft write-ahead log: the default (512 MB) is sized for a machine of its own.
  printf 'management.tcp.port = %s\nraft.wal_max_size_bytes = 64000000\ncluster_partition_handling = pause_minority\n' \
    "$(mgmt_port "$i")" >"$d/rabbitmq.conf"
  # The Debian wrapper runs the node as the rabbitmq user: it must own everything it writes.
  as_root chown -R rabbitmq:rabbitmq "$d"
  say "starting rabbit$i ($(rabbit_node "$i"), AMQP $(amqp_port "$i"), management $(mgmt_port "$i"))"
  # +sbwt none (and its dirty-scheduler twins): an idle scheduler sleeps instead of spinning for
  # work; three VMs spinning on two cores would starve each other and everything else.
  as_root env RABBITMQ_NODENAME="$(rabbit_node "$i")" RABBITMQ_NODE_PORT="$(amqp_port "$i")" \
    RABBITMQ_DIST_PORT="$(dist_port "$i")" RABBITMQ_CONFIG_FILE="$d/rabbitmq" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='+sbwt none +sbwtdcpu none +sbwtdio none' \
    rabbitmq-server -detached >/dev/null 2>&1 || true
}

# Wait until node $1 runs the broker and listens for AMQP and HTTP.
await_rabbit() {
  local i=$1 deadline=$((SECONDS + 180))
  # await_startup gives up at once while the node is still registering: poll it with a deadline.
  until ctl "$i" await_startup --timeout 60 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "rabbit$i did not start within 180 s (see $(rabbit_dir "$i")/log)"
    sleep 1
  done
  until port_open "$(amqp_port "$i")" && port_open "$(mgmt_port "$i")"; do
    [ $SECONDS -lt $deadline ] || die "rabbit$i: ports $(amqp_port "$i")/$(mgmt_port "$i") not open"
    sleep 0.5
  done
}

# Node $1 joins rabbit1's cluster, unless it is a member already (its data remembers).
join_cluster() {
  local i=$1 first
  first=$(rabbit_node 1)
  if ctl "$i" cluster_status 2>/dev/null | grep -q "$first"; then return; fi
  say "rabbit$i joins the cluster of rabbit1"
  # The CLI logs its peers' start-up warnings on stderr: keep them in a file, not on the screen.
  local log
  log=$(rabbit_dir "$i")/join.log
  { ctl "$i" stop_app && ctl "$i" reset && ctl "$i" join_cluster "$first" && ctl "$i" start_app; } >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; die "rabbit$i could not join rabbit1 (see $log)"; }
}

# The queue names of the topology as one anchored pattern: only these get the policy.
consumed_pattern() { echo "^($INVENTORY_QUEUE|$ORDER_STATUS_QUEUE|$NOTIFICATION_QUEUE|$ORDER_CATALOG_QUEUE)\$"; }

setup_vhost() {
  if ! ctl 1 list_vhosts name 2>/dev/null | grep -qx "$VHOST"; then
    say "creating vhost $VHOST (default queue type: quorum)"
    ctl 1 add_vhost "$VHOST" --default-queue-type quorum >/dev/null
  fi
  ctl 1 set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
  # A message delivered DELIVERY_LIMIT times without being settled (a consumer process dying on it
  # again and again) is dead-lettered into the DLQ, with x-death saying why. At-least-once: the
  # broker keeps it until the DLQ has confirmed it, which needs overflow reject-publish. A limit
  # without a dead-letter target would drop the message: never set one without the other.
  #
  # The limit is a bound on crash loops only, so it is high. The consume loop settles every
  # delivery itself (acked, parked in a retry queue, or dead-lettered with its reason, a panic
  # included), so the broker's count matters only for a process that dies outright on a message
  # (abort, OOM kill). But a quorum queue also counts every return of a delivery that a closed
  # channel held unacked, and during a Redis outage each consumer holds up to its prefetch of
  # deliveries while it waits the outage out: every kill, node restart or dropped connection
  # meanwhile adds one to each of them. With a limit of 20, an outage with some churn
  # dead-lettered valid messages. 1000 returns is far more churn than any outage brings, and a
  # real crash loop (a restart takes a second or more) still ends in the DLQ within minutes.
  local policy
  policy=$(printf '{"delivery-limit":%s,"dead-letter-exchange":"","dead-letter-routing-key":"%s","dead-letter-strategy":"at-least-once","overflow":"reject-publish"}' \
    "$DELIVERY_LIMIT" "$DLQ_QUEUE")
  ctl 1 set_policy -p "$VHOST" --apply-to queues --priority 10 saga-consumed "$(consumed_pattern)" "$policy" >/dev/null
  # The DLQ is looked at, not consumed: `sagactl dlq list` and the board take messages unacked
  # and give them back, and a quorum queue counts each give-back as a delivery. It must never
  # have a delivery limit (it has nowhere to dead-letter to: the message would be dropped).
  # RabbitMQ 3.x sets none by default; 4.x sets 20 on every quorum queue, so there the DLQ gets
  # a policy that lifts it (-1: unlimited; 3.x refuses -1 and needs no policy).
  if rabbit_major_at_least 4; then
    ctl 1 set_policy -p "$VHOST" --apply-to queues --priority 10 saga-dlq "^$DLQ_QUEUE\$" '{"delivery-limit":-1}' >/dev/null
  fi
}

# Is the broker's major version at least $1?
rabbit_major_at_least() {
  local version
  version=$(ctl 1 version 2>/dev/null) || return 1
  [ "${version%%.*}" -ge "$1" ] 2>/dev/null
}

# --- Redis and Sentinel -----------------------------------------------------------------------

rcli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
redis_alive() { pid_alive "$(redis_dir "$1")/redis.pid"; }
sentinel_alive() { pid_alive "$(sentinel_dir "$1")/sentinel.pid"; }

# How every Redis of this project persists (docs/DESIGN.md §5): AOF, fsync every second. When the
# project's shared settings file is there, include it, so there is one definition.
persistence_settings() {
  if [ -r "$ROOT/deploy/redis.conf" ]; then
    echo "include $ROOT/deploy/redis.conf"
  else
    printf 'appendonly yes\nappendfsync everysec\nsave ""\n'
  fi
}

# Start Redis node $1 from its own config file, written on its first start. Sentinel rewrites the
# file when it changes the node's role (CONFIG REWRITE), so a restart comes back in the role the
# cluster last gave it. (The one place that starts a Redis here.)
start_redis_node() {
  local i=$1 d conf
  d=$(redis_dir "$i")
  conf=$d/redis.conf
  if redis_alive "$i"; then
    say "redis$i already running (port $(redis_port "$i"))"
    return
  fi
  mkdir -p "$d"
  if [ ! -f "$conf" ]; then
    {
      echo "# redis$i of the cluster profile (scripts/cluster.sh); Sentinel rewrites the role below."
      persistence_settings
      printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/redis.log\npidfile %s/redis.pid\n' \
        "$(redis_port "$i")" "$d" "$d" "$d"
      # A master with no replica in sync refuses writes instead of acknowledging what a failover
      # would take back (and a restarted old master cannot take writes before Sentinel demotes it).
      printf 'min-replicas-to-write 1\nmin-replicas-max-lag 10\n'
      if [ "$i" != 1 ]; then echo "replicaof 127.0.0.1 $(redis_port 1)"; fi
    } >"$conf"
  fi
  rm -f "$d/redis.pid"
  say "starting redis$i (port $(redis_port "$i"), data in $d)"
  redis-server "$conf" --daemonize yes >/dev/null || die "redis$i did not start (see $d/redis.log)"
}

start_sentinel() {
  local i=$1 d conf
  d=$(sentinel_dir "$i")
  conf=$d/sentinel.conf
  if sentinel_alive "$i"; then
    say "sentinel$i already running (port $(sentinel_port "$i"))"
    return
  fi
  mkdir -p "$d"
  # Written once: Sentinel rewrites it with what it learns (the current master, the replicas).
  if [ ! -f "$conf" ]; then
    printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\npidfile %s/sentinel.pid\n' \
      "$(sentinel_port "$i")" "$d" "$d" "$d" >"$conf"
    printf 'sentinel monitor %s 127.0.0.1 %s 2\n' "$MASTER" "$(redis_port 1)" >>"$conf"
    # Down after 1 s of silence, promotion within about 2 s (measured); quorum 2 of 3.
    printf 'sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n' "$MASTER" "$MASTER" >>"$conf"
    printf 'sentinel parallel-syncs %s 1\n' "$MASTER" >>"$conf"
  fi
  rm -f "$d/sentinel.pid"
  say "starting sentinel$i (port $(sentinel_port "$i"))"
  redis-server "$conf" --sentinel --daemonize yes >/dev/null || die "sentinel$i did not start"
}

await_port() {
  local port=$1 what=$2 deadline=$((SECONDS + 30))
  until rcli "$port" ping 2>/dev/null | grep -q PONG; do
    [ $SECONDS -lt $deadline ] || die "$what (port $port) does not answer PING"
    sleep 0.1
  done
}

# The master's address as the Sentinels see it ("127.0.0.1 6381"), from the first that answers.
current_master() {
  local i reply
  for i in "${NODES[@]}"; do
    reply=$(rcli "$(sentinel_port "$i")" sentinel get-master-addr-by-name "$MASTER" 2>/dev/null | tr '\n' ' ')
    if [ -n "${reply// /}" ]; then echo "$reply"; return; fi
  done
  return 1
}

# Which redisN listens on the master's port.
master_node() {
  local addr port i
  addr=$(current_master) || return 1
  port=$(awk '{print $2}' <<<"$addr")
  for i in "${NODES[@]}"; do [ "$(redis_port "$i")" = "$port" ] && { echo "redis$i"; return; }; done
  return 1
}

# Wait until the master has two replicas in sync and every Sentinel knows them.
await_replication() {
  local deadline=$((SECONDS + 60)) master port
  while :; do
    if master=$(current_master 2>/dev/null); then
      port=$(awk '{print $2}' <<<"$master")
      if [ "$(rcli "$port" info replication 2>/dev/null | tr -d '\r' | grep -c '^slave[0-9]*:.*state=online')" = 2 ]; then
        return
      fi
    fi
    [ $SECONDS -lt $deadline ] || die "Redis replication did not come up within 60 s (see $DIR/redis*/redis.log)"
    sleep 0.2
  done
}

# --- queue leaders (management API) -----------------------------------------------------------

mgmt() { curl -fsS -m 5 -u guest:guest "http://127.0.0.1:$(mgmt_port "$1")/api/$2"; }

# The node leading QUEUE in our vhost, as rabbitN, asked of any node that answers.
leader_of() {
  local queue=$1 i node
  for i in "${NODES[@]}"; do
    node=$(mgmt "$i" "queues/$VHOST/$queue" 2>/dev/null | grep -o '"leader":"[^"]*"' | cut -d'"' -f4) || continue
    [ -n "$node" ] || continue
    for j in "${NODES[@]}"; do [ "$node" = "$(rabbit_node "$j")" ] && { echo "rabbit$j"; return; }; done
  done
  return 1
}

# --- services ---------------------------------------------------------------------------------

binaries() {
  if [ -n "${SAGA_BIN_DIR:-}" ]; then return; fi
  say "building release binaries (cargo build --release --workspace --bins)"
  mkdir -p "$DIR/run"
  (cd "$ROOT" && cargo build --release --workspace --bins) >"$DIR/run/build.log" 2>&1 ||
    { tail -n 30 "$DIR/run/build.log" >&2; die "cargo build failed (full output: $DIR/run/build.log)"; }
}

services() {
  local action=$1
  (
    eval "$(profile_env)"
    "$SVC" "$action" all
  )
}

# --- commands ---------------------------------------------------------------------------------

cmd_up() {
  install_packages
  mkdir -p "$DIR"
  for i in "${NODES[@]}"; do start_rabbit "$i"; done
  for i in "${NODES[@]}"; do start_redis_node "$i"; done
  for i in "${NODES[@]}"; do await_port "$(redis_port "$i")" "redis$i"; done
  for i in "${NODES[@]}"; do start_sentinel "$i"; done
  for i in "${NODES[@]}"; do await_port "$(sentinel_port "$i")" "sentinel$i"; done
  say "waiting for the RabbitMQ nodes (about 20-40 s from cold)"
  for i in "${NODES[@]}"; do await_rabbit "$i"; done
  for i in 2 3; do join_cluster "$i"; done
  setup_vhost
  say "waiting for Redis replication"
  await_replication
  say "RabbitMQ cluster: $(rabbit_node 1), $(rabbit_node 2), $(rabbit_node 3); Redis master: $(master_node)"
  if [ "$WITH_SERVICES" = 1 ]; then
    binaries
    services start || die "a service did not start (logs in $DIR/run)"
  fi
  print_urls
}

print_urls() {
  say "up:"
  if [ "$WITH_SERVICES" = 1 ]; then
    printf '  order API        http://127.0.0.1:%s   (POST /order, GET /order/{id}, GET /orders)\n' $((BASE + 91))
    printf '  inventory        http://127.0.0.1:%s and :%s   (two instances, one queue)\n' $((BASE + 92)) $((BASE + 93))
    printf '  notifications    http://127.0.0.1:%s\n' $((BASE + 94))
    printf '  logs             %s/run/*.log\n' "$DIR"
  fi
  printf '  RabbitMQ UI      http://127.0.0.1:%s  :%s  :%s   (guest/guest; vhost %s)\n' \
    "$(mgmt_port 1)" "$(mgmt_port 2)" "$(mgmt_port 3)" "$VHOST"
  printf '  RABBITMQ_URL     %s\n' "$(node_list | sed 's/guest:guest@/guest:***@/g')"
  printf '  REDIS_URL        %s\n' "$(sentinel_url)"
  printf '  lab drills       eval "$(scripts/cluster.sh env)"; scripts/lab/run_all.sh\n'
  printf '  break a node     scripts/cluster.sh kill leader:%s   (or redis-master), then start it\n' "$INVENTORY_QUEUE"
  printf '  status / stop    scripts/cluster.sh status / scripts/cluster.sh down\n'
}

cmd_down() {
  local wipe=false
  case "${1:-}" in '') ;; --wipe) wipe=true ;; *) usage >&2; exit 2 ;; esac
  if [ -d "$DIR/run" ]; then services stop || true; fi
  for i in "${NODES[@]}"; do
    if sentinel_alive "$i"; then rcli "$(sentinel_port "$i")" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  for i in "${NODES[@]}"; do
    # SHUTDOWN flushes the AOF: nothing answered is lost.
    if redis_alive "$i"; then rcli "$(redis_port "$i")" shutdown >/dev/null 2>&1 || true; fi
  done
  for i in "${NODES[@]}"; do
    if rabbit_alive "$i"; then
      say "stopping rabbit$i"
      ctl "$i" stop >/dev/null 2>&1 || kill "$(tr -dc 0-9 <"$(rabbit_dir "$i")/pid")" 2>/dev/null || true
    fi
  done
  if $wipe; then
    say "deleting $DIR"
    as_root rm -rf "$DIR"
  fi
  say "down (data kept in $DIR unless --wipe)"
}

cmd_status() {
  local i role rc=0
  for i in "${NODES[@]}"; do
    if rabbit_alive "$i"; then say "rabbit$i    up    $(rabbit_node "$i") amqp:$(amqp_port "$i")"; else say "rabbit$i    DOWN"; rc=3; fi
  done
  for i in "${NODES[@]}"; do
    if redis_alive "$i"; then
      role=$(rcli "$(redis_port "$i")" role 2>/dev/null | head -n1)
      say "redis$i     up    port $(redis_port "$i") role ${role:-?}"
    else
      say "redis$i     DOWN"; rc=3
    fi
  done
  for i in "${NODES[@]}"; do
    if sentinel_alive "$i"; then say "sentinel$i  up    port $(sentinel_port "$i")"; else say "sentinel$i  DOWN"; rc=3; fi
  done
  say "redis master (Sentinel): $(master_node 2>/dev/null || echo unknown)"
  for q in "$INVENTORY_QUEUE" "$ORDER_STATUS_QUEUE" "$NOTIFICATION_QUEUE" "$DLQ_QUEUE"; do
    say "queue $q led by $(leader_of "$q" 2>/dev/null || echo '? (not declared yet, or no quorum)')"
  done
  if [ -d "$DIR/run" ]; then services status || rc=3; fi
  return $rc
}

# Resolve NODE (including redis-master and leader:QUEUE) to rabbitN, redisN or sentinelN.
resolve() {
  case $1 in
    rabbit[123] | redis[123] | sentinel[123]) echo "$1" ;;
    redis-master) master_node || die "no Sentinel names a master for $MASTER" ;;
    leader:*) leader_of "${1#leader:}" || die "no node leads queue ${1#leader:} in vhost $VHOST" ;;
    *) die "unknown node $1 (rabbit1..3, redis1..3, sentinel1..3, redis-master, leader:QUEUE)" ;;
  esac
}

pid_file_of() {
  case $1 in
    rabbit*) echo "$(rabbit_dir "${1#rabbit}")/pid" ;;
    redis*) echo "$(redis_dir "${1#redis}")/redis.pid" ;;
    sentinel*) echo "$(sentinel_dir "${1#sentinel}")/sentinel.pid" ;;
  esac
}

cmd_kill() {
  local node file pid
  node=$(resolve "$1")
  file=$(pid_file_of "$node")
  pid_alive "$file" || die "$node is not running"
  pid=$(tr -dc 0-9 <"$file")
  as_root kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  echo "killed $node (pid $pid)"
}

cmd_start() {
  local node
  node=$(resolve "$1")
  case $node in
    rabbit*) start_rabbit "${node#rabbit}"; await_rabbit "${node#rabbit}" ;;
    redis*) start_redis_node "${node#redis}"; await_port "$(redis_port "${node#redis}")" "$node" ;;
    sentinel*) start_sentinel "${node#sentinel}"; await_port "$(sentinel_port "${node#sentinel}")" "$node" ;;
  esac
  echo "started $node"
}

case "${1:-}" in
  up) [ $# = 1 ] || { usage >&2; exit 2; }; cmd_up ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status ;;
  kill) [ $# = 2 ] || { usage >&2; exit 2; }; cmd_kill "$2" ;;
  start) [ $# = 2 ] || { usage >&2; exit 2; }; cmd_start "$2" ;;
  env) profile_env ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
