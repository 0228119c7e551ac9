#!/usr/bin/env bash
# Several machines started by hand: run this once on every machine, with the same COORDINATOR.
#   COORDINATOR=host0:29500 NUM_PROCESSES=2 PROCESS_ID=0 bash launch/multi_node_manual.sh CONFIG WORKDIR [flags]
#   COORDINATOR=host0:29500 NUM_PROCESSES=2 PROCESS_ID=1 bash launch/multi_node_manual.sh CONFIG WORKDIR [flags]
# Expects: host0's port reachable from every machine (process 0 runs the coordinator there),
# WORKDIR on a shared filesystem, the same jaxcnn version and data everywhere. If one process
# dies, the others stop with an error after --heartbeat_timeout seconds (default 30).
set -euo pipefail
config=${1:?usage: see the header}; workdir=${2:?usage: see the header}
shift 2
exec python -m jaxcnn.main --config="$config" --workdir="$workdir" --config.compute_dtype=bfloat16 \
  --coordinator_address="${COORDINATOR:?set COORDINATOR=host:port}" \
  --num_processes="${NUM_PROCESSES:?set NUM_PROCESSES}" --process_id="${PROCESS_ID:?set PROCESS_ID}" "$@"
