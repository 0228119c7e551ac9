#!/usr/bin/env bash
# VGG-16 (configuration D, Glorot initialisation, no BatchNorm) and VGG-16 with BatchNorm on Fashion-MNIST
# with the shared recipe: batch 128, 40 epochs; lr 0.01 after a 1-epoch warm-up, and 0.05 with
# BatchNorm (92.47% and 94.63% on an H100).
#   bash experiments/vgg/run.sh [WORKDIR_ROOT] [--config.FIELD=VALUE ...]   e.g. --config.compute_dtype=bfloat16
set -euo pipefail
root=${1:-workdirs/vgg}
shift $(( $# > 0 ))
bash experiments/fashion_mnist.sh vgg16 "$root/vgg16" --config.num_epochs=40 --config.batch_size=128 \
    --config.warmup_epochs=1 "$@"
bash experiments/fashion_mnist.sh vgg16 "$root/vgg16_bn" --config.model=vgg16_bn --config.num_epochs=40 \
    --config.batch_size=128 --config.learning_rate=0.05 "$@"
