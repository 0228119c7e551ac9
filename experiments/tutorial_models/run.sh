#!/usr/bin/env bash
# The tutorials' comparison on Fashion-MNIST: an MLP, the two-conv CNN and LeNet-5, each with its
# config's recipe; accuracy, training time and parameter count. Then the two CNNs again with the shared
# Fashion-MNIST recipe (experiments/fashion_mnist.sh: cosine, translations + flips) for 40 epochs.
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
bash experiments/fashion_mnist.sh simple_cnn "$w/simple_cnn_40ep" --config.num_epochs=40 \
    --config.learning_rate=0.05 --config.weight_decay=5e-4
bash experiments/lenet5/run.sh "$w"
