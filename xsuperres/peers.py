"""Classical peers of the model on xarray objects: RainFARM stochastic downscaling.

RainFARM (Rebora et al. 2006; D'Onofrio et al. 2014) is the classical stochastic spatial
downscaling of precipitation: a Gaussian random field with the power-law spectrum of the
LR field, exponentiated and scaled so that every LR cell keeps its mean. It is computed by
``pysteps.downscaling.rainfarm.downscale``, an optional dependency
(``pip install "xsuperres[peers]"``); without pysteps, :func:`rainfarm` raises an
``ImportError`` that says how to install it.

Members are keyed like the model's: member ``m`` of LR step ``t`` (its global index
along the time axis) draws from its own seed, derived from ``(seed, m, t)``, so a member
does not depend on the chunking or on the other members. pysteps draws from numpy's
global random state; :func:`rainfarm` seeds it for each call and restores the caller's
state afterwards.

RainFARM downscales in space only. For ``T > 1`` it is applied per LR frame and each of
the ``T`` HR steps of a block repeats the frame's field (like the interpolation baselines
of :func:`xsuperres.interpolate`); the block means are then kept exactly (without a
smoothing kernel).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Optional

import numpy as np
import xarray as xr

from .cf import append_history
from .checks import positive_int
from .checks import seed as check_seed
from ._pysteps import import_pysteps
from .interpolate import baseline_input, on_hr_grid

__all__ = ["rainfarm", "rainfarm_frame", "member_seed"]


def _pysteps_rainfarm():
    return import_pysteps("downscaling.rainfarm", "RainFARM")


def member_seed(seed: int, member: int, step: int) -> int:
    """The numpy seed (``< 2**32``) of member ``member`` at global LR step ``step``."""
    return int(np.random.SeedSequence([int(seed), int(member), int(step)]).generate_state(1)[0])


def rainfarm_frame(frame: np.ndarray, S: int, seed: int, *, alpha: Optional[float] = None,
                   threshold: Optional[float] = None, kernel_type: Optional[str] = None,
                   spectral_fusion: bool = False) -> np.ndarray:
    """One RainFARM realization of one LR frame ``(h, w) -> (h S, w S)`` (float32).

    NaN cells are downscaled as 0 and are NaN again in the output (their ``S x S`` HR
    cells). numpy's global random state is seeded with ``seed`` for the call and restored
    afterwards. The other arguments are those of ``pysteps.downscaling.rainfarm.downscale``.
    """
    rf = _pysteps_rainfarm()
    a = np.asarray(frame, dtype=np.float64)
    nan = np.isnan(a)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        out = rf.downscale(np.where(nan, 0.0, a), int(S), alpha=alpha, threshold=threshold,
                           kernel_type=kernel_type, spectral_fusion=spectral_fusion)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.float32)
    if nan.any():
        out[np.repeat(np.repeat(nan, S, axis=0), S, axis=1)] = np.nan
    return out


def _rainfarm_block(a: np.ndarray, steps: np.ndarray, *, S: int, members: int, seed: int,
                    kw: dict) -> np.ndarray:
    """``a (..., h, w)``, ``steps (...)`` global LR indices -> ``(..., members, hS, wS)``."""
    lead = a.shape[:-2]
    h, w = a.shape[-2:]
    flat = a.reshape(-1, h, w)
    idx = np.broadcast_to(steps, lead).reshape(-1)
    out = np.empty((flat.shape[0], members, h * S, w * S), np.float32)
    for i in range(flat.shape[0]):
        for m in range(members):
            out[i, m] = rainfarm_frame(flat[i], S, member_seed(seed, m, idx[i]), **kw)
    return out.reshape(lead + (members, h * S, w * S))


def rainfarm(
    lr: xr.DataArray,
    S: int,
    T: int = 1,
    n_members: int = 3,
    *,
    seed: int = 0,
    alpha: Optional[float] = None,
    threshold: Optional[float] = None,
    kernel_type: Optional[str] = None,
    spectral_fusion: bool = False,
    dims: Mapping[str, Hashable] | None = None,
    hr_step: Optional[str] = None,
) -> xr.DataArray:
    """RainFARM ensemble of LR precipitation on the HR grid (lazy on dask input).

    Parameters
    ----------
    lr
        LR precipitation ``(time, y, x)`` with rate units (kept), numpy- or dask-backed;
        NaN cells stay NaN.
    S, T
        Spatial and temporal factors (RainFARM downscales in space; each of the ``T`` HR
        steps of a block repeats its LR frame's field).
    n_members
        Ensemble size.
    seed
        Non-negative integer; member ``m`` of LR step ``t`` uses :func:`member_seed`.
    alpha, threshold, kernel_type, spectral_fusion
        Passed to ``pysteps.downscaling.rainfarm.downscale``: the spectral slope
        (``None``: fitted on each LR frame), values below ``threshold`` set to 0, the
        smoothing kernel (``None``: none, which keeps each LR cell's mean exactly) and
        D'Onofrio's spectral fusion.
    dims, hr_step
        As for :func:`xsuperres.interpolate`.

    Returns
    -------
    xarray.DataArray
        float32, ``("member", *lr.dims)`` on the HR grid (the coordinates of
        :func:`xsuperres.interpolate`), the input's units, a ``history`` line.

    Raises
    ------
    ImportError
        pysteps is not installed.
    ValueError
        Input refused by :mod:`xsuperres.validate`, bad ``S``, ``T``, ``n_members`` or
        ``seed``.
    """
    S, T = positive_int(S, "S"), positive_int(T, "T")
    M = positive_int(n_members, "n_members")
    seed = check_seed(seed)
    _pysteps_rainfarm()  # fail on the call, not in a dask task
    if "member" in lr.dims:
        raise ValueError("the input already has a 'member' dimension; rename it first")
    lr, found, coords = baseline_input(lr, S, T, dims, hr_step)
    tdim, ydim, xdim = found["time"], found["y"], found["x"]
    steps = xr.DataArray(np.arange(lr.sizes[tdim]), dims=tdim)
    if lr.chunks is not None:
        steps = steps.chunk({tdim: lr.chunksizes[tdim]})
    yhr, xhr = f"__{ydim}_hr", f"__{xdim}_hr"
    kw = {"alpha": alpha, "threshold": threshold, "kernel_type": kernel_type,
          "spectral_fusion": bool(spectral_fusion)}
    spatial = xr.apply_ufunc(
        _rainfarm_block, lr, steps,
        kwargs={"S": S, "members": M, "seed": seed, "kw": kw},
        input_core_dims=[[ydim, xdim], []],
        output_core_dims=[["member", yhr, xhr]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"member": M, yhr: lr.sizes[ydim] * S,
                                             xhr: lr.sizes[xdim] * S}, "allow_rechunk": True},
        keep_attrs=True,
    )
    out = on_hr_grid(spatial, lr, T, found, coords, lead=("member",))
    out = out.assign_coords(member=xr.Variable("member", np.arange(M), {"long_name": "ensemble member"}))
    out.attrs = append_history(lr.attrs, f"rainfarm(S={S}, T={T}, n_members={M}, seed={seed}, "
                                         f"alpha={alpha}, threshold={threshold}, "
                                         f"kernel_type={kernel_type!r}, "
                                         f"spectral_fusion={bool(spectral_fusion)}): baseline")
    out.attrs.pop("cell_methods", None)
    out.attrs["comment"] = (f"RainFARM (pysteps) stochastic downscaling baseline; each of the T={T} "
                            "HR steps repeats its LR step's field")
    return out
