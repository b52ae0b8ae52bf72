#!/usr/bin/env bash
# The GPU figures in one call, for a lent GPU machine with a CUDA jax (run from source: nothing
# is installed there), each beside PyTorch on the same card where there is a peer to compare:
#   mnist_speed_gpu.json         MNIST paper preset, 100 seeds: `sublim-jax mnist` end to end
#                                (compilation reported apart) against mnist_torch_reference.py at
#                                100 models on the same GPU, alternating
#   llm_speed_gpu_smollm2_fp32.json, llm_speed_gpu_smollm2_bf16.json, llm_speed_gpu_7b_bf16.json
#                                `generate` at batch 64 and 256 and one LoRA step against
#                                transformers / peft, SmolLM2-135M's shape (fp32, bf16) and a 7B
#                                shape (Qwen2.5-7B, bf16), random weights, the same lengths,
#                                alternating rounds (llm_speed.py)
#   llm_decode_7b.json           decode tokens/s against the bandwidth roofline at batch 1/64/256
#                                and one LoRA step (8 x 512 tokens) with peak memory, 7B, bf16
#   sweep_init_distance_paper.tgz   `sublim-jax sweep init-distance --preset paper` (50 seeds)
#   gpu.log                      everything printed, with each part's status and wall time
#
#   DATA=DIR OUT=DIR bash benchmarks/gpu.sh              # about 8 minutes on one H100 / H200
#   DRY_RUN=1 DATA=DIR OUT=DIR bash benchmarks/gpu.sh    # every part at toy sizes (CPU: ~2 min)
#
# DATA holds mnist/ (the four IDX .gz files; checked by sha256 as always). PYTHON runs our side
# (default python3), TORCH_PYTHON the PyTorch side (default PYTHON; it needs torch, transformers
# and peft, or the side-by-side parts time ours alone and say so). Each part has its own time
# limit, so a slow part leaves the others' figures intact; the script exits 1 if any part failed.
set -u
: "${DATA:?DATA=folder holding mnist/}" "${OUT:?OUT=folder for the figures}"
export PYTHONPATH=. PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# the PyTorch side runs while our process holds its arrays: JAX must not take the GPU up front
export XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
torch_py=${TORCH_PYTHON:-$py}
work=$(mktemp -d)
log=$OUT/gpu.log
failed=0

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log its wall seconds and status
    local name=$1 limit=$2 start rc
    shift 2
    start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || failed=1
    echo "== $name: rc=$rc wall_s=$((SECONDS - start))" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $py -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} >>"$log" 2>&1
torch=(--torch-python "$(command -v "$torch_py")")
if ! "$torch_py" -c "import torch, transformers, peft" >>"$log" 2>&1; then
    echo "== torch side: skipped ($torch_py lacks torch, transformers or peft)" | tee -a "$log"
    torch=()
fi

if [ -n "${DRY_RUN:-}" ]; then  # the same parts at toy sizes, to check the script anywhere
    mnist=(--preset smoke --seeds 2 --rounds 1) llm=(--shape tiny --prompt-len 4 --new-tokens 4
    --train-len 16 --rounds 1 --repeats 1) big=(--shape tiny --prompt-len 4 --new-tokens 4
    --train-len 16 --rounds 1 --repeats 1) decode=(--preset tiny --batches 1,2 --prompt-len 4
    --new-tokens 4 --train-len 16) sweep=(--preset smoke)
else
    mnist=(--preset paper --seeds 100 --rounds 2) llm=(--shape smollm2_135m --prompt-len 32
    --new-tokens 32 --train-len 256 --rounds 2 --repeats 2) big=(--shape qwen2_5_7b
    --prompt-len 128 --new-tokens 128 --train-len 512 --rounds 2 --repeats 1)
    decode=(--preset qwen2_5_7b --batches 1,64,256 --prompt-len 128 --new-tokens 128
    --train-len 512) sweep=(--preset paper)
fi

part mnist_speed 240 $py benchmarks/mnist_speed.py "${mnist[@]}" --e2e-only \
    --data-dir "$DATA/mnist" "${torch[@]}" --out "$OUT/mnist_speed_gpu.json"
for dtype in float32 bfloat16; do
    tag=$([ $dtype = float32 ] && echo fp32 || echo bf16)
    part llm_speed_smollm2_$tag 150 $py benchmarks/llm_speed.py "${llm[@]}" --dtype $dtype \
        --parts gen64,gen256,lora "${torch[@]}" --out "$OUT/llm_speed_gpu_smollm2_$tag.json"
done
part llm_speed_7b_bf16 240 $py benchmarks/llm_speed.py "${big[@]}" --dtype bfloat16 \
    --parts gen64,gen256,lora "${torch[@]}" --out "$OUT/llm_speed_gpu_7b_bf16.json"
part llm_decode_7b 200 $py benchmarks/llm_decode.py "${decode[@]}" --dtype bfloat16 --train \
    --out "$OUT/llm_decode_7b.json"
part sweep_init_distance 120 $py -m sublim_jax.cli sweep init-distance "${sweep[@]}" \
    --data-dir "$DATA/mnist" --out "$work/sweep_init_distance"
tar czf "$OUT/sweep_init_distance.tgz" --exclude=chunks -C "$work" sweep_init_distance
rm -rf "$work"
exit $failed
