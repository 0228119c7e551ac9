#!/usr/bin/env bash
# GoogLeNet (auxiliary classifiers at 0.3, small-input stem) and its BatchNorm variant on Fashion-MNIST
# with the shared recipe: batch 128, 40 epochs, lr 0.04 (Caffe's 0.01 at batch 32, scaled) and 0.1.
# Not finished on the GPU lent so far (README.md).
#   bash experiments/googlenet/run.sh [WORKDIR_ROOT] [--config.FIELD=VALUE ...]   e.g. --config.compute_dtype=bfloat16
set -euo pipefail
root=${1:-workdirs/googlenet}
shift $(( $# > 0 ))
bash experiments/fashion_mnist.sh googlenet "$root/googlenet" --config.num_epochs=40 --config.batch_size=128 \
    --config.learning_rate=0.04 "$@"
bash experiments/fashion_mnist.sh googlenet "$root/googlenet_bn" --config.model=googlenet_bn --config.num_epochs=40 \
    --config.batch_size=128 --config.learning_rate=0.1 "$@"
