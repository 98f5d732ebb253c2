#!/usr/bin/env bash
# Issue 31 item 3: B16 (the weight cost by weights per training example) over seeds, at the fair
# tables' budgets, beside the fair tables' runs of the defaults and of the fair Adam (same seeds,
# same start, same machine kind). One job per DATASET:SEED, one after another on one core:
#   CORE=1 bash docs/results/b16/seeds.sh usps:0 usps:1 mnist-t10k:0
# Each job is docs/results/fair/run.sh with --set optimizer.weight_cost_rule=per-example, its own
# run folder runs/b16/<data set>/s<seed> and archive docs/results/b16/<data set>/s<seed>.json.gz
# (commit it as the run finishes); a stopped job resumes when the same job is queued again.
# The table: python docs/results/b16/seeds.py
set -uo pipefail
here=$(dirname "$0")
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 20; done; fi
for job in "$@"; do
  ds=${job%%:*}; seed=${job#*:}
  echo "$(date -u +%FT%TZ) start $job on core ${CORE:-0}"
  mkdir -p "$here/$ds"
  METHODS=shf-tuned SEEDS=$seed OUT=runs/b16/$ds/s$seed ARCHIVE=$here/$ds/s$seed.json.gz \
    EXTRA="--set optimizer.weight_cost_rule=per-example" bash "$here/../fair/run.sh" "$ds" \
    || echo "$(date -u +%FT%TZ) $job ended with $?"
done
echo "$(date -u +%FT%TZ) queue done"
