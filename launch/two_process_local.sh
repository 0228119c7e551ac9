#!/usr/bin/env bash
# Try a multi-process run on one machine, no GPU needed: two processes with 4 CPU devices each,
# joined through jax.distributed on localhost (gloo collectives), training the small LeNet-5.
#   bash launch/two_process_local.sh [WORKDIR] [--config.FIELD=VALUE ...]
# Expects: jaxcnn installed (README), Fashion-MNIST found as for the quickstart. Logs: WORKDIR/process_{0,1}.log.
set -euo pipefail
workdir=${1:-workdirs/two_process}
shift || true
mkdir -p "$workdir"
port=${PORT:-29500}
export XLA_FLAGS="--xla_force_host_platform_device_count=4"
pids=()
for id in 0 1; do
  python -m jaxcnn.main --config=lenet5 --workdir="$workdir" --config.num_epochs=2 \
    --coordinator_address="127.0.0.1:$port" --num_processes=2 --process_id=$id "$@" >"$workdir/process_$id.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
tail -n 3 "$workdir/process_0.log"
exit $status
