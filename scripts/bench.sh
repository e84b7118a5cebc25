#!/usr/bin/env bash
# Benchmark the saga on this machine beside the broker's own ceiling; write docs/BENCHMARKS.md
# and its SVG charts beside it (docs/bench-latency.svg, bench-drain.svg, bench-cpu.svg).
#
#   scripts/bench.sh            full run (20,000 orders, 100,000-message drain, 30 s fixed rate)
#   scripts/bench.sh --quick    smoke run with small sizes (indicative only; add --out /tmp/b/BENCHMARKS.md
#                               to keep docs/ as the last full run left it)
#   scripts/bench.sh --help     this text
#   scripts/bench.sh FLAGS...   any of saga-bench's flags (defaults in brackets):
#     --orders N [20000]  --concurrency N [64]  --drain-messages N [100000]  --quick
#     --fixed-rate-secs S [30]  --fixed-rate N (orders/s; default: half the end-to-end maximum)
#     --fixed-rate-trace FILE.csv  --out FILE [docs/BENCHMARKS.md]
#     --prefetch N [64]  --confirm-window N [256]
#     --skip-ceiling  --skip-e2e  --skip-fixed-rate  --skip-scaling  --skip-drain  --skip-retention
#     --retention-orders N [5000] (DELIVERED orders weighed before and after ORDER_RETENTION compacts them)
#     --persistence-cost (a section with Redis's AOF off)  --tracing-cost (a section exporting spans over OTLP)
#     --lines-mix (end to end again with orders of 3 lines, burger 1, pizza 1, salad 1: orders/s,
#                  lines/s and CPU per order beside the lab's single-item run)
#     --cluster (also on the cluster profile)
#     --cluster-script PATH [scripts/cluster.sh]  --bin-dir DIR [target/release]
#     --management-url URL  --amqp-addr HOST:PORT  --broker-user USER  --broker-password PASSWORD
#     --redis-url URL    (target/release/saga-bench --help says what each one does)
#
# Makes sure RabbitMQ and Redis run (scripts/deps.sh: Redis with AOF, fsync every second, as it
# ships in deploy/redis.conf; the report's header records it), builds the release binaries, then
# runs target/release/saga-bench (under $CARGO_TARGET_DIR if set) with the arguments given. Each
# section uses a fresh vhost and Redis prefix and removes them afterwards. The benchmark is not a
# test: no number fails it.
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

cd "$(dirname "$0")/.."

bash scripts/deps.sh
echo "bench: building release binaries (a few minutes the first time)"
cargo build --release --workspace --bins

# The report records the command as typed, not the binary path it ends up as.
SAGA_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec "${CARGO_TARGET_DIR:-target}/release/saga-bench" "$@"
