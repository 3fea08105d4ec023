"""HR grid refinement and the interpolation baselines on xarray objects."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xsuperres import coarsen_perfect, interpolate
from xsuperres.grid import refine_coordinate, refine_time


class RaiseOnCompute:
    def __call__(self, *args, **kwargs):
        raise AssertionError("dask computed something, but the operation should be lazy")


def lr_field(nt=2, ny=3, nx=4, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.gamma(0.6, 1.5, size=(nt, ny, nx)).astype(np.float32),
        dims=("time", "y", "x"),
        coords={
            "time": pd.date_range("2020-01-01", periods=nt, freq="3h"),
            "y": [25.0, 15.0, 5.0],
            "x": [5.0, 15.0, 25.0, 35.0][:nx],
        },
        attrs={"units": "mm h-1", "standard_name": "lwe_precipitation_rate"},
        name="precip",
    )


def test_refined_coordinates_hand_computed():
    # LR cells of 10 m centred at 5, 15: HR cells of 2 m (S = 5) centred at 1, 3, 5, 7, 9, 11, ...
    np.testing.assert_allclose(refine_coordinate(np.array([5.0, 15.0]), 5), np.arange(1.0, 20.0, 2.0))
    np.testing.assert_allclose(refine_coordinate(np.array([15.0, 5.0]), 2), [17.5, 12.5, 7.5, 2.5])
    times = refine_time(pd.date_range("2020-01-01", periods=2, freq="3h").values, 3)
    assert list(pd.DatetimeIndex(times).hour) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="spacing is unknown"):
        refine_coordinate(np.array([5.0]), 2)


def test_nearest_conserves_block_means_and_coordinates_round_trip():
    lr = lr_field()
    hr = interpolate(lr, 5, 3, "nearest")
    assert hr.sizes == {"time": 6, "y": 15, "x": 20}
    back = coarsen_perfect(hr, 5, 3)
    np.testing.assert_allclose(back.values, lr.values, rtol=1e-6)
    np.testing.assert_allclose(back.x.values, lr.x.values)
    np.testing.assert_allclose(back.y.values, lr.y.values)
    np.testing.assert_array_equal(back.time.values, lr.time.values)


def test_bicubic_constant_and_non_negative_nearest_is_kron():
    lr = lr_field(nt=1, ny=3, nx=4)
    hr = interpolate(lr, 4, 1, "bicubic")
    assert float(hr.min()) >= 0.0
    # Cubic convolution reproduces a constant field exactly, borders included.
    const = lr.copy(data=np.full((1, 3, 4), 2.5, dtype=np.float32))
    np.testing.assert_allclose(interpolate(const, 4, 1, "bicubic").values, 2.5, rtol=1e-6)
    # nearest equals the Kronecker product with a block of ones
    near = interpolate(lr, 4, 1, "nearest").values[0]
    np.testing.assert_array_equal(near, np.kron(lr.values[0], np.ones((4, 4), dtype=np.float32)))


def test_nan_propagates_to_its_block_only():
    lr = lr_field()
    lr[0, 1, 2] = np.nan
    hr = interpolate(lr, 2, 3, "bicubic")
    nan = np.isnan(hr.values)
    assert nan[:3, 2:4, 4:6].all() and nan.sum() == 3 * 4
    assert not np.isnan(hr.values[3:]).any()


def test_lazy_and_attributes():
    lr = lr_field().chunk({"time": 1})
    with dask.config.set(scheduler=RaiseOnCompute()):
        hr = interpolate(lr, 2, 3)
    assert hr.chunks is not None
    assert hr.attrs["units"] == "mm h-1" and "interpolate(S=2, T=3" in hr.attrs["history"]
    np.testing.assert_allclose(hr.values, interpolate(lr.compute(), 2, 3).values)
