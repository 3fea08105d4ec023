"""Tests of xsuperres.units (conversion to mm h-1 and sanity checks)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import xarray as xr

import xsuperres
from xsuperres.units import check_precipitation, mm_per_hour_factor, to_mm_per_hour


def _da(values, units=None, name="pr", **attrs) -> xr.DataArray:
    a = dict(attrs)
    if units is not None:
        a["units"] = units
    return xr.DataArray(np.asarray(values, dtype=float), dims=("x",), name=name, attrs=a)


# (units, input value, expected mm h-1) -- expected values computed by hand
CASES = [
    ("mm h-1", 2.5, 2.5),
    ("mm/h", 2.5, 2.5),
    ("mm hr-1", 2.5, 2.5),
    ("mm/hr", 2.5, 2.5),
    ("mm h**-1", 2.5, 2.5),
    ("mm h^-1", 2.5, 2.5),
    ("mm/d", 24.0, 1.0),
    ("mm day-1", 24.0, 1.0),
    ("mm d-1", 48.0, 2.0),
    ("kg m-2 s-1", 1.0, 3600.0),
    ("kg/m2/s", 1.0, 3600.0),
    ("kg m**-2 s**-1", 1.0, 3600.0),
    ("kg m-2 h-1", 3.0, 3.0),
    ("m/s", 1e-6, 3.6),
    ("m s-1", 1e-6, 3.6),
    ("m/h", 0.001, 1.0),
    ("m h-1", 0.001, 1.0),
    ("mm/s", 1.0, 3600.0),
    ("mm s-1", 0.5, 1800.0),
    ("cm/h", 0.1, 1.0),
    # only through the pint fallback
    ("g m-2 s-1", 1.0, 3.6),
    ("in/h", 1.0, 25.4),
    ("mm min-1", 0.5, 30.0),
    ("kg m-2 min-1", 1.0, 60.0),
]


@pytest.mark.parametrize("units,value,expected", CASES)
def test_conversion(units, value, expected):
    out = to_mm_per_hour(_da([value, 0.0, np.nan], units))
    np.testing.assert_allclose(out.values[:2], [expected, 0.0], rtol=1e-12)
    assert np.isnan(out.values[2])
    assert out.attrs["units"] == "mm h-1"
    assert out.name == "pr"


@pytest.mark.parametrize("units,value,expected", CASES)
def test_factor(units, value, expected):
    assert mm_per_hour_factor(units) * value == pytest.approx(expected, rel=1e-12)


def test_input_not_modified():
    da = _da([1.0, 2.0], "kg m-2 s-1", standard_name="precipitation_flux", history="made")
    before_attrs = copy.deepcopy(da.attrs)
    before_values = da.values.copy()
    out = to_mm_per_hour(da)
    assert da.attrs == before_attrs
    np.testing.assert_array_equal(da.values, before_values)
    assert out is not da
    assert not np.shares_memory(out.values, da.values)
    assert out.attrs["standard_name"] == "lwe_precipitation_rate"
    assert out.attrs["history"].startswith("made\n")
    last = out.attrs["history"].splitlines()[-1]
    # written by the one history helper (xsuperres.cf.history_line): timestamp, call, version
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: xsuperres\.units\.to_mm_per_hour: converted from "
        r"'kg m-2 s-1' to 'mm h-1' \(factor 3600, water density 1000 kg m-3\) "
        + re.escape(f"(xsuperres {xsuperres.__version__})"), last), last


def test_identity_returns_new_object():
    da = _da([1.0, 2.0], "mm h-1", standard_name="lwe_precipitation_rate")
    out = to_mm_per_hour(da)
    out[0] = 99.0
    out.attrs["units"] = "changed"
    assert float(da[0]) == 1.0
    assert da.attrs["units"] == "mm h-1"
    assert "history" not in da.attrs


def test_lazy_dask_stays_lazy():
    dask = pytest.importorskip("dask.array")
    da = _da([24.0, 48.0], "mm/d").chunk({"x": 1})
    out = to_mm_per_hour(da)
    assert isinstance(out.data, dask.Array)
    np.testing.assert_allclose(out.values, [1.0, 2.0])


def test_coords_kept():
    da = _da([1.0, 2.0], "m/h").assign_coords(x=[10.0, 20.0])
    out = to_mm_per_hour(da)
    np.testing.assert_array_equal(out["x"].values, [10.0, 20.0])


def test_missing_units_names_variable():
    with pytest.raises(ValueError, match="rainfall_rate") as err:
        to_mm_per_hour(_da([1.0], None, name="rainfall_rate"))
    assert "units" in str(err.value)
    assert "mm h-1" in str(err.value)


def test_name_argument_overrides():
    with pytest.raises(ValueError, match="my_precip"):
        to_mm_per_hour(_da([1.0], None, name=None), name="my_precip")


@pytest.mark.parametrize("units", ["mm", "kg m-2", "m"])
def test_amount_rejected(units):
    with pytest.raises(ValueError, match="amount") as err:
        to_mm_per_hour(_da([1.0], units, name="tp"))
    msg = str(err.value)
    assert "tp" in msg and repr(units) in msg and "attrs['units']" in msg


@pytest.mark.parametrize("units", ["dBZ", "K", "1", "mm/month", "kg m-2 yr-1", "mm/5min"])
def test_other_units_rejected(units):
    with pytest.raises(ValueError, match="pr") as err:
        to_mm_per_hour(_da([1.0], units))
    assert repr(units) in str(err.value)


def test_check_precipitation_ok_with_nan():
    check_precipitation(_da([0.0, 1.0, np.nan], "mm h-1"))
    check_precipitation(_da([np.nan, np.nan], "mm h-1"))


def test_check_precipitation_negative():
    da = _da([0.0, -0.5, 2.0, -3.0, np.nan], "mm h-1", name="precip")
    with pytest.raises(ValueError, match="precip") as err:
        check_precipitation(da)
    msg = str(err.value)
    assert "2 negative" in msg and "-3" in msg


def test_check_precipitation_name_argument():
    with pytest.raises(ValueError, match="radar_rate"):
        check_precipitation(_da([-1.0], "mm h-1", name=None), name="radar_rate")
