#!/usr/bin/env bash
# Image-folder pipelines side by side on a Kaggle-like folder: jaxcnn's first pass, the host's share of it
# (decode, head stored, views cut to uint8: what a GPU host's cores do) and cached rows (AlexNet, ResNet-50 and
# VGG-16 chains), jaxcnn's tf.data, and a PyTorch DataLoader with PIL doing each config's first-pass work (decode,
# AlexNet: Resize 256, CenterCrop 256; ResNet-50, VGG-16: Resize to a shorter side drawn from 256-480, 256-512;
# then RandomCrop 224, flip, to a uint8 tensor batch) on as many worker processes as cores. Alternating repeats,
# one process per measurement, the median of each printed at the end, and each config's first-pass host share over
# its DataLoader's rate. Run with nothing else on the machine.
#
#   experiments/benchmark/folder_pipeline.sh [NUM_IMAGES=2000] [REPEATS=3] [BATCH=128] [CONFIGS="alexnet resnet50 vgg16"]
set -euo pipefail
cd "$(dirname "$0")/../.."
NUM=${1:-2000}
REPEATS=${2:-3}
BATCH=${3:-128}
CONFIGS=${4:-alexnet resnet50 vgg16}
PY=${JAXCNN_PYTHON:-.venv/bin/python}
WORK=$(mktemp -d /tmp/jaxcnn-folder-bench-XXXX)
trap 'rm -rf "$WORK"' EXIT
BATCHES=$(( NUM / BATCH - 1 ))  # one epoch, the first batch untimed
HAS_TF=$($PY -c 'import importlib.util as u; print(int(u.find_spec("tensorflow") is not None))')
HAS_TORCH=$($PY -c 'import importlib.util as u; print(int(u.find_spec("torch") is not None))')
export TF_CPP_MIN_LOG_LEVEL=2
$PY experiments/benchmark/folder_pipeline.py make "$WORK/folder" --num="$NUM"
echo "folder: $NUM JPEGs, 320-500 px, quality 75; batch $BATCH, $BATCHES timed batches; $(nproc) cores; $(date -u +%FT%TZ)"
OUT="$WORK/results.jsonl"
for repeat in $(seq "$REPEATS"); do
  for config in $CONFIGS; do
    $PY experiments/benchmark/folder_pipeline.py jaxcnn "$WORK/folder" --config="$config" --batch="$BATCH" \
      --batches="$BATCHES" 2>/dev/null | tail -1 | tee -a "$OUT"
    if [ "$HAS_TF" = 1 ]; then
      $PY experiments/benchmark/folder_pipeline.py tfdata "$WORK/folder" --config="$config" --batch="$BATCH" \
        --batches="$BATCHES" 2>/dev/null | tail -1 | tee -a "$OUT"
    fi
    if [ "$HAS_TORCH" = 1 ]; then
      $PY experiments/benchmark/folder_pipeline.py torch "$WORK/folder" --config="$config" --batch="$BATCH" \
        --batches="$BATCHES" 2>/dev/null | tail -1 | tee -a "$OUT"
    fi
  done
done
$PY - "$OUT" <<'PY'
import collections, json, statistics, sys
rows = collections.defaultdict(list)
cores = 1
for line in open(sys.argv[1]):
  r = json.loads(line)
  cores = r.get("cores", cores)
  for k, v in r.items():
    if k.endswith("images_per_sec"):
      rows[(r["config"], k.replace("_images_per_sec", ""))].append(v)
print(f"\nmedians over repeats ({cores} cores): images/s (per core)")
for (config, kind), values in sorted(rows.items()):
  m = statistics.median(values)
  print(f"{config:10s} {kind:16s} {m:9.0f} ({m / cores:7.0f} per core)   runs: {', '.join(f'{v:.0f}' for v in values)}")
for config in dict.fromkeys(config for config, _ in rows):
  host, torch = rows.get((config, "first_pass_host")), rows.get((config, "torch"))
  if host and torch:
    ratio = statistics.median(host) / statistics.median(torch)
    print(f"{config} first pass, the host's share / PyTorch DataLoader ({cores} workers): {ratio:.2f}x")
PY
