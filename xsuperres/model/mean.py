"""The deterministic stage of :meth:`~xsuperres.model.SRModel.predict` and
:meth:`~xsuperres.model.SRModel.predict_mean`: the mean ``D`` of batches of LR contexts.

:func:`deterministic_mean` normalizes one batch (mm/h) for
:func:`~xsuperres.nn.denoiser.mean_stage`, the forward pass shared with training;
:func:`mean_batches` walks the flattened inputs ``size`` samples at a time. The sibling
:mod:`xsuperres.model.members` samples the ensemble around each batch's mean.

This module imports torch and numpy only (no xarray, dask or pooch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..config import SRConfig
from ..nn.denoiser import mean_stage, upsample_context
from .inputs import _topo_slice
from .normalization import normalize_precip


def deterministic_mean(
    mean_net: nn.Module, x: torch.Tensor, topo: Optional[torch.Tensor], cap: float,
    config: SRConfig, given: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic stage on ``x (n, L, h, w)`` mm/h -> ``(D, BI(x_n(L)), x[t]/cap)``.

    The network ``mean_net`` (``U_det``) sees ``x_n`` (capped unless ``config.clip`` is
    ``False``) but the mass-conservation target ``x[t] / cap`` is never capped, so the
    output keeps the LR mass above the cap too.

    Parameters
    ----------
    mean_net
        The deterministic U-Net.
    x
        LR contexts in mm/h, ``(n, L, h, w)``.
    topo
        Normalized topography ``(n or 1, H, W)``, or ``None`` (zeros).
    cap
        The normalization cap (mm/h).
    config
        The output settings (the model's configuration with this prediction's
        mass-conservation mode).
    given
        A conditional mean in mm/h ``(n, T, H, W)`` (``predict(mean=)``): ``D`` is
        ``given / cap`` and ``U_det`` is not run.

    Returns
    -------
    tuple of torch.Tensor
        ``D`` (normalized, ``(n, T, H, W)``), the bicubic context ``(n, L, H, W)`` and the
        normalized mass-conservation target ``x[:, -1] / cap``, ``(n, h, w)``.
    """
    xn = normalize_precip(x, cap, clip=config.clip)
    target = x[:, -1] / cap
    if given is not None:
        return given / cap, upsample_context(xn, config.S), target
    n, _, h, w = xn.shape
    H, W = h * config.S, w * config.S
    if topo is None:
        tn = torch.zeros((n, 1, H, W), dtype=xn.dtype, device=xn.device)
    else:
        tn = topo.expand(n, H, W).unsqueeze(1) if topo.shape[0] == 1 else topo.unsqueeze(1)
    D, context = mean_stage(mean_net, xn, tn, target, config)
    return D, context, target


def mean_batches(
    mean_net: nn.Module, x_all: np.ndarray, topo_all: Optional[np.ndarray], size: int,
    dev: torch.device, cap: float, config: SRConfig, mean_all: Optional[np.ndarray] = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(start, D, BI(x_n(L)), x[t]/cap)`` of :func:`deterministic_mean`, ``size`` samples
    at a time.

    ``x_all``: the flattened contexts ``(N, L, h, w)`` mm/h; ``topo_all``: the normalized
    topography ``(N or 1, H, W)`` or ``None``; ``mean_all``: given means in mm/h,
    ``(N, T, H, W)``, or ``None``.
    """
    for s0 in range(0, x_all.shape[0], size):
        x = torch.from_numpy(x_all[s0 : s0 + size]).to(dev)
        given = None if mean_all is None else torch.from_numpy(mean_all[s0 : s0 + size]).to(dev)
        yield (s0, *deterministic_mean(mean_net, x, _topo_slice(topo_all, s0, size, dev), cap,
                                       config, given))
