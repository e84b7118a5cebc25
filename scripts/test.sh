#!/usr/bin/env bash
# Run every test: unit tests, then the integration suite against a real RabbitMQ and Redis.
# Installs and starts both when absent (scripts/deps.sh), Chromium with its WebDriver for the
# board's browser test, Prometheus with promtool for the alert rules' tests, and schemathesis (PyPI,
# a venv under ~/.cache/saga) for the HTTP API's documents. Each test makes
# its own vhost and Redis prefix, so this never touches a running demo. tests/tests/it/cluster.rs
# also starts a private cluster profile (scripts/cluster.sh on its own node names and ports; about
# 2 minutes with the failover drill) and removes it afterwards.
#
#   scripts/test.sh            (no arguments; TEST_THREADS, default 4: tests run at once)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done
cd "$(dirname "$0")/.."

say() { printf 'test: %s\n' "$*"; }

bash scripts/deps.sh
# The board's browser test drives a real headless Chromium over WebDriver; both come from the
# OS packages (nothing downloads a browser at run time).
# The security tests make a network namespace as their client from off the machine (`ip`, from
# iproute2) and call the services with curl from inside it. npm installs TypeScript, which checks
# the board's page, and the AsyncAPI CLI, which checks docs/asyncapi.yaml.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
   || ! command -v ip >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 \
   || ! command -v npm >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { say "error: chromium, chromedriver, iproute2, curl or npm missing and no apt-get: install them by hand" >&2; exit 1; }
  say "installing chromium, chromium-driver, iproute2, curl and npm from the OS packages (once; about 400 MB)"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver iproute2 curl npm >/dev/null
fi
# The alert tests (tests/tests/it/alerts.rs) run promtool on deploy/prometheus/ and start a
# Prometheus of their own on a free port: both from the OS's prometheus package, without its
# recommended exporters. A Prometheus service the OS starts with the package is left alone.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { say "error: prometheus or promtool missing and no apt-get: install them by hand" >&2; exit 1; }
  say "installing prometheus (prometheus and promtool) from the OS packages (once; about 100 MB)"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# order-svc's and inventory-svc's OpenAPI documents (GET /openapi.json) are fuzzed against the
# running services by schemathesis (tests/tests/it/openapi.rs): from PyPI, into a venv of its own
# under the cache directory, once (about 10 s). Version 4: the test uses its 4.x command line.
st_venv="${XDG_CACHE_HOME:-$HOME/.cache}/saga/schemathesis"
if [ ! -x "$st_venv/bin/schemathesis" ]; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { say "error: python3 with venv missing and no apt-get: install them by hand" >&2; exit 1; }
    say "installing python3 and python3-venv from the OS packages (once) for schemathesis"
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  say "installing schemathesis (PyPI, into $st_venv, once) to fuzz the services' /openapi.json"
  rm -rf "$st_venv"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install -q 'schemathesis>=4,<5'
fi
# The board's page is plain JavaScript checked from its JSDoc types (tools/board/assets/tsconfig.json).
# tsc comes from npm once; the check itself runs offline.
command -v tsc >/dev/null 2>&1 || { say "installing TypeScript (npm i -g typescript, once) to check the board's page"; npm i -g --silent typescript; }
say "type-checking the board's page (tsc -p tools/board/assets)"
tsc -p tools/board/assets
# The bus described as AsyncAPI (docs/asyncapi.yaml, its payloads the JSON Schemas of
# docs/schemas/) is checked with the AsyncAPI CLI, from npm once (about 1.5 GB, a minute or two);
# the check itself runs offline. CI=true keeps the CLI from sending usage metrics.
command -v asyncapi >/dev/null 2>&1 || { say "installing the AsyncAPI CLI (npm i -g @asyncapi/cli, once) to validate docs/asyncapi.yaml"; npm i -g --silent @asyncapi/cli; }
say "validating the bus's AsyncAPI document (asyncapi validate docs/asyncapi.yaml)"
CI=true asyncapi validate --fail-severity warn docs/asyncapi.yaml
say "building the binaries the integration tests spawn"
cargo build --workspace --bins --quiet
say "running all tests (unit + integration)"
cargo test --workspace --quiet -- --test-threads "${TEST_THREADS:-4}"
