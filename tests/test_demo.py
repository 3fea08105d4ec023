"""``xsuperres demo``: the README's main job writes its figure and its score table."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from xsuperres import pretrained


def _rows(text: str) -> dict[str, dict[str, float]]:
    lines = text.strip().splitlines()
    heads = [h for h in lines[0].split()[1:] if h not in ("↑", "↓")]
    rows = {}
    for line in lines[1:]:
        if line.startswith("units:"):
            break
        parts = line.split()
        name = " ".join(parts[: len(parts) - len(heads)])
        rows[name] = dict(zip(heads, map(float, parts[-len(heads):])))
    return rows


@pytest.mark.skipif("radar-s10-t3" not in pretrained.list_models(), reason="demo model not shipped")
def test_demo_writes_figure_and_table(tmp_path):
    exe = shutil.which("xsuperres")
    cmd = [exe] if exe else [sys.executable, "-m", "xsuperres.cli"]
    out = tmp_path / "demo"
    res = subprocess.run(cmd + ["demo", "--out", str(out), "--blocks", "2", "--size", "80",
                                "--steps", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    png = out / "xsuperres_demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    table = (out / "xsuperres_demo_scores.txt").read_text()
    assert table.strip() in res.stdout
    rows = _rows(table)
    try:
        import pysteps  # noqa: F401
        peer = ["RainFARM (3 members)"]
    except ImportError:  # the row is left out with a note
        peer = []
        assert 'RainFARM skipped: it needs pysteps (pip install "xsuperres[peers]")' in res.stdout
    assert list(rows) == ["bicubic", "nearest", "deterministic mean", *peer, "full model (3 members)"]
    if peer:  # RainFARM keeps the LR means exactly: an ensemble, CRPS below its MAE
        assert rows[peer[0]]["crps"] < rows[peer[0]]["mae"]
    for name in ("bicubic", "nearest", "deterministic mean"):
        # a single deterministic field: CRPS reduces to MAE
        assert rows[name]["crps"] == pytest.approx(rows[name]["mae"], rel=1e-3)
    full = rows["full model (3 members)"]
    assert all(np.isfinite(list(full.values())))
    # an ensemble's CRPS is below the MAE of its members (CRPS = E|X-y| - E|X-X'|/2)
    assert full["crps"] < full["mae"]


def test_demo_refuses_an_unknown_model(tmp_path, capsys):
    from xsuperres.cli import main

    assert main(["demo", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "radar-s10-t3" in err
