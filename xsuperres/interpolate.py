"""Interpolation baselines on xarray objects: bicubic / nearest in space, persistence /
linear / motion-compensated in time.

By default each HR frame of a block takes the block's LR frame, upsampled in space (the
preprint's baselines). ``time_method="linear"`` or ``"motion"`` interpolates between LR
steps first (:mod:`xsuperres.temporal`: the temporal peers of ``T > 1`` models). These are
the reference points every learned model is scored against.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
import xarray as xr

from .cf import append_history
from .checks import positive_int
from .dims import find_dims
from .grid import refine_2d_coords, refine_coordinate, refine_time
from .nn.interp import upsample
from .temporal import check_time_method, upsample_in_time
from .validate import check_time_coordinate, label_of, precipitation_input

__all__ = ["interpolate", "hr_template_coords", "baseline_input", "on_hr_grid"]


def _upsample_numpy(a: np.ndarray, S: int, method: str) -> np.ndarray:
    """Upsample the last two axes; NaN LR pixels give NaN HR pixels; bicubic is clamped at 0."""
    nan = np.isnan(a)
    filled = torch.from_numpy(np.where(nan, 0.0, a).astype(np.float32, copy=False))
    out = upsample(filled, S, method).numpy()
    if method == "bicubic":
        out = np.clip(out, 0.0, None)
    if nan.any():
        mask = upsample(torch.from_numpy(nan.astype(np.float32)), S, "nearest").numpy() > 0
        out = np.where(mask, np.float32(np.nan), out)
    return out


def hr_template_coords(
    lr: xr.DataArray | xr.Dataset, S: int, T: int, dims: Mapping[str, Hashable], hr_step=None
) -> dict[Hashable, xr.Variable]:
    """Coordinates of the HR grid: refined x/y/time and 2-D lat/lon.

    1-D ``x``/``y`` get ``S`` HR centres per LR cell (:func:`xsuperres.grid.refine_coordinate`),
    time ``T`` steps per LR step (:func:`xsuperres.grid.refine_time`). 2-D ``(y, x)``
    coordinates are refined by :func:`xsuperres.grid.refine_2d_coords`: ``lat``/``lon`` are
    computed exactly from the HR ``x``/``y`` with the grid mapping when there is a usable one
    (checked against the LR lat/lon; a ``UserWarning`` when it disagrees), otherwise (and for
    other 2-D coordinates) interpolated with a cubic spline in fractional LR index, extrapolated
    at the edges (no clamping), the LR values being taken as block means as made by
    :func:`xsuperres.coarsen_perfect`. Coordinates that depend on none of the three dims (e.g.
    a ``crs`` grid-mapping variable) are carried over unchanged; others along the time or
    spatial dims are dropped.
    """
    tdim, ydim, xdim = dims["time"], dims["y"], dims["x"]
    two_d = refine_2d_coords(lr, S, ydim, xdim)
    coords: dict[Hashable, xr.Variable] = {}
    for name, coord in lr.coords.items():
        var = coord.variable
        if name == xdim or name == ydim:
            coords[name] = xr.Variable(name, refine_coordinate(var.values, S, name), attrs=var.attrs)
        elif name == tdim:
            coords[name] = xr.Variable(name, refine_time(var.values, T, hr_step), attrs=var.attrs)
        elif name in two_d:
            coords[name] = two_d[name]
        elif not set(var.dims) & {tdim, ydim, xdim}:
            coords[name] = var
    return coords


def baseline_input(lr: xr.DataArray, S: int, T: int, dims: Mapping[str, Hashable] | None,
                   hr_step: str | None):
    """The checks and HR coordinates shared by the baselines (:func:`interpolate`,
    :func:`xsuperres.rainfarm`): ``(lr, found dims, HR coordinates)``.

    ``lr`` passes the shared input rules (units kept, not converted) and a datetime time
    coordinate (with a cadence when ``T > 1`` and no ``hr_step``).
    """
    found = find_dims(lr, dims)
    tdim = found["time"]
    lr = precipitation_input(lr, convert=False)
    if tdim in lr.coords:
        check_time_coordinate(lr.coords[tdim].values, tdim, label_of(lr),
                              need_cadence=T > 1 and hr_step is None)
    return lr, found, hr_template_coords(lr, S, T, found, hr_step)


def on_hr_grid(spatial: xr.DataArray, lr: xr.DataArray, T: int, found: Mapping[str, Hashable],
               coords: Mapping[Hashable, xr.Variable], lead: tuple[str, ...] = (),
               repeat: bool = True) -> xr.DataArray:
    """A baseline's spatially upsampled frames (HR axes ``__<y>_hr``, ``__<x>_hr``) on the
    HR grid: each LR step repeated ``T`` times (``repeat=False``: the time axis already has
    the HR steps), the input's dimension order after ``lead``, the HR coordinates, the
    input's grid-mapping encoding."""
    tdim, ydim, xdim = found["time"], found["y"], found["x"]
    spatial = spatial.drop_vars([c for c in spatial.coords if c not in spatial.dims or c == tdim])
    repeated = spatial.isel({tdim: np.repeat(np.arange(lr.sizes[tdim]), T)}) if repeat else spatial
    out = repeated.rename({f"__{ydim}_hr": ydim, f"__{xdim}_hr": xdim}).transpose(*lead, *lr.dims)
    out = out.drop_vars(list(out.coords)).assign_coords(coords)
    out.encoding = {k: v for k, v in lr.encoding.items() if k == "grid_mapping"}
    return out


def interpolate(
    lr: xr.DataArray,
    S: int,
    T: int,
    method: str = "bicubic",
    *,
    time_method: str = "persistence",
    flow: str = "proesmans",
    dims: Mapping[str, Hashable] | None = None,
    hr_step: str | None = None,
) -> xr.DataArray:
    """Interpolation baseline: LR frames upsampled by ``S`` in space and ``T`` in time.

    Parameters
    ----------
    lr
        Low-resolution precipitation (time, y, x), e.g. the output of
        :func:`xsuperres.coarsen_perfect`. numpy- or dask-backed.
    S, T
        Spatial and temporal factors.
    method
        ``"bicubic"`` (clamped at 0, as precipitation is non-negative) or
        ``"nearest"`` (conserves each LR block's mean exactly).
    time_method
        ``"persistence"`` (default: each LR step repeated ``T`` times), ``"linear"``
        (between LR step centres; uses the previous and **the following LR step**) or
        ``"motion"`` (motion-compensated: optical flow and semi-Lagrangian advection
        between consecutive LR steps; needs pysteps and the following LR step). The
        linear and motion steps are rescaled so that every block keeps its LR mean
        (:mod:`xsuperres.temporal`). They need the whole time axis: a dask input is
        rechunked to one chunk along time.
    flow
        Optical-flow method for ``time_method="motion"``: ``"proesmans"`` (default) or
        ``"LK"`` (needs OpenCV); see :func:`xsuperres.temporal.optical_flow`.
    dims
        Explicit dimension names, as in :func:`xsuperres.find_dims`.
    hr_step
        HR cadence; by default the LR time step divided by ``T``.

    Returns
    -------
    xarray.DataArray
        HR field (float32) in the input's units, NaN where the parent LR pixel is NaN;
        lazy on dask input.

    Raises
    ------
    ValueError
        Input refused by :mod:`xsuperres.validate` (raw packed values, missing or
        non-rate units; a time coordinate of strings, or of plain numbers when ``T > 1``
        and no ``hr_step`` is given); an unknown ``method`` or ``time_method``.

    Examples
    --------
    One pixel's 15-min means 0, 3 and 6 mm/h back to 5-min steps: persistence repeats
    them, linear interpolation ramps between block centres and keeps each block's mean:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> import xsuperres
    >>> lr = xr.DataArray(np.array([0.0, 3.0, 6.0])[:, None, None], dims=("time", "y", "x"),
    ...                   coords={"time": pd.date_range("2020-01-01", periods=3, freq="15min")},
    ...                   attrs={"units": "mm h-1"})
    >>> xsuperres.interpolate(lr, 1, 3, "nearest").values.ravel()
    array([0., 0., 0., 3., 3., 3., 6., 6., 6.], dtype=float32)
    >>> xsuperres.interpolate(lr, 1, 3, "nearest", time_method="linear").values.ravel().round(2)
    array([0.  , 0.  , 0.  , 2.  , 3.  , 4.  , 5.29, 6.35, 6.35], dtype=float32)
    """
    S, T = positive_int(S, "S"), positive_int(T, "T")
    if method not in ("bicubic", "nearest"):
        raise ValueError(f"method must be 'bicubic' or 'nearest', got {method!r}")
    check_time_method(time_method)  # now, not when a lazy result is computed
    lr, found, coords = baseline_input(lr, S, T, dims, hr_step)
    ydim, xdim = found["y"], found["x"]
    yhr, xhr = f"__{ydim}_hr", f"__{xdim}_hr"
    frames = lr
    if time_method != "persistence":
        frames = _interpolate_in_time(lr, T, time_method, flow, found)
    spatial = xr.apply_ufunc(
        _upsample_numpy,
        frames,
        kwargs={"S": S, "method": method},
        input_core_dims=[[ydim, xdim]],
        output_core_dims=[[yhr, xhr]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {yhr: lr.sizes[ydim] * S, xhr: lr.sizes[xdim] * S}, "allow_rechunk": True},
        keep_attrs=True,
    )
    out = on_hr_grid(spatial, lr, T, found, coords, repeat=time_method == "persistence")
    call = f"interpolate(S={S}, T={T}, method={method!r}, time_method={time_method!r}"
    call += f", flow={flow!r})" if time_method == "motion" else ")"
    out.attrs = append_history(lr.attrs, f"{call}: baseline")
    out.attrs.pop("cell_methods", None)
    in_time = {"persistence": f"each of the T={T} HR steps repeats its LR step",
               "linear": f"the T={T} HR steps interpolate linearly between LR step centres, "
                         "rescaled to keep each LR step's mean",
               "motion": f"the T={T} HR steps are motion-compensated ({flow} optical flow, "
                         "semi-Lagrangian advection) between LR steps, rescaled to keep each "
                         "LR step's mean"}[time_method]
    out.attrs["comment"] = f"{method} interpolation baseline in space; {in_time}"
    return out


def _interpolate_in_time(lr: xr.DataArray, T: int, time_method: str, flow: str,
                         found: Mapping[str, Hashable]) -> xr.DataArray:
    """``lr`` with its time axis replaced by the ``n T`` HR steps of ``time_method``
    (:func:`xsuperres.temporal.upsample_in_time`), float32, lazy on dask input."""
    tdim, ydim, xdim = found["time"], found["y"], found["x"]

    def run(a: np.ndarray) -> np.ndarray:
        lead = a.shape[:-3]
        flat = a.reshape((-1,) + a.shape[-3:])
        kw = {"flow": flow} if time_method == "motion" else {}
        out = [upsample_in_time(f, T, time_method, **kw) for f in flat]
        return np.stack(out).astype(np.float32).reshape(lead + (a.shape[-3] * T,) + a.shape[-2:])

    return xr.apply_ufunc(
        run, lr,
        input_core_dims=[[tdim, ydim, xdim]],
        output_core_dims=[[f"__{tdim}_hr", ydim, xdim]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {f"__{tdim}_hr": lr.sizes[tdim] * T},
                            "allow_rechunk": True},
        keep_attrs=True,
    ).rename({f"__{tdim}_hr": tdim})
