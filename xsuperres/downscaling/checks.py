"""Input against model: cadence, grid spacing, topography grid, and the HR time labels.

The LR input's time step must be ``T`` times the model's HR step and its grid spacing
``S`` times the model's HR spacing (:func:`check_cadence`, :func:`check_spacing`: an error
with ``strict=True``, a warning otherwise, and a warning saying what is assumed when the
input has no usable coordinates). :func:`topography_array` checks a topography against the
HR grid, and :func:`hr_time` makes the ``T`` HR time labels of each LR label. (Argument
rules live in :mod:`xsuperres.checks`, input rules in :mod:`xsuperres.validate`.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping
from typing import Optional

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ..checks import TOPOGRAPHY_FIX, finite_array

__all__ = ["check_cadence", "check_spacing", "hr_time", "topography_array"]

# check_cadence and check_spacing are called directly by downscale's per-variable step
# (api._downscale_variable, under api._downscale_object): their warnings' stacklevel counts the
# frames up to the public downscale / downscale_mean.


def _fmt_step(td: pd.Timedelta) -> str:
    s = td.total_seconds()
    if s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s % 60 == 0:
        return f"{int(s // 60)}min"
    return f"{s:g}s"


def _lr_step(times: np.ndarray) -> Optional[pd.Timedelta]:
    if times.size < 2:
        return None
    step = times[1] - times[0]
    try:
        return pd.Timedelta(step)
    except (TypeError, ValueError):
        return None  # numeric time axis: no cadence


def check_cadence(times: Optional[np.ndarray], model, strict: bool, label: str) -> Optional[pd.Timedelta]:
    """Compare the LR cadence with the model's HR ``time_step`` x T; return the HR step."""
    c = model.config
    hr = c.time_step or model.metadata.get("time_step")
    hr_step = pd.Timedelta(hr) if hr else None
    lr = None if times is None else _lr_step(times)
    if hr_step is not None and lr is None:
        why = ("has no time coordinate" if times is None else
               "has a single time step" if np.asarray(times).size < 2 else
               "has a time coordinate without a usable step")
        warnings.warn(
            f"{label} {why}, so its cadence cannot be checked against the model's: assuming "
            f"LR steps of {_fmt_step(hr_step * c.T)} (the model's HR step {_fmt_step(hr_step)} "
            f"x T={c.T}). Give the input a datetime time coordinate to have it checked",
            UserWarning, stacklevel=5)
    if lr is None or hr_step is None:
        return hr_step
    expected = hr_step * c.T
    if lr != expected:
        msg = (f"{label}: the input's time step is {_fmt_step(lr)}, but the model was trained "
               f"on HR steps of {_fmt_step(hr_step)} with T={c.T}, i.e. LR steps of "
               f"{_fmt_step(expected)}; resample the input to {_fmt_step(expected)} or pass "
               "strict=False to downscale anyway")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + " (strict=False: going on; the output steps are the input step / T)",
                      UserWarning, stacklevel=5)
        return None
    return hr_step


_M_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0,
            "km": 1e3, "kilometre": 1e3, "kilometer": 1e3, "kilometres": 1e3, "kilometers": 1e3}


def _model_spacing(model) -> Optional[tuple[tuple[float, float], str]]:
    """The model's HR grid spacing ``((dy, dx), units)`` from its metadata, if recorded."""
    md = model.metadata or {}
    gm = md.get("grid_spacing_m")
    if gm:
        gm = list(gm) if isinstance(gm, (list, tuple)) else [gm, gm]
        return (float(gm[0]), float(gm[-1])), "m"
    for src in (md.get("grid_spacing"), (md.get("data") or {}).get("grid_spacing")):
        if isinstance(src, Mapping) and "x" in src and "y" in src:
            return (float(src["y"]), float(src["x"])), str(src.get("units", "unknown"))
    return None


def check_spacing(da: xr.DataArray, ydim: Hashable, xdim: Hashable, model, strict: bool, label: str) -> None:
    """Compare the LR grid spacing / S with the model's HR spacing (when both are known)."""
    ref = _model_spacing(model)
    if ref is None:
        return
    (ry, rx), runits = ref
    S = model.config.S

    def skipped(why: str) -> None:
        warnings.warn(
            f"{label}: {why}, so its grid spacing cannot be checked against the model's: "
            f"assuming LR cells of ({ry * S:g}, {rx * S:g}) {runits} (the model's HR cells of "
            f"({ry:g}, {rx:g}) {runits} x S={S}). Give the input 1-D {ydim!r}/{xdim!r} "
            "coordinates with units to have it checked", UserWarning, stacklevel=6)

    got = []
    for dim in (ydim, xdim):
        if dim not in da.coords:
            return skipped(f"dimension {dim!r} has no coordinate values")
        if da.coords[dim].ndim != 1 or da.sizes[dim] < 2:
            return skipped(f"coordinate {dim!r} has fewer than 2 values")
        v = np.asarray(da.coords[dim].values)
        if not np.issubdtype(v.dtype, np.number):
            return skipped(f"coordinate {dim!r} is not numeric")
        step = float(np.median(np.abs(np.diff(v.astype(np.float64))))) / S
        u = str(da.coords[dim].attrs.get("units", "unknown")).strip()
        if runits == "m" and u in _M_UNITS:
            step, u = step * _M_UNITS[u], "m"
        elif u != runits:
            return skipped(f"coordinate {dim!r} has units {u!r}, not comparable with the model's "
                           f"{runits!r}")
        got.append(step)
    gy, gx = got
    if not (math.isclose(gy, ry, rel_tol=1e-2) and math.isclose(gx, rx, rel_tol=1e-2)):
        msg = (f"{label}: the input's grid spacing ({gy * S:g}, {gx * S:g}) {runits} implies HR "
               f"cells of ({gy:g}, {gx:g}) {runits} with S={S}, but the model was trained on HR "
               f"cells of ({ry:g}, {rx:g}) {runits}; regrid the input or pass strict=False")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=5)


def topography_array(topo, ydim: Hashable, xdim: Hashable, H: int, W: int, da: xr.DataArray,
                     S: int) -> dsa.Array:
    """The topography (m) as a dask array ``(H, W)`` after checking it is on the HR grid.

    ``topo`` is a DataArray with the input's y/x dimension names (or anything
    ``np.asarray`` takes, read as ``(y, x)``); its coordinates, if any, must be the HR
    centres of ``da``'s. A numpy-backed topography is checked for NaN now.
    """
    if not isinstance(topo, xr.DataArray):
        topo = xr.DataArray(np.asarray(topo), dims=(ydim, xdim))
    if set(topo.dims) != {ydim, xdim}:
        raise ValueError(f"topography must have the dimensions ({ydim!r}, {xdim!r}) of the input, "
                         f"got {topo.dims}")
    topo = topo.transpose(ydim, xdim)
    if topo.shape != (H, W):
        raise ValueError(f"topography must be on the HR grid: shape ({H}, {W}) = LR shape x S={S}, "
                         f"got {topo.shape}")
    for dim in (ydim, xdim):
        if dim in topo.coords and dim in da.coords and da.sizes[dim] >= 2:
            from ..grid import refine_coordinate

            hr = refine_coordinate(np.asarray(da.coords[dim].values), S, dim)
            got = np.asarray(topo.coords[dim].values, dtype=np.float64)
            tol = 1e-3 * abs(hr[1] - hr[0]) if hr.size > 1 else 1e-9
            if not np.allclose(got, hr, rtol=0, atol=tol):
                raise ValueError(f"topography coordinate {dim!r} does not match the HR grid "
                                 f"(first values {got[:3]} vs {hr[:3]}); interpolate it onto the "
                                 "HR grid first (e.g. xsuperres.topography helpers)")
    if topo.chunks is None:
        finite_array(topo.values, "topography", TOPOGRAPHY_FIX)
    data = topo.data
    return data if isinstance(data, dsa.Array) else dsa.from_array(np.asarray(data, np.float32), chunks=-1)


def hr_time(values: np.ndarray, T: int, hr_step: Optional[pd.Timedelta]) -> np.ndarray:
    """``T`` HR labels per LR label (datetime64, cftime or numeric), starting at the label."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.datetime64):
        if values.size >= 2:
            step = (values[1] - values[0]) / T
        elif hr_step is not None:
            step = hr_step.to_timedelta64()
        elif T == 1:
            return values.copy()
        else:
            raise ValueError("a single LR time step has no cadence and the model records none: "
                             "the HR time labels are undefined")
        offsets = np.array([k * step for k in range(T)])
        return (values[:, None] + offsets[None, :]).reshape(-1)
    if T == 1:
        return values.copy()
    if values.size >= 2:
        step = values[1] - values[0]
    elif hr_step is not None and values.dtype == object:
        step = hr_step.to_pytimedelta() * T
    else:
        raise ValueError("a single LR time step has no cadence: the HR time labels are undefined")
    out = np.empty((values.size, T), dtype=object if values.dtype == object else np.float64)
    for k in range(T):
        out[:, k] = values + step * k / T
    return out.reshape(-1)
