"""Frozen backbone vs fine-tuning vs training from scratch on Fashion-MNIST split by class (LeNet-5).

  python -m jaxcnn.main --config=fashion_mnist_transfer_pretrain --workdir=workdirs/fashion_mnist_transfer_pretrain
  python -m jaxcnn.main --config=fashion_mnist_transfer_frozen --workdir=workdirs/fashion_mnist_transfer_frozen
  python -m jaxcnn.main --config=fashion_mnist_transfer_finetune --workdir=workdirs/fashion_mnist_transfer_finetune
  python -m jaxcnn.main --config=fashion_mnist_transfer_scratch --workdir=workdirs/fashion_mnist_transfer_scratch
  python -m jaxcnn.main --workdir=workdirs/fashion_mnist_transfer_NAME --mode=eval   (each of the four)

Run from one folder, pretrain first: the frozen and fine-tuned runs start from the pretrained run's
`workdirs/fashion_mnist_transfer_pretrain` (`--config.init_from=` points elsewhere). Hardware: a 2-core CPU
VM, float32, shared with other jobs, so its times mean nothing (2026-11-23). Results (test top-1 on 5,000
images):

| config | data | epochs | test top-1 |
|---|---|---|---|
| `..._pretrain` | classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), 25,000 train | 8 | 92.42% |
| `..._frozen` | classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), new head, backbone frozen | 4 | 88.00% |
| `..._finetune` | classes 5-9, new head, backbone at 0.1x the rate | 4 | 96.74% |
| `..._scratch` | classes 5-9, from scratch | 4 | 96.78% |

Features learned on clothing tops transfer only partly to footwear and bags (frozen: 88.0%); letting the
backbone adapt recovers the from-scratch accuracy. With 25,000 target images the target task does not
need the transfer (freezing pays with an ImageNet backbone and a small target set); the study shows the
mechanics (`init_from`, `freeze_backbone`, `backbone_lr_multiplier`). Recipe: the `lenet5` config's network
with the optimizer these were measured with (SGD momentum 0.9, weight decay 5e-4, lr 0.05 cosine without
warm-up, no label smoothing, batch 128, the default validation split; the default job's recipe has moved on
since) and `classes` selecting the halves.
"""

from jaxcnn.configs import lenet5

VARIANTS = (
  "fashion_mnist_transfer_pretrain",
  "fashion_mnist_transfer_frozen",
  "fashion_mnist_transfer_finetune",
  "fashion_mnist_transfer_scratch",
)
PRETRAINED = "workdirs/fashion_mnist_transfer_pretrain"


def get_config(name: str = "fashion_mnist_transfer_pretrain"):
  config = lenet5.get_config()
  config.update(learning_rate=0.05, nesterov=False, warmup_epochs=0.0, label_smoothing=0.0, validation_size="auto")
  if name == "fashion_mnist_transfer_pretrain":
    config.update(classes=(0, 1, 2, 3, 4), num_epochs=8)
    return config
  config.update(classes=(5, 6, 7, 8, 9), num_epochs=4)
  if name == "fashion_mnist_transfer_frozen":
    config.update(init_from=PRETRAINED, freeze_backbone=True)
  elif name == "fashion_mnist_transfer_finetune":
    config.update(init_from=PRETRAINED, backbone_lr_multiplier=0.1)
  return config
