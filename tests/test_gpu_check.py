"""``benchmarks/gpu_check.py`` at its dry-run size on the CPU: the script that a lent GPU
machine runs works, and its rates and year extrapolation follow from its timings."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "rows.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--presets", "tiny",
         "--modes", "fp32,bf16", "--profile", "tiny:fp32", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["preset"], r["mode"]) for r in rows] == [("tiny", "fp32"), ("tiny", "bf16")]
    for r in rows:
        assert "error" not in r
        tile, batch, wall = r["tile"], r["batch"], r["wall_s"]
        assert (tile, batch) == (20, 2)
        # HR pixel-frame-members: batch tiles x 3 members x T = 3 frames x tile^2 pixels
        assert math.isclose(r["px_frame_members_per_s"], batch * 3 * 3 * tile * tile / wall, rel_tol=1e-9)
        # a year: 365 * 24 / 3 LR steps, each 39 x 39 tiles of 2 LR px overlapping by 1
        # (windows start every LR pixel of the 40 LR px domain but the last)
        assert math.isclose(r["year_400x400_s"], 2920 * 39**2 * wall / batch, rel_tol=1e-9)
        assert math.isnan(r["peak_gpu_gib"])  # no GPU here
    assert "profile of one batch, tiny fp32" in res.stdout
    assert "Self CPU" in res.stdout
