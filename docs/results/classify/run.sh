#!/usr/bin/env bash
# Classification beyond the paper: SHF-LSMR (torch.func products) against Adam (learning rate
# swept on this data, 1/4 of the budget per rate), same seed, same initial weights, one thread,
# one after the other on one core. Writes runs/classify/<name>/compare.{md,json,png}.
set -euo pipefail
DATA=${DATA:-../shared/data}
BUDGET=${BUDGET:-120}
for arch in mlp cnn; do
  taskset -c 1 shf compare --config classify-usps --arch "$arch" --data-path "$DATA/usps/usps_9298.mat" \
    --methods shf-lsmr,adam --budget "$BUDGET" --set run.threads=1 --out "runs/classify/usps-$arch"
  taskset -c 1 shf compare --config classify-mnist-t10k --arch "$arch" --data-path "$DATA/mnist-t10k" \
    --methods shf-lsmr,adam --budget "$BUDGET" --set run.threads=1 --out "runs/classify/t10k-$arch"
done
