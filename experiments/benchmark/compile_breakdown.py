"""Where a model's start-up goes before its first step: parameter init, lowering and compiling the train step.

  python experiments/benchmark/compile_breakdown.py --models=googlenet,resnet50 [--batch_size=8] [--nocompile]

For each model: the seconds of `create_train_state` (a jitted `model.init`), of lowering the train step, and
of compiling it, and the lowered program's size: StableHLO characters and operations, convolutions among them.
Compilation goes through no persistent cache (this measures compiling).
"""

import collections
import functools
import re
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["googlenet"], "Registered model names.")
flags.DEFINE_integer("batch_size", 8, "Batch of the compiled step.", lower_bound=1)
flags.DEFINE_bool("compile", True, "Also compile the train step (the longest part).")


def main(argv):
  del argv
  from jaxcnn import fast_forms

  fast_forms.enable()
  from jaxcnn import models, optim, parallel, train
  from jaxcnn.bench import step as bench_step

  for name in FLAGS.models:
    config = bench_step.bench_config(name, FLAGS.batch_size, "float32", "pmap", 0, "synthetic")
    shape = bench_step.default_input(name)
    strategy = parallel.strategy("pmap")
    start = time.perf_counter()
    state = train.create_train_state(
      config, models.create(name, num_classes=10), shape, optim.create(config, steps_per_epoch=10)
    )
    init_seconds = time.perf_counter() - start
    batch = strategy.put_batch(
      {"image": np.zeros((FLAGS.batch_size, *shape), np.float32), "label": np.zeros(FLAGS.batch_size, np.int32)}
    )
    step = strategy.compile(
      functools.partial(train.train_step, options=train.StepOptions.from_config(config)), donate_state=True
    )
    start = time.perf_counter()
    lowered = step.lower(strategy.put_state(state), batch)
    lower_seconds = time.perf_counter() - start
    text = lowered.as_text()
    ops = collections.Counter(re.findall(r"(stablehlo\.[a-z_]+)", text))
    line = (
      f"{name}: init {init_seconds:.1f} s, lower {lower_seconds:.1f} s, StableHLO {len(text):,} chars, "
      f"{sum(ops.values()):,} ops, {ops['stablehlo.convolution']} convolutions"
    )
    if FLAGS.compile:
      start = time.perf_counter()
      lowered.compile()
      line += f", compile {time.perf_counter() - start:.1f} s"
    print(line, flush=True)


if __name__ == "__main__":
  app.run(main)
