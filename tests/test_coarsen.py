"""coarsen_perfect against a plain numpy loop, laziness, metadata and error paths."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xsuperres
from xsuperres import coarsen_perfect


def loop_reference(y: np.ndarray, S: int, T: int) -> np.ndarray:
    """The operator's formula (docs/getting-started.md), written as explicit loops over LR indices."""
    nt, ny, nx = y.shape[0] // T, y.shape[1] // S, y.shape[2] // S
    out = np.empty((nt, ny, nx))
    for t in range(nt):
        for n in range(ny):
            for m in range(nx):
                total = 0.0
                for k in range(T):
                    for i in range(S):
                        for j in range(S):
                            total += y[t * T + k, S * n + i, S * m + j]
                out[t, n, m] = total / (T * S * S)
    return out


def make_field(nt=6, ny=8, nx=12, seed=0, chunks=None, dtype="float64") -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.gamma(0.5, 2.0, size=(nt, ny, nx)) * (rng.random((nt, ny, nx)) > 0.4)
    da = xr.DataArray(
        data.astype(dtype),
        dims=("time", "y", "x"),
        coords={
            "time": pd.date_range("2022-10-18T00:50", periods=nt, freq="1h"),
            "y": 1000.0 * np.arange(ny)[::-1],
            "x": 500.0 + 1000.0 * np.arange(nx),
        },
        name="precip",
        attrs={"units": "mm h-1", "standard_name": "lwe_precipitation_rate", "cell_methods": "time: mean"},
    )
    return da.chunk(chunks) if chunks else da


class RaiseOnCompute:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("dask computed something, but the operation should be lazy")


@pytest.mark.parametrize("S,T", [(1, 1), (2, 3), (4, 2), (1, 6), (2, 1)])
def test_matches_numpy_loop_on_random_data(S, T):
    da = make_field(nt=6, ny=8, nx=12)
    out = coarsen_perfect(da, S, T)
    np.testing.assert_allclose(out.values, loop_reference(da.values, S, T), rtol=1e-12)
    assert isinstance(out, xr.DataArray)
    assert out.sizes == {"time": 6 // T, "y": 8 // S, "x": 12 // S}


def test_matches_numpy_loop_on_real_sample():
    ds = xsuperres.open_sample()
    out = ds.stsr.coarsen_perfect(10, 3)
    ref = loop_reference(ds.precip.values.astype(np.float64), 10, 3)
    np.testing.assert_allclose(out.precip.values, ref, rtol=1e-6, equal_nan=True)
    # and lazily on dask, equal to the same reference
    lazy = ds.chunk({"time": 6, "y": 100, "x": 100}).stsr.coarsen_perfect(10, 3)
    assert isinstance(lazy.precip.data, dsa.Array)
    np.testing.assert_allclose(lazy.precip.values, ref, rtol=1e-6, equal_nan=True)


def test_coordinates_are_block_centres_and_block_starts():
    da = make_field(nt=6, ny=8, nx=12)
    out = coarsen_perfect(da, 4, 3)
    np.testing.assert_array_equal(out.time.values, da.time.values[[0, 3]])
    np.testing.assert_allclose(out.x.values, [2000.0, 6000.0, 10000.0])  # centres of 4 km blocks
    np.testing.assert_allclose(out.y.values, [5500.0, 1500.0])


def test_two_d_auxiliary_coordinates_are_block_averaged():
    da = make_field(nt=3, ny=4, nx=6)
    lat = np.arange(24.0).reshape(4, 6)
    da = da.assign_coords(lat=(("y", "x"), lat))
    out = coarsen_perfect(da, 2, 3)
    expected = lat.reshape(2, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out.lat.values, expected)


def test_lazy_on_dask_and_equal_to_numpy():
    da = make_field(nt=12, ny=20, nx=20, chunks={"time": 5, "y": 7, "x": 20})
    with dask.config.set(scheduler=RaiseOnCompute()):
        out = coarsen_perfect(da, 5, 3)
        assert isinstance(out.data, dsa.Array)
    np.testing.assert_allclose(out.values, loop_reference(da.values, 5, 3), rtol=1e-12)


def test_attributes_cell_methods_and_history():
    da = make_field()
    da.attrs["history"] = "made by a test"
    out = coarsen_perfect(da, 2, 3)
    assert out.attrs["units"] == "mm h-1"
    assert out.attrs["standard_name"] == "lwe_precipitation_rate"
    assert out.attrs["cell_methods"] == "time: mean time: mean area: mean"
    assert out.attrs["history"].startswith("made by a test\n")
    assert "coarsen_perfect(S=2, T=3)" in out.attrs["history"]
    only_space = coarsen_perfect(make_field(), 2, 1)
    assert only_space.attrs["cell_methods"].endswith("time: mean area: mean")
    assert "time: mean time" not in only_space.attrs["cell_methods"]
    assert coarsen_perfect(make_field(), 1, 1).attrs["cell_methods"] == "time: mean"


def test_input_not_modified():
    da = make_field()
    before = da.copy(deep=True)
    coarsen_perfect(da, 2, 3)
    xr.testing.assert_identical(da, before)


def test_nan_block_is_nan():
    da = make_field(nt=3, ny=4, nx=4)
    da[1, 0, 0] = np.nan
    out = coarsen_perfect(da, 2, 3)
    assert np.isnan(out.values[0, 0, 0])
    assert np.isfinite(out.values[0, 0, 1]) and np.isfinite(out.values[0, 1, 0])


def test_float32_stays_float32_and_is_accurate():
    da = make_field(nt=6, ny=20, nx=20, dtype="float32")
    out = coarsen_perfect(da, 10, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.values, loop_reference(da.values.astype(float), 10, 3), rtol=1e-6)


def test_dataset_variables_by_their_dims():
    da = make_field(nt=6, ny=8, nx=12)
    ds = xr.Dataset(
        {
            "precip": da,
            "topography": (("y", "x"), np.arange(96.0).reshape(8, 12), {"units": "m"}),
            "station_id": ((), 7),
        },
        coords={"crs": ((), 0, {"grid_mapping_name": "polar_stereographic", "GeoTransform": "0 1 0 0 0 -1"})},
        attrs={"title": "test"},
    )
    ds["precip"].attrs["grid_mapping"] = "crs"
    out = coarsen_perfect(ds, 2, 3)
    assert isinstance(out, xr.Dataset)
    np.testing.assert_allclose(out.precip.values, loop_reference(da.values, 2, 3))
    topo = np.arange(96.0).reshape(8, 12).reshape(4, 2, 6, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out.topography.values, topo)
    assert out.topography.attrs["cell_methods"] == "area: mean"
    assert int(out.station_id) == 7
    assert "crs" in out.coords and "GeoTransform" not in out.crs.attrs
    assert out.attrs["title"] == "test" and "coarsen_perfect" in out.attrs["history"]


def test_time_bounds_span_the_block():
    da = make_field(nt=6, ny=2, nx=2)
    starts = da.time.values - np.timedelta64(1, "h")
    ds = da.to_dataset().assign_coords(time_bnds=(("time", "nv"), np.stack([starts, da.time.values], axis=1)))
    ds.time.attrs["bounds"] = "time_bnds"
    out = coarsen_perfect(ds, 1, 3)
    np.testing.assert_array_equal(out.time_bnds.values[:, 0], starts[[0, 3]])
    np.testing.assert_array_equal(out.time_bnds.values[:, 1], da.time.values[[2, 5]])


# --- error paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 2.5, 3.0, "3", True, None])
def test_factors_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="S must be a positive integer"):
        coarsen_perfect(make_field(), bad, 1)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        coarsen_perfect(make_field(), 1, bad)


def test_numpy_integer_factors_are_accepted():
    out = coarsen_perfect(make_field(), np.int64(2), np.int32(3))
    assert out.sizes["x"] == 6


def test_not_divisible_names_dimension_size_and_factor():
    da = make_field(nt=7, ny=8, nx=12)
    with pytest.raises(ValueError, match=r"'time' has size 7, which is not divisible by the factor T=3"):
        coarsen_perfect(da, 2, 3)
    with pytest.raises(ValueError, match=r"'x' has size 12, which is not divisible by the factor S=5"):
        coarsen_perfect(make_field(ny=10), 5, 1)


def test_trim_drops_the_remainder_at_the_end():
    da = make_field(nt=7, ny=9, nx=13)
    out = coarsen_perfect(da, 2, 3, boundary="trim")
    ref = loop_reference(da.values[:6, :8, :12], 2, 3)
    np.testing.assert_allclose(out.values, ref)
    with pytest.raises(ValueError, match="boundary"):
        coarsen_perfect(da, 2, 3, boundary="pad")


def test_irregular_time_steps_raise():
    da = make_field(nt=6)
    times = da.time.values.copy()
    times[4] += np.timedelta64(30, "m")
    with pytest.raises(ValueError, match="irregular"):
        coarsen_perfect(da.assign_coords(time=times), 2, 3)


def test_missing_or_ambiguous_dims_are_clear():
    da = make_field().rename(x="col")
    with pytest.raises(xsuperres.DimensionError, match=r"no 'x' dimension found.*dims="):
        coarsen_perfect(da, 2, 3)
    out = coarsen_perfect(da, 2, 3, dims={"x": "col"})
    assert out.sizes["col"] == 6


# --- properties ---------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    S=st.integers(1, 4), T=st.integers(1, 3), n=st.integers(1, 3), k=st.integers(1, 3), seed=st.integers(0, 2**16)
)
def test_mean_over_whole_field_is_preserved(S, T, n, k, seed):
    da = make_field(nt=T * k, ny=S * n, nx=S * (n + 1), seed=seed)
    out = coarsen_perfect(da, S, T)
    np.testing.assert_allclose(float(out.mean()), float(da.mean()), rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    S1=st.integers(1, 3), S2=st.integers(1, 3), T1=st.integers(1, 3), T2=st.integers(1, 2), seed=st.integers(0, 2**16)
)
def test_coarsening_composes(S1, S2, T1, T2, seed):
    da = make_field(nt=T1 * T2 * 2, ny=S1 * S2 * 2, nx=S1 * S2, seed=seed)
    twice = coarsen_perfect(coarsen_perfect(da, S1, T1), S2, T2)
    once = coarsen_perfect(da, S1 * S2, T1 * T2)
    np.testing.assert_allclose(twice.values, once.values, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(twice.time.values, once.time.values)
    np.testing.assert_allclose(twice.x.values, once.x.values)
