"""A/B of environment settings (XLA_FLAGS, thread counts) on `jaxcnn.bench`, interleaved on a shared machine.

XLA reads its flags once per process, so each variant runs as its own `python -m jaxcnn.bench`; the
variants take turns, round after round, so that a change in the machine's load hits them alike. Prints
each variant's median images/s per model, its ratio to the first variant, and, with `--compare=pytorch`
among the bench arguments, the median jaxcnn/PyTorch ratio (taken side by side, the steadier figure).

  python experiments/benchmark/ab_env.py --rounds=3 \\
      --variant="default=" --variant="no_eigen_threads=XLA_FLAGS=--xla_cpu_multi_thread_eigen=false" \\
      -- --models=lenet5,resnet20 --repeats=3 --steps=10

A variant is NAME=[VAR=VALUE[;VAR=VALUE...]]; everything after `--` goes to jaxcnn.bench.

`--each_xla_flag` A/Bs the XLA flags jaxcnn.fast_forms adds for this interpreter's jaxlib
(jaxcnn/xla_flags.py) instead: all of them ("table", what training gets), none (XLA's defaults),
and each one left out, with the fast layer forms on in every variant. Run it with each Python
environment's interpreter to measure each jaxlib version:

  /path/to/venv/bin/python experiments/benchmark/ab_env.py --each_xla_flag --rounds=3 \\
      -- --models=lenet5,simple_cnn,resnet20,alexnet --batch_size=128 --repeats=3
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
sys.path.insert(0, str(ROOT))

import jaxlib  # noqa: E402

from jaxcnn import xla_flags  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict, list[str]]:
  """NAME=[VAR=VALUE;...] -> (name, environment, no extra bench arguments)."""
  name, _, settings = text.partition("=")
  env = dict(item.split("=", 1) for item in settings.split(";") if item)
  return name, env, []


def xla_flag_variants() -> list[tuple[str, dict, list[str]]]:
  """This jaxlib's flags from jaxcnn.fast_forms' table: all, none and each left out, set in XLA_FLAGS for a bench
  that adds none itself (--nofast_forms_xla_flags) and keeps its fast layer forms."""
  table = xla_flags.flags_for(jaxlib.__version__)
  subsets = [("table", table), ("none", ())]
  subsets += [
    (f"without_{xla_flags.flag_name(left_out)}", tuple(flag for flag in table if flag != left_out))
    for left_out in table
  ]
  return [(name, {"XLA_FLAGS": " ".join(subset)}, ["--nofast_forms_xla_flags"]) for name, subset in subsets]


def describe(variant: tuple[str, dict, list[str]]) -> str:
  name, env, extra_args = variant
  return " ".join([f"{name}:", *(f"{key}={value!r}" for key, value in env.items()), *extra_args])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", action="append", default=[], help="NAME=[VAR=VALUE;...]")
  parser.add_argument("--each_xla_flag", action="store_true", help="A/B jaxcnn.fast_forms' XLA flags for this jaxlib.")
  parser.add_argument("--rounds", type=int, default=3)
  args, bench_args = parser.parse_known_args()
  bench_args = [a for a in bench_args if a != "--"]
  variants = [parse_variant(v) for v in args.variant] + (xla_flag_variants() if args.each_xla_flag else [])
  if not variants:
    parser.error("give at least one --variant, or --each_xla_flag")
  print(f"jaxlib {jaxlib.__version__} ({sys.executable}); variants:", " | ".join(map(describe, variants)), flush=True)
  rates: dict[tuple[str, str], list[float]] = {}
  ratios: dict[tuple[str, str], list[float]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    for round_ in range(args.rounds):
      for name, env, extra_args in variants:
        out = pathlib.Path(tmp) / f"{name}_{round_}.json"
        subprocess.run(
          [sys.executable, "-m", "jaxcnn.bench", f"--json={out}", *extra_args, *bench_args],
          cwd=ROOT,
          check=True,
          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
          capture_output=True,
        )
        for record in json.loads(out.read_text()):
          rates.setdefault((record["model"], name), []).extend(record["images_per_sec_runs"])
          if record.get("ratio"):
            ratios.setdefault((record["model"], name), []).append(record["ratio"])
  models = dict.fromkeys(model for model, _ in rates)
  width = max(len("variant"), *(len(name) for name, _, _ in variants))
  print(f"{'model':<12} {'variant':<{width}} {'median img/s':>12} {'vs first':>8} {'vs PyTorch':>10}  runs")
  for model in models:
    first = statistics.median(rates[(model, variants[0][0])])
    for name, _, _ in variants:
      runs = rates[(model, name)]
      versus = statistics.median(ratios[(model, name)]) if (model, name) in ratios else float("nan")
      print(
        f"{model:<12} {name:<{width}} {statistics.median(runs):>12.1f} {statistics.median(runs) / first:>8.2f} "
        f"{versus:>10.2f}  "
        f"{' '.join(f'{r:.0f}' for r in runs)}"
      )


if __name__ == "__main__":
  main()
