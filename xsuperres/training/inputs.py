"""Checking and preparing the user's high-resolution training data.

:func:`prepare_events` turns what :func:`xsuperres.train` receives (one DataArray or a
list of DataArrays, the *events*) into plain numpy arrays in mm/h plus the metadata the
trained model records: cadence, grid spacing, time periods and source attributes.

Rules
-----
* Every event is a DataArray with a time and two spatial dimensions (found with
  :func:`xsuperres.find_dims`), transposed to ``(time, y, x)``.
* Entry follows :mod:`xsuperres.validate` (the rule every entry point shares): raw
  packed values and data without precipitation-rate ``units`` are refused, integers
  become float32, and values are converted to mm h-1; negative values are refused too,
  naming the variable. A time coordinate must hold datetimes (numbers without a
  calendar and strings are refused, with how to decode them).
* An event's time steps must be regular (samples never bridge a gap; split the data
  into several events instead). All events must share one cadence and one grid spacing.
* Samples never cross events: each event is tiled and sampled on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..coarsen import check_regular_time
from ..dims import find_dims
from ..units import check_precipitation
from ..validate import check_time_coordinate, precipitation_input

__all__ = ["Event", "PreparedData", "prepare_events", "format_time_step", "SOURCE_ATTRS"]

log = logging.getLogger(__name__)

#: Global/variable attributes copied into the model's metadata (data provenance).
SOURCE_ATTRS: tuple[str, ...] = (
    "title", "institution", "provider", "source", "references", "license", "licence",
)


@dataclass
class Event:
    """One contiguous, regularly sampled piece of HR data.

    Attributes
    ----------
    hr
        Precipitation rate (mm/h), float32 array ``(time, y, x)``; NaN where missing.
    times
        HR time labels ``(time,)`` (``datetime64``) or ``None`` if the time dimension
        has no datetime coordinate.
    topography
        Surface altitude (m) on the HR grid ``(y, x)`` (float32) or ``None``.
    name
        Label for messages and metadata (``"event 0"``, or the variable name).
    attrs
        Provenance attributes (:data:`SOURCE_ATTRS` found on the data).
    """

    hr: np.ndarray
    times: np.ndarray | None
    topography: np.ndarray | None
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def period(self) -> tuple[str, str] | None:
        """First and last HR time label as ISO strings, or ``None``."""
        if self.times is None or not len(self.times):
            return None
        return str(np.datetime_as_string(self.times[0], unit="s")), str(
            np.datetime_as_string(self.times[-1], unit="s"))


@dataclass
class PreparedData:
    """All events plus the properties they share.

    Attributes
    ----------
    events
        The events, in the order given.
    variable
        Name of the precipitation variable (of the first event).
    cadence
        HR time step as ``numpy.timedelta64`` (``None`` if unknown).
    spacing
        HR grid spacing ``(dy, dx)`` in the units of ``spacing_units`` (absolute values),
        or ``None`` if the spatial dimensions have no numeric coordinates.
    spacing_units
        ``"m"`` for projected grids (``km`` coordinates are converted), otherwise the
        coordinate's ``units`` attribute (e.g. ``"degrees_north"``) or ``"unknown"``.
    """

    events: list[Event]
    variable: str
    cadence: np.timedelta64 | None
    spacing: tuple[float, float] | None
    spacing_units: str

    @property
    def time_step(self) -> str | None:
        """The cadence as a short string (``"1h"``, ``"5min"``), or ``None``."""
        return None if self.cadence is None else format_time_step(self.cadence)


def format_time_step(step: np.timedelta64 | pd.Timedelta) -> str:
    """Short cadence string: whole hours ``"<n>h"``, minutes ``"<n>min"``, else ``"<n>s"``.

    Parameters
    ----------
    step
        A positive time step.

    Returns
    -------
    str
        e.g. ``"1h"``, ``"5min"``, ``"30s"``.
    """
    seconds = pd.Timedelta(step).total_seconds()
    if seconds <= 0:
        raise ValueError(f"time step must be positive, got {step}")
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}s"


def _label(da: xr.DataArray, i: int, n: int) -> str:
    name = repr(da.name) if da.name is not None else "<unnamed DataArray>"
    return f"{name} (event {i})" if n > 1 else name


def _cadence(da: xr.DataArray, time_dim: Hashable, label: str) -> np.timedelta64 | None:
    if time_dim not in da.coords:
        return None
    values = np.asarray(da.coords[time_dim].values)
    check_time_coordinate(values, time_dim, f"variable {label}")
    if not np.issubdtype(values.dtype, np.datetime64):
        return None
    if values.size < 2:
        return None
    try:
        check_regular_time(values, time_dim)
    except ValueError as err:
        raise ValueError(
            f"variable {label}: {err}. Training samples cannot bridge gaps: pass the "
            "contiguous pieces as a list of DataArrays (separate events) instead"
        ) from None
    step = (values[1] - values[0]).astype("timedelta64[ns]")
    if step <= np.timedelta64(0, "ns"):
        raise ValueError(f"variable {label}: time must be increasing")
    return step


def _spacing(da: xr.DataArray, ydim: Hashable, xdim: Hashable) -> tuple[tuple[float, float] | None, str]:
    out = []
    units = set()
    for dim in (ydim, xdim):
        if dim not in da.coords:
            return None, "unknown"
        c = da.coords[dim]
        values = np.asarray(c.values)
        if c.ndim != 1 or values.size < 2 or not np.issubdtype(values.dtype, np.number):
            return None, "unknown"
        step = float(np.median(np.abs(np.diff(values.astype(np.float64)))))
        u = str(c.attrs.get("units", "unknown")).strip()
        if u in ("km", "kilometre", "kilometer", "kilometres", "kilometers"):
            step, u = step * 1000.0, "m"
        elif u in ("m", "metre", "meter", "metres", "meters"):
            u = "m"
        out.append(step)
        units.add(u)
    return (out[0], out[1]), "/".join(sorted(units))


def _topography_for(topo: xr.DataArray | np.ndarray, hr: xr.DataArray, ydim: Hashable, xdim: Hashable,
                    label: str) -> np.ndarray:
    """Topography on the grid of ``hr`` as a float32 array ``(y, x)`` in m."""
    if isinstance(topo, xr.DataArray):
        if ydim in topo.dims and xdim in topo.dims:
            ty, tx = ydim, xdim
        else:
            found = find_dims(topo, roles=("y", "x"))
            ty, tx = found["y"], found["x"]
        extra = [d for d in topo.dims if d not in (ty, tx)]
        if extra:
            raise ValueError(f"topography must be 2-D (y, x), it has extra dimensions {extra}")
        units = str(topo.attrs.get("units", "m")).strip()
        factor = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "km": 1000.0}.get(units)
        if factor is None:
            raise ValueError(f"topography has units {units!r}; give it in m")
        topo = topo.transpose(ty, tx)
        if ty in topo.coords and tx in topo.coords and ydim in hr.coords and xdim in hr.coords:
            ys, xs = np.asarray(hr.coords[ydim].values), np.asarray(hr.coords[xdim].values)
            try:
                topo = topo.sel({ty: ys, tx: xs}, method="nearest",
                                tolerance=_half_step(ys, xs))
            except KeyError:
                raise ValueError(
                    f"topography does not cover the grid of {label} (no topography point "
                    "within half a grid cell of every HR pixel); reproject it onto the HR grid"
                ) from None
        arr = np.asarray(topo.values, dtype=np.float64) * factor
    else:
        arr = np.asarray(topo, dtype=np.float64)
    if arr.shape != (hr.sizes[ydim], hr.sizes[xdim]):
        raise ValueError(
            f"topography has shape {arr.shape}, but the grid of {label} is "
            f"{(hr.sizes[ydim], hr.sizes[xdim])} (y, x)"
        )
    return arr.astype(np.float32)


def _half_step(ys: np.ndarray, xs: np.ndarray) -> float:
    steps = [np.min(np.abs(np.diff(v.astype(np.float64)))) for v in (ys, xs) if v.size > 1]
    return 0.5 * float(min(steps)) if steps else np.inf


def prepare_events(
    hr: xr.DataArray | Sequence[xr.DataArray],
    topography: xr.DataArray | np.ndarray | Sequence[xr.DataArray | np.ndarray | None] | None = None,
    *,
    dims: dict[str, Hashable] | None = None,
) -> PreparedData:
    """Validate and convert the training data.

    Parameters
    ----------
    hr
        HR precipitation, a DataArray ``(time, y, x)`` (any dimension order and names
        that :func:`xsuperres.find_dims` recognises) with a precipitation ``units``
        attribute, or a list of such DataArrays (separate events with the same cadence
        and grid spacing; the grids may differ in size).
    topography
        Surface altitude (m) on the HR grid: ``None`` (zeros are used), one 2-D array or
        DataArray for all events (a DataArray with coordinates is matched to each
        event's x/y by nearest neighbour within half a cell), or a list with one entry
        per event.
    dims
        Explicit dimension names, as in :func:`xsuperres.find_dims`.

    Returns
    -------
    PreparedData

    Raises
    ------
    TypeError
        If an event is not a DataArray.
    ValueError
        Missing or non-precipitation units, negative values, irregular time steps,
        different cadences or grid spacings across events, or a topography that does
        not fit the grid.
    """
    if isinstance(hr, xr.Dataset):
        raise TypeError(
            "hr is a Dataset; pass the precipitation DataArray, e.g. ds['precip'] "
            f"(variables: {list(hr.data_vars)})"
        )
    events_in = [hr] if isinstance(hr, xr.DataArray) else list(hr)
    if not events_in:
        raise ValueError("no training data: hr is an empty list")
    n = len(events_in)
    if topography is None or isinstance(topography, (xr.DataArray, np.ndarray)):
        topos = [topography] * n
    else:
        topos = list(topography)
        if len(topos) != n:
            raise ValueError(f"got {len(topos)} topography fields for {n} events")

    # event names: the DataArrays' names when they are all set and distinct, else "event i"
    given = [getattr(da, "name", None) for da in events_in]
    if n == 1:
        names = [str(given[0]) if given[0] is not None else "event 0"]
    elif all(g is not None for g in given) and len({str(g) for g in given}) == n:
        names = [str(g) for g in given]
    else:
        names = [f"event {i}" for i in range(n)]
    events: list[Event] = []
    cadences: list[np.timedelta64 | None] = []
    spacings: list[tuple[tuple[float, float] | None, str]] = []
    for i, (da, topo) in enumerate(zip(events_in, topos)):
        if isinstance(da, xr.Dataset):
            raise TypeError(
                f"event {i} is a Dataset; pass the precipitation DataArray, e.g. "
                f"ds['precip'] (variables: {list(da.data_vars)})"
            )
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"event {i} must be an xarray.DataArray, got {type(da).__name__}")
        label = _label(da, i, n)
        found = find_dims(da, dims)
        tdim, ydim, xdim = found["time"], found["y"], found["x"]
        extra = [d for d in da.dims if d not in (tdim, ydim, xdim)]
        if extra:
            raise ValueError(f"variable {label} has extra dimensions {extra}; select one value of each")
        da = precipitation_input(da, f"variable {label}")
        check_precipitation(da, name=f"variable {label}")
        da = da.transpose(tdim, ydim, xdim)
        cadences.append(_cadence(da, tdim, label))
        spacings.append(_spacing(da, ydim, xdim))
        times = None
        if tdim in da.coords and np.issubdtype(da.coords[tdim].dtype, np.datetime64):
            times = np.asarray(da.coords[tdim].values).astype("datetime64[ns]")
        topo_arr = None if topo is None else _topography_for(topo, da, ydim, xdim, label)
        attrs = {k: str(v) for k, v in da.attrs.items() if k in SOURCE_ATTRS}
        events.append(Event(np.asarray(da.values, dtype=np.float32), times, topo_arr,
                            names[i], attrs))

    known = {str(c) for c in cadences if c is not None}
    if len(known) > 1:
        listed = ", ".join(f"event {i}: {format_time_step(c)}" for i, c in enumerate(cadences) if c is not None)
        raise ValueError(
            f"the events have different cadences ({listed}); a model is trained for one "
            "cadence: resample them to a common time step or train separate models"
        )
    cadence = next((c for c in cadences if c is not None), None)
    if cadence is None:
        log.warning("no datetime time coordinate: the cadence (time_step) is unknown")
    grids = [s for s, _ in spacings if s is not None]
    for i, (s, u) in enumerate(spacings):
        if s is not None and (not np.allclose(s, grids[0], rtol=1e-3) or u != spacings[0][1]):
            raise ValueError(
                f"event {i} has a grid spacing of {s} {u}, event 0 of {spacings[0][0]} "
                f"{spacings[0][1]}; all events must share one HR grid spacing"
            )
    spacing = grids[0] if grids else None
    units = spacings[0][1] if grids else "unknown"
    name = events_in[0].name
    return PreparedData(events, str(name) if name is not None else "precip", cadence, spacing, units)
