#!/usr/bin/env bash
# Run Prometheus against the demo (scripts/up.sh), in the foreground: it scrapes the three services
# and the broker's per-queue metrics and evaluates the alert rules, all as deploy/prometheus/
# says (prometheus.yml, alerts.yml). Its alerts are at http://127.0.0.1:9090/alerts; ctrl-c stops it.
#
#   scripts/prometheus.sh      (no arguments)
#
# Environment: PROMETHEUS_PORT (9090; it listens on loopback only), SAGA_RUN_DIR (/tmp/saga-run:
# its data goes to SAGA_RUN_DIR/prometheus, kept across runs). Installs the OS's prometheus
# package when absent (without its recommended exporters), as scripts/test.sh does.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PROMETHEUS_PORT:-9090}
DATA=${SAGA_RUN_DIR:-/tmp/saga-run}/prometheus

say() { printf 'prometheus: %s\n' "$*"; }
die() { printf 'prometheus: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ $# -eq 0 ] || die "no arguments expected (see --help)"
if ! command -v prometheus >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "prometheus missing and no apt-get here: install it by hand"
  say "installing prometheus from the OS packages (once)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# A Prometheus the OS package started (its own config) may hold 9090 already.
port_open "$PORT" && die "port $PORT is taken (the OS's prometheus service? systemctl stop prometheus); or set PROMETHEUS_PORT"
port_open 15692 || say "warning: the broker's metrics (port 15692) do not answer: run scripts/deps.sh, which enables rabbitmq_prometheus"
mkdir -p "$DATA"
say "scraping the demo (ports 5001-5003, broker 15692) with deploy/prometheus/alerts.yml; alerts at http://127.0.0.1:$PORT/alerts"
exec prometheus --config.file="$ROOT/deploy/prometheus/prometheus.yml" --storage.tsdb.path="$DATA" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn
