#!/usr/bin/env bash
# One call on a lent GPU machine (the `device` tool of this workplace; docs/performance.md,
# "GPU", has what it gave). In order:
#   1. the GPU check of the throughput issue (benchmarks/gpu_check.py): fp32 and bf16,
#   2. side by side, --train-only: the three (10, 1) leave-one-event-out folds still to run
#      (tiny preset, the loeo.py recipe) and the MeteoSwiss 2016 (10, 3) fold of the `small`
#      preset (no EDSR); they are scored back on the CPU machine with
#      `train_shared.py --eval-only` (pysteps, for RainFARM, is not on the GPU machine),
#   3. the GPU check's torch.compile rows and training rates, once the folds are done,
#   4. packing: one tar per finished fold (model, training.json, checkpoint JSONs, log),
#      split into 15 MiB parts, and the logs, into $OUT.
# Needs: .whl (dask, netCDF4, cftime, partd, locket wheels for the machine's Python) and
# .devdata (the four 5-min files of ../shared/data), both carried.
# Run once (2026-11-27, one H100): the GPU check's fp32 rows came back; the four folds, four
# processes taking turns on the GPU, ran 52-66 s per mean epoch each and none finished in
# FOLD_S=420 (docs/performance.md, "GPU"). One process with larger batches would do better.
# FOLD_S caps each fold (seconds); EXTRA adds train_shared arguments (a dry run on a CPU:
# NO_WHEELS=1 PY=python EXTRA="--mean-epochs 1 --diffusion-epochs 1 --stride 97").
set -u
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
R=${RUNS:-/tmp/device_runs}; mkdir -p "$R"
FOLD_S=${FOLD_S:-400}
export PYTHONUNBUFFERED=1
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
start=$(date +%s)
common=(--threads 3 --train-only --data-dir .devdata ${EXTRA:-})
for ev in knmi_2010-08-26_5min mch_20170131_5min fmi_2016-09-28_5min; do
  timeout "$FOLD_S" $PY scripts/loeo.py run --pair 10x1 --runs "$R/tiny" --events $ev -- "${common[@]}" \
    > "$R/log_10x1_$ev.txt" 2>&1 &
done
timeout "$FOLD_S" $PY scripts/loeo.py run --pair 10x3 --runs "$R/small" --events mch_20160711_5min -- \
  --preset small --edsr-epochs 0 "${common[@]}" > "$R/log_10x3_small_mch_20160711_5min.txt" 2>&1 &
# the folds spend their first half minute or more reading and tiling on the CPU
timeout "${CHECK_S:-90}" $PY benchmarks/gpu_check.py --modes fp32,bf16 ${CHECK_ARGS:-} --json "$OUT/gpu_check.json"
wait
echo "folds ended after $(( $(date +%s) - start )) s"
timeout "${COMPILE_S:-110}" $PY benchmarks/gpu_check.py --modes compile --train ${CHECK_ARGS:-} \
  --json "$OUT/gpu_check_compile_train.json"
echo "all ended after $(( $(date +%s) - start )) s"
tail -n 4 "$R"/log_*.txt
tar -czf "$OUT/logs.tgz" -C "$R" $(cd "$R" && ls log_*.txt)
for f in "$R"/*/loeo_*; do
  [ -f "$f/model/config.json" ] || [ -d "$f/model" ] || { echo "$f: no model"; continue; }
  name=$(basename "$(dirname "$f")")_$(basename "$f")
  tar -cf - -C "$(dirname "$f")" "$(basename "$f")/model" "$(basename "$f")/training.json" \
      $(cd "$(dirname "$f")" && ls "$(basename "$f")"/checkpoints-*/*.json 2>/dev/null) \
    | split -b 15M -d - "$OUT/$name.tar.part"
done
ls -la "$OUT"
