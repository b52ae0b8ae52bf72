#!/usr/bin/env bash
# The toy language model's GPU runs, for a lent GPU machine with a CUDA jax (run from source:
# nothing is installed there). First today's default preset at 200 seeds (issue 21); then issue
# 11's runs of the legacy design (`--preset legacy`, the `paper` sizes with the legacy
# initialisation, answer prefix and independent sampling): `paper` (~9 CPU hours) and the
# default sizes at 50-200 seeds, each about 2-3 minutes on one H200. Most run in pairs on the one GPU,
# so a run's stage minutes are an upper bound on its time alone (for the committed results,
# paper shared the GPU with a seeds200 run that failed at --gen-batch 512, hidden128 with
# epochs30; seeds200 and prompts8192 ran alone).
#
#   OUT=DIR bash experiments/llm_toy_gpu.sh                  # ~14 minutes in all
#   OUT=DIR ONLY_DEFAULT=1 bash experiments/llm_toy_gpu.sh   # the default at 200 seeds only
#
# Writes to OUT, for each run NAME: NAME.log (everything printed, with the wall time) and
# NAME.tgz (the run folder without chunks/, which is too big to return), to be unpacked as
# experiments/results/llm_toy_NAME.
set -u
: "${OUT:?OUT=folder for the results}"
export PYTHONPATH=. PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
limit=${LIMIT:-480}
work=$(mktemp -d)

part() {  # part NAME ARGS...: one `llm toy` run under the time limit, then its folder archived
    local name=$1 start rc
    shift
    start=$SECONDS
    timeout "$limit" $py -m sublim_jax.cli llm toy "$@" --out "$work/$name" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "== $name: rc=$rc wall_s=$((SECONDS - start))" | tee -a "$OUT/$name.log"
    [ -d "$work/$name" ] && tar czf "$OUT/$name.tgz" --exclude=chunks -C "$work" "$name"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} >"$OUT/gpu.log" 2>&1
# --gen-batch 128 at 100-200 seeds: sampling holds a KV cache per model and prompt (3 per seed)
part default_seeds200 --preset default --seeds 200 --gen-batch 128
[ "${ONLY_DEFAULT:-0}" = 1 ] && exit 0
legacy=(--init normal --init-std 0.02 --init-embed-std 0.02 --no-init-depth --answer-prefix
  --number-data walk --no-coupled)  # ToyConfig.LEGACY, on the paper preset's sizes
part paper --preset paper "${legacy[@]}" &
part seeds200 --preset legacy --seeds 200 --gen-batch 128 &
wait
part hidden128_seeds100 --preset legacy --seeds 100 --hidden-size 128 --gen-batch 128 &
part epochs30_seeds100 --preset legacy --seeds 100 --student-epochs 30 --gen-batch 128 &
wait
part prompts8192_seeds50 --preset legacy --seeds 50 --prompts 8192 --student-epochs 3
