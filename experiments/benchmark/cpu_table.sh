#!/usr/bin/env bash
# The CPU table of BUILD_NOTES.md ("Speed on the CPU"), re-measured under the bench's protocol:
#   1. python -m jaxcnn.bench --models=lenet5,resnet20 --batch_size=128 --devices=1 --compare=pytorch
#      (its PyTorch column must be within 10% of the self-check's plain loop: a BENCH FAULT line otherwise);
#   2. the table: LeNet-5, small CNN, ResNet-20, AlexNet (small input), jaxcnn against PyTorch eager and
#      torch.compile, batch 128, float32, one CPU device, median of 5 ABBA repeats;
# on every stack given (a virtualenv with jaxcnn and torch; default: .venv, and .venv-py312 when it has torch).
# Every row printed names the CPU model (lscpu's "Model name"), the cores and the stack (Python, jax, jaxlib,
# torch); the raw output and JSON go to $OUT (default cpu_out/). Run it on a quiet machine (nothing else
# running: the load column shows the 1-minute load before and after each model). About 10 minutes per stack.
#   bash experiments/benchmark/cpu_table.sh [VENV ...]
#   SMALL=1 bash experiments/benchmark/cpu_table.sh      (a dry run: batch 16, 2 steps, 1 repeat; a minute)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-cpu_out}
mkdir -p "$out"
if [ $# -gt 0 ]; then
  venvs=("$@")
else
  venvs=(.venv)
  if [ -x .venv-py312/bin/python ] && .venv-py312/bin/python -c 'import torch' 2>/dev/null; then venvs+=(.venv-py312); fi
fi
if [ "${SMALL:-0}" = 1 ]; then
  sizes=(--batch_size=16 --repeats=1 --steps=2 --warmup=1) check_models=lenet5 table_models=lenet5,simple_cnn
else
  sizes=(--batch_size=128 --repeats=5) check_models=lenet5,resnet20 table_models=lenet5,simple_cnn,resnet20,alexnet
fi
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores"
echo "CPU: $cpu; $(date -u '+%F %T UTC'); load $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for venv in "${venvs[@]}"; do
  python="$venv/bin/python"
  stack=$("$python" -c 'import sys, jax, jaxlib, torch; print(f"Python {sys.version.split()[0]}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, torch {torch.__version__}")')
  name=$(basename "$venv")
  echo "=== $name: $stack"
  "$python" -m jaxcnn.bench --models="$check_models" "${sizes[@]}" --devices=1 --compare=pytorch \
    --json="$out/$name-check.json" 2>"$out/$name-check.err" | tee "$out/$name-check.txt" || status=1
  "$python" -m jaxcnn.bench --models="$table_models" "${sizes[@]}" --devices=1 --compare=pytorch \
    --json="$out/$name-table.json" 2>"$out/$name-table.err" | tee "$out/$name-table.txt" || status=1
  for part in check table; do
    CPU="$cpu" STACK="$stack" "$python" - "$out/$name-$part.json" "$part" <<'PY'
import json, os, sys
rows = json.load(open(sys.argv[1]))
na = lambda v, f: "n/a" if v is None else format(v, f)
print(f"| CPU | stack | {sys.argv[2]}: model | MMACs | jaxcnn img/s | PyTorch eager | ratio | torch.compile | ratio | plain loop (self-check) | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
  print(
    f"| {os.environ['CPU']} | {os.environ['STACK']} | {r['model']} | {r['macs'] / 1e6:.2f} | {r['images_per_sec']:,.1f} "
    f"| {na(r['pytorch_images_per_sec'], ',.1f')} | {na(r['ratio'], '.2f')} | {na(r['pytorch_compiled_images_per_sec'], ',.1f')} "
    f"| {na(r['compiled_ratio'], '.2f')} | {na(r['pytorch_plain_images_per_sec'], ',.1f')}{' FAULT' if r['bench_fault'] else ''} "
    f"| {r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |"
  )
PY
  done | tee "$out/$name-rows.md"
done
exit $status
