"""The rules every entry point applies to the user's precipitation and time axes.

One home per rule: :func:`xsuperres.coarsen_perfect`, :func:`xsuperres.interpolate`,
:func:`xsuperres.score`, :func:`xsuperres.downscale` and :func:`xsuperres.train` call
these functions on entry, so that a field is accepted or refused the same way
everywhere, with a message that names the variable and says how to fix it.

The precipitation rule (:func:`precipitation_input`)
    1. The values are decoded: raw packed integers (a file opened with
       ``mask_and_scale=False``, still carrying ``scale_factor``, ``add_offset``,
       ``_FillValue`` or ``missing_value`` in its attributes) are refused, because the
       fill value would be averaged in and the scale would be lost.
    2. The ``units`` attribute is present and is a precipitation rate or water mass flux
       (anything :func:`xsuperres.units.mm_per_hour_factor` converts to mm h-1). There is
       no silent default: a field without units is refused.
    3. Integer and boolean values (decoded, e.g. int16 in mm h-1) and float16 are
       worked on as float32.

:func:`is_precipitation` tells, without raising, whether a Dataset variable follows the
rule's units part; Dataset entry points use it to pick the precipitation variables.

The time rule (:func:`check_time_coordinate`)
    A time coordinate holds datetimes (``numpy.datetime64`` or cftime objects). Strings
    are always refused; bare numbers (no calendar) are refused wherever a cadence is
    needed, with the way to decode them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .units import mm_per_hour_factor, rate_factor, to_mm_per_hour

__all__ = [
    "PACKING_ATTRS",
    "check_decoded",
    "is_precipitation",
    "precipitation_input",
    "check_time_coordinate",
    "label_of",
]

#: Attributes that, left in ``attrs``, mean the values were not decoded (CF packing).
PACKING_ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")


def label_of(da: xr.DataArray, name: str | None = None) -> str:
    """``name`` if given, else ``variable 'NAME'`` (or ``the input`` without a name)."""
    if name is not None:
        return str(name)
    return f"variable {da.name!r}" if da.name is not None else "the input (an unnamed DataArray)"


def _harmless(key: str, value: Any, dtype: np.dtype) -> bool:
    """A packing attribute that changes nothing (identity scale, NaN fill on floats)."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if v.size != 1:
        return False
    v = float(v.reshape(-1)[0])
    if key == "scale_factor":
        return v == 1.0 and not np.issubdtype(dtype, np.integer)
    if key == "add_offset":
        return v == 0.0 and not np.issubdtype(dtype, np.integer)
    if key in ("_FillValue", "missing_value"):
        return math.isnan(v) and np.issubdtype(dtype, np.floating)
    return False


def check_decoded(da: xr.DataArray, name: str | None = None) -> None:
    """Refuse raw packed values (CF ``scale_factor`` / ``add_offset`` / ``_FillValue`` in attrs).

    xarray's default decoding (``mask_and_scale=True``) applies ``scale_factor`` and
    ``add_offset``, turns ``_FillValue`` / ``missing_value`` into NaN and moves those
    attributes to ``.encoding``. When they are still in ``.attrs``, the numbers are the
    raw stored integers (or unmasked fill values), and every computation on them is wrong.

    Parameters
    ----------
    da : xarray.DataArray
        The field to check (not computed).
    name : str, optional
        Label for the message; default ``variable 'NAME'``.

    Raises
    ------
    ValueError
        If a packing attribute is present (a NaN ``_FillValue`` on floats, and an
        identity ``scale_factor`` / ``add_offset`` on floats, are accepted). The message
        names the variable, its dtype and the attributes, and says to decode.
    """
    found = {k: da.attrs[k] for k in PACKING_ATTRS if k in da.attrs}
    found = {k: v for k, v in found.items() if not _harmless(k, v, da.dtype)}
    if not found:
        return
    listed = ", ".join(f"{k}={v!r}" for k, v in found.items())
    raise ValueError(
        f"{label_of(da, name)} holds raw packed values ({da.dtype} with {listed} in its "
        "attributes): it was opened without decoding, so the fill value would be averaged in "
        "and the scale lost. Open the file with decoding on, e.g. "
        "xr.open_dataset(path, mask_and_scale=True) (the default), or decode it with "
        "xr.decode_cf(ds)"
    )


def is_precipitation(da: xr.DataArray) -> bool:
    """Whether ``da`` has ``units`` that convert to mm h-1 (a rate or water mass flux)."""
    units = da.attrs.get("units")
    if not isinstance(units, str):
        return False
    try:
        mm_per_hour_factor(units)
    except ValueError:
        return False
    return True


def precipitation_input(da: xr.DataArray, name: str | None = None, *, convert: bool = True) -> xr.DataArray:
    """Apply the precipitation rule to one field on entry (see the module docstring).

    Parameters
    ----------
    da : xarray.DataArray
        Precipitation, numpy- or dask-backed (stays lazy: nothing is computed).
    name : str, optional
        Label for messages; default ``variable 'NAME'``.
    convert : bool, default True
        ``True``: return the field in mm h-1 (:func:`xsuperres.to_mm_per_hour`).
        ``False``: check the units only and keep them (e.g. a block mean of ``mm/d``
        stays in ``mm/d``).

    Returns
    -------
    xarray.DataArray
        A new DataArray (the input is never modified), floating point: integer, boolean
        and float16 values become float32.

    Raises
    ------
    ValueError
        Raw packed values; missing, empty or non-rate ``units`` (amounts without a time,
        per month/year, temperatures...). The message names the variable and the fix.
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    label = label_of(da, name)
    check_decoded(da, label)
    if convert:
        out = to_mm_per_hour(da, name=label)
    else:
        rate_factor(da, label)  # the same units check, without converting
        out = da.copy(deep=False)
    if not np.issubdtype(out.dtype, np.floating) or out.dtype == np.float16:
        if not (np.issubdtype(out.dtype, np.number) or np.issubdtype(out.dtype, np.bool_)):
            raise ValueError(f"{label} has non-numeric values (dtype {out.dtype}); precipitation "
                             "must be numbers")
        out = out.astype(np.float32)
    return out


def check_time_coordinate(
    values: Any, dim: Hashable = "time", name: str = "the input", *, need_cadence: bool = True
) -> None:
    """Refuse a time coordinate that does not hold datetimes.

    Parameters
    ----------
    values : array-like
        The values of the time coordinate.
    dim : hashable
        Its name, for the message.
    name : str
        Label of the field, for the message.
    need_cadence : bool, default True
        Whether the caller needs a time step in physical units (downscaling, training,
        HR time labels). When ``False`` numbers are accepted (they are only labels).

    Raises
    ------
    ValueError
        Strings (always), numbers without a calendar (when ``need_cadence``), or other
        objects. The message says how to decode the axis.
    """
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.datetime64):
        return
    if v.dtype == object and v.size and _is_cftime(v.reshape(-1)[0]):
        return
    how = (f"decode it: xr.decode_cf(ds) when {dim!r} has units such as 'minutes since "
           f"2020-01-01 00:00', or assign datetimes, e.g. da.assign_coords({dim}="
           f"pd.to_datetime(da['{dim}'].values))")
    if v.dtype.kind in "biuf":
        if not need_cadence:
            return
        raise ValueError(
            f"{name}: the time coordinate {dim!r} holds plain numbers ({v.dtype}, first "
            f"{v.reshape(-1)[:2].tolist()}) with no calendar or units, so its time step is "
            f"unknown; time must be datetime-like (numpy datetime64 or cftime): {how}"
        )
    first = v.reshape(-1)[0] if v.size else None
    raise ValueError(
        f"{name}: the time coordinate {dim!r} holds {type(first).__name__} values "
        f"(dtype {v.dtype}, first {first!r}), not datetimes; time must be datetime-like "
        f"(numpy datetime64 or cftime): {how}"
    )


def _is_cftime(x: Any) -> bool:
    mod = type(x).__module__ or ""
    return mod.startswith("cftime")
