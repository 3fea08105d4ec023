"""Baselines of the preprint: spatial interpolation and an EDSR-style network.

Interpolation baselines work on the LR context directly: each of the ``T`` HR frames
of block ``t`` takes the block's LR frame ``x[t]`` interpolated in space (no temporal
interpolation, no future information).

``EDSR`` has the call shape of the deterministic U-Net,
``forward(context (B, L, H, W), topography (B, 1, H, W)) -> (B, T, H, W)``, where
``context`` is the already bicubically upsampled ``BI(x(L))``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..checks import positive_int
from torch import nn

from .interp import upsample

__all__ = ["bicubic_baseline", "nearest_baseline", "EDSR", "ResBlock"]


def _interp_baseline(lr_context: torch.Tensor, S: int, T: int, mode: str) -> torch.Tensor:
    if lr_context.ndim < 3:
        raise ValueError(
            f"lr_context must have shape (..., L, h, w), got {tuple(lr_context.shape)}"
        )
    T = positive_int(T, "T")
    hr = upsample(lr_context[..., -1, :, :], S, mode).clamp(min=0)  # (..., H, W)
    return hr.unsqueeze(-3).expand(*hr.shape[:-2], int(T), *hr.shape[-2:]).contiguous()


def bicubic_baseline(lr_context: torch.Tensor, S: int, T: int) -> torch.Tensor:
    """Bicubic baseline: ``BI(x[t])`` clamped at 0 and repeated for the ``T`` frames.

    Parameters
    ----------
    lr_context
        LR context ``x(L)``, shape ``(..., L, h, w)``; only the last frame ``x[t]``
        is used.
    S, T
        Spatial and temporal factors.

    Returns
    -------
    torch.Tensor
        Shape ``(..., T, h S, w S)``. Bicubic interpolation undershoots near sharp
        edges, hence the clamp; it does not conserve block means exactly.
    """
    return _interp_baseline(lr_context, S, T, "bicubic")


def nearest_baseline(lr_context: torch.Tensor, S: int, T: int) -> torch.Tensor:
    """Nearest-neighbour baseline: every HR pixel of a block takes the LR value.

    Parameters
    ----------
    lr_context
        LR context ``x(L)``, shape ``(..., L, h, w)``; only the last frame is used.
    S, T
        Spatial and temporal factors.

    Returns
    -------
    torch.Tensor
        Shape ``(..., T, h S, w S)``. Conserves mass exactly for non-negative input:
        ``coarsen(nearest_baseline(x), S, T) == x[..., -1:, :, :]``.
    """
    return _interp_baseline(lr_context, S, T, "nearest")


class ResBlock(nn.Module):
    """EDSR residual block: ``x + res_scale * conv(relu(conv(x)))``, no batch norm.

    Parameters
    ----------
    n_feats
        Number of channels (input = output).
    res_scale
        Residual scaling (0.1 in EDSR's large model; stabilises deep stacks).
    """

    def __init__(self, n_feats: int, res_scale: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_feats, H, W) -> (B, n_feats, H, W)``."""
        return x + self.res_scale * self.body(x)


class EDSR(nn.Module):
    """EDSR (Lim et al., 2017) adapted to spatio-temporal super-resolution.

    Head conv -> ``n_resblocks`` residual blocks (no batch norm, residual scaling)
    -> body conv, plus a global skip over the body -> tail conv with ``T`` output
    channels, added to the last upsampled frame::

        out = BI(x[t]) repeated T times + tail(head + body(head(inputs)))

    Adaptations (documented deviations from the original EDSR):

    * it works on the HR grid of the bicubically upsampled context (as the U-Nets do)
      instead of upsampling with pixel-shuffle at the end, since ``S`` ranges from 1
      (no spatial upsampling at all) to 25 and any integer must work;
    * the input has ``L`` frames (+ topography) as channels and the output ``T``
      frames; no RGB mean shift (inputs are already scaled);
    * it is trained from scratch: the preprint fine-tunes a pretrained EDSR, but no
      pretrained weights can be downloaded here (and RGB weights would not match the
      ``L + 1`` input channels anyway);
    * the tail conv is zero-initialised, so the untrained network is exactly the
      (unclamped) bicubic baseline and training learns a correction to it.

    The output is not clamped; apply ``mass.mass_conserve`` (or a ReLU) if needed.

    Parameters
    ----------
    L
        Number of context frames.
    T
        Number of HR frames to predict.
    n_resblocks, n_feats, res_scale
        Depth, width and residual scaling (EDSR baseline: 16, 64, 1; large: 32, 256,
        0.1). Defaults are small for CPU tests.
    topography
        Whether the topography field is an extra input channel.
    """

    def __init__(
        self,
        L: int,
        T: int,
        n_resblocks: int = 8,
        n_feats: int = 32,
        res_scale: float = 0.1,
        topography: bool = True,
    ) -> None:
        super().__init__()
        self.L, self.T, self.topography = int(L), int(T), bool(topography)
        c_in = self.L + (1 if self.topography else 0)
        self.head = nn.Conv2d(c_in, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.tail = nn.Conv2d(n_feats, self.T, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(
        self, context: torch.Tensor, topography: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Predict the ``T`` HR frames of the block.

        Parameters
        ----------
        context
            ``BI(x(L))``, shape ``(B, L, H, W)`` (last frame = the block's LR frame).
        topography
            Shape ``(B, 1, H, W)``; required when ``topography=True``, ignored
            otherwise.

        Returns
        -------
        torch.Tensor
            Shape ``(B, T, H, W)``.
        """
        if context.ndim != 4 or context.shape[1] != self.L:
            raise ValueError(f"context must have shape (B, L={self.L}, H, W), got {tuple(context.shape)}")
        x = context
        if self.topography:
            if topography is None:
                raise ValueError("this EDSR was built with topography=True: pass topography")
            x = torch.cat([context, topography.to(context.dtype)], dim=1)
        feats = self.head(x)
        feats = feats + self.body(feats)
        return context[:, -1:] + self.tail(feats)
