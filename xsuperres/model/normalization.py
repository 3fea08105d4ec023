"""Normalization of the model's inputs: the precipitation cap rules and the topography range.

* precipitation: ``clip(x, 0, cap) / cap`` (or ``max(x, 0) / cap`` for configurations with
  ``clip=False``; :func:`normalize_precip`) and back
  (:func:`denormalize_precip`); :func:`_check_cap` is the one validator of caps;
* topography: min-max scaling with the training range (:func:`normalize_topography`).

numpy or torch inputs; imports torch and numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _check_cap(cap: float) -> float:
    try:
        c = float(cap)
    except (TypeError, ValueError):
        raise ValueError(f"cap must be a positive number (mm/h), got {cap!r}") from None
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"cap must be a positive finite number (mm/h), got {cap!r}")
    return c


def _as_float_array(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def normalize_precip(x: ArrayLike, cap: float, clip: bool = True) -> ArrayLike:
    """Cap and scale precipitation: ``clip(x, 0, cap) / cap`` (``max(x, 0) / cap`` without ``clip``).

    Parameters
    ----------
    x
        Precipitation rate in mm/h, any shape; ``numpy`` array (or array-like) or
        ``torch.Tensor``. NaN stays NaN. Not modified in place.
    cap
        Normalization cap in mm/h (``> 0``).
    clip
        Clip at ``cap`` (the preprint; :attr:`SRConfig.clip <xsuperres.config.SRConfig>`);
        ``False``: the cap is only a scale.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape (and type) as ``x``, values in ``[0, 1]`` (``[0, inf)`` without
        ``clip``; dimensionless); integer inputs become float64 (numpy) or the default
        float dtype (torch).
    """
    c = _check_cap(cap)
    hi = c if clip else None
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return x.clamp(0.0, hi) / c
    return np.clip(_as_float_array(x), 0.0, hi) / c


def denormalize_precip(x: ArrayLike, cap: float) -> ArrayLike:
    """Undo the scaling of :func:`normalize_precip`: ``x * cap`` (the cap is not undone).

    Parameters
    ----------
    x
        Normalized precipitation (dimensionless), any shape; numpy or torch.
    cap
        Normalization cap in mm/h.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Precipitation rate in mm/h, same shape as ``x``.
    """
    c = _check_cap(cap)
    if isinstance(x, torch.Tensor):
        return x * c
    return _as_float_array(x) * c


def normalize_topography(z: ArrayLike, zmin: float, zmax: float) -> ArrayLike:
    """Min-max scale a topography field: ``(z - zmin) / (zmax - zmin)``.

    Parameters
    ----------
    z
        Elevation in m, any shape; numpy or torch. Not modified in place.
    zmin, zmax
        Elevation range in m (from the training set, so that the scaling does not depend
        on the region being downscaled); ``zmax >= zmin``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape as ``z`` (dimensionless; ``[0, 1]`` inside the training range). A
        degenerate range ``zmax == zmin`` (constant training field) gives zeros.
    """
    lo, hi = float(zmin), float(zmax)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"topography range must be finite, got zmin={zmin!r}, zmax={zmax!r}")
    if hi < lo:
        raise ValueError(f"zmax must be >= zmin, got zmin={zmin!r}, zmax={zmax!r}")
    if isinstance(z, torch.Tensor):
        if not z.is_floating_point():
            z = z.to(torch.get_default_dtype())
        return torch.zeros_like(z) if hi == lo else (z - lo) / (hi - lo)
    a = _as_float_array(z)
    return np.zeros_like(a) if hi == lo else (a - lo) / (hi - lo)
