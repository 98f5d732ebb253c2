set -u
cd "$(dirname "$0")/../../.."  # the repository root, with shf installed
D=../shared/data
U=(--config usps --data-path $D/usps/usps_9298.mat)
M=(--config mnist --set data.dataset=mnist-t10k --data-path $D/mnist-t10k --set data.n_train=8000 --set data.n_val=1000 --set data.n_test=1000)
C=(--methods shf-tuned --budget 300 --seeds 0 --eval-every 10)
for arm in constant per-example; do
  taskset -c 0 shf compare "${U[@]}" "${C[@]}" --set optimizer.weight_cost_rule=$arm --out runs/b16/usps-$arm
  taskset -c 0 shf compare "${M[@]}" "${C[@]}" --set optimizer.weight_cost_rule=$arm --out runs/b16/mnist-t10k-$arm
done
echo done
