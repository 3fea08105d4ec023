"""The ``xsuperres train`` sub-command on small NetCDF files (issue 4)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import xsuperres as xs
from xsuperres.cli import main
from xsuperres.model import SRModel
from xsuperres.training import TrainOptions
from xsuperres.training import loop as loop_mod




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


class _Called(Exception):
    pass


def test_cli_flags_make_one_train_options(small_file, tmp_path, monkeypatch):
    path, _ = small_file
    seen = {}

    def fake_train(*args, **kwargs):
        seen.update(kwargs)
        raise _Called

    monkeypatch.setattr(loop_mod, "train", fake_train)
    ck = tmp_path / "ck"
    with pytest.raises(_Called):
        main(["train", str(path), "--out", str(tmp_path / "m"), *ARGS, "--lr", "0.002", "--patience", "4",
              "--mc-start-epoch", "3", "--fold", "1", "--seed", "5", "--device", "cpu", "--stage", "mean",
              "--valid-start", "2022-10-18T06:00", "--checkpoint-dir", str(ck)])
    assert seen["options"] == TrainOptions(
        epochs=1, batch_size=8, lr=0.002, patience=4, mc_start_epoch=3, fold=1, n_folds=2,
        valid=slice("2022-10-18T06:00", None), seed=5, device="cpu", progress=False,
        checkpoint_dir=str(ck), stage="mean")
    assert set(seen) == {"topography", "config", "options", "init"} and seen["init"] is None
    seen.clear()
    with pytest.raises(_Called):  # event hold-out: file numbers or event names
        main(["train", str(path), str(path), "--out", str(tmp_path / "m2"), *ARGS,
              "--valid-events", "1", "event 0"])
    assert seen["options"].valid_events == (1, "event 0")


def test_cli_bad_training_flags_fail_before_reading_files(tmp_path, capsys):
    absent = str(tmp_path / "absent.nc")  # never opened: the options are checked first
    out = str(tmp_path / "m")
    for flags, message in ((["--epochs", "0"], "epochs must be a positive integer, got 0"),
                           (["--lr", "-1"], "lr must be a finite number >= 0, got -1.0"),
                           (["--device", "gpu"], "device 'gpu' is not a valid device")):
        assert main(["train", absent, "--out", out, *ARGS, *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and "no such file" not in err


@pytest.mark.skipif(shutil.which("xsuperres") is None, reason="console script not installed")
def test_console_script_lists_train():
    res = subprocess.run(["xsuperres", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for opt in ("--S", "--T", "--out", "--epochs", "--preset", "--var", "--topography"):
        assert opt in res.stdout
