#!/usr/bin/env bash
# Issue 28's real-data check: `shf train --config usps --max-iters 50` and the defaults (`shf train`
# with no preset) for 50 iterations, at a commit before the HF iteration was split into parts
# (default b222d3e) and at the working tree, one thread on one core; then the metrics (less the
# timing fields) compared. Run from the repository root with shf installed (editable);
# USPS=path/to/usps_9298.mat (default ../shared/data/usps/usps_9298.mat).
set -euo pipefail
BEFORE=${BEFORE:-b222d3e}
USPS=${USPS:-../shared/data/usps/usps_9298.mat}
OUT=${OUT:-runs/parts-check}
rm -rf "$OUT"; mkdir -p "$OUT"
git worktree add -q "$OUT/before-src" "$BEFORE"
for tag in before after; do
  if [ $tag = before ]; then export PYTHONPATH=$PWD/$OUT/before-src/src; else unset PYTHONPATH; fi
  taskset -c "${CORE:-0}" shf train --config usps --data-path "$USPS" --max-iters 50 --threads 1 --no-progress \
    --out "$OUT/$tag-usps" > "$OUT/$tag-usps.log"
  taskset -c "${CORE:-0}" shf train --max-iters 50 --threads 1 --no-progress --out "$OUT/$tag-default" > "$OUT/$tag-default.log"
done
git worktree remove --force "$OUT/before-src"
python - "$OUT" <<'PY'
import json, sys
out, drop = sys.argv[1], {"time_s", "wall_s", "times", "elapsed_s"}
for name in ("usps", "default"):
    a, b = ([{k: v for k, v in json.loads(line).items() if k not in drop}
             for line in open(f"{out}/{tag}-{name}/metrics.jsonl")] for tag in ("before", "after"))
    # every metric recorded before is compared; a field added since (StepInfo.regime) is listed
    same = len(a) == len(b) and all(all(y.get(k) == v for k, v in x.items()) for x, y in zip(a, b))
    added = sorted(set(b[0]) - set(a[0])) if a and b else []
    print(f"{name}: {len(a)} and {len(b)} iterations, metrics {'identical' if same else 'DIFFERENT'}"
          + (f" (fields added since: {', '.join(added)})" if added else ""))
PY
