"""The README's commands, run as users type them: every `python -m jaxcnn.` command of its "Running", "Transfer
learning and pretrained weights" and "Your own data" sections goes through the command line in a subprocess
(train, then `--mode=eval` on the same workdir), on tiny files in the real formats.

A test changes a README command only in what is the user's own: the data and file paths (PETS, CIFAR, W1,
runs/..., /tmp/..., resnet34.pth, ...) become files under tmp_path, `--config.data_dir` is added where the
command has none (the user's data is in the default place, ours in tmp_path), and `--config.num_epochs` and
`--config.batch_size` may be set (`localise` refuses anything else). A scenario that needs any other override to
run is a bug in the product or the README, and fails here.

`test_every_readme_command_is_run_by_a_scenario` fails when the README has a command that no scenario runs, or a
scenario runs a command the README no longer has.
"""

import functools
import json
import math
import pathlib
import re
import shlex

import numpy as np
import pytest
from conftest import REPO, run_jaxcnn, write_idx_dataset
from data_fixtures import (
  write_cifar_python,
  write_image_folder,
  write_imagenet2012_tfds,
  write_torchvision_resnet,
)
from PIL import Image

from jaxcnn.data import idx

README = REPO / "README.md"
SECTIONS = ("Running", "Transfer learning and pretrained weights", "Your own data")

# The README's commands, as `readme_commands` normalises them.
DEFAULT_TRAIN = "python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5"
DEFAULT_EVAL = "python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5 --mode=eval"
EVAL_STEP_ON_TRAIN = (
  "python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5 --mode=eval --step=2145 --config.eval_split=train"
)
STEP_SCHEDULE = (
  "python -m jaxcnn.main --config=lenet5 --workdir=/tmp/run --config.batch_size=256 --config.schedule=step "
  "--config.lr_boundaries_epochs='(5, 8)'"
)
PREDICT = "python -m jaxcnn.main --workdir=W --mode=predict --images=a.jpg,folder/"
STATS_DIR = "python -m jaxcnn.data.stats --dataset=image_folder --data_dir=DIR"
NEW_HEAD = (
  "python -m jaxcnn.main --config=lenet5 --workdir=W2 --config.init_from=W1 --config.freeze_backbone=True "
  "--config.classes='(5, 6, 7, 8, 9)'"
)
IMPORT_RESNET50 = "python -m jaxcnn.torchvision_weights --arch=resnet50 --pth=resnet50.pth --workdir=W3"
EVAL_RESNET50 = "python -m jaxcnn.main --workdir=W3 --mode=eval --config.data_dir=/path/to/imagenet"
PETS_ALEXNET = (
  "python -m jaxcnn.main --config=alexnet --config.dataset=image_folder --config.data_dir=PETS "
  "--workdir=runs/pets_alexnet"
)
CIFAR_ALEXNET = (
  "python -m jaxcnn.main --config=alexnet --config.dataset=cifar10 --config.data_dir=CIFAR "
  "--config.image_size=227 --workdir=runs/cifar_alexnet227"
)
CIFAR_VGG = (
  "python -m jaxcnn.main --config=vgg16 --config.dataset=cifar10 --config.data_dir=CIFAR "
  "--config.image_size=128 --workdir=runs/cifar_vgg128"
)
IMPORT_RESNET34 = (
  "python -m jaxcnn.torchvision_weights --arch=resnet34 --pth=resnet34.pth --workdir=runs/resnet34_tv --config=resnet34"
)
RESNET34_FROZEN = (
  "python -m jaxcnn.main --config=resnet34 --config.dataset=cifar100 --config.data_dir=CIFAR100 "
  "--config.image_size=224 --config.init_from=runs/resnet34_tv --config.freeze_backbone=True "
  "--workdir=runs/cifar100_frozen"
)
RESNET34_FINETUNED = (
  "python -m jaxcnn.main --config=resnet34 --config.dataset=cifar100 --config.data_dir=CIFAR100 "
  "--config.image_size=224 --config.init_from=runs/resnet34_tv --config.backbone_lr_multiplier=0.1 "
  "--workdir=runs/cifar100_finetuned"
)
FMNIST = {
  m: f"python -m jaxcnn.main --config={m} --config.dataset=fashion_mnist --workdir=runs/fmnist_{m}"
  for m in ("mlp", "simple_cnn", "lenet5")
}
FMNIST_EVAL = {m: f"python -m jaxcnn.main --workdir=runs/fmnist_{m} --mode=eval" for m in FMNIST}
COMPARE_FMNIST = (
  "python -m jaxcnn.compare runs/fmnist_mlp runs/fmnist_simple_cnn runs/fmnist_lenet5 --out=runs/fmnist_compare"
)
COMPARE_RESNET34 = "python -m jaxcnn.compare runs/cifar100_frozen runs/cifar100_finetuned --out=runs/cifar100_compare"
STATS_PETS = "python -m jaxcnn.data.stats --dataset=image_folder --data_dir=PETS"
PACK = "python -m jaxcnn.data.pack --config=alexnet --config.dataset=image_folder --config.data_dir=DIR"

# Every README command -> the test that runs it.
COMMANDS = {
  DEFAULT_TRAIN: "test_the_default_job_trains_then_evaluates",
  DEFAULT_EVAL: "test_the_default_job_trains_then_evaluates",
  EVAL_STEP_ON_TRAIN: "test_an_earlier_step_evaluates_on_another_split",
  PREDICT: "test_predict_ranks_the_classes_of_image_files",
  STEP_SCHEDULE: "test_the_step_schedule_divides_the_rate_at_its_epochs",
  NEW_HEAD: "test_a_new_head_on_another_runs_frozen_backbone",
  IMPORT_RESNET50: "test_torchvision_resnet50_weights_evaluate_on_imagenet",
  EVAL_RESNET50: "test_torchvision_resnet50_weights_evaluate_on_imagenet",
  PETS_ALEXNET: "test_alexnet_on_a_cats_and_dogs_folder",
  PACK: "test_alexnet_on_a_cats_and_dogs_folder",
  CIFAR_ALEXNET: "test_alexnet_and_vgg16_on_cifar10_pickles_upscaled",
  CIFAR_VGG: "test_alexnet_and_vgg16_on_cifar10_pickles_upscaled",
  IMPORT_RESNET34: "test_torchvision_resnet34_with_a_new_head_on_cifar100_at_224",
  RESNET34_FROZEN: "test_torchvision_resnet34_with_a_new_head_on_cifar100_at_224",
  RESNET34_FINETUNED: "test_torchvision_resnet34_with_a_new_head_on_cifar100_at_224",
  COMPARE_RESNET34: "test_torchvision_resnet34_with_a_new_head_on_cifar100_at_224",
  **dict.fromkeys(FMNIST.values(), "test_the_mlp_small_cnn_and_lenet5_on_fashion_mnist_idx"),
  **dict.fromkeys(FMNIST_EVAL.values(), "test_the_mlp_small_cnn_and_lenet5_on_fashion_mnist_idx"),
  COMPARE_FMNIST: "test_the_mlp_small_cnn_and_lenet5_on_fashion_mnist_idx",
  STATS_PETS: "test_colour_statistics_of_the_folder",
  STATS_DIR: "test_colour_statistics_of_the_folder",
}

# Flags whose values are the user's paths; the data ones must be given a tmp path, the others (workdirs) default
# to the same name under tmp_path.
DATA_FLAGS = ("--config.data_dir", "--data_dir", "--pth", "--images")
WORKDIR_FLAGS = ("--workdir", "--config.init_from")
# The only config fields a test may add or set (data_dir only where the command has none).
OVERRIDABLE = ("data_dir", "num_epochs", "batch_size")


def _sections(text: str) -> list[str]:
  """The bodies of the SECTIONS headings, each up to the next heading of its level or above (a `# comment` in a
  code block is no heading)."""
  lines, headings, fenced = text.splitlines(), [], False
  for number, line in enumerate(lines):
    fenced ^= line.startswith("```")
    heading = None if fenced else re.match(r"(#+) (.*)", line)
    if heading:
      headings.append((number, len(heading.group(1)), heading.group(2).strip()))
  bodies = []
  for i, (start, level, title) in enumerate(headings):
    if title in SECTIONS:
      end = next((number for number, other, _ in headings[i + 1 :] if other <= level), len(lines))
      bodies.append("\n".join(lines[start + 1 : end]))
  return bodies


def _normalise(command: str) -> str:
  """One line, a trailing `# comment` dropped, runs of spaces made one."""
  return " ".join(re.sub(r"\s#\s.*$", "", command).split())


@functools.cache
def readme_commands() -> tuple[str, ...]:
  """Every `python -m jaxcnn.` command in SECTIONS: each line of their ```bash blocks (continuations joined,
  `for V in A B; do CMD; done` expanded), and each inline `python -m jaxcnn. ...` of their prose."""
  found = []
  for body in _sections(README.read_text()):
    prose = re.sub(r"```.*?```", "", body, flags=re.S)
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
      for line in block.replace("\\\n", " ").splitlines():
        line = _normalise(line)
        loop = re.fullmatch(r"for (\w+) in ([^;]+); do (.+?); done", line)
        if loop:
          name, values, body_command = loop.groups()
          found += [re.sub(rf"\$\{{?{name}\}}?", value, body_command) for value in values.split()]
        elif line.startswith("python -m jaxcnn."):
          found.append(line)
    found += [_normalise(span) for span in re.findall(r"`(python -m jaxcnn\.[^`]*)`", " ".join(prose.split()))]
  return tuple(dict.fromkeys(found))


def localise(command: str, tmp_path: pathlib.Path, places: dict, **overrides) -> tuple[str, list[str]]:
  """(module, arguments) of a README command, as this test runs it: the values of DATA_FLAGS (each of --images'
  comma-separated ones) and of --step replaced by `places[value]`; workdirs by `places[value]`, else the same
  name under tmp_path; `overrides` (OVERRIDABLE fields only) set or added as --config.FIELD=VALUE, data_dir only
  where the command has none."""
  assert command in readme_commands(), f"not a command of the README (any more?): {command}"
  assert set(overrides) <= set(OVERRIDABLE), f"a scenario may not override {set(overrides) - set(OVERRIDABLE)}"
  python, dash_m, module, *tokens = shlex.split(command)
  assert (python, dash_m) == ("python", "-m"), command
  args = []
  for token in tokens:
    flag, equals, value = token.partition("=")
    if flag in DATA_FLAGS:
      value = ",".join(str(places[v]) for v in value.split(","))
    elif flag in WORKDIR_FLAGS:
      value = str(places.get(value, tmp_path / value.lstrip("/")))
    elif flag == "--step":  # a step of the user's run: the tiny run's is another number, like a path is
      value = str(places[value])
    field = flag.removeprefix("--config.")
    if field in overrides and field != "data_dir":
      value = str(overrides.pop(field))
    args.append(f"{flag}{equals}{value}")
  if "data_dir" in overrides:
    assert not any(a.startswith("--config.data_dir=") for a in args), f"{command} names its data_dir: use places"
  args += [f"--config.{field}={value}" for field, value in overrides.items()]
  return module, args


def run_readme(command: str, tmp_path: pathlib.Path, places: dict | None = None, **overrides):
  """Runs a README command (see `localise`) from tmp_path; asserts exit code 0. Returns the CompletedProcess."""
  module, args = localise(command, tmp_path, places or {}, **overrides)
  result = run_jaxcnn(*args, module=module, cwd=tmp_path)
  assert result.returncode == 0, (
    f"{command}\n  ran as: python -m {module} {shlex.join(args)}\n  exit {result.returncode}; last lines:\n"
    + "\n".join((result.stdout + result.stderr).splitlines()[-25:])
  )
  return result


def start_line(out: str, name: str) -> str:
  """The text after `  NAME: ` on the one start line (before the first epoch) that has it."""
  start = out.split("\nepoch ")[0]
  found = [line.split(": ", 1)[1] for line in start.splitlines() if line.startswith(f"  {name}: ")]
  assert len(found) == 1, f"{len(found)} start lines '  {name}: ...' in:\n{start}"
  return found[0]


def counts(train: int, test: int, validation: int = 0) -> str:
  return f"train {train}, test {test}{f', validation {validation}' if validation else ''} images"


def assert_trained(
  result,
  workdir: pathlib.Path,
  *,
  dataset: str,
  splits: str,
  input_shape: str,
  model: str,
  num_classes: int,
  params: int = 0,
) -> dict:
  """What a user reads at the start of a training run and in its metrics.jsonl: the data line (the dataset, the
  images per split as `counts` writes them, the classes), the input size, both augmentation chains, the model
  and its parameter count (`params`, when known), the learning rate, the memory plan; a finite first-epoch
  training loss below 2 ln(num_classes) + 1 (no divergence). Returns the first epoch's metrics."""
  out = result.stdout
  line = start_line(out, "data")
  assert line.startswith(f"{dataset} from ") and line.endswith(f": {splits}; {num_classes} classes"), line
  assert start_line(out, "input").startswith(f"{input_shape} "), start_line(out, "input")
  for chain in ("train augmentation", "eval augmentation"):
    assert start_line(out, chain), chain
  shown = re.match(rf"{model} \(([\d,]+) parameters[;)]", start_line(out, "model"))  # then its options, if any
  assert shown, start_line(out, "model")
  if params:
    assert int(shown.group(1).replace(",", "")) == params, start_line(out, "model")
  assert re.match(r"[\d.e-]+[ ,]", start_line(out, "learning rate")), start_line(out, "learning rate")
  assert re.match(r"train step [\d.]+ [KMG]iB, \w+ eval step [\d.]+ [KMG]iB", start_line(out, "memory"))
  first = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
  assert first["epoch"] == 1
  loss = first["train_loss"]
  assert math.isfinite(loss) and loss < 2 * math.log(num_classes) + 1, f"first epoch's train_loss {loss}"
  return first


def assert_evaluated(workdir: pathlib.Path, split: str, num_examples: int, step: int | None = None) -> dict:
  """eval_results.json as a user checks it: the split asked for, every one of its images, a finite loss,
  accuracies in [0, 1] (and the checkpoint step asked for)."""
  results = json.loads((workdir / "eval_results.json").read_text())
  assert results["split"] == split and results["num_examples"] == num_examples, results
  assert math.isfinite(results["loss"]), results
  assert 0 <= results["top1_accuracy"] <= results["top5_accuracy"] <= 1, results
  if step is not None:
    assert results["step"] == step, results
  return results


def evaluate(tmp_path: pathlib.Path, workdir: pathlib.Path, sizes: dict[str, int]) -> dict:
  """`python -m jaxcnn.main --workdir=W --mode=eval` (the README's form: the config stored in the workdir), then
  `assert_evaluated` on the split that config names (`eval_split`: "test", or "validation" for the papers' ImageNet
  protocol), whose fixture has `sizes[split]` images."""
  result = run_jaxcnn(f"--workdir={workdir}", "--mode=eval", cwd=tmp_path)
  assert result.returncode == 0, "\n".join((result.stdout + result.stderr).splitlines()[-25:])
  split = json.loads((workdir / "config.json").read_text())["eval_split"]
  return assert_evaluated(workdir, split, sizes[split])


def test_every_readme_command_is_run_by_a_scenario():
  commands = readme_commands()
  unmapped = [c for c in commands if c not in COMMANDS]
  assert not unmapped, "README commands no scenario runs (add them to COMMANDS and a test):\n" + "\n".join(unmapped)
  stale = [c for c in COMMANDS if c not in commands]
  assert not stale, "scenario commands the README does not have (any more):\n" + "\n".join(stale)
  missing = {test for test in COMMANDS.values() if not callable(globals().get(test))}
  assert not missing, f"COMMANDS names tests that do not exist: {missing}"


def test_the_readme_parser_joins_continuations_expands_loops_and_drops_comments():
  assert DEFAULT_TRAIN in readme_commands() and "#" not in DEFAULT_TRAIN  # its README line has a comment
  assert STEP_SCHEDULE in readme_commands()  # a continued line, with a quoted tuple
  assert all(command in readme_commands() for command in FMNIST.values())  # the `for m in ...` loop
  assert PREDICT in readme_commands()  # inline, in the prose


# The default job's data: Fashion-MNIST IDX files, 300 training and 103 test images (no batch divides 103).
FMNIST_TRAIN, FMNIST_TEST = 300, 103


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory) -> pathlib.Path:
  return write_idx_dataset(tmp_path_factory.mktemp("fashion_mnist"), num_train=FMNIST_TRAIN, num_test=FMNIST_TEST)


@pytest.fixture(scope="module")
def default_job(tmp_path_factory, fmnist_dir):
  """The README's first command (the default job, lenet5: all 300 images, 10 epochs of 2 steps of 128): its
  workdir and process."""
  tmp_path = tmp_path_factory.mktemp("default_job")
  result = run_readme(DEFAULT_TRAIN, tmp_path, data_dir=fmnist_dir)
  return tmp_path / "tmp/lenet5", result


# What a LeNet-5 run on the Fashion-MNIST files says of itself (`assert_trained`).
LENET5_ON_FMNIST = dict(
  dataset="fashion_mnist",
  splits=counts(FMNIST_TRAIN, FMNIST_TEST),
  input_shape="28x28x1",
  model="lenet5",
  num_classes=10,
  params=61_706,
)


@pytest.mark.slow
@pytest.mark.e2e
def test_the_default_job_trains_then_evaluates(default_job, fmnist_dir):
  workdir, result = default_job
  assert_trained(result, workdir, **LENET5_ON_FMNIST)
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 10  # lenet5's 10 epochs
  # From the directory the training ran in, so that /tmp/lenet5 is the same workdir; --config=lenet5 (no stored
  # config) needs the data_dir the user's default place stands for.
  run_readme(DEFAULT_EVAL, workdir.parents[1], data_dir=fmnist_dir)
  assert_evaluated(workdir, "test", FMNIST_TEST, step=10 * (FMNIST_TRAIN // 128))  # the last step: 10 epochs of 2


@pytest.mark.slow
@pytest.mark.e2e
def test_an_earlier_step_evaluates_on_another_split(default_job, fmnist_dir):
  workdir, _ = default_job
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert len(steps) >= 2, steps  # an earlier step than the latest is kept
  # --step=2145 is a step of the user's full run, a run-specific value like a path: it becomes the earliest step
  # the tiny run kept (20 steps in all). The command is otherwise run as written.
  run_readme(EVAL_STEP_ON_TRAIN, workdir.parents[1], {"2145": steps[0]}, data_dir=fmnist_dir)
  assert_evaluated(workdir, "train", FMNIST_TRAIN, step=steps[0])  # the default job holds out no validation split


@pytest.mark.slow
@pytest.mark.e2e
def test_predict_ranks_the_classes_of_image_files(default_job, tmp_path):
  workdir, _ = default_job
  write_image_folder(tmp_path / "folder", classes=("shirts",), per_class=2)  # an RGB and a grayscale JPEG, a .txt
  Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(tmp_path / "a.jpg")
  places = {"W": workdir, "a.jpg": tmp_path / "a.jpg", "folder/": tmp_path / "folder/"}
  result = run_readme(PREDICT, tmp_path, places)
  predictions = json.loads((workdir / "predictions.json").read_text())
  assert [pathlib.Path(p["image"]).name for p in predictions] == ["a.jpg", "0a.jpg", "1b.JPEG"], predictions
  names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
  for prediction in predictions:
    classes = [entry["class"] for entry in prediction["top"]]
    probabilities = [entry["probability"] for entry in prediction["top"]]
    assert len(set(classes)) == 5 and set(classes) <= set(names), prediction
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6, prediction
    assert sum(line.startswith(f"{prediction['image']}: ") for line in result.stdout.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.e2e
def test_the_step_schedule_divides_the_rate_at_its_epochs(tmp_path, fmnist_dir):
  result = run_readme(STEP_SCHEDULE, tmp_path, data_dir=fmnist_dir)  # 300 images: one step of 256 per epoch
  workdir = tmp_path / "tmp/run"
  assert_trained(result, workdir, **LENET5_ON_FMNIST)
  assert "step" in start_line(result.stdout, "learning rate"), start_line(result.stdout, "learning rate")
  rates = [json.loads(line)["learning_rate"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert len(rates) == 10, rates
  # The rate each epoch ended with: divided by 10 (lr_decay_factor) from epoch 6 and again from epoch 9.
  assert rates[1:5] == [rates[1]] * 4 and rates[5:8] == [pytest.approx(rates[1] / 10)] * 3, rates
  assert rates[8:] == [pytest.approx(rates[1] / 100)] * 2, rates
  evaluate(tmp_path, workdir, {"test": FMNIST_TEST})


@pytest.mark.slow
@pytest.mark.e2e
def test_a_new_head_on_another_runs_frozen_backbone(default_job, tmp_path, fmnist_dir):
  w1, _ = default_job  # the README's W1: "another run", the default job
  result = run_readme(NEW_HEAD, tmp_path, {"W1": w1}, data_dir=fmnist_dir)
  workdir = tmp_path / "W2"
  # write_idx_dataset's labels are uniform: count the five classes kept.
  kept = {
    split: int(np.isin(idx.load_split(fmnist_dir, prefix)[1], (5, 6, 7, 8, 9)).sum())
    for split, prefix in (("train", "train"), ("test", "t10k"))
  }
  assert_trained(
    result,
    workdir,
    dataset="fashion_mnist",
    splits=counts(kept["train"], kept["test"]),
    input_shape="28x28x1",
    model="lenet5",
    num_classes=5,
    params=61_706 - 84 * 5 - 5,  # the head has 5 outputs instead of 10
  )
  backbone = 61_706 - 84 * 10 - 10
  transfer_line = f"transfer: backbone ({backbone:,} parameters) from {w1}'s latest checkpoint, frozen; new head"
  assert f"{transfer_line} output (425 parameters)" in result.stdout, result.stdout
  results = evaluate(tmp_path, workdir, {"test": kept["test"]})
  assert results["top1_accuracy"] > 0.5, results  # chance is 0.2; W1's backbone tells these classes apart


@pytest.mark.slow
@pytest.mark.e2e
def test_torchvision_resnet50_weights_evaluate_on_imagenet(tmp_path):
  pytest.importorskip("torch")
  pth = write_torchvision_resnet(tmp_path / "resnet50.pth", 50)
  imagenet = write_imagenet2012_tfds(tmp_path / "imagenet", num_classes=2, train_per_class=2, num_validation=4)
  places = {"resnet50.pth": pth, "/path/to/imagenet": imagenet}  # TFDS-prepared from the train and val archives
  result = run_readme(IMPORT_RESNET50, tmp_path, places)
  assert "torchvision resnet50 -> jaxcnn resnet50 (1000 classes" in result.stdout, result.stdout
  run_readme(EVAL_RESNET50, tmp_path, places)
  assert_evaluated(tmp_path / "W3", "validation", 4, step=0)  # ImageNet's labelled held-out split


@pytest.fixture
def pets(tmp_path) -> pathlib.Path:
  """A messy cats-and-dogs folder: train/{cat,dog} with 15 images each, test/{cat,dog} with 4 each; JPEG, PNG and
  BMP in upper- and lower-case extensions, RGB, RGBA, grayscale, palette, CMYK and 16-bit modes, 40 to 320
  pixels a side, and the stray files such folders carry."""
  strays = ("notes.txt", "Thumbs.db", ".DS_Store")
  root = write_image_folder(tmp_path / "PetImages", per_class=15, size_range=(40, 320), strays=strays)
  return write_image_folder(root, splits=("test",), per_class=4, seed=1, size_range=(40, 320), strays=strays)


@pytest.mark.slow
@pytest.mark.e2e
def test_alexnet_on_a_cats_and_dogs_folder(tmp_path, pets):
  packed = run_readme(PACK, tmp_path, {"DIR": pets})  # the decode-once cache filled ahead of training
  assert re.search(r"^packed \d+ rows", packed.stdout, re.MULTILINE), packed.stdout
  assert "256x256 rows" in packed.stdout and "complete: no file is decoded" in packed.stdout, packed.stdout
  result = run_readme(PETS_ALEXNET, tmp_path, {"PETS": pets}, num_epochs=1, batch_size=8)
  cache_line = start_line(result.stdout, "data cache (train)")
  assert "256x256 rows" in cache_line and "complete: no file is decoded" in cache_line, cache_line
  workdir = tmp_path / "runs/pets_alexnet"
  assert_trained(
    result,
    workdir,
    dataset="image_folder",
    splits=counts(27, 8, 3),  # 10% of the 30 training images held out
    input_shape="224x224x3",  # photos: the paper's crop
    model="alexnet",
    num_classes=2,
    params=ALEXNET_PARAMS[2],
  )
  train_chain = start_line(result.stdout, "train augmentation")
  assert all(op in train_chain for op in ("random_crop(224)", "flip_lr", "pca_lighting")), train_chain
  eval_chain = start_line(result.stdout, "eval augmentation")
  assert "ten_crop(224)" in eval_chain, eval_chain
  evaluate(tmp_path, workdir, {"test": 8, "validation": 3})


# The paper's one-tower AlexNet (conv 96-256-384-384-256, FC 4096-4096) and VGG-16 (configuration D), by class
# count: the layers' weights and biases added up.
_ALEXNET_BODY = (11 * 11 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 384 + (3 * 3 * 384 + 1) * 384
_ALEXNET_BODY += (3 * 3 * 384 + 1) * 256 + (6 * 6 * 256 + 1) * 4096 + (4096 + 1) * 4096
ALEXNET_PARAMS = {k: _ALEXNET_BODY + (4096 + 1) * k for k in (2, 10)}
_VGG16_CONVS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512))
_VGG16_CONVS += ((512, 512),) * 5
_VGG16_BODY = sum((9 * i + 1) * o for i, o in _VGG16_CONVS) + (7 * 7 * 512 + 1) * 4096 + (4096 + 1) * 4096
VGG16_PARAMS = {k: _VGG16_BODY + (4096 + 1) * k for k in (10,)}


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize(
  "command,model,size,params",
  [(CIFAR_ALEXNET, "alexnet", 227, ALEXNET_PARAMS[10]), (CIFAR_VGG, "vgg16", 128, VGG16_PARAMS[10])],
  ids=["alexnet227", "vgg128"],
)
def test_alexnet_and_vgg16_on_cifar10_pickles_upscaled(command, model, size, params, tmp_path):
  cifar = write_cifar_python(tmp_path / "cifar-10-python", per_batch=8).parent  # 5 x 8 training, 8 test images
  result = run_readme(command, tmp_path, {"CIFAR": cifar}, num_epochs=1, batch_size=8)
  workdir = tmp_path / command.split("--workdir=")[1].split()[0]
  assert_trained(
    result,
    workdir,
    dataset="cifar10",
    splits=counts(36, 8, 4),
    input_shape=f"{size}x{size}x3",
    model=model,
    num_classes=10,
    params=params,
  )
  assert start_line(result.stdout, "input").endswith("(source: 32x32x3)"), start_line(result.stdout, "input")
  train_chain = start_line(result.stdout, "train augmentation")
  assert f"random_crop({size})" in train_chain and "flip_lr" in train_chain, train_chain
  evaluate(tmp_path, workdir, {"test": 8, "validation": 4})


def assert_compared(result, workdirs: list[pathlib.Path], params: list[int]) -> None:
  """`jaxcnn.compare`'s table: a row per workdir with its model's parameter count and its eval_results.json's top-1
  accuracy (the --out files written)."""
  rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
  assert len(rows) == len(workdirs), result.stdout
  for row, workdir, count in zip(rows, workdirs, params):
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    top1 = json.loads((workdir / "eval_results.json").read_text())["top1_accuracy"]
    split = json.loads((workdir / "eval_results.json").read_text())["split"]
    shown = f"{top1:.2%}" if split == "test" else f"{top1:.2%} ({split})"
    assert cells[0] == workdir.name and cells[2] == f"{count:,}" and cells[9] == shown, row


@pytest.mark.slow
@pytest.mark.e2e
def test_torchvision_resnet34_with_a_new_head_on_cifar100_at_224(tmp_path):
  pytest.importorskip("torch")
  pth = write_torchvision_resnet(tmp_path / "resnet34.pth", 34)  # ImageNet's 1000 classes
  cifar100 = write_cifar_python(tmp_path / "cifar-100-python", "cifar100", per_batch=20).parent  # 20 train, 20 test
  places = {"resnet34.pth": pth, "CIFAR100": cifar100}
  imported = run_readme(IMPORT_RESNET34, tmp_path, places)
  assert "torchvision resnet34 -> jaxcnn resnet34 (1000 classes" in imported.stdout, imported.stdout
  params = 21_797_672 - 900 * 513  # torchvision's 1000-class count, with a 100-class head
  workdirs = []
  for command in (RESNET34_FROZEN, RESNET34_FINETUNED):
    result = run_readme(command, tmp_path, places, num_epochs=1, batch_size=8)
    workdir = tmp_path / command.split("--workdir=")[1].split()[0]
    assert_trained(
      result,
      workdir,
      dataset="cifar100",
      splits=counts(18, 20, 2),
      input_shape="224x224x3",
      model="resnet34",
      num_classes=100,
      params=params,
    )
    training = "frozen" if command == RESNET34_FROZEN else "trained at 0.1x the learning rate"
    transfer_line = (
      rf"backbone \(21,284,672 parameters\) from \S*resnet34_tv's latest checkpoint, {training}; new head fc "
    )
    assert re.search(rf"transfer: {transfer_line}\(51,300 parameters\)", result.stdout), result.stdout
    evaluate(tmp_path, workdir, {"test": 20, "validation": 2})
    workdirs.append(workdir)
  assert_compared(run_readme(COMPARE_RESNET34, tmp_path), workdirs, [params, params])


@pytest.mark.slow
@pytest.mark.e2e
def test_the_mlp_small_cnn_and_lenet5_on_fashion_mnist_idx(tmp_path, fmnist_dir):
  """Each config as it is (its epochs and batch): `validation_size` auto holds out 10% where the config has
  not turned it off (lenet5, the default job, trains on every image); each evaluated; the three compared."""
  models = {"mlp": (30, 101_770), "simple_cnn": (30, 824_458), "lenet5": (0, 61_706)}
  for name, (validation, params) in models.items():
    result = run_readme(FMNIST[name], tmp_path, data_dir=fmnist_dir)
    workdir = tmp_path / f"runs/fmnist_{name}"
    assert_trained(
      result,
      workdir,
      dataset="fashion_mnist",  # the README: "on Fashion-MNIST"
      splits=counts(FMNIST_TRAIN - validation, FMNIST_TEST, validation),
      input_shape="28x28x1",
      model=name,
      num_classes=10,
      params=params,
    )
    run_readme(FMNIST_EVAL[name], tmp_path)  # the config stored in the workdir: its data_dir
    assert_evaluated(workdir, "test", FMNIST_TEST)
  workdirs = [tmp_path / f"runs/fmnist_{name}" for name in models]
  assert_compared(run_readme(COMPARE_FMNIST, tmp_path), workdirs, [params for _, params in models.values()])


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("command", [STATS_PETS, STATS_DIR], ids=["PETS", "DIR"])
def test_colour_statistics_of_the_folder(command, tmp_path, pets):
  folder = pets if command == STATS_PETS else write_image_folder(tmp_path / "flat", splits=("",), per_class=6)
  num_train = 30 if command == STATS_PETS else 12  # the training images: train/ (not test/), or every class folder
  result = run_readme(command, tmp_path, {"PETS": folder, "DIR": folder})
  written = folder / "jaxcnn_stats.json"
  assert f"image_folder: statistics of {num_train} training images written to {written}" in result.stdout
  stats = json.loads(written.read_text())
  assert stats["num_images"] == num_train, stats
  mean, std = np.array(stats["mean"]), np.array(stats["std"])
  assert mean.shape == std.shape == (3,) and np.all((0 < mean) & (mean < 1)) and np.all((0 < std) & (std < 0.5))
  eigval, eigvec = np.array(stats["pca_eigval"]), np.array(stats["pca_eigvec"])
  assert np.all(eigval > 0) and np.all(np.diff(eigval) <= 0), eigval  # descending, as AlexNet's lighting uses them
  np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-6)
