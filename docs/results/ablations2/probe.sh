#!/usr/bin/env bash
# Issue 11, second round of probes: CONFIG (usps) on DATA (USPS, 9,298 images; DATA= for a
# data set that needs no file), seed 0 (SEED), T seconds of optimiser time (300), one thread
# per run, two runs at a time on their own cores, into OUT (runs/abl2).
# Usage: probe.sh NAME0 "ARGS0" NAME1 "ARGS1" ...  (a finished run is kept, not rerun).
# Every run starts from BASE (default: the best first-round probe, docs/results/ablations).
set -uo pipefail
DATA=${DATA-../shared/data/usps/usps_9298.mat}
CONFIG=${CONFIG:-usps}
T=${T:-300}
SEED=${SEED:-0}
OUT=${OUT:-runs/abl2}
BASE=${BASE-"--set optimizer.damping_rule=nielsen --set optimizer.n_max=500 --set optimizer.recover=20 \
--set optimizer.lambda_min=0.05 --set optimizer.maxiter1=20"}
run() {  # core name args...
  local core=$1 name=$2; shift 2
  [ -f "$OUT/$name/summary.json" ] && return 0
  # shellcheck disable=SC2086
  local data=()
  [ -n "$DATA" ] && data=(--data-path "$DATA")
  taskset -c "$core" shf train --config "$CONFIG" "${data[@]}" --max-time "$T" --threads 1 \
    --seed "$SEED" --set run.eval_every=5 --no-progress --out "$OUT/$name" --overwrite $BASE "$@" \
    > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
while [ $# -ge 2 ]; do
  # shellcheck disable=SC2086
  run 0 "$1" $2 &
  if [ $# -ge 4 ]; then
    # shellcheck disable=SC2086
    run 1 "$3" $4 &
    shift 4
  else
    shift 2
  fi
  wait
done
