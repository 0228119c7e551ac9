"""A/B of environment settings (XLA_FLAGS, thread counts) on `jaxcnn.bench`, interleaved on a shared machine.

XLA reads its flags once per process, so each variant runs as its own `python -m jaxcnn.bench`; the
variants take turns, round after round, so that a change in the machine's load hits them alike. Prints
each variant's median images/s per model, its ratio to the first variant, and, with `--compare=pytorch`
among the bench arguments, the median jaxcnn/PyTorch ratio (taken side by side, the steadier figure).

  python experiments/benchmark/ab_env.py --rounds=3 \\
      --variant="default=" --variant="no_eigen_threads=XLA_FLAGS=--xla_cpu_multi_thread_eigen=false" \\
      -- --models=lenet5,resnet20 --repeats=3 --steps=10

A variant is NAME=[VAR=VALUE[;VAR=VALUE...]]; everything after `--` goes to jaxcnn.bench.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def parse_variant(text: str) -> tuple[str, dict]:
  name, _, settings = text.partition("=")
  env = dict(item.split("=", 1) for item in settings.split(";") if item)
  return name, env


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", action="append", required=True, help="NAME=[VAR=VALUE;...]")
  parser.add_argument("--rounds", type=int, default=3)
  args, bench_args = parser.parse_known_args()
  bench_args = [a for a in bench_args if a != "--"]
  variants = [parse_variant(v) for v in args.variant]
  rates: dict[tuple[str, str], list[float]] = {}
  ratios: dict[tuple[str, str], list[float]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    for round_ in range(args.rounds):
      for name, env in variants:
        out = pathlib.Path(tmp) / f"{name}_{round_}.json"
        subprocess.run([sys.executable, "-m", "jaxcnn.bench", f"--json={out}", *bench_args], cwd=ROOT, check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}, capture_output=True)
        for record in json.loads(out.read_text()):
          rates.setdefault((record["model"], name), []).extend(record["images_per_sec_runs"])
          if record.get("ratio"):
            ratios.setdefault((record["model"], name), []).append(record["ratio"])
  models = dict.fromkeys(model for model, _ in rates)
  print(f"{'model':<12} {'variant':<24} {'median img/s':>12} {'vs first':>8} {'vs PyTorch':>10}  runs")
  for model in models:
    first = statistics.median(rates[(model, variants[0][0])])
    for name, _ in variants:
      runs = rates[(model, name)]
      versus = statistics.median(ratios[(model, name)]) if (model, name) in ratios else float("nan")
      print(f"{model:<12} {name:<24} {statistics.median(runs):>12.1f} {statistics.median(runs) / first:>8.2f} "
            f"{versus:>10.2f}  "
            f"{' '.join(f'{r:.0f}' for r in runs)}")


if __name__ == "__main__":
  main()
