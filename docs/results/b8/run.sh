#!/usr/bin/env bash
# B8 (optimizer.step_rule = "model") against the defaults on shf train's task, side by side:
#   CORE=0 VARIANT=base bash docs/results/b8/run.sh      # the defaults, seeds 0-2
#   CORE=1 VARIANT=model bash docs/results/b8/run.sh     # B8
#   python docs/results/b8/table.py                      # the table
# Each run: shf train, default preset, one thread, 300 s of optimiser time.
set -euo pipefail
V=${VARIANT:?base or model}
case "$V" in
  base) SET=() ;;
  model) SET=(--set optimizer.step_rule=model) ;;
  model8) SET=(--set optimizer.step_rule=model --set optimizer.step_max=8) ;;
  *) echo "unknown variant $V" >&2; exit 2 ;;
esac
for s in ${SEEDS:-0 1 2}; do
  out=runs/b8/$V-s$s
  [ -f "$out/summary.json" ] && continue
  taskset -c "${CORE:-0}" shf train --threads 1 --seed "$s" --max-time "${BUDGET:-300}" --no-progress \
    --out "$out" --overwrite "${SET[@]}"
done
