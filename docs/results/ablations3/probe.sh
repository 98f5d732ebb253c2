#!/usr/bin/env bash
# Issue 11, third round: why the new defaults (TUNED) stall near 0.44 on USPS seed 1. One probe
# at a time on core CORE (1), T seconds (600) of optimiser time, one thread, seed SEED (1), each
# TUNED plus one change, into OUT (runs/abl3); a finished probe is kept, not rerun.
# Usage: probe.sh NAME "ARGS" [NAME "ARGS" ...]
set -uo pipefail
DATA=${DATA-../shared/data/usps/usps_9298.mat}
T=${T:-600}
SEED=${SEED:-1}
OUT=${OUT:-runs/abl3}
CORE=${CORE:-1}
TUNED=(--set optimizer.damping_rule=nielsen --set optimizer.lambda_min=0.05 --set optimizer.recover=20
       --set optimizer.maxiter1=40 --set optimizer.maxiter_max=100 --set optimizer.forcing=gradient
       --set optimizer.merit_size=200 --set optimizer.curvature_size=250)
mkdir -p "$OUT"
while [ $# -ge 2 ]; do
  name=$1; args=$2; shift 2
  [ -f "$OUT/$name/summary.json" ] && continue
  # shellcheck disable=SC2086
  taskset -c "$CORE" shf train --config usps --data-path "$DATA" --max-time "$T" --threads 1 --seed "$SEED" \
    --set run.eval_every=10 --set run.max_iters=1000000 --no-progress --out "$OUT/$name" --overwrite \
    "${TUNED[@]}" $args > "$OUT/$name.log" 2>&1
done
