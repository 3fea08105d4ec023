"""Tests of the RainFARM peer (xsuperres.peers), against pysteps itself."""

from __future__ import annotations

import contextlib
import io
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xsuperres
from xsuperres.peers import member_seed, rainfarm

pytestmark = pytest.mark.usefixtures("synchronous_dask")


def _lr(nt=4, ny=6, nx=6, seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.gamma(0.7, 2.0, size=(nt, ny, nx)) * (rng.random((nt, ny, nx)) > 0.2)).astype("float32")
    return xr.DataArray(data, dims=("time", "y", "x"), name="pr",
                        coords={"time": pd.date_range("2021-06-01", periods=nt, freq="3h"),
                                "y": ("y", np.arange(ny) * 10e3, {"units": "m"}),
                                "x": ("x", np.arange(nx) * 10e3, {"units": "m"})},
                        attrs={"units": "mm h-1"})


def _pysteps():
    pytest.importorskip("pysteps")
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.downscaling import rainfarm as rf
    return rf


def test_members_are_pysteps_rainfarm_with_keyed_seeds():
    """Member m at LR step t is pysteps' RainFARM after np.random.seed(member_seed(seed, m,
    t)); the T HR steps of a block repeat it; the caller's numpy random state is kept."""
    rf = _pysteps()
    lr = _lr()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    out = rainfarm(lr, 4, 2, 3, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    assert out.dims == ("member", "time", "y", "x") and out.shape == (3, 8, 24, 24)
    for m in range(3):
        for t in range(4):
            np.random.seed(member_seed(7, m, t))
            ref = rf.downscale(lr.values[t].astype(np.float64), 4).astype(np.float32)
            np.testing.assert_array_equal(out.values[m, 2 * t], ref)
            np.testing.assert_array_equal(out.values[m, 2 * t + 1], ref)
    assert not np.allclose(out.values[0], out.values[1])  # members differ
    np.testing.assert_array_equal(rainfarm(lr, 4, 2, 3, seed=7).values, out.values)


def test_block_means_chunks_nan_and_coordinates():
    _pysteps()
    lr = _lr(nt=3, seed=1)
    lr[1, 2, 3] = np.nan
    out = rainfarm(lr, 4, 1, 2, seed=0)
    # without a smoothing kernel RainFARM keeps every LR cell's mean (numpy block mean)
    blocks = out.values.reshape(2, 3, 6, 4, 6, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(blocks, np.broadcast_to(lr.values, blocks.shape), rtol=1e-5, atol=1e-6,
                               equal_nan=True)
    assert np.isnan(out.values[:, 1, 8:12, 12:16]).all() and np.isfinite(out.values[:, 0]).all()
    # the same members whatever the chunking
    chunked = rainfarm(lr.chunk(time=1), 4, 1, 2, seed=0)
    assert chunked.chunks is not None
    np.testing.assert_array_equal(chunked.values, out.values)
    # the coordinates of the interpolation baselines
    ref = xsuperres.interpolate(lr, 4, 1, "nearest")
    for name in ("time", "y", "x"):
        np.testing.assert_array_equal(out[name].values, ref[name].values)
    assert out.attrs["units"] == "mm h-1" and "rainfarm(S=4" in out.attrs["history"]


def test_refusals():
    _pysteps()
    lr = _lr()
    with pytest.raises(ValueError, match="n_members"):
        rainfarm(lr, 4, 1, 0)
    with pytest.raises(ValueError, match="seed"):
        rainfarm(lr, 4, 1, 2, seed=-1)
    bad = lr.copy()
    del bad.attrs["units"]
    with pytest.raises(ValueError, match="units"):
        rainfarm(bad, 4)


def test_without_pysteps_the_error_says_how_to_install(monkeypatch):
    # a None entry in sys.modules makes every import of that module fail, as if absent
    for name in ("pysteps", "pysteps.downscaling", "pysteps.downscaling.rainfarm", "pysteps.motion"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"RainFARM needs pysteps.*xsuperres\[peers\]"):
        rainfarm(_lr(), 4)
    from xsuperres.temporal import optical_flow

    with pytest.raises(ImportError, match=r"motion-compensated interpolation needs pysteps.*xsuperres\[peers\]"):
        optical_flow(np.ones((8, 8)), np.ones((8, 8)))
