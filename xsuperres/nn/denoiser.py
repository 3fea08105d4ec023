"""The forward passes of both stages, shared by inference and training.

Both :class:`xsuperres.model.SRModel` (inference) and :mod:`xsuperres.training.loop`
(training) run the networks through this module only, so that each stage's forward pass
exists once:

* stage 1, the deterministic mean (:func:`mean_stage`)::

      context_up = BI(x_n(L))                                  (upsample_context)
      D          = r_a(MC(F(r_a(U_det(context_up, M_n))), x[t])) (conserve_mass)

  ``x_n`` is the *normalized, capped* LR context (``clip(x, 0, cap) / cap``) and the
  mass-conservation target ``x[t]`` is in normalized units (uncapped at inference, the
  capped training context in training: there the two coincide);

* stage 2, the residual diffusion (:class:`ResidualDenoiser`, after k-diffusion's
  ``Denoiser``): ``forward(r_j, j, D, lr_up, context)`` is the velocity ``v_hat`` of
  ``U_dif`` that the samplers of :mod:`xsuperres.nn.diffusion` call (through
  :meth:`ResidualDenoiser.bind`), and ``loss(r0, D, lr_up, context, generator)`` the
  v-prediction loss :func:`~xsuperres.nn.diffusion.v_loss` that training minimises.

``amp=True`` (training) runs the networks under bf16 autocast when the inputs are on CUDA
and returns float32; inference uses ``amp=False`` (plain float32).

Pure PyTorch: no xarray, dask or pooch.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Optional

import torch
from torch import nn

from .diffusion import GeneratorLike, LinearSchedule, v_loss
from .interp import upsample
from .mass import mass_conserve

__all__ = ["ResidualDenoiser", "mean_stage", "upsample_context", "conserve_mass"]


def _autocast(amp: bool, device: torch.device):
    """bf16 autocast on CUDA when ``amp`` (training), else nothing."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def upsample_context(context: torch.Tensor, S: int) -> torch.Tensor:
    """``BI`` of the normalized, capped LR context: ``(B, L, h, w) -> (B, L, h S, w S)``.

    Bicubic (:func:`xsuperres.nn.interp.upsample`), not clamped (the overshoot of the
    bicubic kernel is kept, as in training).
    """
    return upsample(context, S, mode="bicubic")


def conserve_mass(z: torch.Tensor, target: torch.Tensor, config: Any) -> torch.Tensor:
    """The output transform ``r_a(MC(F(r_a(z)), target))`` with the settings of ``config``.

    Parameters
    ----------
    z
        HR frames ``(B, T, H, W)`` (normalized units).
    target
        The LR frame ``x[t]`` of each block, ``(B, h, w)`` (normalized units).
    config
        An :class:`~xsuperres.config.SRConfig` (any object with ``S``, ``T``, ``power``,
        ``threshold`` and ``mass_conservation``).

    Returns
    -------
    torch.Tensor
        :func:`xsuperres.nn.mass.mass_conserve` of ``z`` (a clamp at 0 when
        ``config.mass_conservation`` is ``None``).
    """
    return mass_conserve(z, target, config.S, config.T, power=config.power,
                         threshold=config.threshold, mode=config.mass_conservation)


def mean_stage(
    mean_net: nn.Module,
    context: torch.Tensor,
    topography: torch.Tensor,
    target: torch.Tensor,
    config: Any,
    *,
    context_up: Optional[torch.Tensor] = None,
    mc: bool = True,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic stage: ``D`` and ``BI(context)`` of a batch.

    Parameters
    ----------
    mean_net
        ``U_det`` (:class:`~xsuperres.nn.unet.DeterministicUNet`).
    context
        Normalized, capped LR context ``(B, L, h, w)``, oldest frame first.
    topography
        Normalized topography ``(B, 1, H, W)``.
    target
        Mass-conservation target ``x[t]`` ``(B, h, w)`` in normalized units.
    config
        An :class:`~xsuperres.config.SRConfig` (``S`` and the settings of
        :func:`conserve_mass`).
    context_up
        ``BI(context)`` when the caller already has it (:func:`upsample_context`);
        computed here otherwise.
    mc
        ``True``: the output transform of inference (:func:`conserve_mass`); ``False``:
        the raw network output (training before ``mc_start_epoch``).
    amp
        bf16 autocast on CUDA, output cast to float32 (training).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``D`` ``(B, T, H, W)`` (normalized units) and ``BI(context)`` ``(B, L, H, W)``
        (the conditioning of the diffusion stage).
    """
    if context_up is None:
        context_up = upsample_context(context, config.S)
    with _autocast(amp, context_up.device):
        z = mean_net(context_up, topography)
    if amp:
        z = z.float()
    if not mc:
        return z, context_up
    return conserve_mass(z, target, config), context_up


class ResidualDenoiser(nn.Module):
    """``U_dif`` and its variance schedule: the denoiser of the residual diffusion.

    Follows k-diffusion's ``Denoiser``: :meth:`forward` is what the samplers call and
    :meth:`loss` is the training loss, so that training and inference share one forward
    pass.

    Parameters
    ----------
    net
        ``U_dif`` (:class:`~xsuperres.nn.unet.DiffusionUNet`), a v-prediction network
        ``net(r_j, D, lr_up, context, j) -> v_hat``; registered as the submodule ``net``.
    schedule
        The :class:`~xsuperres.nn.diffusion.LinearSchedule` it was trained with.

    Notes
    -----
    The residual is the one the network models: ``(y - D) / residual_scale`` in
    normalized units (the caller scales it).
    """

    def __init__(self, net: nn.Module, schedule: LinearSchedule) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule

    def forward(
        self,
        r_j: torch.Tensor,
        j: torch.Tensor,
        D: torch.Tensor,
        lr_up: torch.Tensor,
        context: torch.Tensor,
        *,
        encoded: Any = None,
        amp: bool = False,
    ) -> torch.Tensor:
        """The network's velocity ``v_hat`` of the noised residual ``r_j`` at steps ``j``.

        Parameters
        ----------
        r_j
            Noised residual ``(B, T, H, W)``.
        j
            1-based steps, ``LongTensor`` ``(B,)``.
        D
            Deterministic mean ``(B, T, H, W)``.
        lr_up
            ``BI(x[t])`` ``(B, 1, H, W)``.
        context
            ``BI(x(L))`` ``(B, L, H, W)``.
        encoded
            The network's ``encode_context(context)`` when the caller has it (:meth:`bind`
            computes it once for all sampler steps); ``None``: computed here.
        amp
            bf16 autocast on CUDA, output cast to float32 (training).

        Returns
        -------
        torch.Tensor
            ``v_hat`` ``(B, T, H, W)``, the ``model_fn`` output the samplers of
            :mod:`xsuperres.nn.diffusion` expect.
        """
        with _autocast(amp, r_j.device):
            if encoded is None:
                v = self.net(r_j, D, lr_up, context, j)
            else:
                v = self.net(r_j, D, lr_up, None, j, encoded=encoded)
        return v.float() if amp else v

    def bind(
        self, D: torch.Tensor, lr_up: torch.Tensor, context: torch.Tensor, *, amp: bool = False
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``model_fn(r_j, j)`` for the samplers: :meth:`forward` with the conditioning fixed.

        When the network has an ``encode_context`` method
        (:meth:`~xsuperres.nn.unet.DiffusionUNet.encode_context`), the step-independent
        cross-attention keys and values of ``context`` are computed here, once, instead
        of in every sampler step: the same values bit for bit, a few times less work
        per step with long contexts (``L = 10`` frames at full resolution).
        """
        encode = getattr(self.net, "encode_context", None)
        encoded = None
        if encode is not None:
            with _autocast(amp, context.device):
                encoded = encode(context)

        def model_fn(r_j: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            return self(r_j, j, D, lr_up, context, encoded=encoded, amp=amp)

        return model_fn

    def loss(
        self,
        r0: torch.Tensor,
        D: torch.Tensor,
        lr_up: torch.Tensor,
        context: torch.Tensor,
        generator: GeneratorLike = None,
        *,
        amp: bool = False,
    ) -> torch.Tensor:
        """The v-prediction loss of a batch of clean residuals ``r0`` (:func:`v_loss`).

        Draws ``j ~ U{1..J}`` (shape ``(B,)``), then ``eps ~ N(0, I)`` from ``generator``,
        and returns ``mean((forward(r_j, j, ...) - v)^2)`` with
        ``r_j = sqrt(abar_j) r0 + sqrt(1 - abar_j) eps`` and
        ``v = sqrt(abar_j) eps - sqrt(1 - abar_j) r0``.

        Parameters
        ----------
        r0
            Clean (scaled) residuals ``(B, T, H, W)``.
        D, lr_up, context
            The conditioning, as in :meth:`forward`.
        generator
            ``torch.Generator``, ``int`` seed (CPU generator) or ``None`` (global RNG).
        amp
            As in :meth:`forward`.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        return v_loss(self.bind(D, lr_up, context, amp=amp), r0, self.schedule,
                      generator=generator)
