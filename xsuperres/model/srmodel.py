"""The model: :class:`SRModel` (configuration, normalization, inference, save/load).

An :class:`SRModel` bundles, for one pair of factors ``(S, T)``:

* ``mean_net`` -- the deterministic attention U-Net ``U_det`` (stage 1);
* ``diffusion_net`` -- the residual diffusion U-Net ``U_dif`` (stage 2, v-prediction);
* ``schedule`` -- the linear variance schedule ``(beta_min, beta_max, J)``;
* ``normalization`` -- the training-set statistics: precipitation cap (mm/h) and
  topography range (m);
* ``config`` (:class:`~xsuperres.config.SRConfig`) and free-form training ``metadata``.

Inference (:meth:`SRModel.predict`) follows the preprint (section 3.2, appendix 9) and
``docs/model.md``::

    x_n      = clip(x, 0, cap) / cap                        (normalized LR context;
                                                             max(x, 0) / cap if not config.clip)
    context  = BI(x_n(L))                                   (bicubic, not clamped)
    D        = r_a(MC(F(r_a(U_det(context, M_n))), x[t]))   (deterministic mean)
    r0       ~ reverse diffusion with U_dif(r_j, D, BI(x_n[t]), context, j)
    y_hat    = cap * r_a(MC(F(r_a(D + r0)), x[t]))          (one ensemble member)

The forward passes of both stages live in :mod:`xsuperres.nn.denoiser`
(:func:`~xsuperres.nn.denoiser.mean_stage` and
:class:`~xsuperres.nn.denoiser.ResidualDenoiser`), shared with training; inference runs
them through :mod:`xsuperres.model.mean` (the deterministic stage on batches of mm/h
contexts) and :mod:`xsuperres.model.members` (the ensemble around each batch's mean),
after :mod:`xsuperres.model.inputs` has checked the inputs. Saving and loading are in
:mod:`xsuperres.model.io`.

This module imports torch and numpy only (no xarray, dask or pooch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from ..checks import positive_float, positive_int
from ..checks import seed as check_seed
from ..config import SRConfig, inference_mass_conservation
from ..nn.denoiser import ResidualDenoiser
from ..nn.diffusion import LinearSchedule, check_sampler
from ..nn.samplers import DEFAULT_SAMPLER
from ..nn.unet import DeterministicUNet, DiffusionUNet
from ..noise import sample_keys
from ..progress import progress_callback
from .device import DeviceLike, resolve_device
from .io import load_srmodel, save_srmodel
from .inputs import prepare_inputs, prepare_mean
from .mean import mean_batches
from .members import sample_members
from .normalization import ArrayLike, check_normalization

# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------
class SRModel(nn.Module):
    """Residual-diffusion super-resolution model for one pair of factors ``(S, T)``.

    Parameters
    ----------
    config
        Hyperparameters (:class:`~xsuperres.config.SRConfig`).
    normalization
        Training-set statistics, a ``dict`` with

        ``cap``
            Normalization cap in mm/h (defaults to ``config.cap``; both given must agree).
            Required by :meth:`predict`.
        ``topo_min``, ``topo_max``
            Elevation range in m used to min-max scale the topography; required when a
            topography is passed to :meth:`predict`.
        ``residual_scale``
            Optional (default 1): the diffusion network models ``r0 / residual_scale``
            (normalized units), so that the residual has roughly unit variance (see
            :mod:`xsuperres.nn.diffusion`, "Data scale"). A trainer that uses it must
            divide the residual by the same value.
        ``residual_power``, ``residual_floor``
            Optional (default 0 and 1): a residual scale that grows with the mean,
            ``residual_scale * (D + residual_floor) ** residual_power``
            (:func:`~xsuperres.model.normalization.residual_std`).

        Further JSON-serialisable keys are kept and saved as they are.
    metadata
        Free-form, JSON-serialisable training metadata (history, data set, dates...).

    Attributes
    ----------
    config : SRConfig
    mean_net : DeterministicUNet
        ``U_det``: ``(B, L, H, W), (B, 1, H, W) -> (B, T, H, W)``.
    diffusion_net : DiffusionUNet
        ``U_dif``: predicts the velocity of the noised residual.
    schedule : LinearSchedule
    normalization : dict
    metadata : dict
    """

    def __init__(
        self,
        config: SRConfig,
        normalization: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, SRConfig):
            raise TypeError(f"config must be an SRConfig, got {type(config).__name__}")
        self.config = config
        # the networks see L + lookahead frames (xsuperres.model.inputs.network_order)
        self.mean_net = DeterministicUNet(config.n_context, config.T, config.preset, config.attention)
        self.diffusion_net = DiffusionUNet(config.n_context, config.T, config.preset, config.attention)
        self.schedule = LinearSchedule(config.beta_max, config.beta_min, config.J)
        self.normalization = check_normalization(config, normalization)
        self.metadata: dict[str, Any] = dict(metadata) if metadata is not None else {}
        #: the model card (free-form JSON): read from ``card.json`` by :meth:`load`
        #: (every pretrained model has one), written by :meth:`save`; None otherwise
        self.card: Optional[dict[str, Any]] = None

    # ------------------------------------------------------------------ properties
    @property
    def history(self) -> Any:
        """Training history (``metadata["history"]``), or ``None``."""
        return self.metadata.get("history")

    @property
    def diffusion_mean(self) -> str:
        """The mean the diffusion stage was trained around (``train(..., diffusion_mean=)``):
        ``"network"`` (``U_det``'s; also for models trained before the option) or a temporal
        peer such as ``"motion"``."""
        return (self.metadata.get("protocol") or {}).get("diffusion_mean") or "network"

    @property
    def n_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"mean_net": .., "diffusion_net": .., "total": ..}``."""
        a = sum(p.numel() for p in self.mean_net.parameters())
        b = sum(p.numel() for p in self.diffusion_net.parameters())
        return {"mean_net": a, "diffusion_net": b, "total": a + b}

    @property
    def denoiser(self) -> ResidualDenoiser:
        """``diffusion_net`` and ``schedule`` as a :class:`~xsuperres.nn.denoiser.ResidualDenoiser`.

        What :meth:`predict` samples with (and training's loss). It shares the parameters
        of ``diffusion_net`` and is not a registered submodule, so the state dict holds
        them once, under ``diffusion_net.*``. Rebuilt if ``diffusion_net`` or
        ``schedule`` is replaced.
        """
        d = self.__dict__.get("_denoiser")
        if d is None or d.net is not self.diffusion_net or d.schedule is not self.schedule:
            d = ResidualDenoiser(self.diffusion_net, self.schedule)
            self.__dict__["_denoiser"] = d  # bypasses nn.Module registration
        return d

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def __repr__(self) -> str:
        c = self.config
        n = self.n_parameters
        cap = self.normalization.get("cap")
        cap_s = "unset" if cap is None else f"{cap:g} mm/h"
        name = self.metadata.get("pretrained_name") or self.metadata.get("name")
        return (
            f"SRModel({'' if not name else repr(str(name)) + ', '}S={c.S}, T={c.T}, L={c.L}, "
            f"time_step={self.metadata.get('time_step') or c.time_step!r}, preset={c.preset!r}"
            f"{'' if c.attention else ', attention=False'}, "
            f"mass_conservation={c.mass_conservation!r}, "
            f"params={n['total'] / 1e6:.2f}M (mean {n['mean_net'] / 1e6:.2f}M + "
            f"diffusion {n['diffusion_net'] / 1e6:.2f}M), cap={cap_s})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's display: factors, what the model was trained for, sampler defaults,
        sizes, normalization, mass conservation, training data and held-out scores
        (:func:`xsuperres.model.display.model_html`)."""
        from .display import model_html

        return model_html(self)

    def check_factors(self, S: int, T: int) -> None:
        """Raise ``ValueError`` unless ``(S, T)`` are the factors this model was trained for.

        Parameters
        ----------
        S, T
            Spatial and temporal factors the data asks for.
        """
        if (int(S), int(T)) != (self.config.S, self.config.T):
            raise ValueError(
                f"this model was trained for S={self.config.S}, T={self.config.T}; "
                f"the data asks for S={S}, T={T}"
            )

    #: configuration fields that act only on the output, not on what the networks learnt
    #: (:meth:`with_config` may change them)
    OUTPUT_FIELDS = ("threshold", "power", "mass_conservation")

    def with_config(self, **changes: Any) -> "SRModel":
        """A copy with some output settings of the configuration changed, same weights.

        The threshold ``a`` and exponent ``p`` of ``F`` and the mass-conservation mode act
        on the networks' output (``xsuperres.nn.mass.mass_conserve``), so they can be
        chosen after training, e.g. on held-out events. The copy keeps the
        normalization and metadata (``metadata["config_changes"]`` records the trained
        values of what changed) and has no card: the card describes this model.

        Parameters
        ----------
        **changes
            New values for fields in :attr:`OUTPUT_FIELDS`.

        Returns
        -------
        SRModel
            On the same device, in eval mode.

        Raises
        ------
        ValueError
            A field outside :attr:`OUTPUT_FIELDS` (it would not match the weights), or an
            invalid value (``SRConfig``'s own checks).

        Examples
        --------
        >>> m = xsuperres.load_model("radar-s10-t1")          # doctest: +SKIP
        >>> m0 = m.with_config(threshold=0.0)                   # doctest: +SKIP
        >>> m0.config.threshold, m0.metadata["config_changes"]  # doctest: +SKIP
        (0.0, {'threshold': 0.01})
        """
        other = sorted(set(changes) - set(self.OUTPUT_FIELDS))
        if other:
            raise ValueError(f"with_config changes only the output settings {self.OUTPUT_FIELDS}; "
                             f"{other} must match the trained weights (train another model)")
        trained = dict(self.metadata.get("config_changes", {}))
        for k in changes:
            trained.setdefault(k, getattr(self.config, k))
        m = SRModel(self.config.replace(**changes), self.normalization,
                    {**self.metadata, "config_changes": trained})
        m.load_state_dict(self.state_dict())
        return m.to(self.device).eval()

    def with_residual_factor(self, factor: float) -> "SRModel":
        """A copy whose members depart ``factor`` times as far from the mean, same weights.

        The diffusion network keeps modelling the residual divided by the trained
        ``normalization["residual_scale"]``; the copy multiplies it back by ``factor``
        times that scale: a spread deflation (``factor < 1``) or inflation chosen after
        training, e.g. on held-out events. ``metadata["residual_scale_trained"]`` keeps
        the trained scale (also through repeated calls).

        Parameters
        ----------
        factor
            Positive and finite.

        Returns
        -------
        SRModel
            On the same device, in eval mode, without a card.

        Examples
        --------
        >>> m = xsuperres.load_model("radar-s10-t3")                  # doctest: +SKIP
        >>> narrow = m.with_residual_factor(0.75)                      # doctest: +SKIP
        >>> ens = narrow.predict(lr, n_members=5)                      # doctest: +SKIP
        """
        factor = positive_float(factor, "factor", " (it multiplies the residual scale)")
        rs = float(self.normalization.get("residual_scale", 1.0))
        meta = {**self.metadata, "residual_scale_trained": self.metadata.get("residual_scale_trained", rs)}
        m = SRModel(self.config, {**self.normalization, "residual_scale": rs * factor}, meta)
        m.load_state_dict(self.state_dict())
        return m.to(self.device).eval()

    # ------------------------------------------------------------------ inference
    def _cap(self) -> float:
        cap = self.normalization.get("cap")
        if cap is None:
            raise ValueError(
                "this model has no normalization cap (mm/h): set config.cap or "
                "normalization['cap'] (usually fitted during training)"
            )
        return float(cap)

    def _output_config(self, mass_conservation: Optional[str]) -> SRConfig:
        """The config with the mass-conservation mode of this prediction
        (:func:`~xsuperres.config.inference_mass_conservation`)."""
        mode = inference_mass_conservation(self.config, mass_conservation)
        if mode == self.config.mass_conservation:
            return self.config
        return self.config.replace(mass_conservation=mode)

    def _run(self, device: DeviceLike) -> tuple[torch.device, bool]:
        dev = resolve_device(device)
        if self.device != dev:
            self.to(dev)
        was_training = self.training
        self.eval()
        return dev, was_training

    def predict_mean(
        self,
        lr: ArrayLike,
        topography: Optional[ArrayLike] = None,
        device: DeviceLike = "auto",
        batch_size: Optional[int] = None,
        *,
        mass_conservation: Optional[str] = "auto",
    ) -> np.ndarray:
        """Deterministic-only prediction ``cap * D`` (the preprint's "deterministic" model).

        Parameters
        ----------
        lr
            LR context in mm/h, shape ``(..., L, h, w)`` (oldest frame first; the last
            frame is the block to downscale); ``(..., L + lookahead, h, w)`` for a model
            with ``config.lookahead`` (frame ``L - 1`` is the block, the last ones follow
            it). Not modified.
        topography
            Elevation in m on the HR grid, shape ``(H, W)`` or broadcastable to
            ``(..., H, W)``; ``None``: a flat field at ``topo_min`` (zeros after scaling).
        device
            ``"auto"`` (CUDA if available, else CPU), or a torch device.
        batch_size
            Samples per network call (default 16).
        mass_conservation
            ``"auto"`` (default: ``"block"`` for S = 1 and for tile-trained models whose
            training tile spans more than 2 LR pixels, ``"tile_refill"`` for other
            tile-trained models, else the training mode), ``"tile"``, ``"tile_refill"``,
            ``"block"`` (the output's ``T x S x S`` block means equal ``lr[..., -1, :, :]``
            exactly) or ``None``; see :func:`xsuperres.config.inference_mass_conservation`.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(..., T, h S, w S)``, mm/h, non-negative.
        """
        c = self._output_config(mass_conservation)
        cap = self._cap()
        lead, x_all, topo_all = prepare_inputs(self.config, self.normalization, lr, topography)
        N, _, h, w = x_all.shape
        H, W = h * c.S, w * c.S
        out = np.empty((N, c.T, H, W), dtype=np.float32)
        bs = 16 if batch_size is None else positive_int(batch_size, "batch_size")
        dev, was_training = self._run(device)
        try:
            with torch.inference_mode():
                for s0, D, _, _ in mean_batches(self.mean_net, x_all, topo_all, bs, dev, cap, c):
                    out[s0 : s0 + bs] = (D * cap).cpu().numpy()
        finally:
            self.train(was_training)
        return out.reshape(lead + (c.T, H, W))

    def predict(
        self,
        lr: ArrayLike,
        topography: Optional[ArrayLike] = None,
        n_members: int = 3,
        sampler: str = DEFAULT_SAMPLER,
        steps: Optional[int] = None,
        seed: int = 0,
        device: DeviceLike = "auto",
        batch_size: Optional[int] = None,
        eta: float = 0.0,
        progress: Union[bool, Callable[[int, int], None]] = False,
        *,
        noise_keys: Optional[ArrayLike] = None,
        spacing: Optional[str] = None,
        noise_fn: Optional[Callable[[int, int, int], ArrayLike]] = None,
        mass_conservation: Optional[str] = "auto",
        mean: Optional[ArrayLike] = None,
    ) -> np.ndarray:
        """Sample an ensemble of HR sequences for each LR context.

        Parameters
        ----------
        lr
            LR context in mm/h, shape ``(..., L, h, w)``: ``L`` consecutive LR frames,
            oldest first; the last is the block ``x[t]`` to downscale. A model with
            ``config.lookahead = K`` takes ``L + K`` frames, ``x[t-L+1] .. x[t+K]``. Must be finite and
            non-negative (fill and mask missing values beforehand). Not modified.
        topography
            Elevation in m on the HR grid, shape ``(H, W) = (h S, w S)`` or broadcastable
            to ``(..., H, W)``; scaled with the training range
            ``normalization["topo_min"/"topo_max"]``. ``None``: a flat field at
            ``topo_min`` (zeros after scaling).
        n_members
            Ensemble size (the preprint generates 3).
        sampler
            ``"dpmpp_2m"`` (the default, ``xsuperres.nn.samplers.DEFAULT_SAMPLER``),
            ``"ddim"`` or ``"ancestral"`` (the preprint's 1000-step reference); see
            :func:`xsuperres.nn.diffusion.sample`.
        steps
            Sampler steps (``None``: the sampler's default in
            :data:`xsuperres.nn.diffusion.SAMPLERS`: 10 for DPM-Solver++, 50 for DDIM,
            ``J`` for ancestral).
        seed
            Non-negative integer. Member ``m`` of sample ``i`` draws its noise from its own
            generator seeded by a hash of ``(seed, key_i, m, k)`` (``k``: draw number), so
            a member does not depend on ``batch_size``, on the device, or on the other
            samples of the call.
        device
            ``"auto"`` (CUDA if available, else CPU) or a torch device; the model is
            moved there.
        batch_size
            ``(sample, member)`` items per diffusion-network call (default 16).
        eta
            Stochasticity of ``"ddim"`` and ``"dpmpp_2m"`` (0: deterministic given the
            initial noise; 1: DDPM-like DDIM, the reverse SDE for DPM-Solver++(2M)).
        progress
            ``True`` for a tqdm bar, or a callable ``progress(done, total)`` counting
            network evaluations of the diffusion stage.
        noise_keys
            Integer keys (``>= 0``) identifying the samples for the noise, shape ``lead``
            (one integer per sample) or ``lead + (K,)``; default: the flat sample index.
            Ignored when ``noise_fn`` is given.
        noise_fn
            Optional ``noise_fn(i, m, k) -> array (T, h S, w S)``: the ``k``-th standard
            normal draw of member ``m`` of (flat) sample ``i``, replacing the built-in keyed
            generator. The xarray layer passes noise keyed by global HR position here, so
            that overlapping tiles and any dask chunking see the same noise.
        spacing
            Timestep spacing for ``"ddim"``/``"dpmpp_2m"`` (``"linear"`` or ``"logsnr"``);
            ``None``: the sampler's default.
        mass_conservation
            As for :meth:`predict_mean`; applied to the deterministic mean and to every
            member (``"block"``: each member's block means equal the input exactly).
        mean
            Optional conditional mean ``D`` in mm/h, shape ``(..., T, H, W)`` (finite,
            non-negative), used **instead of** ``U_det``'s output: the diffusion stage
            samples the residual around it (conditioned on it, as on ``U_det``'s mean in
            training) and the members are mass-conserved as usual. For temporal
            super-resolution, e.g. the motion-compensated interpolation of the LR steps
            around the block (:func:`xsuperres.temporal.block_in_time`;
            ``xsuperres.downscale(..., mean="motion")``). ``None``: ``U_det``.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(..., n_members, T, h S, w S)``, mm/h, non-negative.

        Raises
        ------
        ValueError
            Wrong ``L`` axis, NaN/infinite or negative values, empty grid, bad topography
            shape, missing normalization, unknown sampler or invalid ``steps``.

        Notes
        -----
        The network input is capped at ``cap`` (as in training) but the mass-conservation
        target is the uncapped ``x[t] / cap``, so with ``mass_conservation="block"`` and
        ``threshold = 0`` the coarsened output gives back ``x[t]`` even above the cap.
        """
        c = self._output_config(mass_conservation)
        cap = self._cap()
        M = positive_int(n_members, "n_members")
        seed = check_seed(seed)
        n_steps = self.check_sampler(sampler, steps, eta, spacing)
        lead, x_all, topo_all = prepare_inputs(self.config, self.normalization, lr, topography)
        N, _, h, w = x_all.shape
        H, W = h * c.S, w * c.S
        keys = sample_keys(noise_keys, lead, N)
        mean_all = None if mean is None else prepare_mean(mean, lead, N, c.T, H, W)
        bs = 16 if batch_size is None else positive_int(batch_size, "batch_size")
        out = np.empty((N, M, c.T, H, W), dtype=np.float32)
        if N == 0:
            return out.reshape(lead + (M, c.T, H, W))

        ns = max(1, bs // M)  # samples per chunk of the deterministic stage
        total = n_steps * sum(-(-min(ns, N - s0) * M // bs) for s0 in range(0, N, ns))
        report = progress_callback(progress, total)
        kw: dict[str, Any] = {}
        if spacing is not None:
            kw["spacing"] = spacing
        done = 0
        dev, was_training = self._run(device)
        try:
            with torch.inference_mode():
                batches = mean_batches(self.mean_net, x_all, topo_all, ns, dev, cap, c, mean_all)
                for s0, D, context, target in batches:

                    def on_step(i: int, _d: int = done) -> None:
                        if report is not None:
                            report(_d + i, total)

                    done += sample_members(
                        self.denoiser, self.schedule, self.normalization, c,
                        out[s0 : s0 + D.shape[0]], D, context, target, cap=cap, s0=s0, keys=keys,
                        seed=seed, batch_size=bs, sampler=sampler, steps=steps, eta=eta,
                        sampler_kwargs=kw, noise_fn=noise_fn, device=dev, n_steps=n_steps,
                        on_step=on_step,
                    )
        finally:
            self.train(was_training)
            if report is not None and hasattr(report, "close"):
                report.close()
        return out.reshape(lead + (M, c.T, H, W))

    @property
    def cap(self) -> float:
        """Normalization cap in mm/h; raises ``ValueError`` when the model has none."""
        return self._cap()

    def check_sampler(
        self, sampler: str = DEFAULT_SAMPLER, steps: Optional[int] = None, eta: float = 0.0,
        spacing: Optional[str] = None,
    ) -> int:
        """Validate sampler arguments as :meth:`predict` would; return network calls per run.

        The defaults (steps, spacing) and rules per sampler are those of
        :data:`xsuperres.nn.diffusion.SAMPLERS` (:func:`xsuperres.nn.diffusion.check_sampler`).

        Returns
        -------
        int
            Network evaluations of the diffusion stage per sampler run (``J`` for
            ``"ancestral"``; else the number of timesteps for ``steps`` and ``spacing``).

        Raises
        ------
        ValueError
            Unknown sampler, ``steps`` out of range, ``eta`` invalid for the sampler
            (non-finite, negative, or non-zero for ``"dpmpp_2m"``).
        """
        return check_sampler(self.schedule, sampler, steps, eta, spacing)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike], dtype: str = "float32") -> Path:
        """Write the model to the directory ``path`` (created if needed).

        Files (format version :data:`FORMAT_VERSION`):

        ``model.safetensors``
            The state dict (contiguous CPU tensors). Its header metadata holds
            ``format``, ``dtype`` and ``config_sha256``, the SHA-256 of the canonical
            JSON of ``config.json``'s values (everything but
            ``tensors_sha256`` and the informational ``xsuperres_version`` and
            ``torch_version``).
        ``config.json``
            ``format``, ``format_version``, versions, ``dtype``, ``config``,
            ``normalization``, ``metadata`` and ``tensors_sha256``, the SHA-256 of
            ``model.safetensors`` (which covers ``config_sha256``).

        ``card.json`` (only when :attr:`card` is set)
            The model card: free-form JSON (summary, data, held-out scores), read back
            into :attr:`card` by :meth:`load` and shown by the notebook display. Not
            bound to the weights (a registry hashes it like every file).

        The two files are thus bound to each other: :meth:`load` rejects a directory
        where either was edited. Existing files are replaced atomically.

        Parameters
        ----------
        path
            Target directory.
        dtype
            ``"float32"`` (default; reloads bit-identically) or ``"float16"`` (half the
            size, for shipped weights; cast back to float32 by :meth:`load`).

        Returns
        -------
        pathlib.Path
            The directory.

        Raises
        ------
        ValueError
            Unknown ``dtype``, or metadata/normalization that is not JSON-serialisable.
        """
        return save_srmodel(self, path, dtype)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device: DeviceLike = "cpu") -> "SRModel":
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        path
            The model directory (or a file inside it).
        device
            Where to put the weights (``"auto"``: CUDA if available).

        Returns
        -------
        SRModel
            In eval mode, float32 weights.

        Raises
        ------
        ModelFileError
            Missing files; ``config.json`` not JSON, of another format or an unknown
            ``format_version``; weights whose SHA-256 differs from ``config.json``
            (checked before the weights are parsed); a ``config.json`` edited after
            saving (or belonging to other weights): its values differ from the
            ``config_sha256`` bound into the weights' header metadata, whatever
            ``format_version`` it claims; weights without that binding next to a
            ``config.json`` of format version 2; unreadable weights; unknown, missing or
            wrongly shaped tensors (named in the message).

        Warns
        -----
        UserWarning
            A format-version-1 directory (saved by an older xsuperres, whose weights carry
            no configuration binding): it loads as before, but edits to its
            ``config.json`` cannot be detected; re-save it with :meth:`save`.
        """
        return load_srmodel(cls, path, device)
