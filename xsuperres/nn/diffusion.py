"""The residual diffusion process: linear variance schedule and v-prediction loss.

Notation follows the preprint (appendix 9; ``docs/model.md``):

* ``beta_j = beta_min + (j - 1) / (J - 1) * (beta_max - beta_min)``, ``j = 1 .. J``;
* ``alpha_j = 1 - beta_j``, ``abar_j = prod_{s <= j} alpha_s`` (``abar_0 = 1``);
* forward process ``r_j = sqrt(abar_j) r0 + sqrt(1 - abar_j) eps``;
* velocity target ``v = sqrt(abar_j) eps - sqrt(1 - abar_j) r0``.

A denoiser is any callable ``model_fn(r_j, j) -> v_hat`` with ``r_j`` of shape
``(B, ...)`` and ``j`` a ``LongTensor`` of shape ``(B,)`` holding the 1-based step;
the caller closes over the conditioning (mean ``D``, ``BI(x[t])``, context...).

Data scale
----------
The noise has unit variance and ``sqrt(beta_min) = 0.01``. Residuals much smaller
than 1 (e.g. precipitation residuals in units of a 55 mm/h cap) spend most of the
reverse process in a few low-noise steps, where every sampler is least accurate
(even 1000-step samplers lose ~10 % of the spread for a residual scale of 0.03).
Standardising residuals to roughly unit variance before diffusion (and undoing it
afterwards) avoids this.

The samplers (and their defaults table ``SAMPLERS``) live in :mod:`xsuperres.nn.samplers`;
their names are re-exported here.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F


# LinearSchedule and v_loss live here; the samplers' names are re-exported from .samplers
__all__ = ["LinearSchedule", "v_loss", "ancestral_sample", "ddim_sample", "dpmpp_2m_sample",
           "sampling_timesteps", "sample", "check_sampler", "SamplerSpec", "SAMPLERS"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[int], torch.Tensor]
Step = Union[int, torch.Tensor]
GeneratorLike = Union[torch.Generator, int, None]


class LinearSchedule:
    """Linear variance schedule of the preprint, indexed by the 1-based step ``j``.

    The arrays ``betas``, ``alphas``, ``abar``, ``sqrt_abar`` and ``sqrt_1m_abar``
    (``sqrt(1 - abar)``) are float64 CPU tensors of length ``J + 1``; entry ``0`` is a
    dummy (``beta_0 = 0``, ``alpha_0 = abar_0 = 1``) so that ``abar[j]`` is ``abar_j``
    for ``j = 1 .. J``. Coefficients are computed in float64 and cast to the dtype and
    device of the tensors they multiply.

    Parameters
    ----------
    beta_max
        Last variance ``beta_J``; must lie in ``(beta_min, 1)``.
    beta_min
        First variance ``beta_1`` (default ``1e-4``, as in the preprint and DDPM).
    J
        Number of diffusion steps (default 1000; must be >= 2).

    Notes
    -----
    The reverse process starts from ``N(0, I)``, which is exact only if
    ``abar_J ~ 0``. With ``J = 1000``: ``beta_max = 2e-2`` gives ``abar_J = 4.0e-5``,
    ``1.5e-2`` gives ``5.1e-4`` but ``1e-2`` (the preprint's value for ``(S, T) =
    (10, 1)``) gives ``abar_J = 6.3e-3``: the prior then ignores the fraction
    ``sqrt(abar_J) = 0.08`` of the signal still present in ``r_J``. Deterministic
    samplers carry this error to the end: for data ``N(mu, s^2)`` and an exact
    denoiser, DDIM (eta = 0) returns a mean of about ``mu (1 - s sqrt(abar_J))``
    (0.288 instead of 0.3 for ``mu = 0.3, s = 0.5``), while the stochastic ancestral
    sampler mostly forgets its starting point (0.2995). ``terminal_snr`` reports the
    left-over signal-to-noise ratio.
    """

    def __init__(self, beta_max: float, beta_min: float = 1e-4, J: int = 1000) -> None:
        if int(J) != J or J < 2:
            raise ValueError(f"J must be an integer >= 2, got {J!r}")
        if not 0.0 < beta_min < 1.0:
            raise ValueError(f"beta_min must lie in (0, 1), got {beta_min!r}")
        if not beta_min < beta_max < 1.0:
            raise ValueError(
                f"beta_max must lie in (beta_min, 1) = ({beta_min}, 1), got {beta_max!r}"
            )
        self.beta_max = float(beta_max)
        self.beta_min = float(beta_min)
        self.J = int(J)
        j = torch.arange(1, self.J + 1, dtype=torch.float64)
        betas = self.beta_min + (j - 1) / (self.J - 1) * (self.beta_max - self.beta_min)
        one = torch.ones(1, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alphas = 1.0 - self.betas
        self.abar = torch.cat([one, torch.cumprod(1.0 - betas, dim=0)])
        self.sqrt_abar = self.abar.sqrt()
        self.sqrt_1m_abar = (1.0 - self.abar).sqrt()

    def __repr__(self) -> str:
        return (
            f"LinearSchedule(beta_max={self.beta_max}, beta_min={self.beta_min}, "
            f"J={self.J})"
        )

    @property
    def terminal_snr(self) -> float:
        """``abar_J / (1 - abar_J)``: signal-to-noise ratio left at the last step."""
        a = float(self.abar[self.J])
        return a / (1.0 - a)

    def _coef(self, arr: torch.Tensor, j: Step, like: torch.Tensor) -> torch.Tensor:
        """Gather ``arr[j]`` (cast to ``like``) and shape it to broadcast against ``like``.

        ``j`` is an ``int`` (returns a 0-d tensor) or a ``LongTensor`` of shape ``(B,)``
        (returns shape ``(B, 1, ..., 1)`` with ``like.ndim`` axes). The range of ``j`` is
        checked for ints and CPU tensors (not on accelerators, to avoid a sync).
        """
        arr = arr.to(device=like.device, dtype=like.dtype)
        if isinstance(j, torch.Tensor):
            if j.ndim > 1:
                raise ValueError(f"j must be an int or a 1-D LongTensor, got shape {tuple(j.shape)}")
            if j.device.type == "cpu" and bool(((j < 0) | (j > self.J)).any()):
                raise ValueError(f"steps must lie in 0..{self.J}")
            c = arr[j.to(device=like.device, dtype=torch.long)]
            if c.ndim == 1:
                c = c.reshape(c.shape[0], *([1] * (like.ndim - 1)))
            return c
        if not 0 <= int(j) <= self.J:
            raise ValueError(f"steps must lie in 0..{self.J}, got {j}")
        return arr[int(j)]

    def q_sample(self, r0: torch.Tensor, j: Step, eps: torch.Tensor) -> torch.Tensor:
        """Noise ``r0`` to step ``j``: ``sqrt(abar_j) r0 + sqrt(1 - abar_j) eps``.

        Parameters
        ----------
        r0, eps
            Tensors of shape ``(B, ...)``.
        j
            ``int`` or ``LongTensor`` of shape ``(B,)`` (1-based steps).

        Returns
        -------
        torch.Tensor
            ``r_j``, shape ``(B, ...)``.
        """
        return self._coef(self.sqrt_abar, j, r0) * r0 + self._coef(self.sqrt_1m_abar, j, r0) * eps

    def velocity(self, r0: torch.Tensor, eps: torch.Tensor, j: Step) -> torch.Tensor:
        """Velocity target ``v = sqrt(abar_j) eps - sqrt(1 - abar_j) r0``, shape of ``r0``."""
        return self._coef(self.sqrt_abar, j, r0) * eps - self._coef(self.sqrt_1m_abar, j, r0) * r0

    def eps_from_v(self, r_j: torch.Tensor, v: torch.Tensor, j: Step) -> torch.Tensor:
        """Noise implied by ``(r_j, v)``: ``sqrt(abar_j) v + sqrt(1 - abar_j) r_j``."""
        return self._coef(self.sqrt_abar, j, r_j) * v + self._coef(self.sqrt_1m_abar, j, r_j) * r_j

    def r0_from_v(self, r_j: torch.Tensor, v: torch.Tensor, j: Step) -> torch.Tensor:
        """Clean residual implied by ``(r_j, v)``: ``sqrt(abar_j) r_j - sqrt(1 - abar_j) v``."""
        return self._coef(self.sqrt_abar, j, r_j) * r_j - self._coef(self.sqrt_1m_abar, j, r_j) * v


def _as_generator(generator: GeneratorLike) -> Optional[torch.Generator]:
    """``int`` seed -> new CPU generator; generator or ``None`` passed through."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int):
        return torch.Generator(device="cpu").manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int or None, got {type(generator)}")


def v_loss(
    model_fn: ModelFn,
    r0: torch.Tensor,
    schedule: LinearSchedule,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Monte-Carlo v-prediction loss (Eq. 2 of the preprint).

    Draws ``j ~ U{1..J}`` per batch member and ``eps ~ N(0, I)``, noises ``r0`` and
    returns the mean squared error between ``model_fn(r_j, j)`` and the true velocity.

    Parameters
    ----------
    model_fn
        ``(r_j (B, ...), j LongTensor (B,)) -> v_hat (B, ...)``.
    r0
        Clean residuals, shape ``(B, ...)``.
    schedule
        The variance schedule.
    generator
        ``torch.Generator``, ``int`` seed (CPU generator) or ``None`` (global RNG).

    Returns
    -------
    torch.Tensor
        Scalar loss (mean over all elements).
    """
    g = _as_generator(generator)
    B = r0.shape[0]
    if g is None:
        j = torch.randint(1, schedule.J + 1, (B,), device=r0.device)
        eps = torch.randn_like(r0)
    else:
        j = torch.randint(1, schedule.J + 1, (B,), generator=g, device=g.device).to(r0.device)
        eps = torch.randn(r0.shape, generator=g, device=g.device, dtype=r0.dtype).to(r0.device)
    r_j = schedule.q_sample(r0, j, eps)
    v = schedule.velocity(r0, eps, j)
    return F.mse_loss(model_fn(r_j, j), v)


# The samplers live in .samplers (they import the schedule from here, hence at the end).
from .samplers import (SAMPLERS, SamplerSpec, ancestral_sample, check_sampler,  # noqa: E402
                       ddim_sample, dpmpp_2m_sample, sample, sampling_timesteps)
