#!/usr/bin/env bash
# Issue 11, after the goal tables: one-change probes against the goal table's own runs. Each probe
# is one `shf compare` of one method with extra --set overrides on data set DS (usps; or curves,
# mnist-t10k: the goal table's arguments, as in run.sh), T (900) seconds of optimiser time, one
# thread, seed SEED (0), into OUT/NAME (runs/probe-goal); a finished probe is reused.
#   CORE=0 bash docs/results/goal/probe.sh NAME METHOD "EXTRA ARGS" [NAME METHOD "ARGS" ...]
# e.g. martens-wc0 martens-hf "--set hf.weight_cost=0"  or  tuned-wc2e-5 shf-tuned "--set optimizer.weight_cost=2e-5"
set -uo pipefail
DATA_ROOT=${DATA_ROOT:-../shared/data}
DS=${DS:-usps}
T=${T:-900}
SEED=${SEED:-0}
OUT=${OUT:-runs/probe-goal}
CORE=${CORE:-0}
case "$DS" in
  usps) ARGS=(--config usps --data-path "$DATA_ROOT/usps/usps_9298.mat" --lrs 5e-4,1e-3,2e-3) ;;
  curves) ARGS=(--config curves --lrs 3e-4,1e-3,3e-3) ;;
  mnist-t10k) ARGS=(--config mnist --set data.dataset=mnist-t10k --data-path "$DATA_ROOT/mnist-t10k"
                    --set data.n_train=8000 --set data.n_val=1000 --set data.n_test=1000 --lrs 3e-4,1e-3,3e-3) ;;
  *) echo "unknown data set $DS" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
while [ $# -ge 3 ]; do
  name=$1; method=$2; args=$3; shift 3
  echo "$(date -u +%FT%TZ) start $name ($method $args) on $DS seed $SEED, core $CORE"
  # shellcheck disable=SC2086
  taskset -c "$CORE" shf compare "${ARGS[@]}" --set first_order.batch_size=200 --budget "$T" \
    --seeds "$SEED" --eval-every 10 --out "$OUT/$name" --methods "$method" $args >> "$OUT/$name.log" 2>&1 \
    || echo "$(date -u +%FT%TZ) $name ended with $?"
done
echo "$(date -u +%FT%TZ) probes done"
