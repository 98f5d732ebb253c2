#!/usr/bin/env bash
# First probes for issue 11 on USPS (9,298 images), seed 0, 300 s of optimiser time, one
# thread per run, two runs at a time on their own cores. Writes runs/abl/<name>.
set -euo pipefail
DATA=${DATA:-../shared/data/usps/usps_9298.mat}
T=${T:-300}
run() {  # core name args...
  local core=$1 name=$2; shift 2
  taskset -c "$core" shf train --config usps --data-path "$DATA" --max-time "$T" --threads 1 \
    --set run.eval_every=5 --no-progress --out "runs/abl/$name" --overwrite "$@"
}
run 0 paper & run 1 nielsen --set optimizer.damping_rule=nielsen & wait
run 0 nielsen-nmax500 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 &
run 1 adam --method adam --set first_order.lr=1e-3 --set first_order.batch_size=200 & wait
run 0 nielsen-nmax500-recover20 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 \
  --set optimizer.recover=20 &
run 1 paper-nmax500 --set optimizer.n_max=500 & wait
run 0 paper-nmax200 --set optimizer.n_max=200 &
run 1 nielsen-nmax200-recover20-miniter10 --set optimizer.damping_rule=nielsen --set optimizer.n_max=200 \
  --set optimizer.recover=20 --set optimizer.miniter=10 & wait
run 0 nielsen-nmax500-recover20-lmin0.3 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 \
  --set optimizer.recover=20 --set optimizer.lambda_min=0.3 &
run 1 nielsen-nmax500-recover20-lmin0.05 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 \
  --set optimizer.recover=20 --set optimizer.lambda_min=0.05 & wait
run 0 nielsen-nmax500-recover20-lmin0.05-maxiter20 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 \
  --set optimizer.recover=20 --set optimizer.lambda_min=0.05 --set optimizer.maxiter1=20 &
run 1 paper-nmax500-maxiter20 --set optimizer.n_max=500 --set optimizer.maxiter1=20 & wait
run 0 nielsen-nmax500-recover20-lmin0.05-maxiter10 --set optimizer.damping_rule=nielsen --set optimizer.n_max=500 \
  --set optimizer.recover=20 --set optimizer.lambda_min=0.05 --set optimizer.maxiter1=10 &
run 1 nielsen-nmax1000-recover20-lmin0.05-maxiter20 --set optimizer.damping_rule=nielsen --set optimizer.n_max=1000 \
  --set optimizer.recover=20 --set optimizer.lambda_min=0.05 --set optimizer.maxiter1=20 & wait
