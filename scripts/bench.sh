#!/usr/bin/env bash
# Benchmark the saga on this machine beside the broker's own ceiling; write docs/BENCHMARKS.md
# and its SVG charts beside it (docs/bench-latency.svg, bench-drain.svg, bench-cpu.svg).
#
#   scripts/bench.sh            full run (20,000 orders, 100,000-message drain, 30 s fixed rate)
#   scripts/bench.sh --quick    smoke run with small sizes (indicative only; add --out /tmp/b/BENCHMARKS.md
#                               to keep docs/ as the last full run left it)
#   scripts/bench.sh --help     every flag (sizes, --skip-*, --out, ...)
#
# Makes sure RabbitMQ and Redis run (scripts/deps.sh: Redis with AOF, fsync every second, as it
# ships in deploy/redis.conf; the report's header records it), builds the release binaries, then
# runs target/release/saga-bench with the arguments given. Each section uses a fresh vhost and
# Redis prefix and removes them afterwards. The benchmark is not a test: no number fails it.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/deps.sh
echo "bench: building release binaries (a few minutes the first time)"
cargo build --release --bins

# The report records the command as typed, not the binary path it ends up as.
SAGA_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec target/release/saga-bench "$@"
