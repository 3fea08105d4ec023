"""The diffusion stage of :meth:`~xsuperres.model.SRModel.predict`: ensemble members around
a batch of deterministic means.

The ``(sample, member)`` items of a batch of means go to the diffusion network
``batch_size`` at a time. Each item draws its noise from its own generator, seeded by a
hash of ``(seed, sample key, member, draw)`` (:func:`xsuperres.noise.item_noise`), or from
the caller's ``noise_fn`` (the xarray layer keys it by global HR position), so a member
does not depend on the batch size, on the device or on the other items of the call.

This module imports torch and numpy only (no xarray, dask or pooch).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from ..config import SRConfig
from ..nn.denoiser import ResidualDenoiser, conserve_mass
from ..nn.diffusion import LinearSchedule, sample
from ..noise import item_noise
from .normalization import residual_std

#: ``noise_fn(i, m, k) -> (T, H, W)``: the ``k``-th standard normal draw of member ``m`` of
#: the flat sample ``i`` (see :meth:`~xsuperres.model.SRModel.predict`).
NoiseFn = Callable[[int, int, int], Any]


def _item_noise(entropy: list[list[int]], items: Sequence[tuple[int, int]], s0: int,
                shape: tuple[int, ...], noise_fn: Optional[NoiseFn],
                device: torch.device) -> Callable[[int], torch.Tensor]:
    """``noise(k) -> (len(items), *shape)``: draw ``k`` of every item of a network batch."""
    def noise(k: int) -> torch.Tensor:
        if noise_fn is not None:
            z = [torch.as_tensor(noise_fn(s0 + i, m, k), dtype=torch.float32) for i, m in items]
            return torch.stack(z).to(device)
        return torch.stack([item_noise(e + [k], shape) for e in entropy])
    return noise


def sample_members(
    denoiser: ResidualDenoiser, schedule: LinearSchedule, normalization: Mapping[str, Any],
    config: SRConfig, out: np.ndarray, D: torch.Tensor, context: torch.Tensor,
    target: torch.Tensor, *, cap: float, s0: int, keys: Sequence[Sequence[int]], seed: int,
    batch_size: int, sampler: str, steps: Optional[int], eta: float,
    sampler_kwargs: Mapping[str, Any], noise_fn: Optional[NoiseFn], device: torch.device,
    n_steps: int, on_step: Optional[Callable[[int], None]] = None,
) -> int:
    """Sample ``out.shape[1]`` members around each of the means ``D`` into ``out`` (mm/h).

    Parameters
    ----------
    denoiser, schedule, normalization, config
        The model's :class:`~xsuperres.nn.denoiser.ResidualDenoiser`, its variance
        schedule, normalization (for the residual scale) and output configuration (for
        mass conservation).
    out
        float32 ``(n, M, T, H, W)``, written in place: the members of the ``n`` samples.
    D, context, target
        The deterministic stage's output for those samples (normalized):
        ``D (n, T, H, W)``, ``BI(x_n(L)) (n, L, H, W)`` and ``x[t] / cap (n, h, w)``.
    cap
        The normalization cap (mm/h).
    s0, keys, seed
        The first sample's flat index, the noise keys of all samples of the call
        (:func:`xsuperres.noise.sample_keys`) and the non-negative seed.
    batch_size
        ``(sample, member)`` items per network call.
    sampler, steps, eta, sampler_kwargs
        Passed to :func:`xsuperres.nn.diffusion.sample` (``sampler_kwargs``: e.g. ``spacing``).
    noise_fn
        Optional replacement of the keyed generator, see :data:`NoiseFn`.
    device
        Where the networks run.
    n_steps
        Network evaluations per sampler run (:meth:`~xsuperres.model.SRModel.check_sampler`).
    on_step
        Called with the number of network evaluations done in this call so far.

    Returns
    -------
    int
        The network evaluations of this call: ``n_steps`` per batch of items.
    """
    M = out.shape[1]
    shape = tuple(out.shape[2:])
    lr_up = context[:, -1:]
    items = [(i, m) for i in range(D.shape[0]) for m in range(M)]
    starts = range(0, len(items), batch_size)
    for done, b0 in enumerate(starts):
        sub = items[b0 : b0 + batch_size]
        idx = torch.tensor([i for i, _ in sub], device=device)
        Db, tb = D[idx], target[idx]
        entropy = [[seed, *keys[s0 + i], m] for i, m in sub]

        def step_cb(i: int, n: int, _d: int = done * n_steps) -> None:
            if on_step is not None:
                on_step(_d + i)

        r0 = sample(
            denoiser.bind(Db, lr_up[idx], context[idx]), (len(sub), *shape), schedule,
            sampler=sampler, steps=steps, eta=eta,
            noise=_item_noise(entropy, sub, s0, shape, noise_fn, device), device=device,
            dtype=torch.float32, progress=step_cb, **sampler_kwargs,
        )
        y = conserve_mass(Db + residual_std(Db, normalization) * r0, tb, config)
        y = (y * cap).cpu().numpy()
        for k, (i, m) in enumerate(sub):
            out[i, m] = y[k]
    return len(starts) * n_steps
