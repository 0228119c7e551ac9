"""Runs side by side: `python -m jaxcnn.compare W1 W2 ... [--out=DIR]`.

Prints a Markdown table (model, parameters, multiply-adds, epochs, training time, images/s, best validation and
test top-1/top-5 accuracy) and writes it to DIR/comparison.md and .csv, with DIR/comparison.png: the runs'
validation accuracy and loss per epoch on shared axes (a run without a validation split: its training curves,
dashed). Only the workdirs are read: config.json, metrics.jsonl, run_summary.json (parameters and multiply-adds,
written at the first step) and eval_results.json (`--mode=eval`; the "test" columns name its split when that is
not "test"). Training time is the epochs' training loops (validation and start-up not counted); images/s is
training images over that time; the best validation epoch is the one of highest top-1 accuracy.
"""

import argparse
import csv
import json
import pathlib
import sys

COLUMNS = (
  "run",
  "model",
  "params",
  "mult-adds",
  "epochs",
  "train time (s)",
  "images/s",
  "best val top-1",
  "best val top-5",
  "test top-1",
  "test top-5",
)


def _json(path: pathlib.Path) -> dict | None:
  return json.loads(path.read_text()) if path.is_file() else None


def read_run(workdir) -> dict:
  """One row of the table, and the run's per-epoch records (`records`); a ValueError for what is no workdir."""
  workdir = pathlib.Path(workdir)
  config = _json(workdir / "config.json")
  if config is None:
    raise ValueError(f"{workdir} is not a jaxcnn workdir (no config.json)")
  metrics = workdir / "metrics.jsonl"
  lines = metrics.read_text().splitlines() if metrics.is_file() else []
  by_epoch = {r["epoch"]: r for r in map(json.loads, filter(str.strip, lines))}  # a resumed epoch: its last record
  if not by_epoch:
    raise ValueError(f"{workdir} has no finished epoch (no records in metrics.jsonl)")
  records = [by_epoch[e] for e in sorted(by_epoch)]
  summary = _json(workdir / "run_summary.json") or {}
  results = _json(workdir / "eval_results.json") or {}
  seconds = sum(r["epoch_seconds"] for r in records)
  validated = [r for r in records if "validation_top1_accuracy" in r]
  best = max(validated, key=lambda r: r["validation_top1_accuracy"], default={})
  split = results.get("split", "test")
  note = "" if split == "test" else f" ({split})"
  return {
    "run": workdir.name,
    "model": config.get("model", "?"),
    "params": summary.get("params"),
    "mult-adds": summary.get("macs"),
    "epochs": records[-1]["epoch"],
    "train time (s)": round(seconds, 1),
    "images/s": round(sum(r.get("train_num_examples", 0) for r in records) / max(seconds, 1e-9)),
    "best val top-1": best.get("validation_top1_accuracy"),
    "best val top-5": best.get("validation_top5_accuracy"),
    "test top-1": results.get("top1_accuracy"),
    "test top-5": results.get("top5_accuracy"),
    "note": note,
    "records": records,
  }


def _cell(row: dict, column: str) -> str:
  value = row[column]
  if value is None:
    return "-"
  if column.startswith(("best", "test")):
    return f"{value:.2%}" + (row["note"] if column.startswith("test") else "")
  return f"{value:,}" if isinstance(value, (int, float)) else str(value)


def markdown(rows: list[dict]) -> str:
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(_cell(row, c) for c in COLUMNS) + " |" for row in rows]
  return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> None:
  """Validation top-1 accuracy and loss per epoch of every run on shared axes (training curves, dashed, for a run
  without validation)."""
  from jaxcnn import reporting

  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for row in rows:
    records = row["records"]
    split = "validation" if any("validation_top1_accuracy" in r for r in records) else "train"
    epochs = [r["epoch"] for r in records]
    label = f"{row['run']} ({row['model']})" + ("" if split == "validation" else ", train")
    for ax, metric in zip(axes, ("top1_accuracy", "loss")):
      values = [r.get(f"{split}_{metric}", float("nan")) for r in records]
      ax.plot(epochs, values, marker=".", linestyle="-" if split == "validation" else "--", label=label)
  for ax, title in zip(axes, ("validation top-1 accuracy", "validation loss")):
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="jaxcnn.compare", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdirs", nargs="+", help="training workdirs")
  parser.add_argument("--out", default=".", help="where comparison.md, .csv and .png go (default: here)")
  args = parser.parse_args(argv)
  try:
    rows = [read_run(workdir) for workdir in args.workdirs]
  except (ValueError, OSError) as e:
    sys.exit(f"jaxcnn.compare: error: {' '.join(str(e).split())}")
  table = markdown(rows)
  print(table)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "comparison.md").write_text(table + "\n")
  with open(out / "comparison.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    writer.writerows([row[c] for c in COLUMNS] for row in rows)
  plot(rows, out / "comparison.png")
  print(f"written: {out / 'comparison.md'}, comparison.csv, comparison.png", flush=True)


if __name__ == "__main__":
  main()
