"""Per-step training losses of a named config on a data folder, through jaxcnn's own train step: how a recipe's
first steps behave at a batch users pick (the epoch means in metrics.jsonl hide the swings).

  python experiments/recipes/step_losses.py --config=alexnet --data_dir=PETS --batch_size=8 \
      [--epochs=3] [--set=model_options.hidden_bias=1.0 ...]

--data_dir is an image folder (train/<class>/...); each --set is a FIELD=VALUE override (a Python literal).
"""

import ast
import functools

from absl import app, flags

from jaxcnn import configs, train

flags.DEFINE_string("config", "alexnet", "Named config.")
flags.DEFINE_string("data_dir", None, "Image folder.", required=True)
flags.DEFINE_integer("batch_size", 8, "Global batch.")
flags.DEFINE_integer("epochs", 3, "Epochs to run.")
flags.DEFINE_multi_string("set", [], "FIELD=VALUE overrides (Python literals).")
FLAGS = flags.FLAGS


def main(_):
  config = configs.get(FLAGS.config)
  config.update(dataset="image_folder", data_dir=FLAGS.data_dir, batch_size=FLAGS.batch_size, num_epochs=FLAGS.epochs)
  for item in FLAGS.set:
    field, value = item.split("=", 1)
    config.update_from_flattened_dict({field: ast.literal_eval(value)})
  run = train.Run(config, "/tmp/step_losses_run")
  strategy = run.strategy
  step = strategy.compile(functools.partial(train.train_step, options=run.step_options), donate_state=True)
  state, losses = strategy.put_state(run.new_state()), []
  for epoch in range(FLAGS.epochs):
    for batch in run.input.train_batches(epoch):
      state, sums = step(state, strategy.put_batch(batch))
      sums = strategy.to_host(sums)
      losses.append(float(sums["loss"] / sums["count"]))
  print(f"{FLAGS.config} batch {FLAGS.batch_size} {' '.join(FLAGS.set)}: " + " ".join(f"{x:.3f}" for x in losses))


if __name__ == "__main__":
  app.run(main)
