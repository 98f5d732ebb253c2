#!/usr/bin/env bash
# Issue 31 item 5: the ablations that back each claim, over seeds, with shf compare --seeds.
# Each ARM is the defaults with one change (or another method), run for the seeds on one core;
# a claim's table compares its arms (table.py). Arms are shared between claims (the defaults once).
#   CORE=0 bash docs/results/claims/run.sh usps defaults cg merit     # run arms, one after another
#   python docs/results/claims/table.py usps                             # the tables of every claim
# Data sets: usps (the paper's USPS autoencoder, the fair table's data and split), default
# (shf train's task, synthetic CURVES) and curves (the paper's CURVES autoencoder on the offline
# synthetic set, the fair table's); budget BUDGET (300 s; curves: 1800 s, the fair table's), seeds
# SEEDS (0,1,2), one thread.
# Arms:
#   defaults    shf-tuned (usps) or shf-lsmr on the default preset (default): the defaults
#   cg          the defaults with CG instead of LSMR on the same damped, preconditioned system
#               (shf-cg on the default preset, whose method names its solver)
#   merit       the defaults with the validation merit inside the solver (the paper's; the
#               defaults have none, B15)
#   defaults-rerun  the defaults again: the run-to-run noise of a timed run
#   fixed       the defaults with a fixed batch (n = n1, maxiter = maxiter1) instead of Alg. 1/2
#   martens-pc  the defaults with Martens' preconditioner instead of Chapelle-Erhan's (Alg. 3)
#   no-pc       the defaults without a preconditioner
#   paper       shf-lsmr with the preset's settings (the paper's; usps only)
#   paper-lsmr  the same as paper, run again beside paper-cg (same machine and session)
#   paper-cg    shf-cg with the preset's settings: the paper's SHF-CG against its SHF-LSMR (usps only)
#   martens-hf  Martens' (2010) HF with CG
#   adam        the fair Adam at the fair table's objective and rate (usps: squared error, 5e-4;
#               default: cross-entropy, 3e-3; curves: cross-entropy, 1e-3), batch 200, from the same
#               initial weights
# Finished runs are reused, interrupted ones resumed; each arm's finished runs are kept in
# docs/results/claims/<data set>/<arm>.json.gz (commit it as the arm finishes).
set -euo pipefail
DS=${1:?usage: run.sh usps|default|curves ARM...}; shift
DATA_ROOT=${DATA_ROOT:-../shared/data}
case "$DS" in
  usps) DATA=(--config usps --data-path "$DATA_ROOT/usps/usps_9298.mat"); DEF=shf-tuned
        ADAM=(--lrs 5e-4 --baseline-losses squared) ;;
  default) DATA=(--config default); DEF=shf-lsmr; ADAM=(--lrs 3e-3 --baseline-losses cross_entropy) ;;
  curves) DATA=(--config curves); DEF=shf-tuned; ADAM=(--lrs 1e-3 --baseline-losses cross_entropy)
          BUDGET=${BUDGET:-1800} ;;
  *) echo "unknown data set $DS" >&2; exit 2 ;;
esac
COMMON=("${DATA[@]}" --budget "${BUDGET:-300}" --seeds "${SEEDS:-0,1,2}" --eval-every 10
        --set first_order.batch_size=200)
# The SHF arms archived here were made before B24 became the default (2026-12-07), with the
# constant weight cost, which B24 equals below 100 weights per training example (USPS 62, CURVES
# and shf train's task 42): the arms on the defaults name the rule, so they stay this configuration.
PIN=(--set optimizer.weight_cost_rule=constant)
here=$(dirname "$0")
mkdir -p "$here/$DS"
for arm in "$@"; do
  case "$arm" in
    defaults) A=(--methods "$DEF" "${PIN[@]}") ;;
    cg) if [ "$DEF" = shf-lsmr ]; then A=(--methods shf-cg "${PIN[@]}"); else A=(--methods "$DEF" --set optimizer.solver=cg "${PIN[@]}"); fi ;;
    merit) A=(--methods "$DEF" --set optimizer.use_merit=true "${PIN[@]}") ;;
    defaults-rerun) A=(--methods "$DEF" "${PIN[@]}") ;;
    fixed) A=(--methods "$DEF" --set optimizer.batch_schedule=fixed "${PIN[@]}") ;;
    martens-pc) A=(--methods "$DEF" --set optimizer.preconditioner=martens "${PIN[@]}") ;;
    no-pc) A=(--methods "$DEF" --set optimizer.preconditioner=none "${PIN[@]}") ;;
    paper|paper-lsmr) [ "$DS" = usps ] || { echo "$arm: usps only" >&2; continue; }; A=(--methods shf-lsmr) ;;
    paper-cg) [ "$DS" = usps ] || { echo "paper-cg: usps only" >&2; continue; }; A=(--methods shf-cg) ;;
    martens-hf) A=(--methods martens-hf) ;;
    adam) A=(--methods adam "${ADAM[@]}") ;;
    *) echo "unknown arm $arm" >&2; continue ;;
  esac
  out=runs/claims/$DS/$arm
  arc=$here/$DS/$arm.json.gz
  mkdir -p "$out"
  if [ -f "$arc" ]; then python -m shf.experiments.archive unpack "$arc" "$out"; fi
  echo "$(date -u +%FT%TZ) start $DS $arm on core ${CORE:-0}"
  taskset -c "${CORE:-0}" shf compare "${COMMON[@]}" "${A[@]}" --out "$out" >> "$out/queue.log" 2>&1 \
    || echo "$(date -u +%FT%TZ) $DS $arm ended with $?"
  python -m shf.experiments.archive pack "$out" "$arc"
done
echo "$(date -u +%FT%TZ) done"
