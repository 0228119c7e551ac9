"""`--mode=eval`: restore a checkpoint and evaluate it on a whole split (padded and masked)."""

import json
import pathlib

from jaxcnn import reporting, train


def evaluate_checkpoint(config, workdir, step: int | None = None) -> dict:
  """Evaluates the checkpoint at `step` (default: latest) on `config.eval_split`.

  Writes WORKDIR/eval_results.json and returns the same dict: split, step, num_examples, loss,
  top1/top5 accuracy (fractions) and errors.
  """
  run = train.Run(config, workdir)
  run.restore(step)
  split = config.eval_split
  metrics = run.evaluate(run.strategy.put_state(run.state), split, "eval")
  expected = len(run.dataset.split(split))
  if metrics["eval_num_examples"] != expected:
    raise RuntimeError(f"evaluated {metrics['eval_num_examples']} examples of the {expected} in split {split!r}")
  results = {
      "split": split,
      "step": int(run.state.step),
      "num_examples": metrics["eval_num_examples"],
      "loss": metrics["eval_loss"],
      "top1_accuracy": metrics["eval_top1_accuracy"],
      "top5_accuracy": metrics["eval_top5_accuracy"],
      "top1_error": 1.0 - metrics["eval_top1_accuracy"],
      "top5_error": 1.0 - metrics["eval_top5_accuracy"],
      "model": config.model,
      "dataset": config.dataset,
      "checkpoint_dir": str(run.checkpointer.directory),
  }
  run.checkpointer.close()
  if reporting.is_reporter():
    pathlib.Path(workdir, "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{config.model} on {config.dataset}/{split} at step {results['step']}: {results['num_examples']} images, "
          f"top-1 {results['top1_accuracy']:.2%}, top-5 {results['top5_accuracy']:.2%}, loss {results['loss']:.4f}",
          flush=True)
  return results
