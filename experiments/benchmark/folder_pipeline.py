"""One measurement of an image-folder training pipeline, printed as one JSON line (folder_pipeline.sh runs these).

  python experiments/benchmark/folder_pipeline.py make DIR [--num=2000]
  python experiments/benchmark/folder_pipeline.py jaxcnn DIR --config=alexnet [--batch=128] [--batches=15]
  python experiments/benchmark/folder_pipeline.py tfdata DIR --config=alexnet
  python experiments/benchmark/folder_pipeline.py torch DIR [--config=alexnet] [--workers=CORES] [--crop=224]
    [--torch_output=uint8]

`make`: a Kaggle-like folder (two classes, JPEGs of 320-500 px per side, quality 75, smooth content that compresses
like photographs). `jaxcnn`: `python -m jaxcnn.bench.pipeline`'s first pass, the host's share of it, and cached
rates (no train step). `tfdata`: jaxcnn's tf.data pipeline for the same config (no cache). `torch`: a PyTorch
DataLoader doing the config's first-pass work with PIL, as torchvision's transforms do it (AlexNet: Resize(256):
shorter side 256, antialiased bilinear, CenterCrop(256); ResNet-50 and VGG-16, scale jittering: Resize(S), S drawn
from 256-480 and 256-512 as the papers do; then RandomCrop(--crop), RandomHorizontalFlip, to a uint8 CHW tensor as
PILToTensor, or with --torch_output=float to float normalised as ToTensor + Normalize) on as many worker processes
as cores, batches collated in the workers. uint8 is the like-for-like of jaxcnn's host share (uint8 views; the
mirror, lighting and normalisation run on the device). Rates: images/s over the batches after the first.
"""

import argparse
import itertools
import json
import os
import pathlib
import sys
import time

import numpy as np

# The shorter side the DataLoader resizes to (drawn from [low, high]) and whether it centre-crops it square first:
# the first-pass work of each config's train preset (`alexnet`, `resnet`, `vgg` in jaxcnn/data/augment.py).
TORCH_RECIPES = {"alexnet": (256, 256, True), "resnet50": (256, 480, False), "vgg16": (256, 512, False)}


def make(root: pathlib.Path, num: int) -> None:
  from PIL import Image

  rng = np.random.default_rng(0)
  for c in ("cat", "dog"):
    (root / c).mkdir(parents=True, exist_ok=True)
  for i in range(num):
    h, w = (int(v) for v in rng.integers(320, 501, 2))
    small = Image.fromarray(rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), np.uint8))
    small.resize((w, h), Image.BILINEAR).save(root / ("cat", "dog")[i % 2] / f"{i}.jpg", quality=75)


def _config(name: str, root, batch: int):
  from jaxcnn import configs

  config = configs.get(name)
  config.update(dataset="image_folder", data_dir=str(root), validation_size=0, batch_size=batch)
  return config


def cores() -> int:
  return len(os.sched_getaffinity(0))


def run_jaxcnn(args) -> dict:
  from jaxcnn.bench import pipeline

  result = pipeline.measure_folder(_config(args.config, args.dir, args.batch), args.batches, 0)
  keys = (
    "first_pass_images_per_sec",
    "first_pass_host_images_per_sec",
    "cached_images_per_sec",
    "cached_host_images_per_sec",
    "cores",
    "cache_head",
  )
  return {k: result[k] for k in keys}


def run_tfdata(args) -> dict:
  from jaxcnn import data
  from jaxcnn.bench import pipeline

  config = _config(args.config, args.dir, args.batch)
  config.update(pipeline="tfdata", data_cache="")
  rate, _ = pipeline._timed(
    pipeline.images_of(data.InputPipeline(config, data.load(config)).train_batches(0)), args.batches
  )
  return {"tfdata_images_per_sec": rate, "cores": cores()}


def _torch_rate(args) -> dict:
  """A DataLoader over the folder: PIL decode, Resize(256) (shorter side, antialiased bilinear), CenterCrop(256),
  RandomCrop(args.crop), RandomHorizontalFlip, a uint8 (or float normalised) CHW tensor; the PIL calls
  torchvision's transforms make on a PIL image, by hand (sizes and offsets as torchvision 0.29's functional.py
  computes them), so torchvision is not needed."""
  import torch
  from PIL import Image

  paths = sorted(str(p) for p in pathlib.Path(args.dir).rglob("*.jpg"))
  crop = args.crop
  if args.config not in TORCH_RECIPES:
    raise SystemExit(f"torch: --config must be one of {', '.join(TORCH_RECIPES)}, got {args.config!r}")
  low, high, center = TORCH_RECIPES[args.config]
  mean = np.float32([0.485, 0.456, 0.406]) * 255
  std = np.float32([0.229, 0.224, 0.225]) * 255

  class Folder(torch.utils.data.Dataset):
    def __len__(self):
      return len(paths)

    def __getitem__(self, i):
      rng = np.random.default_rng([0, i])
      with Image.open(paths[i]) as image:
        image = image.convert("RGB")
        w, h = image.size
        short = int(rng.integers(low, high + 1))
        # _compute_resized_output_size: the longer side int(short * long / short side), truncated.
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        image = image.resize(size, Image.BILINEAR)
        w, h = image.size
        if center:
          left, top = int(round((w - short) / 2.0)), int(round((h - short) / 2.0))  # center_crop's offsets
          image = image.crop((left, top, left + short, top + short))
          w = h = short
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        image = image.crop((x, y, x + crop, y + crop))
        if rng.random() < 0.5:
          image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
      if args.torch_output == "uint8":
        return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy()), i % 2
      pixels = (np.asarray(image, np.float32) - mean) / std
      return torch.from_numpy(pixels.transpose(2, 0, 1).copy()), i % 2

  workers = args.workers if args.workers >= 0 else cores()
  loader = torch.utils.data.DataLoader(
    Folder(), batch_size=args.batch, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=False
  )
  iterator = iter(loader)
  next(iterator)
  images, start = 0, time.perf_counter()
  for images_batch, _ in itertools.islice(iterator, args.batches):
    images += len(images_batch)
  rate = images / (time.perf_counter() - start)
  return {"torch_images_per_sec": rate, "torch_workers": workers, "torch_output": args.torch_output, "cores": cores()}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=("make", "jaxcnn", "tfdata", "torch"))
  parser.add_argument("dir")
  parser.add_argument("--num", type=int, default=2000)
  parser.add_argument("--config", default="alexnet")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--batches", type=int, default=14)
  parser.add_argument("--workers", type=int, default=-1)
  parser.add_argument("--crop", type=int, default=224, help="torch: RandomCrop's size (AlexNet config: 224)")
  parser.add_argument("--torch_output", choices=("uint8", "float"), default="uint8")
  args = parser.parse_args()
  if args.mode == "make":
    make(pathlib.Path(args.dir), args.num)
    return
  result = {"jaxcnn": run_jaxcnn, "tfdata": run_tfdata, "torch": _torch_rate}[args.mode](args)
  print(json.dumps({"mode": args.mode, "config": args.config, **result}), flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  main()
