#!/usr/bin/env bash
# Every sweep at the paper preset (50 seeds, 60,000 noise images, the paper grids), one
# `sublim-jax sweep NAME --preset paper` after another, for a lent GPU machine with a CUDA jax
# (run from source: nothing is installed there). Resumable: a sweep whose OUT/NAME/results.json
# exists is skipped, one left half-done (a folder without results.json) is run again from the
# start (--force); so a run cut short by BUDGET or by the machine going back is finished by
# calling the script again with the same OUT. Prints each sweep's wall minutes on the device
# (compilation, evaluation and the figure included) and appends them to OUT/paper_sweeps.log.
# The whole set is about 15 GPU minutes on one H200 (experiments/FINDINGS.md estimates 11 for
# the eleven sweeps before `decay` and `batch-size`): two calls of 10 minutes.
#
#   DATA=DIR OUT=DIR bash experiments/paper_sweeps.sh                 # every sweep, resumable
#   DATA=DIR OUT=DIR ONLY="decay batch-size" bash experiments/paper_sweeps.sh
#   OUT=DIR PRESET=smoke PYTHON=.venv/bin/python bash experiments/paper_sweeps.sh   # CPU dry run
#
# DATA: folder holding mnist/ (and fashion-mnist/ for `inputs`; default: $SUBLIM_DATA, else
# the loader's own lookup). BUDGET: seconds this call may take (default 540, for a 10-minute
# call); no sweep starts with less than MIN_START seconds left (default 30), and a running one
# is stopped at the budget (it is rerun next time). ONLY: the sweeps to run, in that order
# (default: all of `sweep --list`). EXTRA: more flags for every sweep (e.g. --seeds 2).
# Exit status: 0 every selected sweep done, 1 a sweep failed, 75 the budget ran out first
# (rerun the same command to resume). Results: OUT/NAME/{config,results}.json, sweep.pdf/.png,
# then copied into experiments/results/sweeps_paper/NAME by hand.
set -u
: "${OUT:?OUT=folder for the results}"
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=. PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py=${PYTHON:-python3}
preset=${PRESET:-paper}
budget=${BUDGET:-540}
min_start=${MIN_START:-30}
data=${DATA:-${SUBLIM_DATA:-}}
mkdir -p "$OUT"
log=$OUT/paper_sweeps.log

names=${ONLY:-$($py -m sublim_jax.cli sweep --list | awk '{print $1}')}
[ -n "$names" ] || { echo "no sweeps listed (is $py a python with jax?)" | tee -a "$log"; exit 1; }
{ echo "== $(date -u +%FT%TZ) preset=$preset budget_s=$budget sweeps: $(echo $names)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
} >>"$log" 2>&1

failed=0 left=()
for name in $names; do
    dir=$OUT/$name
    if [ -f "$dir/results.json" ]; then
        echo "== $name: done (skipped)" | tee -a "$log"
        continue
    fi
    remaining=$((budget - SECONDS))
    if [ "$remaining" -lt "$min_start" ]; then
        left+=("$name")
        continue
    fi
    force=()
    [ -d "$dir" ] && force=(--force)  # half-done: no sweep resumes mid-grid, so start it again
    start=$SECONDS
    timeout "$remaining" $py -m sublim_jax.cli sweep "$name" --preset "$preset" \
        ${data:+--data-dir "$data"} --out "$dir" "${force[@]}" ${EXTRA:-} >>"$log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    minutes=$(awk -v s="$took" 'BEGIN { printf "%.1f", s / 60 }')
    echo "== $name: rc=$rc minutes=$minutes" | tee -a "$log"
    if [ "$rc" = 124 ]; then
        left+=("$name")
    elif [ "$rc" != 0 ]; then
        failed=1
    fi
done
if [ "${#left[@]}" -gt 0 ]; then
    echo "== budget spent; left: ${left[*]} (rerun the same command to resume)" | tee -a "$log"
    [ "$failed" = 1 ] && exit 1
    exit 75
fi
exit "$failed"
