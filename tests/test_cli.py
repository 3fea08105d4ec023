"""CLI output paths: a missing folder, the input itself, a folder where a file should be, or
an unwritable output give one line on stderr and exit status 2, before any work is done."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import xarray as xr

import xsuperres
from xsuperres.cli import main


@pytest.fixture(scope="module")
def small_nc(tmp_path_factory):
    """6 x 40 x 40 of the KNMI sample (5 min, 1 km) as a NetCDF file."""
    path = tmp_path_factory.mktemp("cli") / "in.nc"
    xsuperres.open_sample("knmi").isel(time=slice(0, 6), y=slice(0, 40), x=slice(0, 40)).to_netcdf(path)
    return path


def _one_line_error(capsys, *phrases: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "PermissionError" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def test_coarsen_writes_netcdf(small_nc, tmp_path, capsys):
    out = tmp_path / "lr.nc"
    assert main(["coarsen", str(small_nc), str(out), "--S", "10", "--T", "3"]) == 0
    with xr.open_dataset(out, engine="netcdf4") as lr:
        assert dict(lr.precip.sizes) == {"time": 2, "y": 4, "x": 4}


def test_coarsen_into_a_missing_folder(small_nc, tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    assert main(["coarsen", str(small_nc), str(missing / "lr.nc"), "--S", "10", "--T", "3"]) == 2
    _one_line_error(capsys, "xsuperres coarsen: error:", str(missing), "does not exist", "mkdir -p")
    assert not (tmp_path / "no").exists()


def test_coarsen_onto_its_input(small_nc, capsys):
    before = small_nc.read_bytes()
    assert main(["coarsen", str(small_nc), str(small_nc), "--S", "10", "--T", "3"]) == 2
    _one_line_error(capsys, "it is the input", "choose a different output")
    assert small_nc.read_bytes() == before


def test_coarsen_onto_its_input_through_a_link(small_nc, tmp_path, capsys):
    link = tmp_path / "link.nc"
    link.symlink_to(small_nc)
    assert main(["coarsen", str(small_nc), str(link), "--S", "10", "--T", "3"]) == 2
    _one_line_error(capsys, "it is the input")


def test_coarsen_onto_a_folder(small_nc, tmp_path, capsys):
    assert main(["coarsen", str(small_nc), str(tmp_path), "--S", "10", "--T", "3"]) == 2
    _one_line_error(capsys, "is a folder, not a file")


def test_coarsen_onto_an_unwritable_file(small_nc, tmp_path, capsys, monkeypatch):
    import xsuperres.cli as cli

    out = tmp_path / "locked.nc"
    out.write_bytes(b"")
    real = cli.os.access
    # root may write anything, so simulate the missing permission
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if str(p) == str(out) else real(p, mode))
    assert main(["coarsen", str(small_nc), str(out), "--S", "10", "--T", "3"]) == 2
    _one_line_error(capsys, str(out), "is not writable")


def test_downscale_output_checks(small_nc, tmp_path, capsys):
    args = ["--model", "radar-s10-t3", "--no-progress"]
    missing = tmp_path / "absent"
    assert main(["downscale", str(small_nc), str(missing / "ens.zarr"), *args]) == 2
    _one_line_error(capsys, "xsuperres downscale: error:", "does not exist", f"mkdir -p {missing}")
    assert main(["downscale", str(small_nc), str(small_nc), *args]) == 2
    _one_line_error(capsys, "it is the input")
    a_file = tmp_path / "ens.zarr"
    a_file.write_text("not a store")
    assert main(["downscale", str(small_nc), str(a_file), *args]) == 2
    _one_line_error(capsys, "is not a folder")


def test_demo_out_must_be_a_folder(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["demo", "--out", str(a_file)]) == 2
    _one_line_error(capsys, "xsuperres demo: error:", "exists and is not a folder")
    assert main(["demo", "--out", str(a_file / "sub")]) == 2
    _one_line_error(capsys, "cannot create the folder", "is not a folder")


def test_demo_missing_out_folder_is_not_refused(tmp_path, capsys):
    # a missing --out folder is created when the results are written; the error here is
    # the unknown model, reported before anything is written
    out = tmp_path / "a" / "b"
    assert main(["demo", "--model", "no-such-model", "--out", str(out)]) == 2
    _one_line_error(capsys, "no-such-model")
    assert not out.exists()


def test_train_out_checks(small_nc, tmp_path, capsys):
    args = ["--S", "10", "--T", "3", "--epochs", "1", "--no-progress", "--quiet"]
    assert main(["train", str(small_nc), "--out", str(small_nc), *args]) == 2
    _one_line_error(capsys, "xsuperres train: error:", "it is the input")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["train", str(small_nc), "--out", str(a_file), *args]) == 2
    _one_line_error(capsys, "exists and is not a folder")
    assert main(["train", str(small_nc), "--out", str(a_file / "model"), *args]) == 2
    _one_line_error(capsys, "cannot create the folder", "is not a folder")


def test_console_script_missing_folder(small_nc, tmp_path):
    exe = shutil.which("xsuperres")
    cmd = [exe] if exe else [sys.executable, "-m", "xsuperres.cli"]
    out = tmp_path / "missing" / "lr.nc"
    res = subprocess.run(cmd + ["coarsen", str(small_nc), str(out), "--S", "10", "--T", "3"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"xsuperres coarsen: error: cannot write {out}: the folder {out.parent} does not exist; "
        f"create it first (mkdir -p {out.parent})"]


def test_score_prints_the_table_with_extra_scores(small_nc, tmp_path, capsys):
    """``xsuperres score PRED TRUTH --extra ...``: the table holds score()'s values."""
    import numpy as np

    truth = xr.open_dataset(small_nc, decode_coords="all").precip.load()
    rng = np.random.default_rng(3)
    ens = xr.concat([truth * f for f in rng.uniform(0.5, 1.5, 4)], "member").assign_attrs(truth.attrs)
    pred_nc = tmp_path / "pred.nc"
    ens.to_dataset(name="precip").to_netcdf(pred_nc)
    assert main(["score", str(pred_nc), str(small_nc), "--extra", "crps_fair",
                 "--extra", "spread_error_ratio"]) == 0
    head, row, units = capsys.readouterr().out.strip().splitlines()
    expected = xsuperres.score(ens, truth, extra=["crps_fair", "spread_error_ratio"])
    names = [h for h in head.split() if h not in ("method", "↑", "↓", "→1")]
    assert names == list(expected.data_vars)
    assert "spread_error_ratio →1" in head and "crps_fair mm h-1" in units
    values = [float(v) for v in row.split()[1:]]
    assert values == pytest.approx([float(expected[n]) for n in names], rel=1e-3)
    # one member cannot have the ensemble scores: one line naming the option, status 2
    assert main(["score", str(small_nc), str(small_nc), "--extra", "crps_fair"]) == 2
    _one_line_error(capsys, "extra metric(s) ['crps_fair'] need an ensemble")
