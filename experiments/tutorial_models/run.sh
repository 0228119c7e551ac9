#!/usr/bin/env bash
# The tutorials' comparison on Fashion-MNIST: an MLP, the two-conv CNN and LeNet-5, each with its
# config's recipe; accuracy, training time and parameter count.
#   bash experiments/tutorial_models/run.sh [WORKDIR]   (from the repository root, jaxcnn installed)
set -euo pipefail
w=${1:-workdirs/tutorial_models}
for config in mlp simple_cnn lenet5; do
  start=$(date +%s)
  python -m jaxcnn.main --config=$config --workdir="$w/$config" --config.dataset=fashion_mnist
  python -m jaxcnn.main --workdir="$w/$config" --mode=eval
  echo "$config: train + eval $(( $(date +%s) - start )) s"
  python -m jaxcnn.main --config=$config --config.dataset=fashion_mnist --mode=summary | tail -n 3
done
