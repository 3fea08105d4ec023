"""HR grid refinement and the interpolation baselines on xarray objects."""

from __future__ import annotations

import functools
import re
import warnings

import dask
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr

import xsuperres
from xsuperres import coarsen_perfect, interpolate
from xsuperres.grid import hr_index_positions, refine_2d, refine_coordinate, refine_time


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


# ------------------------------------------------------------------- HR lat/lon (2-D coordinates)
@functools.lru_cache(maxsize=None)
def _sample_hr(name):
    """Two steps of an embedded sample: its own lat/lon are the true HR lat/lon."""
    return xsuperres.open_sample(name)["precip"].isel(time=slice(0, 2)).load()


def _drop_grid_mapping(lr):
    out = lr.drop_vars("crs")
    out.encoding.pop("grid_mapping", None)
    out.attrs.pop("grid_mapping", None)
    return out


def _errors_in_hr_pixels(out, hr):
    """Max |error| of lat (lon) as a fraction of the true HR pixel along y (x), in degrees."""
    lat, lon = hr.lat.values.astype(np.float64), hr.lon.values.astype(np.float64)
    pix_lat = np.median(np.abs(np.diff(lat, axis=0)))
    pix_lon = np.median(np.abs(np.diff(lon, axis=1)))
    e_lat = np.abs(out.lat.values.astype(np.float64) - lat).max()
    e_lon = np.abs(out.lon.values.astype(np.float64) - lon).max()
    return e_lat / pix_lat, e_lon / pix_lon


@pytest.mark.parametrize("sample", ["radolan", "knmi"])
@pytest.mark.parametrize("S", [10, 25])
def test_hr_latlon_match_sample_with_grid_mapping_and_without(sample, S):
    hr = _sample_hr(sample)
    lr = coarsen_perfect(hr, S, 1)
    assert lr.encoding["grid_mapping"] == "crs" and "crs" in lr.coords
    # CRS path: HR x/y centres projected with the grid mapping; no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = interpolate(lr, S, 1)
    assert out.lat.dtype == hr.lat.dtype == np.float32 and out.lon.dtype == np.float32
    assert out.lat.attrs == hr.lat.attrs and out.lon.attrs == hr.lon.attrs
    assert out.lat.dims == ("y", "x") and out.lat.shape == hr.lat.shape
    e_lat, e_lon = _errors_in_hr_pixels(out, hr)
    assert e_lat < 0.01 and e_lon < 0.01, (e_lat, e_lon)
    # x/y in km: converted to the CRS's metres
    km = lr.assign_coords(x=lr.x / 1000.0, y=lr.y / 1000.0)
    km.x.attrs, km.y.attrs = dict(lr.x.attrs, units="km"), dict(lr.y.attrs, units="km")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_km = interpolate(km, S, 1)
    assert max(_errors_in_hr_pixels(out_km, hr)) < 0.01
    # Fallback path: no grid mapping; cubic spline in LR index, block-mean curvature removed.
    # Measured: at most 0.36 % of an HR pixel (radolan, S = 25, lat), set by the float32
    # rounding of the LR block means amplified by the extrapolation into the corners.
    bare = _drop_grid_mapping(lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_bare = interpolate(bare, S, 1)
    assert "crs" not in out_bare.coords and out_bare.lat.dtype == np.float32
    e_lat, e_lon = _errors_in_hr_pixels(out_bare, hr)
    assert e_lat < 0.01 and e_lon < 0.01, (e_lat, e_lon)


def test_wrong_grid_mapping_warns_and_falls_back():
    hr = _sample_hr("knmi")
    S = 10
    lr = coarsen_perfect(hr, S, 1)
    wrong = lr.assign_coords(crs=xr.DataArray(np.int32(0), attrs=pyproj.CRS.from_epsg(3035).to_cf()))
    with pytest.warns(UserWarning, match="quarter of an LR pixel"):
        out = interpolate(wrong, S, 1)
    assert max(_errors_in_hr_pixels(out, hr)) < 0.01
    np.testing.assert_array_equal(out.lat.values, interpolate(_drop_grid_mapping(lr), S, 1).lat.values)
    # x/y declared in km while they are metres: the same check catches it
    bad_units = lr.copy()
    bad_units.x.attrs = dict(lr.x.attrs, units="km")
    with pytest.warns(UserWarning, match="not trusted"):
        interpolate(bad_units, S, 1)


def _analytic(i, j):
    """A smooth field of the fractional LR indices (cubic at most: reproduced exactly)."""
    return 40.0 + 0.3 * i - 0.2 * j + 0.01 * i * j + 0.02 * i**2 - 0.003 * j**3


def test_refine_2d_analytic_field_edges_included():
    ny, nx, S = 5, 7, 4
    yi, xj = hr_index_positions(ny, S), hr_index_positions(nx, S)
    assert yi[0] == -0.375 and yi[-1] == ny - 1 + 0.375  # half an LR cell minus half an HR cell out
    truth = _analytic(yi[:, None], xj[None, :])
    # LR centre values
    centres = _analytic(np.arange(ny)[:, None], np.arange(nx)[None, :])
    np.testing.assert_allclose(refine_2d(centres, S), truth, rtol=0, atol=1e-10)
    # LR block means (as coarsen_perfect makes lat/lon): the curvature bias is removed
    means = truth.reshape(ny, S, nx, S).mean(axis=(1, 3))
    np.testing.assert_allclose(refine_2d(means, S, block_mean=True), truth, rtol=0, atol=1e-10)
    assert np.abs(refine_2d(means, S) - truth).max() > 1e-4  # the bias it removes
    # through interpolate: a 2-D coordinate that is not lat/lon, and lat without grid mapping
    lr = lr_field(nt=2, ny=3, nx=4).assign_coords(y=[25.0, 15.0, 5.0])
    S = 5
    yi, xj = hr_index_positions(3, S), hr_index_positions(4, S)
    field = _analytic(yi[:, None], xj[None, :])
    hr_field = xr.DataArray(field.astype(np.float32), dims=("y", "x"), attrs={"units": "degrees_north"})
    lr = lr.assign_coords(
        lat=(("y", "x"), field.reshape(3, S, 4, S).mean(axis=(1, 3)).astype(np.float32), hr_field.attrs),
        aux=(("y", "x"), field.reshape(3, S, 4, S).mean(axis=(1, 3)), {"long_name": "something smooth"}),
        mask=(("y", "x"), np.arange(12, dtype=np.int16).reshape(3, 4)),
    )
    out = interpolate(lr, S, 3)
    assert out.lat.dtype == np.float32 and out.aux.dtype == np.float64 and out.mask.dtype == np.int16
    assert out.lat.attrs == {"units": "degrees_north"} and out.aux.attrs == {"long_name": "something smooth"}
    np.testing.assert_allclose(out.lat.values, field, rtol=0, atol=2e-5)
    np.testing.assert_allclose(out.aux.values, field, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(out.mask.values, np.kron(lr.mask.values, np.ones((S, S), dtype=np.int16)))


@pytest.mark.parametrize("offset", [-180.0, 0.0])
def test_refine_2d_longitudes_across_the_antimeridian(offset):
    """Longitudes in -180..180 crossing 180, and in 0..360 crossing 0/360."""
    ny, nx, S = 4, 6, 5
    yi, xj = hr_index_positions(ny, S), hr_index_positions(nx, S)
    start = 177.0 if offset < 0 else 357.0
    continuous = start + 0.8 * xj[None, :] + 0.1 * yi[:, None] + 0.01 * xj[None, :] ** 2
    wrap = lambda a: (a - offset) % 360.0 + offset  # noqa: E731
    truth = wrap(continuous)
    lr = wrap(continuous.reshape(ny, S, nx, S).mean(axis=(1, 3)))
    assert (np.abs(np.diff(lr, axis=1)) > 180).any()  # the LR grid itself crosses the line
    got = refine_2d(lr, S, block_mean=True, period=360.0)
    assert got.min() >= offset and got.max() <= offset + 360.0
    diff = (got - truth + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)
    # and through interpolate, as a longitude coordinate without grid mapping
    da = xr.DataArray(np.zeros((2, ny, nx), np.float32), dims=("time", "y", "x"), attrs={"units": "mm h-1"},
                      coords={"time": pd.date_range("2020-01-01", periods=2, freq="h"),
                              "y": np.arange(ny) * 10.0, "x": np.arange(nx) * 10.0,
                              "lon": (("y", "x"), lr, {"standard_name": "longitude"})})
    out = interpolate(da, S, 1)
    np.testing.assert_allclose((out.lon.values - truth + 180.0) % 360.0 - 180.0, 0.0, atol=1e-9)


def _history_times_masked(da: xr.DataArray) -> xr.DataArray:
    """``da`` with the UTC timestamps of its ``history`` lines replaced by a placeholder."""
    history = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", da.attrs["history"])
    return da.assign_attrs(history=history)


def test_accessor_faces_delegate_and_dataset_maps_over_precipitation():
    import xsuperres  # noqa: F401  (registers .stsr)

    hr = xsuperres.open_sample("knmi")["precip"].isel(time=slice(0, 6), y=slice(0, 20), x=slice(0, 20))
    lr = hr.stsr.coarsen_perfect(10, 3)
    direct = xsuperres.interpolate(lr, 10, 3, "nearest")
    # identical up to the history's timestamps (the two calls may fall in different seconds)
    xr.testing.assert_identical(_history_times_masked(lr.stsr.interpolate(10, 3, "nearest")),
                                _history_times_masked(direct))
    tas = xr.full_like(lr, 280.0).assign_attrs(units="K")
    ds = xr.Dataset({"precip": lr, "tas": tas})
    assert ds.stsr.precipitation_vars == ["precip"]
    out = ds.stsr.interpolate(10, 3, "nearest")
    assert list(out.data_vars) == ["precip"]
    np.testing.assert_array_equal(out["precip"].values, direct.values)
    with pytest.raises(ValueError, match="no precipitation variable"):
        xr.Dataset({"tas": tas}).stsr.interpolate(10, 3)
