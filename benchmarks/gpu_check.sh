#!/usr/bin/env bash
# The GPU check of the throughput issue as one call on a lent GPU machine (the `device` tool
# of this workplace), about 9 minutes in all; docs/performance.md, "GPU", has what it gave.
#   1. gpu_check.py's eager rows on an idle GPU, tiny and standard presets: fp32 and bf16
#      with the plain neighbourhood attention, and the same with the fused Triton kernel
#      (xsuperres.nn.neighborhood_fused; "fused", "fused-bf16"), whose rows also check each
#      attention block against the plain version (largest difference, time per block);
#      then a profile of one tiny fused-bf16 batch (where the time goes now),
#   2. training samples/s of the standard preset, plain and fused neighbourhood attention
#      (a (10, 3) fold took about 21.5 min of H100 time with the plain one: too long for
#      a 15-minute lease),
#   3. the tiny fused-bf16 row with 256 tiles per batch instead of 64,
#   4. the torch.compile row of the tiny preset for what time is left (neither compile row
#      finished on the second lease, in 280 s and 300 s; see docs/performance.md).
# Each step has its own time limit and writes its JSON rows as it goes, into $OUT.
# Needs: .whl (dask, netCDF4, cftime, partd, locket wheels for the machine's Python), carried.
# A dry run on a CPU (the fused rows in Triton's interpreter take about 6 minutes there):
#   NO_WHEELS=1 PY=python DRY=--dry-run MODES=fp32,bf16 bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
PY=${PY:-python3}
DRY=${DRY:-}
MODES=${MODES:-fp32,fused,bf16,fused-bf16}
PROFILE=${PROFILE:-tiny:fused-bf16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
$PY -c "import triton; print('triton', triton.__version__)" 2>&1
start=$(date +%s)
timeout "${EAGER_S:-270}" $PY benchmarks/gpu_check.py $DRY --modes "$MODES" --profile "$PROFILE" \
  --json "$OUT/gpu_check_eager.json"
timeout "${TRAIN_S:-150}" $PY benchmarks/gpu_check.py $DRY --presets "${TRAIN_PRESETS:-standard}" --modes "" \
  --train --json "$OUT/gpu_check_train.json"
timeout "${BATCH_S:-45}" $PY benchmarks/gpu_check.py $DRY --presets tiny --modes "${MODES##*,}" --batch "${BIG_BATCH:-256}" \
  --json "$OUT/gpu_check_batch.json"
echo "eager rows ended after $(( $(date +%s) - start )) s"
timeout "${COMPILE_S:-60}" $PY benchmarks/gpu_check.py $DRY --presets tiny --modes compile \
  --json "$OUT/gpu_check_compile.json"
echo "all ended after $(( $(date +%s) - start )) s"
