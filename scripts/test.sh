#!/usr/bin/env bash
# Run every test: unit tests, then the integration suite against a real RabbitMQ and Redis.
# Installs and starts both when absent (scripts/deps.sh). Each test makes its own vhost and
# Redis prefix, so this never touches a running demo. tests/tests/cluster.rs also starts a
# private cluster profile (scripts/cluster.sh on its own node names and ports; about 2 minutes
# with the failover drill) and removes it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test: %s\n' "$*"; }

bash scripts/deps.sh
say "building the binaries the integration tests spawn"
cargo build --bins --quiet
say "running all tests (unit + integration)"
cargo test --workspace --quiet -- --test-threads "${TEST_THREADS:-4}"
