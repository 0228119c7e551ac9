#!/usr/bin/env bash
# README command 1: install everything, train LeNet-5 on Fashion-MNIST, evaluate it from its checkpoint.
#   bash launch/quickstart.sh [WORKDIR] [extra flags for jaxcnn.main, e.g. --config.num_epochs=2]
# Installs Debian's dataset-fashion-mnist when apt-get is there (root or sudo); elsewhere the data comes
# from the TFDS download. Re-running resumes/finishes the run in WORKDIR and re-evaluates it.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/_install.sh
workdir="${1:-workdirs/lenet5}"
shift || true
data=/usr/share/datasets/fashion-mnist
if [ ! -e "$data/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  if ! { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
    echo "warning: could not install dataset-fashion-mnist with apt; falling back to the TFDS download" >&2
  fi
fi
start=$(date +%s)
"$venv/bin/python" -m jaxcnn.main --config=lenet5 --workdir="$workdir" "$@"
"$venv/bin/python" -m jaxcnn.main --config=lenet5 --workdir="$workdir" --mode=eval "$@"
echo "train + eval took $(( $(date +%s) - start )) s; results in $workdir/eval_results.json"
