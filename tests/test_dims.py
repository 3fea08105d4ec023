"""Dimension discovery from CF metadata and common names."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsuperres
from xsuperres import DimensionError, find_dims


def field(dims=("time", "y", "x"), coords=None):
    return xr.DataArray(np.zeros((2, 3, 4)), dims=dims, coords=coords or {})


@pytest.mark.parametrize(
    "names",
    [("time", "y", "x"), ("time", "lat", "lon"), ("time", "latitude", "longitude"), ("time", "rlat", "rlon")],
)
def test_common_names(names):
    assert find_dims(field(names)) == dict(zip(("time", "y", "x"), names))


def test_cf_axis_attributes_win_over_names():
    da = field(("a", "b", "c"))
    da = da.assign_coords(
        a=("a", [0, 1], {"axis": "T"}),
        b=("b", [0.0, 1, 2], {"standard_name": "projection_y_coordinate"}),
        c=("c", [0.0, 1, 2, 3], {"axis": "X"}),
    )
    assert find_dims(da) == {"time": "a", "y": "b", "x": "c"}


def test_explicit_dims_override():
    da = field(("t", "row", "col"))
    assert find_dims(da, {"time": "t", "y": "row", "x": "col"}) == {"time": "t", "y": "row", "x": "col"}
    with pytest.raises(DimensionError, match="'nope' is not a dimension"):
        find_dims(da, {"time": "nope"})
    with pytest.raises(DimensionError, match="unknown role"):
        find_dims(da, {"z": "t"})


def test_missing_dimension_names_what_was_found():
    with pytest.raises(DimensionError, match=r"no 'time' dimension found among row \(3\)"):
        find_dims(xr.DataArray(np.zeros((3, 4)), dims=("row", "x")))


def test_ambiguous_dimension():
    da = xr.DataArray(np.zeros((2, 3, 4, 5)), dims=("time", "y", "x", "lon"))
    with pytest.raises(DimensionError, match=r"several dimensions could be 'x': \['x', 'lon'\]"):
        find_dims(da)


def test_accessor_registered_on_both_types():
    da = field()
    assert da.stsr.dims() == {"time": "time", "y": "y", "x": "x"}
    assert da.to_dataset(name="p").stsr.dims() == {"time": "time", "y": "y", "x": "x"}
    assert xsuperres.__version__
