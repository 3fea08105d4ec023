"""Residual diffusion: linear variance schedule, v-prediction loss and samplers.

Notation follows the preprint (appendix 9) and ``SPEC.md`` section 2:

* ``beta_j = beta_min + (j - 1) / (J - 1) * (beta_max - beta_min)``, ``j = 1 .. J``;
* ``alpha_j = 1 - beta_j``, ``abar_j = prod_{s <= j} alpha_s`` (``abar_0 = 1``);
* forward process ``r_j = sqrt(abar_j) r0 + sqrt(1 - abar_j) eps``;
* velocity target ``v = sqrt(abar_j) eps - sqrt(1 - abar_j) r0``.

A denoiser is any callable ``model_fn(r_j, j) -> v_hat`` with ``r_j`` of shape
``(B, ...)`` and ``j`` a ``LongTensor`` of shape ``(B,)`` holding the 1-based step;
the caller closes over the conditioning (mean ``D``, ``BI(x[t])``, context...).

Samplers
--------
``ancestral_sample``
    The preprint's 1000-step reverse process (DDPM with ``sigma_j^2 = beta_j``), kept
    as the reference. One network evaluation per step, ``J`` in total.
``ddim_sample``
    DDIM (Song et al., 2021) on the same v-prediction network with ``steps``
    evenly spaced timesteps; ``eta = 0`` is deterministic, ``eta = 1`` uses the DDPM
    posterior variance ``beta_tilde``. One network evaluation per step. First order:
    with few steps it under-disperses (see its notes).
``dpmpp_2m_sample``
    DPM-Solver++(2M) (Lu et al., 2022), deterministic, second order, log-SNR spaced
    steps: the most accurate few-step option (one network evaluation per step).

Each step costs one ``model_fn`` call plus a handful of element-wise operations on
a tensor of ``shape``; the sampler's own overhead is negligible next to a U-Net.
Samplers run under ``torch.no_grad()``.

Data scale
----------
The noise has unit variance and ``sqrt(beta_min) = 0.01``. Residuals much smaller
than 1 (e.g. precipitation residuals in units of a 55 mm/h cap) spend most of the
reverse process in a few low-noise steps, where every sampler is least accurate
(even 1000-step samplers lose ~10 % of the spread for a residual scale of 0.03).
Standardising residuals to roughly unit variance before diffusion (and undoing it
afterwards) avoids this.

Noise
-----
Every sampler draws its standard-normal tensors from exactly one source: either a
``torch.Generator`` (or an ``int`` seed, turned into a *CPU* generator so that results
do not depend on the device) or a callable ``noise(k) -> Tensor`` returning the
``k``-th draw (``k = 0`` is the initial ``r_J``, ``k = 1, 2, ...`` the per-step ``z``
in step order; the last step never draws). The callable lets an outer layer supply
position-keyed noise so that results do not depend on how a domain is chunked.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..checks import positive_int

__all__ = [
    "LinearSchedule",
    "v_loss",
    "ancestral_sample",
    "ddim_sample",
    "dpmpp_2m_sample",
    "sampling_timesteps",
    "sample",
    "SAMPLERS",
]

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


class _Noise:
    """Sequential standard-normal draws from a generator or a ``noise(k)`` callable."""

    def __init__(
        self,
        shape: Sequence[int],
        generator: GeneratorLike,
        noise: Optional[NoiseFn],
        device: Union[torch.device, str, None],
        dtype: torch.dtype,
    ) -> None:
        if generator is not None and noise is not None:
            raise ValueError("pass at most one of `generator` and `noise`")
        self.shape = tuple(int(s) for s in shape)
        self.generator = _as_generator(generator)
        self.noise = noise
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype

    def __call__(self, k: int) -> torch.Tensor:
        if self.noise is not None:
            z = self.noise(k)
            if tuple(z.shape) != self.shape:
                raise ValueError(f"noise({k}) has shape {tuple(z.shape)}, expected {self.shape}")
            return z.to(device=self.device, dtype=self.dtype)
        g = self.generator
        if g is None:
            return torch.randn(self.shape, device=self.device, dtype=self.dtype)
        z = torch.randn(self.shape, generator=g, device=g.device, dtype=self.dtype)
        return z.to(self.device)


def _steps(n: int, like: torch.Tensor, j: int) -> torch.Tensor:
    """``LongTensor`` of shape ``(B,)`` filled with ``j`` on the device of ``like``."""
    return torch.full((n,), int(j), dtype=torch.long, device=like.device)


@torch.no_grad()
def ancestral_sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    schedule: LinearSchedule,
    *,
    generator: GeneratorLike = None,
    noise: Optional[NoiseFn] = None,
    device: Union[torch.device, str, None] = None,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """The preprint's ancestral reverse process (Algorithm 2), ``J`` network calls.

    Starting from ``r_J ~ N(0, I)``, for ``j = J .. 1``::

        eps_hat = sqrt(abar_j) v_hat + sqrt(1 - abar_j) r_j
        r_{j-1} = (r_j - beta_j / sqrt(1 - abar_j) eps_hat) / sqrt(alpha_j) + sqrt(beta_j) z

    with ``z ~ N(0, I)`` except ``z = 0`` at ``j = 1``.

    Parameters
    ----------
    model_fn
        ``(r_j (B, ...), j LongTensor (B,)) -> v_hat (B, ...)``, ``B = shape[0]``.
    shape
        Shape ``(B, ...)`` of the residual to sample.
    schedule
        The variance schedule (``J`` steps).
    generator
        ``torch.Generator`` or ``int`` seed (CPU generator); reproducible.
    noise
        Alternative noise source ``noise(k) -> Tensor`` of ``shape`` (``k = 0``: the
        initial ``r_J``; ``k = 1 .. J - 1``: the ``z`` of steps ``j = J .. 2``).
    device, dtype
        Where and in which precision to compute (default CPU, float32). Schedule
        coefficients are computed in float64 and cast once per step.
    progress
        Optional ``progress(i, n)`` called after each step ``i = 1 .. n`` (``n = J``).

    Returns
    -------
    torch.Tensor
        Sampled ``r_0`` of ``shape``.
    """
    draw = _Noise(shape, generator, noise, device, dtype)
    r = draw(0)
    J = schedule.J
    for i, j in enumerate(range(J, 0, -1), start=1):
        beta = float(schedule.betas[j])
        alpha = float(schedule.alphas[j])
        ab = float(schedule.abar[j])
        v_hat = model_fn(r, _steps(r.shape[0], r, j))
        eps_hat = math.sqrt(ab) * v_hat + math.sqrt(1.0 - ab) * r
        r = (r - beta / math.sqrt(1.0 - ab) * eps_hat) / math.sqrt(alpha)
        if j > 1:
            r = r + math.sqrt(beta) * draw(i)
        if progress is not None:
            progress(i, J)
    return r


def sampling_timesteps(
    schedule: LinearSchedule, steps: int, spacing: str = "linear"
) -> torch.Tensor:
    """Descending, unique 1-based timesteps from ``J`` down to ``1`` for few-step samplers.

    Parameters
    ----------
    schedule
        The variance schedule (``J`` steps).
    steps
        Requested number of timesteps (``1 .. J``); duplicates after rounding are
        dropped, so the result may be slightly shorter.
    spacing
        ``"linear"``: ``round(linspace(J, 1, steps))`` (evenly spaced in ``j``, the
        usual DDIM choice). ``"logsnr"``: the integer steps whose log signal-to-noise
        ratio ``lambda_j = log(abar_j / (1 - abar_j)) / 2`` is nearest to an even grid
        between ``lambda_J`` and ``lambda_1``; it puts more steps at low noise and is
        much more accurate when the residuals are small compared with the unit noise
        (see the notes of ``ddim_sample``).

    Returns
    -------
    torch.Tensor
        ``LongTensor`` of length ``<= steps``, starting at ``J`` (and ending at ``1``
        when ``steps >= 2``).
    """
    J = schedule.J
    steps = positive_int(steps, "steps")
    if steps > J:
        raise ValueError(f"steps must be <= J = {J}, got {steps}")
    if spacing == "linear":
        ts = torch.linspace(J, 1, int(steps), dtype=torch.float64).round().long()
    elif spacing == "logsnr":
        ab = schedule.abar[1:]
        lam = 0.5 * torch.log(ab / (1.0 - ab))  # decreasing in j
        grid = torch.linspace(float(lam[-1]), float(lam[0]), int(steps), dtype=torch.float64)
        ts = (lam[None, :] - grid[:, None]).abs().argmin(dim=1) + 1
    else:
        raise ValueError(f"spacing must be 'linear' or 'logsnr', got {spacing!r}")
    return torch.unique_consecutive(ts)


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    schedule: LinearSchedule,
    *,
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "linear",
    generator: GeneratorLike = None,
    noise: Optional[NoiseFn] = None,
    device: Union[torch.device, str, None] = None,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """DDIM sampler (Song et al., 2021) for a v-prediction network.

    With timesteps ``t_1 = J > t_2 > ... > t_n = 1`` (``sampling_timesteps``) and
    ``abar_prev = abar_{t_{i+1}}``::

        r0_hat  = sqrt(abar) r - sqrt(1 - abar) v_hat
        eps_hat = sqrt(abar) v_hat + sqrt(1 - abar) r
        sigma   = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)
        r_prev  = sqrt(abar_prev) r0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z

    The last step (``abar_prev = 1``, so ``sigma = 0``) returns ``r0_hat``. ``eta = 0``
    is deterministic given ``r_J``; with ``steps = J`` and ``eta = 1``, ``sigma^2`` is
    the DDPM posterior variance ``beta_tilde_j = beta_j (1 - abar_{j-1}) / (1 - abar_j)``
    whereas the preprint's ancestral sampler uses ``beta_j``: both discretise the same
    reverse process and agree in distribution up to discretisation terms (about 1 %
    in standard deviation for unit-scale data, see ``tests/test_diffusion.py``).

    Notes
    -----
    DDIM is a first-order solver: with few steps it *under-disperses* even with an
    exact denoiser. For Gaussian data ``N(0.3, 0.5^2)`` and ``beta_max = 0.02`` the
    sample standard deviation is 14 % (eta = 0) / 22 % (eta = 1) too small with 20
    steps and 6 % / 11 % with 50 steps; the error grows as the data scale shrinks
    (46 % with 20 linear steps for a scale of 0.1), because the linear spacing puts
    few steps at low noise. ``spacing="logsnr"`` or ``dpmpp_2m_sample`` reduce this.

    Parameters
    ----------
    model_fn
        ``(r_j (B, ...), j LongTensor (B,)) -> v_hat (B, ...)``, ``B = shape[0]``.
    shape
        Shape ``(B, ...)`` of the residual to sample.
    schedule
        The variance schedule the network was trained with.
    steps
        Number of network evaluations (``1 .. J``).
    eta
        Stochasticity, ``>= 0`` (0: deterministic DDIM, 1: DDPM-like).
    spacing
        Timestep spacing, ``"linear"`` or ``"logsnr"`` (``sampling_timesteps``).
    generator, noise, device, dtype, progress
        As in ``ancestral_sample``; with a ``noise`` callable, ``k = i`` is the draw of
        step ``i = 1 .. n - 1`` (drawn only when ``sigma > 0``, i.e. ``eta > 0``).

    Returns
    -------
    torch.Tensor
        Sampled ``r_0`` of ``shape``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    ts = sampling_timesteps(schedule, steps, spacing).tolist()
    draw = _Noise(shape, generator, noise, device, dtype)
    r = draw(0)
    n = len(ts)
    for i, j in enumerate(ts, start=1):
        ab = float(schedule.abar[j])
        v_hat = model_fn(r, _steps(r.shape[0], r, j))
        r0_hat = math.sqrt(ab) * r - math.sqrt(1.0 - ab) * v_hat
        if i == n:
            r = r0_hat
        else:
            ab_prev = float(schedule.abar[ts[i]])
            eps_hat = math.sqrt(ab) * v_hat + math.sqrt(1.0 - ab) * r
            sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
            c_eps = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
            r = math.sqrt(ab_prev) * r0_hat + c_eps * eps_hat
            if sigma > 0:
                r = r + sigma * draw(i)
        if progress is not None:
            progress(i, n)
    return r


@torch.no_grad()
def dpmpp_2m_sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    schedule: LinearSchedule,
    *,
    steps: int = 20,
    spacing: str = "logsnr",
    generator: GeneratorLike = None,
    noise: Optional[NoiseFn] = None,
    device: Union[torch.device, str, None] = None,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al., 2022): deterministic second-order multistep sampler.

    Works on the data prediction ``r0_hat = sqrt(abar) r - sqrt(1 - abar) v_hat`` with
    ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``, ``lambda = log(alpha / sigma)``.
    From step ``t`` to the next ``t'`` (``h = lambda' - lambda``)::

        r' = (sigma' / sigma) r + alpha' (1 - exp(-h)) D
        D  = (1 + 1 / (2 q)) r0_hat - 1 / (2 q) r0_hat_previous,  q = h_previous / h

    (``D = r0_hat`` at the first step); the last step returns ``r0_hat``. One network
    evaluation per step and no noise except the initial ``r_J``, like DDIM with
    ``eta = 0``, but second-order accurate: for Gaussian data of scale 0.1 to 2 and an
    exact denoiser, the sample standard deviation is within 2 % with 20 ``"logsnr"``
    steps, where 20 DDIM steps are 12-46 % too small (5 % for a scale of 0.03).

    Parameters
    ----------
    model_fn, shape, schedule, generator, noise, device, dtype, progress
        As in ``ddim_sample`` (only ``noise(0)`` is drawn).
    steps
        Number of network evaluations (``1 .. J``).
    spacing
        Timestep spacing (``sampling_timesteps``); ``"logsnr"`` by default, which is
        what a solver in ``lambda`` expects (``"linear"`` over-disperses with few steps).

    Returns
    -------
    torch.Tensor
        Sampled ``r_0`` of ``shape``.
    """
    ts = sampling_timesteps(schedule, steps, spacing).tolist()
    draw = _Noise(shape, generator, noise, device, dtype)
    r = draw(0)
    n = len(ts)
    prev_r0: Optional[torch.Tensor] = None
    h_prev = 0.0
    for i, j in enumerate(ts, start=1):
        ab = float(schedule.abar[j])
        v_hat = model_fn(r, _steps(r.shape[0], r, j))
        r0_hat = math.sqrt(ab) * r - math.sqrt(1.0 - ab) * v_hat
        if i == n:
            r = r0_hat
        else:
            ab_next = float(schedule.abar[ts[i]])
            lam = 0.5 * math.log(ab / (1.0 - ab))
            lam_next = 0.5 * math.log(ab_next / (1.0 - ab_next))
            h = lam_next - lam
            if prev_r0 is None:
                d = r0_hat
            else:
                q = h_prev / h
                d = (1.0 + 0.5 / q) * r0_hat - (0.5 / q) * prev_r0
            r = math.sqrt((1.0 - ab_next) / (1.0 - ab)) * r + math.sqrt(ab_next) * (
                -math.expm1(-h)
            ) * d
            prev_r0, h_prev = r0_hat, h
        if progress is not None:
            progress(i, n)
    return r


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ancestral": ancestral_sample,
    "ddim": ddim_sample,
    "dpmpp_2m": dpmpp_2m_sample,
}


def sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    schedule: LinearSchedule,
    sampler: str = "ddim",
    steps: Optional[int] = None,
    eta: float = 0.0,
    **kwargs,
) -> torch.Tensor:
    """Dispatch to a sampler of ``SAMPLERS``.

    Parameters
    ----------
    model_fn, shape, schedule
        As in the samplers.
    sampler
        ``"ddim"`` (default; ``steps`` defaults to 50), ``"ancestral"`` (the
        preprint's reference; always ``J`` steps and its own noise, ``eta`` is
        ignored) or ``"dpmpp_2m"`` (deterministic; ``steps`` defaults to 20; ``eta``
        must be 0).
    steps
        Number of steps, ``None`` for the sampler's default. ``"ancestral"`` with
        ``steps != J`` raises ``ValueError``.
    eta
        DDIM stochasticity.
    **kwargs
        ``generator``, ``noise``, ``device``, ``dtype``, ``progress`` and, for
        ``"ddim"`` / ``"dpmpp_2m"``, ``spacing``.

    Returns
    -------
    torch.Tensor
        Sampled ``r_0`` of ``shape``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    if sampler == "ancestral":
        if steps is not None and steps != schedule.J:
            raise ValueError(
                f"the ancestral sampler always takes J = {schedule.J} steps, got "
                f"steps={steps}; use sampler='ddim' or 'dpmpp_2m' for fewer steps"
            )
        return ancestral_sample(model_fn, shape, schedule, **kwargs)
    if sampler == "dpmpp_2m":
        if eta != 0:
            raise ValueError("the 'dpmpp_2m' sampler is deterministic: eta must be 0")
        return dpmpp_2m_sample(
            model_fn, shape, schedule, steps=20 if steps is None else steps, **kwargs
        )
    return ddim_sample(
        model_fn, shape, schedule, steps=50 if steps is None else steps, eta=eta, **kwargs
    )
