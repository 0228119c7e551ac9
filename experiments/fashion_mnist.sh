#!/usr/bin/env bash
# Trains one named config on Fashion-MNIST with the small-image recipe every paper folder shares, then
# evaluates its last checkpoint on the test split.
#   bash experiments/fashion_mnist.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]   (from the repository root)
# Shared: the 55k/5k train/validation split, a cosine learning rate, 2-pixel random translations and
# mirror images in training (the papers' ImageNet crops do not apply to 28x28 images), the plain test
# image in evaluation. Each paper's run.sh adds its own recipe; later flags win.
set -euo pipefail
config=$1 workdir=$2
shift 2
start=$(date +%s)
python -m jaxcnn.main --config="$config" --workdir="$workdir" --config.dataset=fashion_mnist \
    --config.validation_size=5000 --config.schedule=cosine --config.train_augment='pad(2)|random_crop(28)|flip_lr' \
    --config.eval_augment= --config.augment_datasets='()' --config.eval_split=test "$@"
python -m jaxcnn.main --workdir="$workdir" --mode=eval
echo "$config in $workdir: train + eval $(( $(date +%s) - start )) s"
