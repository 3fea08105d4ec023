#!/usr/bin/env bash
# The GPU check of the throughput issue as one call on a lent GPU machine (the `device` tool
# of this workplace), about 9 minutes in all; docs/performance.md, "GPU", has what it gave.
#   1. gpu_check.py's eager rows (fp32, bf16; tiny and standard presets) on an idle GPU,
#      and a profile of one tiny bf16 batch (where the time goes),
#   2. the tiny bf16 row with 256 tiles per batch instead of 64,
#   3. the torch.compile rows for what time is left: the neighbourhood attention alone,
#      then both U-Nets (tiny, then standard). Neither finished compiling on the second
#      lease (280 s and 300 s); see docs/performance.md.
# Each step has its own time limit and writes its JSON rows as it goes, into $OUT.
# Needs: .whl (dask, netCDF4, cftime, partd, locket wheels for the machine's Python), carried.
# A dry run on a CPU: NO_WHEELS=1 PY=python DRY=--dry-run bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
PY=${PY:-python3}
DRY=${DRY:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
start=$(date +%s)
timeout "${EAGER_S:-200}" $PY benchmarks/gpu_check.py $DRY --modes fp32,bf16 --profile tiny:bf16 \
  --json "$OUT/gpu_check_eager.json"
timeout "${BATCH_S:-45}" $PY benchmarks/gpu_check.py $DRY --presets tiny --modes bf16 --batch "${BIG_BATCH:-256}" \
  --json "$OUT/gpu_check_batch.json"
echo "eager rows ended after $(( $(date +%s) - start )) s"
timeout "${COMPILE_S:-300}" $PY benchmarks/gpu_check.py $DRY --modes compile-na,compile \
  --json "$OUT/gpu_check_compile.json"
echo "all ended after $(( $(date +%s) - start )) s"
