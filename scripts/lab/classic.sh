#!/usr/bin/env bash
# Run the classic Python lab's own RabbitMQ drills, unchanged, against our demo.
#
#   scripts/lab/classic.sh LAB_CHECKOUT
#
# LAB_CHECKOUT is a clone of the classic lab (its async-rabbitmq/tests/ holds run_all_tests.sh,
# test_backlog_drain.py, test_idempotency.py and test_dlq.py). Its drills talk to RabbitMQ on
# localhost:5672/15672 and to the order API on localhost:5001, exactly what scripts/up.sh serves,
# and to Docker Compose for two things: `docker compose stop|start inventory_service` and
# `docker compose logs inventory_service`. There is no Docker here, so a small `docker` stand-in
# on PATH does those two with scripts/svc.sh and our inventory-svc log. Nothing of the lab is
# copied into this repository; it runs from its own checkout, in a Python venv with pika and
# requests from PyPI.
#
# The idempotency and DLQ drills end with "RESULT: ✅ PASS", the backlog drill with
# "✅ Backlog drained successfully!" and the final statuses; this script exits non-zero unless all
# three pass and none printed a warning (⚠️), a failure (❌) or an error fetching the orders.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${SAGA_RUN_DIR:-/tmp/saga-run}
LAB=${1:-}
[ -n "$LAB" ] && [ -d "$LAB/async-rabbitmq/tests" ] || {
  printf 'usage: %s LAB_CHECKOUT   (a clone of the classic lab, with async-rabbitmq/tests/)\n' "$0" >&2
  exit 2
}
LAB=$(cd "$LAB" && pwd)

say() { printf 'classic: %s\n' "$*"; }
die() { printf 'classic: error: %s\n' "$*" >&2; exit 1; }

"$ROOT/scripts/svc.sh" status all >/dev/null || die "the demo is not running: start it with scripts/up.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The lab's Python dependencies, in a venv of their own (Debian's Python refuses a global pip).
venv=${CLASSIC_VENV:-$ROOT/target/classic-venv}
if [ ! -x "$venv/bin/python3" ]; then
  say "creating a Python venv with pika and requests ($venv)"
  python3 -m venv "$venv" 2>/dev/null || {
    apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"
  } || die "cannot create a Python venv (install python3-venv)"
  "$venv/bin/pip" install -q pika requests || die "pip install pika requests failed"
fi

# The stand-in for the two Docker Compose commands the drills use.
mkdir -p "$work/bin"
cat >"$work/bin/docker" <<EOF
#!/usr/bin/env bash
# docker compose {stop|start|logs} inventory_service, the saga's way.
[ "\$1" = compose ] || { echo "docker stand-in: only 'docker compose' is known here" >&2; exit 1; }
case "\$2 \$3" in
  "stop inventory_service") exec "$ROOT/scripts/svc.sh" stop inventory-svc ;;
  "start inventory_service") exec "$ROOT/scripts/svc.sh" start inventory-svc ;;
  "logs inventory_service") exec cat "$RUN_DIR/inventory-svc.log" ;;
  *) echo "docker stand-in: 'docker compose \$2 \$3' is not something the drills need" >&2; exit 1 ;;
esac
EOF
chmod +x "$work/bin/docker"

say "running $LAB/async-rabbitmq/tests/run_all_tests.sh against the demo"
out=$work/out.txt
(cd "$LAB/async-rabbitmq/tests" && PATH="$work/bin:$venv/bin:$PATH" bash run_all_tests.sh) | tee "$out"

passed=$(grep -c 'RESULT: ✅ PASS' "$out" || true)
grep -q 'Backlog drained successfully' "$out" && passed=$((passed + 1))
say "$passed of 3 drills passed"
[ "$passed" = 3 ] || die "not every drill passed (see above)"
if grep -E '❌|⚠️|Could not fetch' "$out" >&2; then
  die "a drill printed a warning or a failure (above)"
fi
