"""Why the bench's PyTorch column ran slower than a plain PyTorch script: A/B of the suspects.

  python experiments/benchmark/pytorch_gap.py [--model=lenet5] [--steps=N] [--rounds=R]

Part 1, in this one process, alternating round by round: the bench's `TrainStep.run` and the self-check's
plain loop (`torch_models.plain_loop`'s body), each run back to back and each after the bench's 0.5 s of quiet
(its `SETTLE_SECONDS`), with the per-step times of the first steps after the quiet.
Part 2, processes: a bench PyTorch worker (`jaxcnn.bench.worker`, the protocol: STEPS on stdin after the quiet)
with and without an idle jaxcnn worker beside it, against a fresh plain-loop process, in alternating order.
Every figure is images/s, median over the rounds (and all rounds printed). On a loaded machine the absolute
figures mean nothing; compare the variants of one round.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="lenet5")
parser.add_argument("--steps", type=int, default=150)
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--batch_size", type=int, default=128)
parser.add_argument("--part", default="12")
args = parser.parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jaxcnn.bench import step, torch_models, worker  # noqa: E402

shape = list(step.default_input(args.model))
N, B = args.steps, args.batch_size
results: dict[str, list[float]] = {}


def note(name: str, seconds: float) -> None:
  results.setdefault(name, []).append(N * B / seconds)


def report(title: str) -> None:
  print(title)
  for name, rates in results.items():
    print(f"  {name:<44} {statistics.median(rates):>9,.0f}   {[round(r) for r in rates]}")
  results.clear()


if "1" in args.part:
  torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
  bench = torch_models.TrainStep(args.model, 10, shape, B)
  size, _, channels = shape
  model = torch_models.MODELS[args.model](10, channels, size).to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  images = torch.randn(B, channels, size, size).to(memory_format=torch.channels_last)
  labels = torch.randint(0, 10, (B,))

  def plain(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      optimizer.zero_grad()
      F.cross_entropy(model(images), labels).backward()
      optimizer.step()
    return time.perf_counter() - start

  bench.run(3), plain(3)
  first = []
  for _ in range(args.rounds):
    note("bench TrainStep.run, back to back", bench.run(N))
    note("plain loop, back to back", plain(N))
    time.sleep(0.5)
    note("bench TrainStep.run after 0.5 s quiet", bench.run(N))
    time.sleep(0.5)
    note("plain loop after 0.5 s quiet", plain(N))
    time.sleep(0.5)
    first.append([round(bench.run(1) * 1e3, 1) for _ in range(5)])
  report(f"part 1, one process, {args.model} batch {B}, {N} steps per figure, {torch.get_num_threads()} threads")
  print(f"  first 5 steps after 0.5 s quiet, ms: {first}")

if "2" in args.part:
  base = {"model": args.model, "batch_size": B, "precision": "float32", "threads": 0, "warmup": 3, "tf32": True}
  pytorch = worker.Worker({**base, "side": "pytorch", "image_shape": shape, "serve": "steps"})
  pytorch.receive()
  plain_spec = {"model": args.model, "image_shape": shape, "batch_size": B, "steps": N, "repeats": 1, "warmup": 3}
  for _ in range(args.rounds):
    note("bench worker (protocol, 0.5 s quiet), alone", pytorch.run(N, 0.5)["seconds"])
    note("bench worker (protocol, no quiet), alone", pytorch.run(N, 0.0)["seconds"])
    out = subprocess.run(
      [sys.executable, "-m", "jaxcnn.bench.torch_models", json.dumps(plain_spec)], capture_output=True, text=True
    )
    note("plain-loop process", N * B / json.loads(out.stdout.splitlines()[-1])["images_per_sec_runs"][0])
  jax_side = worker.Worker(
    {
      **base,
      "side": "jaxcnn",
      "mode": "step",
      "parallelism": "pmap",
      "image_size": 0,
      "dataset": "synthetic",
      "model_options": {},
      "devices": 1,
      "fast_forms": True,
      "fast_forms_xla_flags": True,
      "compilation_cache_dir": None,
      "image_shape": None,
      "serve": "steps",
    }
  )
  jax_side.receive()
  for _ in range(args.rounds):
    jax_side.run(N, 0.0)
    note("bench worker after a jaxcnn turn (0.5 s quiet)", pytorch.run(N, 0.5)["seconds"])
    note("bench worker, jaxcnn worker idle beside it", pytorch.run(N, 0.5)["seconds"])
  jax_side.close()
  pytorch.close()
  report(f"part 2, processes, {args.model} batch {B}, {N} steps per figure")
