#!/usr/bin/env bash
# Issue 11's goal tables: the paper's settings (shf-lsmr), the new defaults (shf-tuned), Martens
# HF and Adam (learning rate swept once on the first seed over the whole budget), 900 s of
# optimiser time each, one thread each; the budget and patience are the only stops.
#   CORE=0 METHODS=adam bash docs/results/goal/run.sh usps      # one compare process on core 0
#   bash docs/results/goal/run.sh usps report                    # the table over finished runs
# Data sets: usps (seeds 0,1,2), curves (the offline synthetic CURVES, seed 0), mnist-t10k (the
# MNIST autoencoder on the 10,000-image stand-in, 8,000/1,000/1,000, seed 0). Finished runs are
# reused and interrupted ones (SIGTERM) resumed, so a queue can be stopped and started again.
set -euo pipefail
DS=${1:?usage: run.sh usps|curves|mnist-t10k [report]}
DATA_ROOT=${DATA_ROOT:-../shared/data}
case "$DS" in
  usps) ARGS=(--config usps --data-path "$DATA_ROOT/usps/usps_9298.mat" --lrs 5e-4,1e-3,2e-3
              --set first_order.batch_size=200); SEEDS=${SEEDS:-0,1,2} ;;
  curves) ARGS=(--config curves --lrs 3e-4,1e-3,3e-3 --set first_order.batch_size=200); SEEDS=${SEEDS:-0} ;;
  mnist-t10k) ARGS=(--config mnist --set data.dataset=mnist-t10k --data-path "$DATA_ROOT/mnist-t10k"
                    --set data.n_train=8000 --set data.n_val=1000 --set data.n_test=1000
                    --lrs 3e-4,1e-3,3e-3 --set first_order.batch_size=200); SEEDS=${SEEDS:-0} ;;
  *) echo "unknown data set $DS" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/goal/$DS}
# Train and test errors every 10 iterations (the validation error every iteration), so Adam's
# wall time is not mostly evaluation; the target is Adam's best validation error.
# EXTRA: more arguments for every method (e.g. EXTRA="--set optimizer.weight_cost=2e-5", B10).
# shellcheck disable=SC2206
COMMON=("${ARGS[@]}" --budget "${BUDGET:-900}" --seeds "$SEEDS" --eval-every 10 --out "$OUT" ${EXTRA:-})
ALL=shf-lsmr,shf-tuned,martens-hf,adam
if [ "${2:-}" = report ]; then
  exec shf compare "${COMMON[@]}" --methods "${METHODS:-$ALL}" --target-from adam --report-only
fi
mkdir -p "$OUT"
M=${METHODS:-$ALL}
TGT=(); case ",$M," in *,adam,*) TGT=(--target-from adam) ;; esac
exec taskset -c "${CORE:-0}" shf compare "${COMMON[@]}" "${TGT[@]}" --methods "$M" >> "$OUT/queue-${M//,/-}.log" 2>&1
