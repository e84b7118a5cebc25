#!/usr/bin/env bash
# Bring the whole saga up on this machine, without Docker: RabbitMQ + Redis (scripts/deps.sh),
# a release build, the three services in the background and the classroom board
# (scripts/svc.sh). Idempotent: what is already installed, built or running is left as it is.
# Stop with scripts/down.sh.
# Honours the environment svc.sh does (ORDER_HTTP_ADDR, BOARD_ADDR, SAGA_RUN_DIR, REDIS_PREFIX,
# RUST_LOG, ...). BOARD=no leaves the board out.
# With the board, the services export their spans to it (OTEL_EXPORTER_OTLP_ENDPOINT=the board's
# URL: its order view draws each order's waterfall); an OTEL_EXPORTER_OTLP_ENDPOINT of your own
# (otelite, a collector) wins, and BOARD_TRACES=no exports nothing. Without the board, nothing is
# exported: the services' default, which costs nothing.
#
#   scripts/up.sh              the lab's setup: every program is guest on vhost /
#   scripts/up.sh --hardened   (or SAGA_BROKER=hardened) the hardened broker: the saga in its own
#                              vhost (SAGA_HARDENED_VHOST, default saga) where each service is its
#                              own broker user with topic permissions (scripts/broker-users.sh), so
#                              a student's forged order.cancelled is refused by the broker itself.
#                              The lab's guest setup (vhost /) stays the default. See docs/SECURITY.md.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=$ROOT/scripts/svc.sh
RUN_DIR=${SAGA_RUN_DIR:-/tmp/saga-run}

for arg in "$@"; do
  case $arg in
    --hardened) export SAGA_BROKER=hardened ;;
    *) printf 'usage: %s [--hardened]\n' "$0" >&2; exit 2 ;;
  esac
done

say() { printf 'up: %s\n' "$*"; }
die() { printf 'up: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A C linker and cargo; rustup when there is no cargo at all (Debian's own rustc is too old).
ensure_toolchain() {
  [ -x "$HOME/.cargo/bin/cargo" ] && PATH=$HOME/.cargo/bin:$PATH
  if ! command -v cc >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "no C compiler (cc) or curl and no apt-get: install them by hand"
    say "installing build-essential and curl from the OS packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq build-essential curl ca-certificates >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: installing Rust with rustup (minimal profile, into ~/.cargo)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal >/dev/null ||
      die "rustup failed: install Rust from https://rustup.rs and run again"
    PATH=$HOME/.cargo/bin:$PATH
  fi
}

say "step 1/3: RabbitMQ and Redis (scripts/deps.sh)"
"$ROOT/scripts/deps.sh" || die "scripts/deps.sh failed (see above)"

if [ "${SAGA_BROKER:-lab}" = hardened ]; then
  say "hardened broker: one user per service in vhost ${SAGA_HARDENED_VHOST:-saga} (scripts/broker-users.sh)"
  as_root "$ROOT/scripts/broker-users.sh" "${SAGA_HARDENED_VHOST:-saga}" || die "scripts/broker-users.sh failed (see above)"
fi

say "step 2/3: building release binaries (cargo build --release --workspace --bins; may take a few minutes the first time)"
ensure_toolchain
mkdir -p "$RUN_DIR"
build_log=$RUN_DIR/build.log
if ! (cd "$ROOT" && cargo build --release --workspace --bins) >"$build_log" 2>&1; then
  tail -n 30 "$build_log" >&2
  die "cargo build failed (full output: $build_log)"
fi
say "build done ($(tail -n 1 "$build_log" | sed 's/^ *//'))"

say "step 3/3: starting order-svc, inventory-svc, notification-svc and the board (scripts/svc.sh)"
if [ "${BOARD:-yes}" != no ] && [ "${BOARD_TRACES:-yes}" != no ] && [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  OTEL_EXPORTER_OTLP_ENDPOINT=$("$SVC" url board)
  export OTEL_EXPORTER_OTLP_ENDPOINT
  say "the services send their spans to the board ($OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces; BOARD_TRACES=no to stop)"
fi
"$SVC" start all || die "a service did not start; fix it and run scripts/up.sh again (running ones are kept)"
# The demo works without the board: a board that cannot start (its port taken, say) is a warning.
board=
if [ "${BOARD:-yes}" != no ]; then
  if "$SVC" start board; then
    board=$("$SVC" url board)
  else
    printf 'up: warning: the board did not start (see %s/board.log); the services are up\n' "$RUN_DIR" >&2
  fi
fi

api=$("$SVC" url order-svc)
say "up and healthy:"
[ -z "$board" ] || printf '  board            %s   (the saga live: open it in a browser)\n' "$board"
printf '  order API        %s   (POST /order, GET /order/{id}, GET /orders)\n' "$api"
printf '  inventory        %s   (GET /stock)\n' "$("$SVC" url inventory-svc)"
printf '  notifications    %s\n' "$("$SVC" url notification-svc)"
if [ "${SAGA_BROKER:-lab}" = hardened ]; then
  printf '  RabbitMQ UI      http://127.0.0.1:15672   (vhost %s; the instructor user, see %s)\n' \
    "${SAGA_HARDENED_VHOST:-saga}" "${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}"
  printf '  sagactl          sudo sh -c '\''. %s; RABBITMQ_URL=$INSTRUCTOR_RABBITMQ_URL RABBITMQ_MANAGEMENT_URL=$INSTRUCTOR_MANAGEMENT_URL sagactl ...'\''\n' \
    "${SAGA_BROKER_USERS_FILE:-/etc/saga/broker-users.env}"
else
  printf '  RabbitMQ UI      http://127.0.0.1:15672   (guest/guest)\n'
fi
printf '  logs             %s/{order-svc,inventory-svc,notification-svc,board}.log\n' "$RUN_DIR"
printf '  try              curl -s -XPOST %s/order -H '\''content-type: application/json'\'' -d '\''{"item":"burger","qty":2,"student_id":"s1"}'\''\n' "$api"
printf '  status           scripts/svc.sh status all\n'
printf '  stop             scripts/down.sh   (add --all to stop RabbitMQ and Redis too)\n'
