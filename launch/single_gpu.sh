#!/usr/bin/env bash
# Train on one GPU of this machine (GPU_ID, default 0): all_gpus.sh with only that GPU visible.
#   bash launch/single_gpu.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
# Expects: jaxcnn installed with its GPU extra (pip install -e ".[gpu]"), data reachable (see README).
# Re-running the same command resumes from WORKDIR's checkpoints.
set -euo pipefail
export CUDA_VISIBLE_DEVICES=${GPU_ID:-0}
exec bash "$(dirname "$0")/all_gpus.sh" "$@"
