#!/usr/bin/env bash
# The GPU figures in one call, for a lent GPU machine with a CUDA jax (run from source: nothing
# is installed there). About 2 minutes on one H200 (decode 41-53 s, MNIST 26 s, the sweep 34 s,
# compilation included); each part has its own time limit, so a slow part leaves the others'
# figures intact.
#
#   DATA=DIR OUT=DIR bash benchmarks/gpu.sh
#
# DATA holds mnist/ (the four IDX .gz files; checked by sha256 as always). Writes to OUT:
#   gpu.log                 everything printed, with each part's wall time
#   llm_decode_7b.json      decode tokens/s against the bandwidth roofline at batch 1/64/256 and
#                           one LoRA step (8 x 512 tokens) with peak memory, Qwen2.5-7B shape, bf16
#   mnist_paper.tgz         `sublim-jax mnist --preset paper` (100 seeds): the run folder
#   sweep_init_distance_paper.tgz   `sublim-jax sweep init-distance --preset paper` (50 seeds)
set -u
: "${DATA:?DATA=folder holding mnist/}" "${OUT:?OUT=folder for the figures}"
export PYTHONPATH=. PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
work=$(mktemp -d)
log=$OUT/gpu.log

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log its wall seconds and status
    local name=$1 limit=$2 start rc
    shift 2
    start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "== $name: rc=$rc wall_s=$((SECONDS - start))" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} >>"$log" 2>&1
part llm_decode_7b 270 $py benchmarks/llm_decode.py --preset qwen2_5_7b --dtype bfloat16 \
    --batches 1,64,256 --prompt-len 128 --new-tokens 128 --train --train-len 512 \
    --out "$OUT/llm_decode_7b.json"
part mnist_paper 180 $py -m sublim_jax.cli mnist --preset paper --data-dir "$DATA" \
    --out "$work/mnist_paper"
tar czf "$OUT/mnist_paper.tgz" --exclude=chunks -C "$work" mnist_paper  # chunks: too big to return
part sweep_init_distance_paper 120 $py -m sublim_jax.cli sweep init-distance --preset paper \
    --data-dir "$DATA" --out "$work/sweep_init_distance_paper"
tar czf "$OUT/sweep_init_distance_paper.tgz" --exclude=chunks -C "$work" \
    sweep_init_distance_paper
