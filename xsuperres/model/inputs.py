"""The inputs of :meth:`SRModel.predict <xsuperres.model.SRModel.predict>`: validation and batching.

:func:`prepare_inputs` checks the LR context and the topography given to ``predict`` /
``predict_mean`` (shape, ``L``, finite, non-negative, the HR grid), flattens the leading
axes and normalizes the topography; :func:`_topo_slice` cuts the topography of one batch.
Imports torch and numpy only.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..checks import TOPOGRAPHY_FIX, finite_array
from ..config import SRConfig
from .normalization import normalize_topography


def network_order(context: Any, L: int, axis: int = -3) -> Any:
    """A chronological context ``x[t-L+1] .. x[t+K]`` in the networks' frame order.

    The networks and mass conservation take the block's own frame ``x[t]`` **last**: the
    ``K`` lookahead frames go between the past frames and it (``x[t-L+1] .. x[t-1],
    x[t+1] .. x[t+K], x[t]``). Without lookahead (``K = 0``) the order is chronological
    and ``context`` is returned as it is. numpy arrays and torch tensors.
    """
    n = context.shape[axis]
    if n == L:
        return context
    idx = list(range(L - 1)) + list(range(L, n)) + [L - 1]
    if isinstance(context, torch.Tensor):
        return context.index_select(axis % context.ndim, torch.as_tensor(idx, device=context.device))
    return np.take(context, idx, axis=axis)


def prepare_inputs(
    c: SRConfig, normalization: Mapping[str, Any], lr: Any, topography: Any
) -> tuple[tuple[int, ...], np.ndarray, Optional[np.ndarray]]:
    """Validate inputs; return ``(lead shape, lr (N, L, h, w) float32, topo or None)``.

    Parameters
    ----------
    c
        The model's configuration (``S``, ``T``, ``L``).
    normalization
        The model's normalization (``topo_min``, ``topo_max`` in m).
    lr, topography
        As in :meth:`SRModel.predict <xsuperres.model.SRModel.predict>`; not modified.

    Returns
    -------
    tuple
        The leading shape of ``lr``, the LR context ``(N, L + lookahead, h, w)`` float32
        (mm/h, a copy, in :func:`network_order`: the block's frame last) and the
        normalized topography, float32, shaped ``(N or 1, H, W)``, or
        ``None``.
    """
    if isinstance(lr, torch.Tensor):
        lr = lr.detach().cpu().numpy()
    a = np.asarray(lr)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"lr must hold real numbers (mm/h), got dtype {a.dtype}")
    n = c.n_context
    what = f"L={c.L}" if not c.lookahead else f"L + lookahead = {c.L} + {c.lookahead} = {n}"
    if a.ndim < 3:
        raise ValueError(f"lr must have shape (..., {n}, h, w) ({what}), got shape {a.shape}")
    if a.shape[-3] != n:
        raise ValueError(
            f"lr has L={a.shape[-3]} context frames (axis -3 of shape {a.shape}) but "
            f"expected {what}: this model was trained for (S, T, L) = "
            f"({c.S}, {c.T}, {c.L})" + (f" with {c.lookahead} LR step(s) of lookahead "
                                        "(the frames after the block)" if c.lookahead else "")
        )
    h, w = a.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"lr must have at least one pixel (h, w >= 1), got {(h, w)}")
    lead = tuple(a.shape[:-3])
    x = a.astype(np.float32).reshape(-1, n, h, w)  # a copy: the input is never touched
    bad = ~np.isfinite(x)
    if bad.any():
        n_nan = int(np.isnan(x).sum())
        raise ValueError(
            f"lr contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values: fill "
            "missing values before predict (the xarray layer fills and masks them)"
        )
    if (x < 0).any():
        raise ValueError(
            f"lr contains negative precipitation rates (min {float(x.min()):g} mm/h)"
        )
    x = np.ascontiguousarray(network_order(x, c.L))  # x[t] last: see network_order
    topo = None
    if topography is not None:
        if isinstance(topography, torch.Tensor):
            topography = topography.detach().cpu().numpy()
        t = np.asarray(topography, dtype=np.float64)
        H, W = h * c.S, w * c.S
        if t.ndim < 2 or t.shape[-2:] != (H, W):
            raise ValueError(
                f"topography must have shape (..., H, W) = (..., {H}, {W}) on the HR "
                f"grid (S={c.S}), got {t.shape}"
            )
        finite_array(t, "topography", TOPOGRAPHY_FIX)
        zmin, zmax = normalization.get("topo_min"), normalization.get("topo_max")
        if zmin is None:
            raise ValueError(
                "this model has no topography range (normalization['topo_min'], "
                "['topo_max'] in m): pass topography=None or set the range"
            )
        try:
            tb = np.broadcast_to(t, lead + (H, W)) if t.ndim > 2 else t
        except ValueError:
            raise ValueError(
                f"topography of shape {t.shape} does not broadcast to the samples' "
                f"shape {lead + (H, W)}"
            ) from None
        tn = normalize_topography(tb, zmin, zmax).astype(np.float32)
        topo = tn.reshape(-1, H, W) if tn.ndim > 2 else tn[None]
    return lead, x, topo


def prepare_mean(mean: Any, lead: tuple[int, ...], N: int, T: int, H: int, W: int) -> np.ndarray:
    """A given conditional mean (``predict(..., mean=)``) as ``(N, T, H, W)`` float32 mm/h.

    ``mean`` must have shape ``lead + (T, H, W)``, be finite and non-negative; not modified.
    """
    if isinstance(mean, torch.Tensor):
        mean = mean.detach().cpu().numpy()
    a = np.asarray(mean, dtype=np.float32)
    want = lead + (T, H, W)
    if a.shape != want:
        raise ValueError(f"mean must have shape {want} (the samples' shape, then T, H, W), "
                         f"got {a.shape}")
    finite_array(a, "mean", "fill missing values before predict")
    if (a < 0).any():
        raise ValueError(f"mean contains negative precipitation rates (min {float(a.min()):g} mm/h)")
    return a.reshape(N, T, H, W)


def _topo_slice(
    topo: Optional[np.ndarray], s0: int, n: int, dev: torch.device
) -> Optional[torch.Tensor]:
    if topo is None:
        return None
    if topo.shape[0] == 1:
        return torch.from_numpy(np.ascontiguousarray(topo)).to(dev)
    return torch.from_numpy(np.ascontiguousarray(topo[s0 : s0 + n])).to(dev)
