"""Precipitation unit handling: everything the models see is a rate in mm h-1.

:func:`to_mm_per_hour` converts a precipitation rate (length per time, e.g.
``"mm/d"``, ``"m s-1"``) or a water mass flux (mass per area per time, e.g.
``"kg m-2 s-1"``, with liquid-water density 1000 kg m-3) to ``"mm h-1"`` using
the variable's ``units`` attribute. Common spellings are looked up in a small
explicit table; anything else goes through :mod:`pint` (the CF-aware registry of
:mod:`cf_xarray` when available). Amounts without a time (``"mm"``,
``"kg m-2"``), calendar-dependent rates (per month, per year) and anything else
are refused with a :class:`ValueError` that says what to do.

:func:`check_precipitation` refuses negative values.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import xarray as xr

from .cf import append_history

__all__ = ["to_mm_per_hour", "rate_factor", "check_precipitation", "mm_per_hour_factor", "TARGET_UNITS"]

#: Units of every precipitation field handled by xsuperres.
TARGET_UNITS = "mm h-1"

#: Density of liquid water (kg m-3) used for mass fluxes (kg m-2 s-1 -> mm s-1).
WATER_DENSITY = 1000.0

# Factors to mm h-1, keyed by the normalised spelling (see ``_normalise``).
_MM_H = 1.0
_FACTORS: dict[str, float] = {}


def _add(factor: float, *spellings: str) -> None:
    for s in spellings:
        _FACTORS[s] = factor


# length / time -------------------------------------------------------------
_add(_MM_H, "mm h-1", "mm/h", "mm hr-1", "mm/hr", "mm hour-1", "mm/hour", "mm.h-1", "mmh-1",
     "mm/hour", "millimeter/hour", "millimetre/hour", "millimeters per hour",
     "millimetres per hour", "mm per hour")
_add(1.0 / 24.0, "mm d-1", "mm/d", "mm day-1", "mm/day", "mm.d-1", "mm per day",
     "millimeter/day", "millimetre/day")
_add(3600.0, "mm s-1", "mm/s", "mm.s-1", "mm sec-1", "mm/sec")
_add(60.0, "mm min-1", "mm/min")
_add(10.0, "cm h-1", "cm/h", "cm hr-1", "cm/hr")
_add(10.0 / 24.0, "cm d-1", "cm/d", "cm day-1", "cm/day")
_add(1000.0, "m h-1", "m/h", "m hr-1", "m/hr")
_add(1000.0 / 24.0, "m d-1", "m/d", "m day-1", "m/day")
_add(3.6e6, "m s-1", "m/s", "m.s-1", "m sec-1", "m/sec")
# mass / area / time (liquid water, 1 kg m-2 == 1 mm) ------------------------
_add(3600.0, "kg m-2 s-1", "kg/m2/s", "kg/(m2 s)", "kg/m2 s-1", "kg m-2/s", "kg/m^2/s",
     "kg.m-2.s-1", "kg/(m^2 s)", "kg/(m2*s)", "kg/m**2/s")
_add(1.0, "kg m-2 h-1", "kg/m2/h", "kg m-2 hr-1", "kg/m2/hr")
_add(1.0 / 24.0, "kg m-2 d-1", "kg/m2/d", "kg m-2 day-1", "kg/m2/day")


def _normalise(units: str) -> str:
    """Canonical spelling for the table: single spaces, ``**``/``^`` exponents removed."""
    u = units.strip()
    u = u.replace("**", "").replace("^", "")
    u = re.sub(r"\s+", " ", u)
    u = re.sub(r"\s*/\s*", "/", u)
    return u


# Same keys after normalisation (so "mm h**-1" and "kg m^-2 s^-1" hit the table).
_FACTORS = {_normalise(k): v for k, v in _FACTORS.items()}

# Standard names whose meaning changes with the conversion (mass flux -> lwe rate).
_STANDARD_NAMES = {
    "precipitation_flux": "lwe_precipitation_rate",
    "convective_precipitation_flux": "lwe_convective_precipitation_rate",
    "large_scale_precipitation_flux": "lwe_large_scale_precipitation_rate",
}


def _label(da: xr.DataArray, name: str | None) -> str:
    """The subject of a message: ``name`` as given, else ``variable 'NAME'``."""
    if name is not None:
        return str(name)
    return f"variable {da.name!r}" if da.name is not None else "the input (an unnamed DataArray)"


def _advice(label: str) -> str:
    return (
        f"Convert {label} to a precipitation rate yourself, or, if the values already are "
        f"a rate, state its units, e.g. da.attrs['units'] = 'mm h-1' (also accepted: "
        "'mm/d', 'kg m-2 s-1', 'm s-1', ...). An amount per time step (e.g. 'mm' per 5 min) "
        "must first be divided by the step length (e.g. x 12 for 5-min sums -> mm h-1)."
    )


def _pint_factor(units: str) -> tuple[float | None, str]:
    """Factor to mm h-1 through pint, or ``(None, reason)``."""
    try:
        try:
            from cf_xarray.units import units as ureg  # CF-aware ("mm h-1", "kg m-2 s-1")
        except Exception:  # pragma: no cover - cf_xarray/pint missing or broken
            import pint

            ureg = pint.UnitRegistry()
    except Exception:  # pragma: no cover - pint missing
        return None, "the unit is not in xsuperres' table and pint is not installed"
    try:
        q = ureg.Quantity(1.0, units)
    except Exception as err:  # noqa: BLE001 - any parse failure
        return None, f"pint cannot parse it ({type(err).__name__}: {err})"
    text = str(q.units)
    if re.search(r"month|year|annum|century|decade", text):
        return None, (
            "rates per month or year depend on the calendar; convert them yourself with the "
            "actual interval length"
        )
    dim = q.dimensionality
    rate = ureg.Quantity(1.0, "mm/h")
    if dim == rate.dimensionality:
        return float(q.to("mm/h").magnitude), "pint"
    flux = ureg.Quantity(1.0, "kg/m**2/s")
    if dim == flux.dimensionality:
        water = ureg.Quantity(WATER_DENSITY, "kg/m**3")
        return float((q / water).to("mm/h").magnitude), "pint"
    amount = {ureg.Quantity(1.0, "mm").dimensionality, ureg.Quantity(1.0, "kg/m**2").dimensionality}
    if dim in amount:
        return None, "it is an amount (length or mass per area) with no time in it, not a rate"
    return None, f"its dimensionality {dim} is neither length/time nor mass/(area time)"


def mm_per_hour_factor(units: str, name: str = "the variable") -> float:
    """Multiplicative factor from ``units`` to mm h-1.

    Parameters
    ----------
    units : str
        A precipitation rate (length/time) or water mass flux (mass/area/time)
        unit string, e.g. ``"mm/d"`` or ``"kg m-2 s-1"``.
    name : str, optional
        Subject of error messages, e.g. ``"variable 'pr'"``.

    Returns
    -------
    float
        ``value_in_mm_per_hour = value_in_units * factor``.

    Raises
    ------
    ValueError
        If ``units`` is an amount without a time, calendar-dependent, or not a
        precipitation rate.
    """
    if not isinstance(units, str) or not units.strip():
        raise ValueError(f"{name} has an empty or non-string 'units' attribute "
                         f"({units!r}). {_advice(name)}")
    key = _normalise(units)
    if key in _FACTORS:
        return _FACTORS[key]
    factor, reason = _pint_factor(units)
    if factor is None:
        raise ValueError(
            f"{name} has units {units!r}, which cannot be converted to "
            f"{TARGET_UNITS}: {reason}. {_advice(name)}"
        )
    return factor


def rate_factor(da: xr.DataArray, name: str | None = None) -> tuple[str, float]:
    """``(units, factor to mm h-1)`` of ``da``; the one check that its units are a rate.

    Raises
    ------
    ValueError
        No ``units`` attribute, or units that are not a precipitation rate; the message
        names the variable (``name``, default ``variable 'NAME'``) and says how to fix it.
    """
    label = _label(da, name)
    units = da.attrs.get("units")
    if units is None:
        raise ValueError(
            f"{label} has no 'units' attribute, so its precipitation units are "
            f"unknown. {_advice(label)}"
        )
    return units, mm_per_hour_factor(units, label)


def to_mm_per_hour(da: xr.DataArray, name: str | None = None) -> xr.DataArray:
    """Convert a precipitation rate or water mass flux to mm h-1.

    Parameters
    ----------
    da : xarray.DataArray
        Precipitation with a ``units`` attribute: length per time (``"mm h-1"``,
        ``"mm/d"``, ``"m s-1"``, ``"cm/h"``, ...) or mass per area per time
        (``"kg m-2 s-1"``, ...; converted with a liquid-water density of
        1000 kg m-3, so 1 kg m-2 = 1 mm). Lazy (dask) data stay lazy.
    name : str, optional
        Subject of error messages (e.g. ``"variable 'pr'"``); default
        ``variable 'NAME'`` from ``da.name``.

    Returns
    -------
    xarray.DataArray
        A new DataArray in mm h-1 (``units = "mm h-1"``). A
        ``standard_name = "precipitation_flux"`` (kg m-2 s-1) becomes
        ``"lwe_precipitation_rate"`` (likewise for the convective and large-scale
        fluxes); a line is appended to ``history``. The input, its data and its
        attributes are never modified. When the input is already in mm h-1 the
        values are unchanged (but still a new object).

    Raises
    ------
    ValueError
        If ``units`` is missing, is an amount without a time (``"mm"``,
        ``"kg m-2"``), is per month/year, or is not a precipitation rate; the
        message names the variable and its units and says how to fix it.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.array([24.0]), attrs={"units": "mm/d"}, name="pr")
    >>> float(to_mm_per_hour(da)[0])
    1.0
    """
    label = _label(da, name)
    units, factor = rate_factor(da, label)

    out = da * factor if factor != 1.0 else da.copy(deep=True)
    out.name = da.name
    attrs: dict[str, Any] = dict(da.attrs)
    attrs["units"] = TARGET_UNITS
    std = attrs.get("standard_name")
    if std in _STANDARD_NAMES:
        attrs["standard_name"] = _STANDARD_NAMES[std]
    elif std is not None and str(std).endswith("_flux"):
        # a mass-flux standard name does not fit mm h-1; drop rather than lie
        attrs.pop("standard_name")
    if units != TARGET_UNITS:
        attrs = append_history(attrs, (
            f"xsuperres.units.to_mm_per_hour: converted from {units!r} to "
            f"{TARGET_UNITS!r} (factor {factor:.10g}"
            + (f", water density {WATER_DENSITY:g} kg m-3" if "kg" in units else "")
            + ")"
        ))
    out.attrs = attrs
    # the source packing (dtype, scale_factor, _FillValue, ...) no longer applies
    out.encoding = {}
    return out


def check_precipitation(da: xr.DataArray, name: str | None = None) -> None:
    """Refuse negative precipitation values.

    Parameters
    ----------
    da : xarray.DataArray
        Precipitation rate or amount (any units). NaN (missing, e.g. outside
        radar coverage) is allowed and ignored. Dask arrays are computed.
    name : str, optional
        Name used in the error message; default ``da.name``.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If any value is < 0; the message names the variable and gives the number
        of negative values and the minimum (in the variable's units).
    """
    label = _label(da, name)
    vmin = float(da.min(skipna=True))
    if np.isnan(vmin) or vmin >= 0:
        return None
    n_neg = int((da < 0).sum())
    units = da.attrs.get("units", "(no units attribute)")
    raise ValueError(
        f"{label} has {n_neg} negative value(s) (minimum {vmin:g} {units}); "
        "precipitation must be >= 0 (NaN is allowed for missing data). Clip tiny negative "
        "round-off with da.clip(min=0) if that is what they are, otherwise check the data."
    )
