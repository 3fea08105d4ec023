"""Training the diffusion stage around a temporal peer (``diffusion_mean``) for S = 1 models."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xsuperres.config import SRConfig
from xsuperres.temporal import block_in_time
from xsuperres.training import TrainOptions, build_training_data, train
from xsuperres.training.data import time_means
from xsuperres.training.samples import GivenMeanDataset


def rain(nt=15, ny=12, nx=12, seed=0):
    """A wet, moving, non-negative 5-min field (mm/h) with a dry corner."""
    rng = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(nt), np.arange(ny), np.arange(nx), indexing="ij")
    vals = 4.0 + 3.0 * np.sin(0.5 * (x - 0.7 * t)) * np.cos(0.4 * y) + rng.gamma(1.0, 0.5, (nt, ny, nx))
    vals[:, :3, :3] = 0.0
    return xr.DataArray(vals.clip(0), dims=("time", "y", "x"), name="rain",
                        coords={"time": pd.date_range("2020-01-01", periods=nt, freq="5min"),
                                "y": np.arange(ny) * 1000.0, "x": np.arange(nx) * 1000.0},
                        attrs={"units": "mm h-1"})


def config(**kw):
    return SRConfig.recipe(1, 3, L=2, tile_size=6, preset="tiny", cap=20.0, **kw)


def numpy_block_means(a, T):
    """Independent temporal block means of (time, y, x) by a reshape."""
    return a.reshape(-1, T, *a.shape[1:]).mean(axis=1)


@pytest.mark.parametrize("method", ["linear", "persistence"])
def test_time_means_are_the_blocks_of_downscale(method):
    da = rain()
    td = build_training_data(da, 1, 3, config=config(), fold=0, n_folds=2)
    (m,) = time_means(td, method)
    hr = np.clip(da.values, 0, 20.0) / 20.0
    assert m.shape == hr.shape == (15, 12, 12) and m.dtype == np.float32
    lr = numpy_block_means(hr, 3)  # the contexts' frames, from an independent coarsening
    # every block averages to its LR frame (the mean reproduces the coarse input)
    np.testing.assert_allclose(numpy_block_means(m, 3), lr, rtol=1e-5, atol=1e-6)
    # interior blocks: exactly what downscale's mean_in_time computes from x[t-1], x[t], x[t+1]
    for t in range(1, 4):
        want = block_in_time(lr[t - 1:t + 2] * 20.0, 3, method) / 20.0
        np.testing.assert_allclose(m[3 * t:3 * t + 3], want, rtol=1e-5, atol=1e-6)
    if method == "persistence":
        np.testing.assert_allclose(m, np.repeat(lr, 3, axis=0), rtol=1e-6)


def test_time_means_motion_uses_the_whole_domain_flow():
    pytest.importorskip("pysteps")
    da = rain(ny=18, nx=18)  # whole tiles of 6
    td = build_training_data(da, 1, 3, config=config(), fold=0, n_folds=2)
    (m,) = time_means(td, "motion")
    lr = numpy_block_means(np.clip(da.values, 0, 20.0) / 20.0, 3)
    np.testing.assert_allclose(numpy_block_means(m, 3), lr, rtol=1e-5, atol=1e-6)
    want = block_in_time(lr[1:4] * 20.0, 3, "motion") / 20.0
    np.testing.assert_allclose(m[6:9], want, rtol=1e-4, atol=1e-5)
    # and it is not the linear mean (the field moves)
    assert np.abs(m[6:9] - block_in_time(lr[1:4] * 20.0, 3, "linear") / 20.0).max() > 1e-3


def test_given_mean_dataset_cuts_the_target_block():
    da = rain()
    td = build_training_data(da, 1, 3, config=config(), fold=0, n_folds=2)
    means = time_means(td, "linear")
    ds = GivenMeanDataset(td.train, means)
    assert len(ds) == len(td.train) > 0
    for i in range(len(ds)):
        _, k, t = (int(v) for v in td.train.records[i])
        tile = td.split.tiles[0][k]
        item = ds[i]
        np.testing.assert_array_equal(item["target"].numpy(), td.train[i]["target"].numpy())
        np.testing.assert_array_equal(item["mean"].numpy(), means[0][3 * t:3 * t + 3, tile.yslice, tile.xslice])
    with pytest.raises(ValueError, match="one array per event"):
        GivenMeanDataset(td.train, [means[0][:3]])


def linear_mean_blocks(da):
    """The training blocks of ``da`` (fold 0 of 2, ``config()``), by a numpy loop: the data
    and prepared samples, the normalized targets and their linear temporal means."""
    td = build_training_data(da, 1, 3, config=config(), fold=0, n_folds=2)
    (m,) = time_means(td, "linear")
    hr = np.clip(da.values, 0, 20.0) / 20.0
    targets, means = [], []
    for _, k, t in td.train.records:
        tile = td.split.tiles[0][int(k)]
        sl = (slice(3 * t, 3 * t + 3), tile.yslice, tile.xslice)
        targets.append(hr[sl])
        means.append(m[sl])
    return td, targets, means


def test_training_around_the_linear_mean_uses_it():
    da = rain()
    kw = dict(config=config(), epochs=1, progress=False, n_folds=2)
    model = train(da, 1, 3, diffusion_mean="linear", **kw)
    assert model.metadata["protocol"]["diffusion_mean"] == "linear"
    # the residual scale is the RMS of target - linear mean over the (<= 256) training samples
    td, hr, m = linear_mean_blocks(da)
    rms = float(np.sqrt(np.mean(np.concatenate([(h - d).ravel() for h, d in zip(hr, m)]) ** 2)))
    assert len(td.train) <= 256
    assert model.normalization["residual_scale"] == pytest.approx(rms, rel=1e-5)
    plain = train(da, 1, 3, **kw)
    assert plain.metadata["protocol"]["diffusion_mean"] == "network"
    assert plain.normalization["residual_scale"] != pytest.approx(rms, rel=1e-3)
    # the same mean network (the mean stage does not depend on the option)
    torch.testing.assert_close(plain.mean_net.stem.weight, model.mean_net.stem.weight, rtol=0, atol=0)


def test_diffusion_mean_refusals():
    with pytest.raises(ValueError, match=re.escape("diffusion_mean must be one of ('network', 'motion', "
                                                   "'linear', 'persistence'), got 'flow'")):
        TrainOptions(diffusion_mean="flow")
    da = rain()
    with pytest.raises(ValueError, match=r"diffusion_mean='linear' needs a temporal model \(S = 1, T > 1\), "
                                         r"got S=2, T=3"):
        train(da, 2, 3, config=SRConfig.recipe(2, 3, L=2, tile_size=6, preset="tiny", cap=20.0), epochs=1,
              progress=False, n_folds=2, diffusion_mean="linear")
