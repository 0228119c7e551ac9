#!/usr/bin/env bash
# N consecutive two-process trainings (2 processes x 4 CPU devices on this machine, jax.distributed over
# localhost with gloo), the default LeNet-5 job on Fashion-MNIST for two epochs at batch 128, for both
# parallelism=pmap and shard_map; each run has a time limit. Prints one line per run and a summary:
# finished (both processes exit 0), hung (time limit reached), failed (a non-zero exit).
#
#   launch/stress_two_process.sh N [TIME_LIMIT_SECONDS] [extra --config.FIELD=VALUE ...]
#
# Logs and workdirs under ${STRESS_DIR:-/tmp/jaxcnn_stress}; a hung run's processes get `py-spy dump`ed
# there first when py-spy is installed. PARALLELISMS="pmap" (or "shard_map") runs one strategy only.
set -u
N=${1:?usage: launch/stress_two_process.sh N [TIME_LIMIT_SECONDS] [--config.FIELD=VALUE ...]}
LIMIT=${2:-1200}
shift $(( $# >= 2 ? 2 : 1 ))
ROOT=${STRESS_DIR:-/tmp/jaxcnn_stress}
PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT"
declare -A count=([finished]=0 [hung]=0 [failed]=0)

run_once() {  # run_once PARALLELISM INDEX [--config.FIELD=VALUE ...] -> prints finished|hung|failed
  local parallelism=$1 dir="$ROOT/$1-$2" port=$(( 20000 + RANDOM % 20000 )) pids=() i
  shift 2
  rm -rf "$dir" && mkdir -p "$dir"
  for i in 0 1; do
    XLA_FLAGS=--xla_force_host_platform_device_count=4 PYTHONPATH="$REPO" "$PYTHON" -m jaxcnn.main \
      --config=lenet5 --config.num_epochs=2 --config.batch_size=128 --config.parallelism="$parallelism" "$@" \
      --workdir="$dir/workdir" --coordinator_address=127.0.0.1:$port --num_processes=2 --process_id=$i \
      > "$dir/process$i.log" 2>&1 &
    pids+=($!)
  done
  local deadline=$(( $(date +%s) + LIMIT ))
  while kill -0 "${pids[0]}" 2>/dev/null || kill -0 "${pids[1]}" 2>/dev/null; do
    if (( $(date +%s) > deadline )); then
      for i in 0 1; do
        command -v py-spy > /dev/null && py-spy dump --pid "${pids[$i]}" > "$dir/process$i.stacks" 2>&1
        kill -9 "${pids[$i]}" 2>/dev/null
      done
      wait "${pids[@]}" 2>/dev/null
      echo hung
      return
    fi
    sleep 2
  done
  local status=finished
  for i in 0 1; do wait "${pids[$i]}" || status=failed; done
  echo $status
}

PARALLELISMS=(${PARALLELISMS:-pmap shard_map})
for parallelism in "${PARALLELISMS[@]}"; do
  for n in $(seq 1 "$N"); do
    start=$(date +%s)
    result=$(run_once "$parallelism" "$n" "$@")
    count[$result]=$(( ${count[$result]} + 1 ))
    echo "$parallelism run $n/$N: $result after $(( $(date +%s) - start )) s ($ROOT/$parallelism-$n)"
  done
done
echo "$(( ${#PARALLELISMS[@]} * N )) runs: ${count[finished]} finished, ${count[hung]} hung, ${count[failed]} failed"
[[ ${count[finished]} == $(( ${#PARALLELISMS[@]} * N )) ]]
