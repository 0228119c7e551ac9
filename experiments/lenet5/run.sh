#!/usr/bin/env bash
# LeNet-5 (modern: ReLU, max-pool) on Fashion-MNIST with the shared recipe, 40 epochs (91.24% on an H100).
#   bash experiments/lenet5/run.sh [WORKDIR_ROOT] [--config.FIELD=VALUE ...]   e.g. --config.compute_dtype=bfloat16
set -euo pipefail
root=${1:-workdirs/lenet5}
shift $(( $# > 0 ))
bash experiments/fashion_mnist.sh lenet5 "$root/lenet5_40ep" --config.num_epochs=40 "$@"
