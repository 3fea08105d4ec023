"""Spatial upsampling of low-resolution frames onto the high-resolution grid.

The LR pixel ``(n, m)`` covers HR pixels ``S n .. S n + S - 1`` (and likewise in x),
so LR pixel centres sit at HR position ``S n + (S - 1) / 2``. ``torch``'s
``align_corners=False`` convention uses exactly this geometry, so the bicubic
``BI(x)`` of the preprint is ``F.interpolate(..., mode="bicubic", align_corners=False)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import positive_int

__all__ = ["upsample"]


def upsample(x: torch.Tensor, S: int, mode: str = "bicubic") -> torch.Tensor:
    """Upsample the last two axes of ``x`` by the integer factor ``S``.

    Parameters
    ----------
    x
        Tensor of shape ``(..., h, w)`` (any number of leading axes).
    S
        Spatial factor (positive integer); ``S == 1`` returns ``x`` unchanged.
    mode
        ``"bicubic"`` (the preprint's ``BI``; may undershoot below zero near sharp
        edges, callers clamp where they need non-negative values) or ``"nearest"``
        (each HR pixel takes the value of the LR pixel that contains it).

    Returns
    -------
    torch.Tensor
        Shape ``(..., h * S, w * S)``, same dtype as ``x``.
    """
    S = positive_int(S, "S")
    if S == 1:
        return x
    if mode not in ("bicubic", "nearest"):
        raise ValueError(f"mode must be 'bicubic' or 'nearest', got {mode!r}")
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    if mode == "nearest":
        out = flat.repeat_interleave(S, dim=-2).repeat_interleave(S, dim=-1)
    else:
        out = F.interpolate(flat, scale_factor=S, mode="bicubic", align_corners=False)
    return out.reshape(*lead, h * S, w * S)
