#!/usr/bin/env bash
# Data-parallel SHF on a GPU machine: the CUDA tests, the NCCL equivalence test (2+ GPUs), a short
# torchrun training run on the GPUs and the scaling benchmark. Results under ${OUT:-runs/gpu-dist}.
#   bash benchmarks/gpu_distributed.sh
set -euo pipefail
OUT=${OUT:-runs/gpu-dist}
mkdir -p "$OUT"
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $NGPU"
[ "$NGPU" -ge 1 ] || { echo "no CUDA device" >&2; exit 1; }
# CUDA paths and, with 2 GPUs, the 2-rank NCCL run against the 1-GPU run (float64, 10 HF iterations)
python -m pytest -q tests/test_cuda.py tests/test_distributed.py 2>&1 | tee "$OUT/tests.txt"
P=$(( NGPU >= 2 ? 2 : 1 ))   # NCCL needs one GPU per process
torchrun --standalone --nproc_per_node="$P" -m shf train --device cuda --max-time 60 --no-progress \
  --out "$OUT/train-P$P" --overwrite 2>&1 | tail -n 6 | tee "$OUT/train.txt"
PROCS=1; [ "$P" -ge 2 ] && PROCS=1,$P
python benchmarks/distributed_scaling.py --device cuda --procs "$PROCS" --lsmr 20 --out "$OUT/scaling"
