#!/usr/bin/env bash
# Run goal-table jobs one after another on one core: each job is DATASET:METHODS (see run.sh).
#   CORE=0 bash docs/results/goal/queue.sh usps:adam usps:martens-hf curves:adam
# A job that fails (or is stopped) does not stop the queue; rerunning the queue resumes or reuses
# what its jobs already did. WAIT_PID: start only after that process has ended. RUNNER: the
# run.sh to use (default this folder's; docs/results/fair/run.sh for issue 31's tables); other
# environment (SEEDS, LOSSES, OUT, ...) reaches every job.
set -uo pipefail
here=$(dirname "$0")
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 20; done; fi
for job in "$@"; do
  ds=${job%%:*}; methods=${job#*:}
  echo "$(date -u +%FT%TZ) start $job on core ${CORE:-0}"
  METHODS=$methods bash "${RUNNER:-$here/run.sh}" "$ds" || echo "$(date -u +%FT%TZ) $job ended with $?"
done
echo "$(date -u +%FT%TZ) queue done"
