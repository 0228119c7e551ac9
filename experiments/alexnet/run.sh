#!/usr/bin/env bash
# AlexNet (small-input stem) on Fashion-MNIST with the shared recipe: lr 0.01, batch 128, weight decay
# 5e-4, 30 epochs, He initialisation with zero biases (the paper's N(0, 0.01) never starts training on
# 28x28 images; models/layers.py says what was seen) (92.92% on an H100).
#   bash experiments/alexnet/run.sh [WORKDIR_ROOT] [--config.FIELD=VALUE ...]   e.g. --config.compute_dtype=bfloat16
set -euo pipefail
root=${1:-workdirs/alexnet}
shift $(( $# > 0 ))
bash experiments/fashion_mnist.sh alexnet "$root/alexnet" --config.num_epochs=30 \
    --config.model_options.initializer=he --config.model_options.hidden_bias=0.0 "$@"
