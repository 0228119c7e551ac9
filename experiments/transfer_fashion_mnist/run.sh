#!/usr/bin/env bash
# The tutorials' frozen-backbone vs fine-tuning study, on Fashion-MNIST split by class:
# pretrain LeNet-5 on classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), then learn classes 5-9
# (Sandal, Shirt, Sneaker, Bag, Ankle boot) with a new head: frozen backbone, whole network fine-tuned
# (backbone at 0.1x the rate), and from scratch for reference.
#   bash experiments/transfer_fashion_mnist/run.sh [WORKDIR]   (from the repository root, jaxcnn installed)
set -euo pipefail
w=${1:-workdirs/transfer_fashion_mnist}
run() { python -m jaxcnn.main --config=lenet5 "$@"; }
target=(--config.classes='(5, 6, 7, 8, 9)' --config.num_epochs=4)
run --workdir="$w/pretrain" --config.classes='(0, 1, 2, 3, 4)' --config.num_epochs=8
run --workdir="$w/frozen" "${target[@]}" --config.init_from="$w/pretrain" --config.freeze_backbone=True
run --workdir="$w/finetune" "${target[@]}" --config.init_from="$w/pretrain" --config.backbone_lr_multiplier=0.1
run --workdir="$w/scratch" "${target[@]}"
for name in pretrain frozen finetune scratch; do
  python -m jaxcnn.main --workdir="$w/$name" --mode=eval
done
