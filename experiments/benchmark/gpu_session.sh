#!/usr/bin/env bash
# The GPU figures BUILD_NOTES.md still lacks, as one command for a lent GPU machine (one H200 or H100, JAX and
# PyTorch installed, no TensorFlow, no internet), each part bounded so that the whole stays under 10 minutes:
#   1. train step in bfloat16, batch 256, one GPU: ResNet-50 v1.5 (stride in the 3x3), VGG-16, AlexNet against
#      PyTorch eager and torch.compile (`python -m jaxcnn.bench --compare=pytorch`, fair protocol);
#   2. the TF-free input pipeline's images/s on the machine's cores: a JPEG folder at 227 (AlexNet's chain)
#      and CIFAR in memory, beside the steps they feed (`python -m jaxcnn.bench.pipeline`);
#   3. GoogLeNet's start-up: init, lowering and compiling its train step;
#   4. a Kaggle-like JPEG folder on the machine's cores (`folder`): AlexNet's and ResNet-50's pipelines, first pass
#      and cached (`python -m jaxcnn.bench.pipeline --config=...`), `pack` on processes and on threads, and each
#      trained 3 epochs end to end from the folder (epoch 1 decodes, 2-3 read the cache) and from synthetic
#      in-memory images of the same count (the loop's rate without decoding): the fraction the pipeline sustains.
# PARTS picks some ("steps pipeline startup folder" by default); each part is bounded; run PARTS=folder (about 6
# minutes) in a call of its own, the rest (under 10 minutes) in another. Every figure is printed and written under $OUT (default ./gpu_out): copy
# them into BUILD_NOTES.md.
#
# jaxcnn needs two packages such images lack; fetch their wheels here first (the folder travels with `carry`):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml_collections tensorboardX
# then run this through the device tool with carry [".whl"] and timeout_s 600.
# A dry run on any machine, with tiny sizes (minutes on a 2-core CPU): SMALL=1 bash experiments/benchmark/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu_out}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/jaxcnn_site .whl/*.whl \
    && export PYTHONPATH=/tmp/jaxcnn_site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1
python=${JAXCNN_PYTHON:-python3}
if [ "${SMALL:-0}" = 1 ]; then  # the dry run: small images, few steps, float32 (the bench measures PyTorch's
  # bf16 autocast on a GPU only), LeNet-5's start-up for GoogLeNet's
  batch=8 repeats=1 steps=2 jpegs=48 batches=2 bound=900 input=(--image_size=64) precision=float32 startup=lenet5
  sized=(--config.image_size=64)
else
  batch=256 repeats=3 steps=0 jpegs=3000 batches=20 bound=200 input=() precision=bfloat16 startup=googlenet
  sized=()
fi
want() { [[ " ${PARTS:-steps pipeline startup folder} " == *" $1 "* ]]; }
part() {  # part NAME SECONDS COMMAND...: runs COMMAND for at most SECONDS, its output also in $out/NAME.log
  local name=$1 seconds=$2
  shift 2
  echo "=== $name ($(date -u +%T)): $*"
  timeout "$seconds" "$@" 2>&1 | tee "$out/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]}"
}
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU") \
  | tee "$out/machine.txt"
"$python" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__)" \
  | tee -a "$out/machine.txt"
bench=("$python" -m jaxcnn.bench --precision="$precision" --batch_size="$batch" --devices=1 --compare=pytorch
  --repeats="$repeats" --steps="$steps" "${input[@]}")
if want steps; then
  part resnet50_v1_5 "$bound" "${bench[@]}" --models=resnet50 --model_options=stride_in_3x3=True \
    --json="$out/resnet50_v1_5.json"
  part vgg16_alexnet "$bound" "${bench[@]}" --models=vgg16,alexnet --json="$out/vgg16_alexnet.json"
fi
want pipeline && part pipeline "$bound" "$python" -m jaxcnn.bench.pipeline --num_jpegs="$jpegs" \
  --batch_size="$batch" --batches="$batches"
want startup && part startup "$bound" "$python" experiments/benchmark/compile_breakdown.py --models="$startup" \
  --batch_size="$batch"
if want folder; then
  scratch=$(mktemp -d /tmp/jaxcnn-gpu-folder-XXXX)  # the JPEGs and caches stay off $OUT (it comes back)
  sizes=("--config.batch_size=$batch" "${sized[@]}")
  folder=(--config.dataset=image_folder "--config.data_dir=$scratch/jpegs")
  part make_folder 120 "$python" experiments/benchmark/folder_pipeline.py make "$scratch/jpegs" --num="$jpegs"
  for config in alexnet resnet50; do
    version=()  # ResNet-50 v1.5 (stride in the 3x3), as the step part and MLPerf measure it
    [ "$config" = resnet50 ] && version=(--config.model_options.stride_in_3x3=True)
    part "folder_$config" "$bound" "$python" -m jaxcnn.bench.pipeline --config="$config" "${folder[@]}" "${sizes[@]}" \
      --config.validation_size=0 --batches="$batches" --step_batches=0 --json="$out/folder_$config.json"
    trained=(-m jaxcnn.main --config="$config" "${sizes[@]}" "${version[@]}" --config.num_epochs=3
      "--config.compute_dtype=$precision")
    part "e2e_$config" "$bound" "$python" "${trained[@]}" "${folder[@]}" "--config.data_cache=$scratch/cache_$config" \
      "--workdir=$scratch/e2e_$config"
    part "e2e_synthetic_$config" "$bound" "$python" "${trained[@]}" --config.dataset=synthetic \
      --config.synthetic.num_classes=2 "--config.synthetic.num_train=$jpegs" "--config.synthetic.image_shape=(256,256,3)" \
      "--workdir=$scratch/e2e_synthetic_$config"
    for run in "e2e_$config" "e2e_synthetic_$config"; do
      cp "$scratch/$run/metrics.jsonl" "$out/$run.metrics.jsonl" 2>/dev/null
    done
  done
  for how in --processes --noprocesses; do
    part "pack$how" 120 "$python" -m jaxcnn.data.pack --config=alexnet "${folder[@]}" "${sizes[@]}" \
      --config.validation_size=0 "--config.data_cache=$scratch/pack$how" "$how"
  done
  rm -rf "$scratch"
fi
