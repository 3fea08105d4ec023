"""The two stages' forward passes and losses, and the frozen mean of the diffusion stage.

The forward passes are those of inference (:mod:`xsuperres.nn.denoiser`), with bf16
autocast on CUDA; :mod:`xsuperres.training.loop` runs them epoch by epoch.

* :func:`mean_loss` -- MSE between ``U_det``'s mean ``D`` and the target (normalized);
* :func:`diffusion_loss` -- the v-loss of ``U_dif`` on ``r0 = (target - D) / std``,
  ``std`` the residual scale (:func:`~xsuperres.model.normalization.residual_std`), ``D``
  taken from the batch (``"mean"``) when it carries one;
* :func:`residual_scale` -- the RMS of ``(target - D)`` (divided by the ``D``-dependent
  part of the scale when the model has one) that scales the residuals;
* :func:`with_frozen_mean` -- a sample dataset whose items carry ``D``, computed once: the
  mean network is frozen during the diffusion stage and deterministic in eval mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from ..model import SRModel
from ..model.normalization import residual_std
from ..nn.denoiser import mean_stage, upsample_context

__all__ = ["MEAN_CACHE_BYTES", "batch_inputs", "diffusion_loss", "loader", "mean_loss", "mean_output",
           "residual_scale", "with_frozen_mean"]

#: Largest size (bytes) of the precomputed means of the frozen mean model kept in memory
#: during the diffusion stage; beyond it ``D`` is recomputed for every batch.
MEAN_CACHE_BYTES = 1 << 30


def loader(ds, batch_size: int, shuffle: bool, generator: torch.Generator | None) -> DataLoader:
    """The one DataLoader of training: in-process (``num_workers=0``), last batch kept."""
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=0, drop_last=False)


def batch_inputs(batch: dict[str, torch.Tensor], S: int, device: torch.device):
    """Batch -> (context (B,L,h,w), BI(context) (B,L,H,W), topography, target) on device.

    The training context is already capped and normalized (``clip(x, 0, cap) / cap``,
    then block means), as :func:`~xsuperres.nn.denoiser.upsample_context` expects.
    """
    ctx = batch["context"].to(device, non_blocking=True)
    topo = batch["topography"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True)
    return ctx, upsample_context(ctx, S), topo, target


def mean_output(model: SRModel, ctx: torch.Tensor, ctx_up: torch.Tensor, topo: torch.Tensor,
                mc: bool, device: torch.device) -> torch.Tensor:
    """The mean ``D`` (normalized units) of a batch, ``(B, T, H, W)``.

    Parameters
    ----------
    model
        The model.
    ctx
        Normalized LR context ``(B, L, h, w)`` (its last frame is the MC target).
    ctx_up
        ``BI(ctx)``, ``(B, L, H, W)``.
    topo
        Normalized topography ``(B, 1, H, W)``.
    mc
        ``True``: the output transform of inference (mass conservation with the config's
        settings, or a clamp at 0 when ``mass_conservation`` is ``None``); ``False``: the raw
        network output.
    device
        The device (bf16 autocast on CUDA).

    The forward pass is :func:`xsuperres.nn.denoiser.mean_stage`, the one of inference.
    """
    D, _ = mean_stage(model.mean_net, ctx, topo, ctx[:, -1], model.config, context_up=ctx_up,
                      mc=mc, amp=device.type == "cuda")
    return D


def mean_loss(model: SRModel, batch, device: torch.device, mc: bool) -> torch.Tensor:
    """MSE between the mean ``D`` (with the output transform when ``mc``) and the target."""
    ctx, ctx_up, topo, target = batch_inputs(batch, model.config.S, device)
    D = mean_output(model, ctx, ctx_up, topo, mc, device)
    return F.mse_loss(D, target)


def diffusion_loss(model: SRModel, batch, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """The v-loss of ``U_dif`` on the batch's scaled residuals around ``D``.

    ``D`` is ``batch["mean"]`` when present (:func:`with_frozen_mean`, a given temporal
    mean), else the frozen mean network's output with mass conservation.
    """
    S = model.config.S
    ctx, ctx_up, topo, target = batch_inputs(batch, S, device)
    with torch.no_grad():
        if "mean" in batch:
            D = batch["mean"].to(device, non_blocking=True)
        else:
            D = mean_output(model, ctx, ctx_up, topo, True, device)
        r0 = (target - D) / residual_std(D, model.normalization)
    return model.denoiser.loss(r0, D, ctx_up[:, -1:], ctx_up, generator,
                               amp=device.type == "cuda")


def residual_scale(model: SRModel, ds, batch_size: int, device: torch.device) -> float:
    """RMS of ``target - D`` over up to 256 evenly spaced samples of ``ds`` (normalized).

    ``D`` is the item's ``"mean"`` when it carries one, else the mean network's output
    with mass conservation. With a ``residual_power`` in the model's normalization, the
    RMS of ``(target - D) / (D + residual_floor) ** residual_power``, so that the scaled
    residual has unit RMS either way. Returns 1.0 when the RMS is zero or not finite.
    """
    shape_only = {**model.normalization, "residual_scale": 1.0}
    n = len(ds)
    idx = np.unique(np.linspace(0, n - 1, min(n, 256)).round().astype(int)).tolist()
    total, count = 0.0, 0
    S = model.config.S
    with torch.no_grad():
        for batch in loader(Subset(ds, idx), batch_size, False, None):
            ctx, ctx_up, topo, target = batch_inputs(batch, S, device)
            D = batch["mean"].to(device) if "mean" in batch else \
                mean_output(model, ctx, ctx_up, topo, True, device)
            r = ((target - D) / residual_std(D, shape_only)).double()
            total += float((r * r).sum())
            count += r.numel()
    rms = math.sqrt(total / count) if count else 0.0
    return rms if rms > 0 and math.isfinite(rms) else 1.0


class _WithMean(Dataset):
    """A sample dataset whose items also carry the frozen mean ``D`` (key ``"mean"``)."""

    def __init__(self, ds, means: torch.Tensor) -> None:
        self.ds, self.means = ds, means

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(self.ds[i])
        item["mean"] = self.means[i]
        return item


def with_frozen_mean(model: SRModel, ds, batch_size: int, device: torch.device):
    """``ds`` with the frozen mean of every sample precomputed (if it fits in memory).

    ``D`` of a sample never changes during the diffusion stage, so computing it once
    instead of in every epoch halves the cost of a diffusion epoch on a CPU. ``ds`` itself
    is returned when the means would exceed :data:`MEAN_CACHE_BYTES` (or ``ds`` is empty).
    """
    c = model.config
    n = len(ds)
    if n == 0 or n * c.T * c.tile_size ** 2 * 4 > MEAN_CACHE_BYTES:
        return ds
    out = []
    model.eval()
    with torch.no_grad():
        for batch in loader(ds, batch_size, False, None):
            ctx, ctx_up, topo, _ = batch_inputs(batch, c.S, device)
            out.append(mean_output(model, ctx, ctx_up, topo, True, device).cpu())
    return _WithMean(ds, torch.cat(out))
