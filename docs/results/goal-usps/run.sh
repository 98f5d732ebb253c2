#!/usr/bin/env bash
# Issue 11's goal on USPS (9,298 images): the paper's settings (shf-lsmr), the new defaults
# (shf-tuned), Martens HF and Adam (learning rate swept on seed 0 over the whole budget, batch
# 200), 900 s of optimiser time each, one thread each, two compare processes at a time on their
# own cores (runs/goal-usps; finished runs are reused, interrupted ones resumed). SEEDS=0,1,2.
# Then the table over everything that finished (runs nothing):
#   bash docs/results/goal-usps/run.sh report
set -euo pipefail
DATA=${DATA:-../shared/data/usps/usps_9298.mat}
SEEDS=${SEEDS:-0,1}
OUT=${OUT:-runs/goal-usps}
COMMON=(--config usps --data-path "$DATA" --budget 900 --seeds "$SEEDS" --lrs 5e-4,1e-3,2e-3
        --set first_order.batch_size=200 --out "$OUT")
if [ "${1:-}" = report ]; then
  shf compare "${COMMON[@]}" --methods "${METHODS:-shf-lsmr,shf-tuned,martens-hf,adam}" --target-from adam \
    --report-only
  exit 0
fi
taskset -c 0 shf compare "${COMMON[@]}" --methods adam > "$OUT-adam.log" 2>&1 &
taskset -c 1 shf compare "${COMMON[@]}" --methods shf-tuned,shf-lsmr > "$OUT-shf.log" 2>&1 &
wait
