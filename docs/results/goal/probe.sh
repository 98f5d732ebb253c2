#!/usr/bin/env bash
# Issue 11, after the goal tables: one-change probes on USPS against the goal table's own runs.
# Each probe is one `shf compare` of one method with extra --set overrides, 900 s (T) of optimiser
# time, one thread, seed SEED (0), into OUT/NAME (runs/probe-goal); a finished probe is reused.
#   CORE=0 bash docs/results/goal/probe.sh NAME METHOD "EXTRA ARGS" [NAME METHOD "ARGS" ...]
# e.g. martens-wc0 martens-hf "--set hf.weight_cost=0"  or  tuned-wc2e-5 shf-tuned "--set optimizer.weight_cost=2e-5"
set -uo pipefail
DATA=${DATA-../shared/data/usps/usps_9298.mat}
T=${T:-900}
SEED=${SEED:-0}
OUT=${OUT:-runs/probe-goal}
CORE=${CORE:-0}
mkdir -p "$OUT"
while [ $# -ge 3 ]; do
  name=$1; method=$2; args=$3; shift 3
  echo "$(date -u +%FT%TZ) start $name ($method $args) seed $SEED on core $CORE"
  # shellcheck disable=SC2086
  taskset -c "$CORE" shf compare --config usps --data-path "$DATA" --lrs 5e-4,1e-3,2e-3 \
    --set first_order.batch_size=200 --budget "$T" --seeds "$SEED" --eval-every 10 \
    --out "$OUT/$name" --methods "$method" $args >> "$OUT/$name.log" 2>&1 \
    || echo "$(date -u +%FT%TZ) $name ended with $?"
done
echo "$(date -u +%FT%TZ) probes done"
