"""The ``xsuperres train`` sub-command on small NetCDF files (issue 4)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

import xsuperres as xs
from xsuperres.cli import main
from xsuperres.model import SRModel


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A 12-hour, 32 x 32 km crop of the RADOLAN sample (precip + topography)."""
    ds = xs.open_sample("radolan").isel(time=slice(0, 12), y=slice(96, 128), x=slice(96, 128)).load()
    path = tmp_path_factory.mktemp("cli") / "small.nc"
    ds.to_netcdf(path)
    return path, ds


ARGS = ["--S", "4", "--T", "2", "--L", "2", "--tile-size", "16", "--n-folds", "2", "--epochs", "1",
        "--batch-size", "8", "--no-progress", "--quiet"]


def test_cli_trains_and_writes_a_model(small_file, tmp_path, capsys):
    path, ds = small_file
    out = tmp_path / "model"
    rc = main(["train", str(path), "--out", str(out), *ARGS])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "model written to" in captured.out
    assert "using the topography variable 'topography'" in captured.err
    model = SRModel.load(out)
    assert (model.config.S, model.config.T, model.config.L, model.config.preset) == (4, 2, 2, "tiny")
    assert model.config.time_step == "1h"
    assert model.history["mean"]["epochs_run"] == 1 and model.history["diffusion"]["epochs_run"] == 1
    # topography range of the training tiles (fold 0 of 2 validates the diagonal tiles)
    topo = ds["topography"].values
    train_topo = np.concatenate([topo[:16, 16:].ravel(), topo[16:, :16].ravel()])
    assert model.normalization["topo_min"] == pytest.approx(train_topo.min())
    assert model.normalization["topo_max"] == pytest.approx(train_topo.max())
    assert model.metadata["n_samples"] == {"train": 10, "valid": 10}


def test_cli_errors(small_file, tmp_path, capsys):
    path, ds = small_file
    out = str(tmp_path / "m")
    # missing variable
    assert main(["train", str(path), "--out", out, "--var", "rain", *ARGS]) == 2
    err = capsys.readouterr().err
    assert "no variable 'rain'" in err and "precip" in err
    # wrong units
    bad = ds.copy()
    bad["precip"].attrs["units"] = "K"
    bad_path = tmp_path / "kelvin.nc"
    bad.to_netcdf(bad_path)
    assert main(["train", str(bad_path), "--out", out, *ARGS]) == 2
    err = capsys.readouterr().err
    assert "'precip'" in err and "'K'" in err
    # no units at all
    del bad["precip"].attrs["units"]
    bad.to_netcdf(tmp_path / "nounits.nc")
    assert main(["train", str(tmp_path / "nounits.nc"), "--out", out, *ARGS]) == 2
    assert "no 'units' attribute" in capsys.readouterr().err
    # grid too small for a 2 x 2 grid of tiles of S x S pixels
    tiny = ds.isel(y=slice(0, 6), x=slice(0, 6))
    tiny.to_netcdf(tmp_path / "tiny.nc")
    assert main(["train", str(tmp_path / "tiny.nc"), "--out", out, *ARGS]) == 2
    assert "too small" in capsys.readouterr().err
    # missing file
    assert main(["train", str(tmp_path / "absent.nc"), "--out", out, *ARGS]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(shutil.which("xsuperres") is None, reason="console script not installed")
def test_console_script_lists_train():
    res = subprocess.run(["xsuperres", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for opt in ("--S", "--T", "--out", "--epochs", "--preset", "--var", "--topography"):
        assert opt in res.stdout
