"""Normalization of the model's inputs: the precipitation cap rules and the topography range.

* precipitation: ``clip(x, 0, cap) / cap`` (or ``max(x, 0) / cap`` for configurations with
  ``clip=False``; :func:`normalize_precip`) and back
  (:func:`denormalize_precip`); :func:`_check_cap` is the one validator of caps;
* a model's statistics against its configuration (:func:`check_normalization`);
* topography: min-max scaling with the training range (:func:`normalize_topography`);
* the residual of the diffusion stage: its scale, global or growing with the mean
  (:func:`residual_std`).

numpy or torch inputs; imports torch, numpy and the number validators of :mod:`xsuperres.checks`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from ..checks import non_negative_float, positive_float

ArrayLike = Union[np.ndarray, torch.Tensor]


def _check_cap(cap: float) -> float:
    try:
        c = float(cap)
    except (TypeError, ValueError):
        raise ValueError(f"cap must be a positive number (mm/h), got {cap!r}") from None
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"cap must be a positive finite number (mm/h), got {cap!r}")
    return c


#: The keys of ``SRModel.normalization`` that :func:`check_normalization` knows.
_KNOWN_NORM_KEYS = ("cap", "topo_min", "topo_max", "residual_scale", "residual_power", "residual_floor")


def check_normalization(config: Any, norm: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """A model's normalization statistics, checked against its configuration.

    Parameters
    ----------
    config
        The model's :class:`~xsuperres.config.SRConfig` (its ``cap``, mm/h, or ``None``).
    norm
        ``cap`` (mm/h), ``topo_min`` and ``topo_max`` (m), ``residual_scale``
        (normalized units); missing keys get the config's cap, ``None`` and 1.0.
        ``residual_power`` and ``residual_floor`` (:func:`residual_std`) are checked
        when present and left out otherwise (models saved before them read as before).

    Returns
    -------
    dict
        A new dict (``norm`` is not modified) with every known key set.

    Raises
    ------
    ValueError
        A cap that is not positive and finite or disagrees with ``config.cap``; a
        non-finite topography bound, only one of the two, or ``topo_max < topo_min``; a
        ``residual_scale`` or ``residual_floor`` that is not positive and finite, a
        ``residual_power`` that is negative or not finite.
    """
    out: dict[str, Any] = dict(norm) if norm is not None else {}
    cfg_cap = config.cap
    cap = out.get("cap")
    if cap is None:
        cap = cfg_cap
    else:
        cap = _check_cap(cap)
        if cfg_cap is not None and not math.isclose(cap, cfg_cap, rel_tol=1e-12):
            raise ValueError(
                f"normalization['cap'] = {cap} mm/h disagrees with config.cap = {cfg_cap} mm/h"
            )
    out["cap"] = cap
    for k in ("topo_min", "topo_max"):
        v = out.get(k)
        if v is not None:
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"normalization[{k!r}] must be finite, got {out[k]!r}")
        out[k] = v
    if (out["topo_min"] is None) != (out["topo_max"] is None):
        raise ValueError("normalization needs both 'topo_min' and 'topo_max' (m) or neither")
    if out["topo_min"] is not None and out["topo_max"] < out["topo_min"]:
        raise ValueError(
            f"normalization: topo_max ({out['topo_max']} m) < topo_min ({out['topo_min']} m)"
        )
    out["residual_scale"] = positive_float(out.get("residual_scale", 1.0), "normalization['residual_scale']")
    if "residual_power" in out or "residual_floor" in out:
        out["residual_power"], out["residual_floor"] = check_residual_scaling(
            out.get("residual_power", 0.0), out.get("residual_floor", 1.0), "normalization['{}']")
    return out


def check_residual_scaling(power: Any, floor: Any, name: str = "{}") -> tuple[float, float]:
    """The one validator of ``residual_power`` (finite, ``>= 0``) and ``residual_floor``
    (finite, ``> 0``, normalized units) of :func:`residual_std`, as floats.

    ``name`` formats the key in the messages (e.g. ``"normalization['{}']"``)."""
    return (non_negative_float(power, name.format("residual_power")),
            positive_float(floor, name.format("residual_floor"), " (normalized units)"))


def residual_std(D: torch.Tensor, norm: Mapping[str, Any]) -> torch.Tensor | float:
    """The scale of the residual that the diffusion network models, ``r0 = (y - D) / std``.

    ``std = residual_scale * (max(D, 0) + residual_floor) ** residual_power``: one number
    with ``residual_power = 0`` (the default, and every model trained before the key), or
    a field that grows with the mean, so that the scaled residual has about unit variance
    in light rain and in convective cores alike (their residuals differ by two orders of
    magnitude, and a variance-preserving diffusion that starts from unit noise cannot
    reach a residual much larger than 1).

    Parameters
    ----------
    D
        The mean (normalized units, ``mm/h / cap``), any shape.
    norm
        The model's normalization: ``residual_scale`` (default 1), ``residual_power``
        (default 0), ``residual_floor`` (normalized units, default 1).

    Returns
    -------
    torch.Tensor or float
        A tensor shaped like ``D``, or a float when the scale does not depend on ``D``.
    """
    rs = float(norm.get("residual_scale", 1.0))
    p = float(norm.get("residual_power", 0.0))
    if p == 0:
        return rs
    return rs * (D.clamp_min(0) + float(norm.get("residual_floor", 1.0))) ** p


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
