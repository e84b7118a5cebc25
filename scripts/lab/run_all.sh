#!/usr/bin/env bash
# Run every lab drill against the demo (scripts/up.sh), one after the other, and sum up.
# Each drill's own output is shown as it runs; exits non-zero if any drill failed.
#
#   scripts/lab/run_all.sh     (no arguments; environment: see scripts/lab/common.sh)
set -euo pipefail
# -h or --help anywhere: the comment at the top of this file is the usage; print it, run nothing.
for arg in "$@"; do case $arg in -h|--help) sed -n '1,/^$\|^[^#]/{/^#!/d;/^#/!d;/shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac; done

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRILLS=(smoke backlog-drain idempotency dlq schema_evolution)

passed=0
failed=0
results=()
for drill in "${DRILLS[@]}"; do
  printf '\n######## %s\n' "$drill"
  rc=0
  bash "$LAB/$drill.sh" || rc=$?
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    results+=("PASS  $drill")
  else
    failed=$((failed + 1))
    results+=("FAIL  $drill (exit $rc)")
  fi
done

printf '\n######## summary\n'
printf '%s\n' "${results[@]}"
printf '%s passed, %s failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
