"""High-resolution grids and times implied by a low-resolution field.

The inverse geometry of :func:`xsuperres.coarsen_perfect`: each LR cell is split into
``S x S`` HR cells whose centres subdivide it evenly, and each LR step into ``T`` HR
steps starting at the LR step's label (the label of a block is its first HR step).

2-D auxiliary coordinates on ``(y, x)`` (typically ``lat``/``lon``) are refined by
:func:`refine_2d_coords`: exactly, by projecting the HR ``x``/``y`` centres with the
grid mapping (:func:`latlon_from_projection`) when there is a usable one, otherwise by
cubic-spline interpolation in fractional LR index space (:func:`refine_2d`).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "refine_coordinate",
    "refine_time",
    "refine_2d",
    "hr_index_positions",
    "grid_mapping_crs",
    "latlon_from_projection",
    "refine_2d_coords",
]


def _regular_step(values: np.ndarray, name: Hashable) -> float:
    steps = np.diff(values.astype(np.float64))
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise ValueError(
            f"coordinate {name!r} is not evenly spaced (steps from {steps.min()} to {steps.max()}); "
            "the high-resolution grid of an irregular coordinate is not defined"
        )
    return float(steps[0])


def refine_coordinate(values: np.ndarray, S: int, name: Hashable = "x", spacing: float | None = None) -> np.ndarray:
    """Centres of the ``S`` HR cells inside each LR cell of a 1-D coordinate.

    Parameters
    ----------
    values
        LR cell centres (evenly spaced, increasing or decreasing).
    S
        Spatial factor.
    name
        Coordinate name, for error messages.
    spacing
        LR spacing; needed only when ``values`` has a single element.

    Returns
    -------
    numpy.ndarray
        ``len(values) * S`` HR centres, ordered like ``values``; the mean of the
        ``S`` HR centres of a cell is the LR centre.
    """
    values = np.asarray(values, dtype=np.float64)
    if spacing is None:
        if values.size < 2:
            raise ValueError(f"coordinate {name!r} has one value: its spacing is unknown, pass it explicitly")
        spacing = _regular_step(values, name)
    offsets = (np.arange(S) - (S - 1) / 2.0) * (spacing / S)
    return (values[:, None] + offsets[None, :]).reshape(-1)


def refine_time(times: np.ndarray, T: int, hr_step: str | pd.Timedelta | None = None) -> np.ndarray:
    """``T`` HR time labels per LR step, starting at the LR label.

    Parameters
    ----------
    times
        LR time labels (datetime64, evenly spaced).
    T
        Temporal factor.
    hr_step
        HR cadence (e.g. ``"1h"``); by default the LR step divided by ``T``.

    Returns
    -------
    numpy.ndarray
        ``len(times) * T`` datetime64 labels.
    """
    times = np.asarray(times)
    if T == 1 and hr_step is None:
        return times.copy()
    if hr_step is None:
        if times.size < 2:
            raise ValueError("a single time step has no cadence: pass the high-resolution time step explicitly")
        steps = np.diff(times)
        if not np.all(steps == steps[0]):
            raise ValueError("time steps are irregular; the high-resolution time axis is not defined")
        step = pd.Timedelta(steps[0]) / T
    else:
        step = pd.Timedelta(hr_step)
    offsets = np.array([k * step.to_timedelta64() for k in range(T)])
    return (times[:, None] + offsets[None, :]).reshape(-1)


# ---------------------------------------------------------------------------------------
# 2-D auxiliary coordinates (lat/lon)
# ---------------------------------------------------------------------------------------

_LAT_NAMES = {"lat", "latitude", "nav_lat"}
_LON_NAMES = {"lon", "longitude", "nav_lon"}
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_LENGTH_UNITS = {
    "m": 1.0, "metre": 1.0, "metres": 1.0, "meter": 1.0, "meters": 1.0,
    "km": 1000.0, "kilometre": 1000.0, "kilometres": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0,
}
_ANGLE_UNITS = {"degree", "degrees", "deg", "degrees_east", "degrees_north", "degree_east", "degree_north"}


def hr_index_positions(n: int, S: int) -> np.ndarray:
    """Fractional LR indices of the ``n * S`` HR centres along one axis.

    HR centre ``k`` (``0 <= k < S``) of LR cell ``i`` sits at LR index
    ``i + (k - (S - 1) / 2) / S``: the ``S`` centres subdivide the cell evenly and their
    mean is the LR centre ``i``.
    """
    return (np.arange(n * S, dtype=np.float64) - (S - 1) / 2.0) / S


def _spline_axis(a: np.ndarray, axis: int):
    """Interpolating spline along ``axis`` (cubic not-a-knot, lower order for < 4 points)."""
    from scipy.interpolate import make_interp_spline

    n = a.shape[axis]
    return make_interp_spline(np.arange(n, dtype=np.float64), a, k=min(3, n - 1), axis=axis)


def _refine_axis(a: np.ndarray, S: int, axis: int) -> np.ndarray:
    n = a.shape[axis]
    if n == 1:
        return np.repeat(a, S, axis=axis)
    # extrapolate=True: the end polynomial pieces continue past the outer LR centres
    # (half an LR cell minus half an HR cell): no clamping at the edges.
    return _spline_axis(a, axis)(hr_index_positions(n, S), extrapolate=True)


def _unwrap_2d(values: np.ndarray, period: float) -> np.ndarray:
    """Remove jumps of ``period`` along x (each row), then along y (first column)."""
    out = np.unwrap(values, period=period, axis=1)
    col = np.unwrap(out[:, 0], period=period)
    return out + (col - out[:, 0])[:, None]


def _wrap_like(hr: np.ndarray, lr: np.ndarray, S: int, period: float) -> np.ndarray:
    """Bring periodic HR values (e.g. longitudes) to the convention of the LR values.

    Each HR value is first moved by a multiple of ``period`` to lie closest to its parent
    LR value; then, if the LR values lie in ``[-period/2, period/2]`` (e.g. -180..180) or in
    ``[0, period]`` (0..360), HR values outside that range are wrapped into it.
    """
    parent = np.repeat(np.repeat(lr, S, axis=0), S, axis=1)
    ok = np.isfinite(parent)
    out = np.where(ok, hr + period * np.round((np.where(ok, parent, hr) - hr) / period), hr)
    finite = lr[np.isfinite(lr)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if lo >= -period / 2 and hi <= period / 2:
            low, high = -period / 2, period / 2
        elif lo >= 0 and hi <= period:
            low, high = 0.0, period
        else:
            return out
        out = np.where(out > high, out - period, out)
        out = np.where(out < low, out + period, out)
    return out


def refine_2d(values: np.ndarray, S: int, *, block_mean: bool = False, period: float | None = None) -> np.ndarray:
    """Refine a smooth 2-D field given on LR cells to the ``S x S`` HR centres of each cell.

    The field is treated as a smooth function of the fractional LR index: HR centre ``k``
    of LR cell ``i`` sits at LR index ``i + (k - (S - 1) / 2) / S`` along each axis
    (:func:`hr_index_positions`). It is interpolated with a tensor-product cubic spline
    (not-a-knot end conditions; quadratic, linear or constant along an axis with 3, 2 or
    1 LR cells). Near the domain edges the HR centres lie up to half an LR cell outside the
    outer LR centres: there the end cubic pieces are extrapolated, nothing is clamped, so a
    field that is a cubic polynomial of the indices is reproduced exactly, edges included.

    Parameters
    ----------
    values
        LR values on ``(y, x)``, shape ``(ny, nx)``.
    S
        Spatial factor.
    block_mean
        ``True`` when ``values`` are means of the ``S x S`` HR values of each block (as
        :func:`xsuperres.coarsen_perfect` makes 2-D ``lat``/``lon``) rather than values at
        the LR centres. The curvature bias of a block mean,
        ``(sigma2 / 2) (f_ii + f_jj)`` with ``sigma2 = (S**2 - 1) / (12 S**2)`` the
        variance of the HR offsets in LR index units, is then removed (using the spline's
        second derivatives) before interpolating, so that the HR values are centre values.
    period
        Period of a cyclic quantity (``360.0`` for longitudes). The LR values are unwrapped
        (jumps of ``period`` along x, then y, removed) before interpolating, and the HR
        values wrapped back to the LR values' convention (``-180..180`` or ``0..360``):
        grids that cross the antimeridian are refined correctly.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(ny * S, nx * S)``.
    """
    lr = np.asarray(values, dtype=np.float64)
    if lr.ndim != 2:
        raise ValueError(f"refine_2d expects a 2-D array, got shape {lr.shape}")
    a = _unwrap_2d(lr, period) if period is not None else lr
    if block_mean and S > 1:
        sigma2 = (S * S - 1) / (12.0 * S * S)
        curvature = np.zeros_like(a)
        for axis in (0, 1):
            n = a.shape[axis]
            if n >= 3:
                spline = _spline_axis(a, axis)
                curvature += spline.derivative(2)(np.arange(n, dtype=np.float64))
        a = a - 0.5 * sigma2 * curvature
    out = _refine_axis(_refine_axis(a, S, 0), S, 1)
    if period is not None:
        out = _wrap_like(out, lr, S, period)
    return out


def _norm_units(units: Any) -> str:
    return str(units).strip().lower().replace(" ", "_") if units is not None else ""


def _latlon_kind(name: Hashable, attrs: Mapping[str, Any]) -> str | None:
    """``"lat"``, ``"lon"`` or ``None`` from standard_name, units or name."""
    std = str(attrs.get("standard_name", "")).strip().lower()
    if std == "latitude":
        return "lat"
    if std == "longitude":
        return "lon"
    if std:
        return None  # e.g. grid_latitude: not geographic
    units = _norm_units(attrs.get("units"))
    if units in _LAT_UNITS:
        return "lat"
    if units in _LON_UNITS:
        return "lon"
    lname = str(name).strip().lower()
    if lname in _LAT_NAMES:
        return "lat"
    if lname in _LON_NAMES:
        return "lon"
    return None


def _grid_mapping_names(obj) -> list[Hashable]:
    """Grid-mapping variable names referenced by ``obj`` (or its data variables)."""
    import xarray as xr

    sources = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    names: list[Hashable] = []
    for source in sources:
        for mapping in (source.encoding, source.attrs):
            gm = mapping.get("grid_mapping")
            if isinstance(gm, str) and gm.strip():
                # CF extended form "crs: x y crs2: lat lon": the first name applies to x/y
                name = gm.split(":")[0].split()[0].strip()
                if name not in names:
                    names.append(name)
    return names


def grid_mapping_crs(obj) -> tuple[Hashable | None, Any]:
    """The grid mapping of an xarray object as a :class:`pyproj.CRS`.

    The grid-mapping variable is the one named by the ``grid_mapping`` encoding or
    attribute of ``obj`` (or of its data variables); without one, a unique coordinate
    with CF grid-mapping attributes (``grid_mapping_name``, ``crs_wkt`` or
    ``spatial_ref``, as rioxarray writes) is used.

    Returns
    -------
    (name, crs)
        The grid-mapping variable name (``None`` if there is none) and its CRS
        (``None`` if there is no grid mapping or pyproj cannot read it).
    """
    names = [n for n in _grid_mapping_names(obj) if n in obj.coords or n in getattr(obj, "data_vars", {})]
    if not names:
        keys = ("grid_mapping_name", "crs_wkt", "spatial_ref")
        names = [n for n, c in obj.coords.items() if c.ndim == 0 and any(k in c.attrs for k in keys)]
        if len(names) != 1:
            return None, None
    name = names[0]
    attrs = dict(obj[name].attrs)
    from pyproj import CRS

    try:
        return name, CRS.from_cf(attrs)
    except Exception:
        for key in ("crs_wkt", "spatial_ref"):
            if key in attrs:
                try:
                    return name, CRS.from_user_input(attrs[key])
                except Exception:
                    pass
    return name, None


def _axis_scale(units: Any, crs_axis) -> float | None:
    """Factor from coordinate units to the CRS axis units (``None``: cannot tell)."""
    u = _norm_units(units)
    crs_unit = str(crs_axis.unit_name).lower()
    crs_factor = float(crs_axis.unit_conversion_factor)
    if "met" in crs_unit or "foot" in crs_unit or "feet" in crs_unit:  # linear axis
        return _LENGTH_UNITS[u] / crs_factor if u in _LENGTH_UNITS else None
    if "degree" in crs_unit and u in _ANGLE_UNITS:
        return 1.0
    if not u:
        return 1.0
    return None


def latlon_from_projection(crs, x: np.ndarray, y: np.ndarray, x_units: Any = None, y_units: Any = None):
    """Geographic latitude and longitude of the points ``(x, y)`` of a projection.

    Parameters
    ----------
    crs
        A :class:`pyproj.CRS` (projected, or a derived geographic CRS such as a rotated
        pole).
    x, y
        1-D projection coordinates; the result is on their meshgrid ``(y, x)``.
    x_units, y_units
        The coordinates' ``units`` attributes (e.g. ``"m"`` or ``"km"``); converted to the
        CRS axis units. ``None`` means the CRS units.

    Returns
    -------
    (lat, lon)
        float64 arrays of shape ``(len(y), len(x))``, in degrees, on the CRS's own datum
        (its geodetic CRS, or WGS 84 if it has none); longitudes in ``-180..180``.
    """
    from pyproj import CRS, Transformer

    axes = crs.axis_info
    scales = []
    for units, axis in zip((x_units, y_units), axes[:2] if len(axes) >= 2 else (None, None)):
        scale = _axis_scale(units, axis) if axis is not None else 1.0
        scales.append(1.0 if scale is None else scale)
    if crs.is_geographic and crs.is_derived and crs.source_crs is not None:
        target = crs.source_crs  # e.g. rotated pole -> its base geographic CRS
    else:
        target = crs.geodetic_crs or CRS.from_epsg(4326)
    transformer = Transformer.from_crs(crs, target, always_xy=True)
    X, Y = np.meshgrid(np.asarray(x, dtype=np.float64) * scales[0], np.asarray(y, dtype=np.float64) * scales[1])
    lon, lat = transformer.transform(X, Y)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def _lr_pixel_deg(lat: np.ndarray, lon: np.ndarray) -> float:
    """Median LR pixel size in degrees of arc (latitude-equivalent), along both axes."""
    steps = []
    for axis in (0, 1):
        if lat.shape[axis] < 2:
            continue
        dlat = np.diff(lat, axis=axis)
        dlon = (np.diff(lon, axis=axis) + 180.0) % 360.0 - 180.0
        coslat = np.cos(np.deg2rad(0.5 * (lat[:-1] + lat[1:]) if axis == 0 else 0.5 * (lat[:, :-1] + lat[:, 1:])))
        steps.append(np.hypot(dlat, dlon * coslat).ravel())
    if not steps:
        return np.nan
    return float(np.nanmedian(np.concatenate(steps)))


def _crs_latlon(lr, S: int, ydim: Hashable, xdim: Hashable, lat_name, lon_name):
    """HR (lat, lon) from the grid mapping, or ``None`` (with a warning if it is unusable)."""
    if xdim not in lr.coords or ydim not in lr.coords:
        return None
    xc, yc = lr.coords[xdim], lr.coords[ydim]
    if xc.ndim != 1 or yc.ndim != 1 or xc.size < 2 or yc.size < 2:
        return None
    gm_name, crs = grid_mapping_crs(lr)
    if gm_name is None:
        return None
    if crs is None:  # not understood by pyproj: no usable grid mapping
        return None
    what = "HR lat/lon are interpolated from the LR lat/lon instead"
    try:
        lat_lr, lon_lr = latlon_from_projection(crs, xc.values, yc.values, xc.attrs.get("units"), yc.attrs.get("units"))
    except Exception as err:  # pragma: no cover - pyproj failures depend on the CRS
        warnings.warn(f"the grid mapping {gm_name!r} could not transform {xdim!r}/{ydim!r} ({err}); {what}",
                      UserWarning, stacklevel=4)
        return None
    # Sanity check against the LR lat/lon: a quarter of an LR pixel at most.
    true_lat = np.asarray(lr.coords[lat_name].transpose(ydim, xdim).values, dtype=np.float64) if lat_name else None
    true_lon = np.asarray(lr.coords[lon_name].transpose(ydim, xdim).values, dtype=np.float64) if lon_name else None
    if true_lat is not None or true_lon is not None:
        ref_lat = true_lat if true_lat is not None else lat_lr
        ref_lon = true_lon if true_lon is not None else lon_lr
        pixel = _lr_pixel_deg(ref_lat, ref_lon)
        dlat = (lat_lr - ref_lat) if true_lat is not None else 0.0
        dlon = ((lon_lr - ref_lon + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(ref_lat)) if true_lon is not None else 0.0
        err = np.hypot(dlat, dlon)
        worst = float(np.nanmax(err)) if np.isfinite(err).any() else np.nan
        if not np.isfinite(pixel) or not np.isfinite(worst) or worst > 0.25 * pixel:
            warnings.warn(
                f"the grid mapping {gm_name!r} maps the LR {xdim!r}/{ydim!r} to latitudes/longitudes that "
                f"differ from the LR lat/lon coordinates by up to {worst:.4g} deg, more than a quarter of an "
                f"LR pixel ({0.25 * pixel:.4g} deg): the grid mapping or the x/y units are not trusted; {what}",
                UserWarning, stacklevel=4)
            return None
    x_hr = refine_coordinate(xc.values, S, xdim)
    y_hr = refine_coordinate(yc.values, S, ydim)
    return latlon_from_projection(crs, x_hr, y_hr, xc.attrs.get("units"), yc.attrs.get("units"))


def refine_2d_coords(lr, S: int, ydim: Hashable, xdim: Hashable, *, block_mean: bool = True) -> dict:
    """HR versions of the 2-D ``(y, x)`` coordinates of an LR xarray object.

    Geographic ``lat``/``lon`` (recognised by ``standard_name``, ``units`` or name:
    ``lat``/``latitude``/``nav_lat``, ``lon``/``longitude``/``nav_lon``) are computed
    exactly when ``lr`` has a grid mapping that pyproj understands
    (:func:`grid_mapping_crs`) and 1-D ``x``/``y``: the HR ``x``/``y`` centres
    (:func:`refine_coordinate`) are transformed to geographic coordinates
    (:func:`latlon_from_projection`; ``m``/``km`` units handled). This is trusted only if
    the LR ``x``/``y`` transformed the same way agree with the LR lat/lon to within a
    quarter of an LR pixel; otherwise a ``UserWarning`` says why and the fallback is used.

    The fallback, and every other 2-D coordinate, is :func:`refine_2d` (cubic spline in
    fractional LR index, extrapolated at the edges; longitudes unwrapped across the
    antimeridian and wrapped back).

    Parameters
    ----------
    lr
        LR DataArray or Dataset.
    S
        Spatial factor.
    ydim, xdim
        Names of the spatial dimensions.
    block_mean
        Passed to :func:`refine_2d`: the LR 2-D coordinates are block means of HR values,
        as :func:`xsuperres.coarsen_perfect` makes them (default).

    Returns
    -------
    dict
        ``{name: xarray.Variable}`` on ``(ydim, xdim)`` with the HR values, in the dtype
        and with the attributes of each LR coordinate.
    """
    import xarray as xr

    two_d = {n: c for n, c in lr.coords.items() if set(c.dims) == {ydim, xdim}}
    kinds = {n: _latlon_kind(n, c.attrs) for n, c in two_d.items()}
    lat_names = [n for n, k in kinds.items() if k == "lat"]
    lon_names = [n for n, k in kinds.items() if k == "lon"]
    exact: dict[Hashable, np.ndarray] = {}
    if (lat_names or lon_names) and S > 1:
        lat_name = lat_names[0] if lat_names else None
        lon_name = lon_names[0] if lon_names else None
        got = _crs_latlon(lr, S, ydim, xdim, lat_name, lon_name)
        if got is not None:
            lat_hr, lon_hr = got
            for n in lat_names:
                exact[n] = lat_hr
            for n in lon_names:
                lr_lon = np.asarray(two_d[n].transpose(ydim, xdim).values, dtype=np.float64)
                exact[n] = _wrap_like(lon_hr, lr_lon, S, 360.0)
    out: dict[Hashable, Any] = {}
    for name, coord in two_d.items():
        var = coord.variable.transpose(ydim, xdim)
        if name in exact:
            values = exact[name]
        elif S == 1:
            values = var.values
        elif np.issubdtype(var.dtype, np.floating):
            values = refine_2d(var.values, S, block_mean=block_mean, period=360.0 if kinds[name] == "lon" else None)
        else:  # integer, boolean, string labels...: each HR cell takes its LR cell's value
            values = np.repeat(np.repeat(var.values, S, axis=0), S, axis=1)
        out[name] = xr.Variable((ydim, xdim), np.asarray(values).astype(var.dtype, copy=False), attrs=dict(var.attrs))
    return out
