#!/usr/bin/env bash
# Run every lab drill against the demo (scripts/up.sh), one after the other, and sum up.
# Each drill's own output is shown as it runs; exits non-zero if any drill failed.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRILLS=(smoke backlog-drain idempotency dlq)

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
