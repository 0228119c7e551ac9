#!/usr/bin/env bash
# ResNet-20 (CIFAR network, option A) and ResNet-18 (small-input stem) on Fashion-MNIST with the shared
# recipe: lr 0.1, batch 128, weight decay 5e-4, 80 and 60 epochs (94.91% and 95.30% on an H100).
#   bash experiments/resnet/run.sh [WORKDIR_ROOT] [--config.FIELD=VALUE ...]   e.g. --config.compute_dtype=bfloat16
set -euo pipefail
root=${1:-workdirs/resnet}
shift $(( $# > 0 ))
bash experiments/fashion_mnist.sh resnet20 "$root/resnet20" --config.num_epochs=80 --config.weight_decay=5e-4 "$@"
bash experiments/fashion_mnist.sh resnet18 "$root/resnet18" --config.num_epochs=60 --config.batch_size=128 \
    --config.weight_decay=5e-4 "$@"
