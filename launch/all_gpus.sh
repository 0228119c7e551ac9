#!/usr/bin/env bash
# Train on every GPU of this machine: one process, data-parallel over all local devices.
#   bash launch/all_gpus.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
# Expects: jaxcnn with its GPU extra. batch_size is global and must divide by the GPU count.
# Add --config.parallelism=shard_map to use jit over a device mesh instead of pmap.
set -euo pipefail
config=${1:?usage: all_gpus.sh CONFIG WORKDIR [flags]}; workdir=${2:?usage: all_gpus.sh CONFIG WORKDIR [flags]}
shift 2
# Let XLA take most of each GPU up front (default 75%): fewer allocator stalls for the big models.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec python -m jaxcnn.main --config="$config" --workdir="$workdir" --config.compute_dtype=bfloat16 "$@"
