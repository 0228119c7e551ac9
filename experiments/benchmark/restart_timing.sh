#!/usr/bin/env bash
# Seconds from process start to the first train step of a fresh run, a resumed run (twice) and an eval (twice),
# with the compilation cache on (ROUNDS rounds, each from an empty cache) and then off. Run on a quiet machine.
#   bash experiments/benchmark/restart_timing.sh [ROUNDS]
# Each run is the default job's config for one epoch of 3 (--epochs_per_run=1), so every resume continues it and
# the last one ends the run (which then prepares --mode=eval's step, as the default job's training does); the
# time is taken when the run prints its "train step: ..." or "eval step: ..." line (the first step's dispatch).
set -u
cd "$(dirname "$0")/../.."
rounds=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stamp() { while IFS= read -r line; do case "$line" in *" step: "*)
  printf '%s %.2f s (%s)\n' "$2" "$(echo "$(date +%s.%N) - $1" | bc)" "${line#"${line%%[! ]*}"}";; esac; done; }
modes=()
for _ in $(seq "$rounds"); do modes+=(on); done
for mode in "${modes[@]}" off; do
  rm -rf "$work"/*
  [[ $mode == on ]] && cache="$work/cache" || cache=""
  for what in first resume resume; do t0=$(date +%s.%N)
    JAXCNN_CACHE_DIR="$cache" python -m jaxcnn.main --config=lenet5 --workdir="$work/run" --config.num_epochs=3 \
      --epochs_per_run=1 2>/dev/null | stamp "$t0" "cache $mode, $what: first train step at"
  done
  for what in eval eval; do t0=$(date +%s.%N)
    JAXCNN_CACHE_DIR="$cache" python -m jaxcnn.main --workdir="$work/run" --mode=eval 2>/dev/null \
      | stamp "$t0" "cache $mode, $what: first eval step at"
  done
done
