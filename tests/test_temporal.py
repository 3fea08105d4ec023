"""Temporal peers (persistence, linear, motion-compensated) against independent references."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage
import xarray as xr

from xsuperres import coarsen_perfect, interpolate
from xsuperres.temporal import (advect, conserve_in_time, linear_in_time, motion_in_time,
                                optical_flow, persistence_in_time, upsample_in_time)

pytest.importorskip("pysteps")


def ref_linear(x, T):
    """Loop reference: HR step j of block t sits (j + 1/2) / T - 1/2 LR steps from the
    block centre; interpolate between centres (flat beyond the ends); then rescale each
    pixel's T steps to the block mean (x itself where they are all zero)."""
    n, h, w = x.shape
    out = np.zeros((n * T, h, w))
    for t in range(n):
        for j in range(T):
            f = (j + 0.5) / T - 0.5
            if f < 0:
                other = x[t - 1] if t > 0 else x[t]
                out[t * T + j] = x[t] + f * (x[t] - other)
            else:
                other = x[t + 1] if t < n - 1 else x[t]
                out[t * T + j] = x[t] + f * (other - x[t])
        for p in range(h):
            for q in range(w):
                block = out[t * T:(t + 1) * T, p, q]
                m = block.mean()
                out[t * T:(t + 1) * T, p, q] = block * x[t, p, q] / m if m > 0 else x[t, p, q]
    return out


def test_linear_hand_computed_and_against_a_loop():
    # one pixel, T = 3, x = 0, 3, 6: the middle block is [2, 3, 4] (already conserving);
    # the first is [0, 0, 1] rescaled to mean 0; the last is [5, 6, 6] rescaled to mean 6
    x = np.array([0.0, 3.0, 6.0])[:, None, None]
    got = linear_in_time(x, 3)[:, 0, 0]
    np.testing.assert_allclose(got, [0, 0, 0, 2, 3, 4, *(np.array([5, 6, 6]) * 6 / (17 / 3))])
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 2.0, size=(5, 4, 3)) * (rng.random((5, 4, 3)) > 0.3)
    for T in (2, 3, 6):
        np.testing.assert_allclose(linear_in_time(x, T), ref_linear(x, T), rtol=1e-12)
        np.testing.assert_array_equal(persistence_in_time(x, T), np.repeat(x, T, axis=0))


def test_conserve_in_time():
    x = np.array([[[2.0, 1.0]]])
    hr = np.array([[[1.0, 0.0]], [[3.0, 0.0]]])  # pixel 0 has mean 2 already; pixel 1 is dry
    np.testing.assert_allclose(conserve_in_time(hr, x, 2), [[[1.0, 1.0]], [[3.0, 1.0]]])


def test_advect_is_a_shift_for_a_constant_displacement():
    rng = np.random.default_rng(1)
    u = scipy.ndimage.gaussian_filter(rng.random((20, 24)), 2)
    d = np.stack([np.full((20, 24), 1.5), np.full((20, 24), -0.75)])  # x then y
    ref = scipy.ndimage.shift(u, (-0.75, 1.5), order=1, mode="nearest")
    np.testing.assert_allclose(advect(u, d)[3:-3, 3:-3], ref[3:-3, 3:-3], atol=1e-12)


def _blob(n, T, v, size=40):
    """A Gaussian rain cell moving v = (vx, vy) HR pixels per HR step: HR truth (n T) and
    its LR block means (n)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    hr = np.stack([8 * np.exp(-((xx - 12 - v[0] * k) ** 2 + (yy - 14 - v[1] * k) ** 2) / 18)
                   for k in range(n * T)])
    return hr, hr.reshape(n, T, size, size).mean(axis=1)


def test_motion_with_zero_flow_is_linear_and_with_the_true_flow_beats_it():
    T = 3
    truth, x = _blob(5, T, (1.0, 0.5))
    zero = np.zeros((4, 2) + x.shape[1:])
    np.testing.assert_allclose(motion_in_time(x, T, velocities=zero), linear_in_time(x, T),
                               rtol=1e-10, atol=1e-12)
    true_v = np.broadcast_to(np.array([T * 1.0, T * 0.5])[None, :, None, None], zero.shape)
    mc = motion_in_time(x, T, velocities=true_v)
    inner = slice(T, 4 * T)  # blocks with both neighbours
    err = lambda a: np.abs(a[inner] - truth[inner]).mean()  # noqa: E731
    assert err(mc) < 0.5 * err(linear_in_time(x, T)) < 0.5 * err(persistence_in_time(x, T))
    # the optical flow of pysteps finds the motion (3, 1.5 pixels per LR step) near the cell
    V = optical_flow(x[1], x[2])
    near = (slice(12, 22), slice(14, 24))
    assert np.median(V[0][near]) == pytest.approx(3.0, abs=1.0)
    assert np.median(V[1][near]) == pytest.approx(1.5, abs=1.0)
    auto = motion_in_time(x, T)
    assert err(auto) < err(linear_in_time(x, T))
    for out in (mc, auto):
        np.testing.assert_allclose(out.reshape(5, T, 40, 40).mean(axis=1), x, rtol=1e-10, atol=1e-12)


def test_nan_and_bad_arguments():
    x = np.ones((3, 2, 2))
    x[1, 0, 0] = np.nan
    for method in ("persistence", "linear", "motion"):
        out = upsample_in_time(x, 2, method)
        assert np.isnan(out[2:4, 0, 0]).all() and np.isfinite(np.delete(out.reshape(6, 4), 0, 1)).all()
    with pytest.raises(ValueError, match="time_method must be one of"):
        upsample_in_time(x, 2, "cubic")
    with pytest.raises(ValueError, match="shape"):
        upsample_in_time(x[0], 2, "linear")
    with pytest.raises(ValueError, match="velocities must have shape"):
        motion_in_time(np.nan_to_num(x), 2, velocities=np.zeros((3, 2, 2, 2)))


def test_interpolate_time_methods_on_xarray():
    truth, x = _blob(4, 3, (1.0, 0.5), size=20)
    lr = xr.DataArray(x.astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": pd.date_range("2020-01-01", periods=4, freq="15min"),
                              "y": np.arange(20.0), "x": np.arange(20.0)},
                      attrs={"units": "mm h-1"}, name="precip")
    ref = interpolate(lr, 1, 3, "nearest")
    for method in ("linear", "motion"):
        with dask.config.set(scheduler="synchronous"):
            lazy = interpolate(lr.chunk(time=1), 1, 3, "nearest", time_method=method)
        assert lazy.chunks is not None
        out = lazy.compute()
        xr.testing.assert_identical(out.coords.to_dataset(), ref.coords.to_dataset())
        np.testing.assert_allclose(out.values, upsample_in_time(lr.values, 3, method), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(coarsen_perfect(out, 1, 3).values, lr.values, rtol=1e-5, atol=1e-6)
        assert f"time_method={method!r}" in out.attrs["history"]
        assert "rescaled to keep each LR step's mean" in out.attrs["comment"]
    # S > 1: temporal on the LR grid first, then space
    hr = interpolate(lr, 2, 3, "nearest", time_method="linear")
    np.testing.assert_allclose(hr.values[:, ::2, ::2], linear_in_time(x, 3), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="time_method must be one of"):
        interpolate(lr, 1, 3, time_method="spline")
