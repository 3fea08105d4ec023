"""Tests of the embedded real radar samples (xsuperres.sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xsuperres.sample import DEFAULT_SAMPLE, list_samples, open_sample

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# sample name -> (shared file, rows, cols): must match scripts/make_sample.py
CUTS = {
    "radolan": ("radolan_rw_2022-10-18_hourly.nc", slice(370, 670), slice(240, 440)),
    "knmi": ("knmi_2010-08-26_5min.nc", slice(100, 300), slice(100, 300)),
}


@pytest.fixture(scope="module", params=["radolan", "knmi"])
def sample(request) -> tuple[str, xr.Dataset]:
    return request.param, open_sample(request.param)


@pytest.fixture(scope="module")
def radolan() -> xr.Dataset:
    return open_sample()


def test_list_samples():
    names = list_samples()
    assert names[0] == DEFAULT_SAMPLE == "radolan"
    assert set(names) == {"radolan", "knmi"}


def test_precip_structure(sample):
    name, ds = sample
    p = ds["precip"]
    assert p.dims == ("time", "y", "x")
    assert p.attrs["units"] == "mm h-1"
    assert p.attrs["standard_name"] == "lwe_precipitation_rate"
    assert p.encoding.get("grid_mapping") == "crs" or p.attrs.get("grid_mapping") == "crs"
    assert ds.attrs["Conventions"] == "CF-1.8"
    for key in ("source", "licence", "institution", "references", "history"):
        assert ds.attrs.get(key), key
    assert ds["x"].attrs["units"] == "m" and ds["x"].attrs["axis"] == "X"
    assert ds["y"].attrs["units"] == "m" and ds["y"].attrs["axis"] == "Y"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["lat"].dims == ("y", "x") and ds["lon"].dims == ("y", "x")
    assert "end of accumulation interval" in ds["time"].attrs["comment"]
    # 1 km grid spacing
    np.testing.assert_allclose(np.abs(np.diff(ds["x"].values)), 1000.0)
    np.testing.assert_allclose(np.abs(np.diff(ds["y"].values)), 1000.0)


def test_in_memory(sample):
    _, ds = sample
    assert isinstance(ds["precip"].variable._data, np.ndarray)


def test_sizes_allow_s10_t3_tiles(sample):
    name, ds = sample
    ny, nx, nt = ds.sizes["y"], ds.sizes["x"], ds.sizes["time"]
    assert ny % 10 == 0 and nx % 10 == 0
    assert ny % 100 == 0 and nx % 100 == 0 and ny * nx >= 100 * 100
    assert nt >= 3 * 5  # at least L = 5 context blocks of T = 3
    if name == DEFAULT_SAMPLE:
        assert nt % 3 == 0 and nt == 24


def test_values(sample):
    _, ds = sample
    p = ds["precip"].values
    finite = np.isfinite(p)
    assert finite.mean() > 0.99
    assert (p[finite] >= 0).all()
    assert (p[finite] > 0).mean() > 0.01  # some real rain
    assert np.nanmax(p) < 200.0


def test_topography(radolan):
    topo = radolan["topography"]
    assert topo.dims == ("y", "x")
    assert topo.attrs["units"] == "m"
    assert topo.attrs["standard_name"] == "surface_altitude"
    v = topo.values
    assert np.isfinite(v).all()
    # shared README: 14 .. 799 m
    assert 13.0 < v.min() < 16.0
    assert 790.0 < v.max() < 800.0


def test_knmi_has_no_topography():
    assert "topography" not in open_sample("knmi")


def test_time_axis(sample):
    name, ds = sample
    dt = np.diff(ds["time"].values).astype("timedelta64[m]").astype(int)
    assert (dt == (60 if name == "radolan" else 5)).all()


def test_rioxarray_crs(sample):
    rioxarray = pytest.importorskip("rioxarray")  # noqa: F841
    _, ds = sample
    crs = ds.rio.crs
    assert crs is not None
    assert "Polar_Stereographic" in crs.to_wkt() or "Polar Stereographic" in crs.to_wkt()
    assert ds["precip"].rio.crs == crs


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="radolan") as err:
        open_sample("comephore")
    assert "knmi" in str(err.value)


def test_case_insensitive_and_fresh_copies():
    a = open_sample("RADOLAN")
    b = open_sample()
    a["precip"][:] = -1.0
    assert float(b["precip"].min()) >= 0.0


@pytest.mark.parametrize("name", ["radolan", "knmi"])
def test_equals_shared_subset(name):
    fname, rows, cols = CUTS[name]
    src = SHARED / fname
    if not src.is_file():
        pytest.skip(f"shared data not available at {src}")
    ds = open_sample(name)
    with xr.open_dataset(src, decode_coords="all") as full:
        ref = full.isel(y=rows, x=cols).load()
    xr.testing.assert_equal(ds["precip"], ref["precip"])
    np.testing.assert_array_equal(ds["time"].values, ref["time"].values)
    np.testing.assert_array_equal(ds["lat"].values, ref["lat"].values)
    if "topography" in ref:
        np.testing.assert_array_equal(ds["topography"].values, ref["topography"].values)
    assert ds["crs"].attrs["crs_wkt"] == ref["crs"].attrs["crs_wkt"]
