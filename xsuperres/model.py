"""The scale-adaptive super-resolution model: :class:`SRModel` (inference, save/load).

An :class:`SRModel` bundles, for one pair of factors ``(S, T)``:

* ``mean_net`` -- the deterministic attention U-Net ``U_det`` (stage 1);
* ``diffusion_net`` -- the residual diffusion U-Net ``U_dif`` (stage 2, v-prediction);
* ``schedule`` -- the linear variance schedule ``(beta_min, beta_max, J)``;
* ``normalization`` -- the training-set statistics: precipitation cap (mm/h) and
  topography range (m);
* ``config`` (:class:`~xsuperres.config.SRConfig`) and free-form training ``metadata``.

Inference (:meth:`SRModel.predict`) follows the preprint (section 3.2, appendix 9) and
``SPEC.md`` section 2::

    x_n      = clip(x, 0, cap) / cap                        (normalized LR context)
    context  = BI(x_n(L))                                   (bicubic, not clamped)
    D        = r_a(MC(F(r_a(U_det(context, M_n))), x[t]))   (deterministic mean)
    r0       ~ reverse diffusion with U_dif(r_j, D, BI(x_n[t]), context, j)
    y_hat    = cap * r_a(MC(F(r_a(D + r0)), x[t]))          (one ensemble member)

Weights are stored as ``safetensors`` (never pickle) next to a ``config.json`` that holds
the configuration, normalization, metadata and the SHA-256 of the weights file; the
weights file in turn carries the SHA-256 of the configuration (``config_sha256`` in its
header metadata), so that editing either file is detected by :meth:`SRModel.load`.

This module imports torch, numpy and safetensors only (no xarray, dask or pooch).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .checks import TOPOGRAPHY_FIX, finite_array, positive_int
from .checks import seed as check_seed
from .config import SRConfig
from .nn.diffusion import LinearSchedule, sample, sampling_timesteps
from .nn.interp import upsample
from .nn.mass import mass_conserve
from .nn.unet import DeterministicUNet, DiffusionUNet
from .noise import item_noise, sample_keys
from ._version import __version__

__all__ = [
    "SRModel",
    "ModelFileError",
    "normalize_precip",
    "denormalize_precip",
    "normalize_topography",
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_FORMAT_VERSIONS",
]

#: ``format`` entry of ``config.json``.
FORMAT = "xsuperres.SRModel"
#: ``format_version`` written by this version of the package. Version 2 binds
#: ``config.json`` to the weights (``config_sha256`` in the safetensors header metadata);
#: version 1 (no binding) is still read, with a warning.
FORMAT_VERSION = 2
#: Every ``format_version`` that :meth:`SRModel.load` reads.
READABLE_FORMAT_VERSIONS = (1, 2)
#: Key of the configuration binding in the safetensors header metadata.
BINDING_KEY = "config_sha256"
#: ``config.json`` entries left out of the configuration binding: the weights' own hash
#: (which covers the binding) and purely informational version strings.
UNBOUND_KEYS = ("tensors_sha256", "xsuperres_version", "torch_version")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

ArrayLike = Union[np.ndarray, torch.Tensor]
DeviceLike = Union[str, torch.device]


class ModelFileError(ValueError):
    """A saved model directory is missing, corrupted, modified or of an unknown format."""


# ---------------------------------------------------------------------------------------
# normalization
# ---------------------------------------------------------------------------------------
def _check_cap(cap: float) -> float:
    try:
        c = float(cap)
    except (TypeError, ValueError):
        raise ValueError(f"cap must be a positive number (mm/h), got {cap!r}") from None
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"cap must be a positive finite number (mm/h), got {cap!r}")
    return c


def _as_float_array(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def normalize_precip(x: ArrayLike, cap: float) -> ArrayLike:
    """Cap and scale precipitation: ``clip(x, 0, cap) / cap``.

    Parameters
    ----------
    x
        Precipitation rate in mm/h, any shape; ``numpy`` array (or array-like) or
        ``torch.Tensor``. NaN stays NaN. Not modified in place.
    cap
        Normalization cap in mm/h (``> 0``).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape (and type) as ``x``, values in ``[0, 1]`` (dimensionless); integer
        inputs become float64 (numpy) or the default float dtype (torch).
    """
    c = _check_cap(cap)
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return x.clamp(0.0, c) / c
    return np.clip(_as_float_array(x), 0.0, c) / c


def denormalize_precip(x: ArrayLike, cap: float) -> ArrayLike:
    """Undo the scaling of :func:`normalize_precip`: ``x * cap`` (the cap is not undone).

    Parameters
    ----------
    x
        Normalized precipitation (dimensionless), any shape; numpy or torch.
    cap
        Normalization cap in mm/h.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Precipitation rate in mm/h, same shape as ``x``.
    """
    c = _check_cap(cap)
    if isinstance(x, torch.Tensor):
        return x * c
    return _as_float_array(x) * c


def normalize_topography(z: ArrayLike, zmin: float, zmax: float) -> ArrayLike:
    """Min-max scale a topography field: ``(z - zmin) / (zmax - zmin)``.

    Parameters
    ----------
    z
        Elevation in m, any shape; numpy or torch. Not modified in place.
    zmin, zmax
        Elevation range in m (from the training set, so that the scaling does not depend
        on the region being downscaled); ``zmax >= zmin``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape as ``z`` (dimensionless; ``[0, 1]`` inside the training range). A
        degenerate range ``zmax == zmin`` (constant training field) gives zeros.
    """
    lo, hi = float(zmin), float(zmax)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"topography range must be finite, got zmin={zmin!r}, zmax={zmax!r}")
    if hi < lo:
        raise ValueError(f"zmax must be >= zmin, got zmin={zmin!r}, zmax={zmax!r}")
    if isinstance(z, torch.Tensor):
        if not z.is_floating_point():
            z = z.to(torch.get_default_dtype())
        return torch.zeros_like(z) if hi == lo else (z - lo) / (hi - lo)
    a = _as_float_array(z)
    return np.zeros_like(a) if hi == lo else (a - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _jsonable(obj: Any, where: str = "metadata") -> Any:
    """Convert numpy scalars/arrays, tuples and paths to JSON types; raise on others."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        if isinstance(obj, float) and not math.isfinite(obj):
            return obj  # json writes NaN/Infinity; Python's json reads them back
        return obj
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise ValueError(f"{where}: key {k!r} is not JSON-serialisable")
            out[str(k) if not isinstance(k, str) else k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "isoformat"):  # datetime, date, pandas Timestamp
        return obj.isoformat()
    raise ValueError(
        f"{where} = {obj!r} (type {type(obj).__name__}) is not JSON-serialisable"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_sha256(doc: Mapping[str, Any]) -> str:
    """SHA-256 that binds a ``config.json`` document to its weights.

    Parameters
    ----------
    doc
        The JSON-parsed ``config.json`` (a mapping of JSON values). Every entry except
        :data:`UNBOUND_KEYS` is bound (format, format_version, dtype, config,
        normalization, metadata and any other entry).

    Returns
    -------
    str
        Lower-case hex SHA-256 of the canonical serialisation
        ``json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``:
        independent of key order, indentation and whitespace, sensitive to every value.
    """
    bound = {k: v for k, v in doc.items() if k not in UNBOUND_KEYS}
    text = json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _weights_metadata(wpath: Path) -> dict[str, str]:
    """Header metadata of a safetensors file (``{}`` if none); ModelFileError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            meta = f.metadata()
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"{wpath} is not a readable safetensors file: {e}") from None
    return dict(meta) if meta else {}


#: device types accepted by :func:`_resolve_device` (besides ``"auto"``)
VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _resolve_device(device: DeviceLike) -> torch.device:
    """The torch device for ``device``: the one validator of device arguments.

    ``"auto"`` is CUDA when available, else the CPU; otherwise ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or a :class:`torch.device` of those types. Anything else is a
    ``ValueError`` that lists the valid devices (not torch's list of every device type).
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device.strip() if isinstance(device, str) else device)
        except (RuntimeError, TypeError, ValueError):
            dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device {device!r} is not a valid device; use one of "
            f"{', '.join(repr(d) for d in VALID_DEVICES)} (N: the GPU number)"
        )
    return dev


def _list(names: Sequence[str], limit: int = 10) -> str:
    names = sorted(names)
    s = ", ".join(names[:limit])
    return s + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")


_KNOWN_NORM_KEYS = ("cap", "topo_min", "topo_max", "residual_scale")


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
        self.mean_net = DeterministicUNet(config.L, config.T, config.preset, config.attention)
        self.diffusion_net = DiffusionUNet(config.L, config.T, config.preset, config.attention)
        self.schedule = LinearSchedule(config.beta_max, config.beta_min, config.J)
        self.normalization = self._check_normalization(normalization)
        self.metadata: dict[str, Any] = dict(metadata) if metadata is not None else {}

    # ------------------------------------------------------------------ properties
    def _check_normalization(self, norm: Optional[Mapping[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = dict(norm) if norm is not None else {}
        cfg_cap = self.config.cap
        cap = out.get("cap")
        if cap is None:
            cap = cfg_cap
        else:
            cap = _check_cap(cap)
            if cfg_cap is not None and not math.isclose(cap, cfg_cap, rel_tol=1e-12):
                raise ValueError(
                    f"normalization['cap'] = {cap} mm/h disagrees with config.cap = {cfg_cap} mm/h"
                )
        out["cap"] = cap
        for k in ("topo_min", "topo_max"):
            v = out.get(k)
            if v is not None:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"normalization[{k!r}] must be finite, got {out[k]!r}")
            out[k] = v
        if (out["topo_min"] is None) != (out["topo_max"] is None):
            raise ValueError("normalization needs both 'topo_min' and 'topo_max' (m) or neither")
        if out["topo_min"] is not None and out["topo_max"] < out["topo_min"]:
            raise ValueError(
                f"normalization: topo_max ({out['topo_max']} m) < topo_min ({out['topo_min']} m)"
            )
        rs = float(out.get("residual_scale", 1.0))
        if not (math.isfinite(rs) and rs > 0):
            raise ValueError(f"normalization['residual_scale'] must be > 0, got {rs!r}")
        out["residual_scale"] = rs
        return out

    @property
    def history(self) -> Any:
        """Training history (``metadata["history"]``), or ``None``."""
        return self.metadata.get("history")

    @property
    def n_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"mean_net": .., "diffusion_net": .., "total": ..}``."""
        a = sum(p.numel() for p in self.mean_net.parameters())
        b = sum(p.numel() for p in self.diffusion_net.parameters())
        return {"mean_net": a, "diffusion_net": b, "total": a + b}

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def __repr__(self) -> str:
        c = self.config
        n = self.n_parameters
        cap = self.normalization.get("cap")
        cap_s = "unset" if cap is None else f"{cap:g} mm/h"
        return (
            f"SRModel(S={c.S}, T={c.T}, L={c.L}, preset={c.preset!r}"
            f"{'' if c.attention else ', attention=False'}, "
            f"mass_conservation={c.mass_conservation!r}, "
            f"params={n['total'] / 1e6:.2f}M (mean {n['mean_net'] / 1e6:.2f}M + "
            f"diffusion {n['diffusion_net'] / 1e6:.2f}M), cap={cap_s})"
        )

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

    # ------------------------------------------------------------------ inference
    def _cap(self) -> float:
        cap = self.normalization.get("cap")
        if cap is None:
            raise ValueError(
                "this model has no normalization cap (mm/h): set config.cap or "
                "normalization['cap'] (usually fitted during training)"
            )
        return float(cap)

    def _prepare(
        self, lr: Any, topography: Any
    ) -> tuple[tuple[int, ...], np.ndarray, Optional[np.ndarray]]:
        """Validate inputs; return ``(lead shape, lr (N, L, h, w) float32, topo or None)``.

        The returned topography is normalized, float32, shaped ``(N or 1, H, W)``.
        """
        c = self.config
        if isinstance(lr, torch.Tensor):
            lr = lr.detach().cpu().numpy()
        a = np.asarray(lr)
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"lr must hold real numbers (mm/h), got dtype {a.dtype}")
        if a.ndim < 3:
            raise ValueError(
                f"lr must have shape (..., L, h, w) with L={c.L}, got shape {a.shape}"
            )
        if a.shape[-3] != c.L:
            raise ValueError(
                f"lr has L={a.shape[-3]} context frames (axis -3 of shape {a.shape}) but "
                f"expected L={c.L}: this model was trained for (S, T, L) = "
                f"({c.S}, {c.T}, {c.L})"
            )
        h, w = a.shape[-2:]
        if h < 1 or w < 1:
            raise ValueError(f"lr must have at least one pixel (h, w >= 1), got {(h, w)}")
        lead = tuple(a.shape[:-3])
        x = a.astype(np.float32).reshape(-1, c.L, h, w)  # a copy: the input is never touched
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
            zmin, zmax = self.normalization.get("topo_min"), self.normalization.get("topo_max")
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

    def _context(self, x: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, L, h, w)`` mm/h -> (``BI`` of capped, normalized frames, MC target ``x[t]/cap``)."""
        xn = normalize_precip(x, cap)
        context = upsample(xn, self.config.S, mode="bicubic")
        target = x[:, -1] / cap  # not capped: the output keeps the LR mass above the cap too
        return context, target

    def _mc(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        return mass_conserve(
            z, target, c.S, c.T, power=c.power, threshold=c.threshold, mode=c.mass_conservation
        )

    def _mean(
        self, x: torch.Tensor, topo: Optional[torch.Tensor], cap: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic stage on ``x (n, L, h, w)`` mm/h -> ``(D, context, target)``."""
        context, target = self._context(x, cap)
        n, _, H, W = context.shape
        if topo is None:
            tn = torch.zeros((n, 1, H, W), dtype=context.dtype, device=context.device)
        else:
            tn = topo.expand(n, H, W).unsqueeze(1) if topo.shape[0] == 1 else topo.unsqueeze(1)
        z = self.mean_net(context, tn)
        return self._mc(z, target), context, target

    def _run(self, device: DeviceLike) -> tuple[torch.device, bool]:
        dev = _resolve_device(device)
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
    ) -> np.ndarray:
        """Deterministic-only prediction ``cap * D`` (the preprint's "deterministic" model).

        Parameters
        ----------
        lr
            LR context in mm/h, shape ``(..., L, h, w)`` (oldest frame first; the last
            frame is the block to downscale). Not modified.
        topography
            Elevation in m on the HR grid, shape ``(H, W)`` or broadcastable to
            ``(..., H, W)``; ``None``: a flat field at ``topo_min`` (zeros after scaling).
        device
            ``"auto"`` (CUDA if available, else CPU), or a torch device.
        batch_size
            Samples per network call (default 16).

        Returns
        -------
        numpy.ndarray
            float32, shape ``(..., T, h S, w S)``, mm/h, non-negative.
        """
        c = self.config
        cap = self._cap()
        lead, x_all, topo_all = self._prepare(lr, topography)
        N, _, h, w = x_all.shape
        H, W = h * c.S, w * c.S
        out = np.empty((N, c.T, H, W), dtype=np.float32)
        bs = 16 if batch_size is None else positive_int(batch_size, "batch_size")
        dev, was_training = self._run(device)
        try:
            with torch.inference_mode():
                for s0 in range(0, N, bs):
                    x = torch.from_numpy(x_all[s0 : s0 + bs]).to(dev)
                    topo = _topo_slice(topo_all, s0, bs, dev)
                    D, _, _ = self._mean(x, topo, cap)
                    out[s0 : s0 + bs] = (D * cap).cpu().numpy()
        finally:
            self.train(was_training)
        return out.reshape(lead + (c.T, H, W))

    def predict(
        self,
        lr: ArrayLike,
        topography: Optional[ArrayLike] = None,
        n_members: int = 3,
        sampler: str = "ddim",
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
    ) -> np.ndarray:
        """Sample an ensemble of HR sequences for each LR context.

        Parameters
        ----------
        lr
            LR context in mm/h, shape ``(..., L, h, w)``: ``L`` consecutive LR frames,
            oldest first; the last is the block ``x[t]`` to downscale. Must be finite and
            non-negative (fill and mask missing values beforehand). Not modified.
        topography
            Elevation in m on the HR grid, shape ``(H, W) = (h S, w S)`` or broadcastable
            to ``(..., H, W)``; scaled with the training range
            ``normalization["topo_min"/"topo_max"]``. ``None``: a flat field at
            ``topo_min`` (zeros after scaling).
        n_members
            Ensemble size (the preprint generates 3).
        sampler
            ``"ddim"`` (default, few steps), ``"ancestral"`` (the preprint's 1000-step
            reference) or ``"dpmpp_2m"`` (see :func:`xsuperres.nn.diffusion.sample`).
        steps
            Sampler steps (``None``: 50 for DDIM, 20 for DPM-Solver++, ``J`` for
            ancestral).
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
            DDIM stochasticity (0: deterministic given the initial noise).
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
        c = self.config
        cap = self._cap()
        M = positive_int(n_members, "n_members")
        seed = check_seed(seed)
        n_steps = self._n_steps(sampler, steps, eta, spacing)
        lead, x_all, topo_all = self._prepare(lr, topography)
        N, _, h, w = x_all.shape
        H, W = h * c.S, w * c.S
        keys = sample_keys(noise_keys, lead, N)
        bs = 16 if batch_size is None else positive_int(batch_size, "batch_size")
        out = np.empty((N, M, c.T, H, W), dtype=np.float32)
        if N == 0:
            return out.reshape(lead + (M, c.T, H, W))

        ns = max(1, bs // M)  # samples per chunk of the deterministic stage
        total = n_steps * sum(-(-min(ns, N - s0) * M // bs) for s0 in range(0, N, ns))
        report = _progress(progress, total)
        rscale = float(self.normalization["residual_scale"])
        kw: dict[str, Any] = {}
        if spacing is not None:
            kw["spacing"] = spacing
        done = 0
        dev, was_training = self._run(device)
        try:
            with torch.inference_mode():
                for s0 in range(0, N, ns):
                    x = torch.from_numpy(x_all[s0 : s0 + ns]).to(dev)
                    topo = _topo_slice(topo_all, s0, ns, dev)
                    D, context, target = self._mean(x, topo, cap)
                    lr_up = context[:, -1:]
                    items = [(i, m) for i in range(x.shape[0]) for m in range(M)]
                    for b0 in range(0, len(items), bs):
                        sub = items[b0 : b0 + bs]
                        idx = torch.tensor([i for i, _ in sub], device=dev)
                        Db, ub, cb, tb = D[idx], lr_up[idx], context[idx], target[idx]
                        entropy = [[seed, *keys[s0 + i], m] for i, m in sub]
                        shape = (len(sub), c.T, H, W)

                        def noise(k: int, _e=entropy, _shape=shape[1:], _sub=sub, _s0=s0,
                                  _dev=dev) -> torch.Tensor:
                            if noise_fn is not None:
                                z = [torch.as_tensor(noise_fn(_s0 + i, m, k), dtype=torch.float32)
                                     for i, m in _sub]
                                return torch.stack(z).to(_dev)
                            return torch.stack([item_noise(e + [k], _shape) for e in _e])

                        def model_fn(r, j, _D=Db, _u=ub, _c=cb):
                            return self.diffusion_net(r, _D, _u, _c, j)

                        def step_cb(i: int, n: int, _d=done) -> None:
                            if report is not None:
                                report(_d + i, total)

                        r0 = sample(
                            model_fn, shape, self.schedule, sampler=sampler, steps=steps,
                            eta=eta, noise=noise, device=dev, dtype=torch.float32,
                            progress=step_cb, **kw,
                        )
                        done += n_steps
                        y = self._mc(Db + rscale * r0, tb)
                        y = (y * cap).cpu().numpy()
                        for k, (i, m) in enumerate(sub):
                            out[s0 + i, m] = y[k]
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
        self, sampler: str = "ddim", steps: Optional[int] = None, eta: float = 0.0,
        spacing: Optional[str] = None,
    ) -> int:
        """Validate sampler arguments as :meth:`predict` would; return network calls per run.

        Raises
        ------
        ValueError
            Unknown sampler, ``steps`` out of range, ``eta`` invalid for the sampler
            (non-finite, negative, or non-zero for ``"dpmpp_2m"``).
        """
        return self._n_steps(sampler, steps, eta, spacing)

    def _n_steps(
        self, sampler: str, steps: Optional[int], eta: float, spacing: Optional[str]
    ) -> int:
        """Validate the sampler arguments early; return network calls per sampler run."""
        if sampler == "ancestral":
            if steps is not None and steps != self.schedule.J:
                raise ValueError(
                    f"the ancestral sampler always takes J = {self.schedule.J} steps, got "
                    f"steps={steps}; use sampler='ddim' or 'dpmpp_2m' for fewer steps"
                )
            if spacing is not None:
                raise ValueError("spacing applies to 'ddim' and 'dpmpp_2m' only")
            return self.schedule.J
        if sampler == "ddim":
            if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta):
                raise ValueError(f"eta must be finite (a number >= 0; 0 is deterministic DDIM), "
                                 f"got {eta!r}")
            if eta < 0:
                raise ValueError(f"eta must be >= 0, got {eta!r}")
            return len(sampling_timesteps(self.schedule, 50 if steps is None else steps,
                                          spacing or "linear"))
        if sampler == "dpmpp_2m":
            if eta != 0:
                raise ValueError("the 'dpmpp_2m' sampler is deterministic: eta must be 0")
            return len(sampling_timesteps(self.schedule, 20 if steps is None else steps,
                                          spacing or "logsnr"))
        raise ValueError(
            f"unknown sampler {sampler!r}; choose from ['ancestral', 'ddim', 'dpmpp_2m']"
        )

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
        from safetensors.torch import save_file

        dt = {"float32": torch.float32, "float16": torch.float16}.get(dtype)
        if dt is None:
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        doc_meta = _jsonable(self.metadata, "metadata")
        doc_norm = _jsonable(self.normalization, "normalization")
        doc: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "xsuperres_version": __version__,
            "torch_version": torch.__version__,
            "dtype": dtype,
            "config": self.config.to_dict(),
            "normalization": doc_norm,
            "metadata": doc_meta,
        }
        # bind the values exactly as load() will read them back from config.json
        binding = _config_sha256(json.loads(json.dumps(doc)))
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for k, v in self.state_dict().items():
            v = v.detach().to("cpu")
            if v.is_floating_point():
                v = v.to(dt)
            tensors[k] = v.contiguous().clone()
        wpath = d / WEIGHTS_FILE
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".model-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file(tensors, tmp,
                      metadata={"format": FORMAT, "dtype": dtype, BINDING_KEY: binding})
            digest = _sha256(Path(tmp))
            os.replace(tmp, wpath)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        doc["tensors_sha256"] = digest
        text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".config-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, d / CONFIG_FILE)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return d

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
        from safetensors import safe_open

        d = Path(path)
        if d.is_file():
            d = d.parent
        if not d.is_dir():
            raise ModelFileError(f"model directory {str(d)!r} does not exist")
        cpath, wpath = d / CONFIG_FILE, d / WEIGHTS_FILE
        missing = [p.name for p in (cpath, wpath) if not p.is_file()]
        if missing:
            raise ModelFileError(f"model directory {str(d)!r} lacks {', '.join(missing)}")
        try:
            doc = json.loads(cpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFileError(f"{cpath} is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ModelFileError(f"{cpath} is not an xsuperres model (format {got!r}, expected {FORMAT!r})")
        ver = doc.get("format_version")
        if type(ver) is not int or ver not in READABLE_FORMAT_VERSIONS:
            readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
            raise ModelFileError(
                f"{cpath} has format_version {ver!r}; this xsuperres ({__version__}) reads "
                f"format_version {readable} only (the file says it was written by "
                f"xsuperres {doc.get('xsuperres_version')!r})"
            )
        need = [k for k in ("config", "normalization", "tensors_sha256") if k not in doc]
        if need:
            raise ModelFileError(f"{cpath} lacks the entries {need}")
        expected = str(doc["tensors_sha256"]).lower()
        got = _sha256(wpath)
        if got != expected:
            raise ModelFileError(
                f"{wpath} is corrupted or modified: expected sha256 {expected} "
                f"(from {CONFIG_FILE}), got {got}"
            )
        # the weights (now known to be the ones config.json names) carry the binding
        bound = _weights_metadata(wpath).get(BINDING_KEY)
        if bound is not None:  # checked whatever format_version config.json claims
            computed = _config_sha256(doc)
            if str(bound).lower() != computed:
                raise ModelFileError(
                    f"{cpath} was edited after saving (or belongs to other weights): its "
                    f"values do not match the configuration bound into {wpath} "
                    f"({BINDING_KEY} {bound}, {CONFIG_FILE} gives {computed}); re-save the "
                    f"model with SRModel.save or restore the original {CONFIG_FILE}"
                )
        elif ver == 1:
            warnings.warn(
                f"model directory {str(d)!r} was saved by an older xsuperres without a "
                f"configuration binding; re-save with model.save(path) to bind it "
                f"(format_version 1: edits to its {CONFIG_FILE} cannot be detected)",
                UserWarning,
                stacklevel=2,
            )
        else:
            raise ModelFileError(
                f"{wpath} carries no configuration binding ({BINDING_KEY!r} in its "
                f"safetensors metadata) although {cpath} has format_version {ver}: the "
                f"weights were replaced or written by another tool; re-save the model with "
                f"SRModel.save or restore the original {WEIGHTS_FILE}"
            )
        try:
            config = SRConfig.from_dict(doc["config"])
            model = cls(config, doc["normalization"], doc.get("metadata") or {})
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{cpath}: invalid configuration: {e}") from None

        ref = model.state_dict()
        try:
            with safe_open(str(wpath), framework="pt", device="cpu") as f:
                names = set(f.keys())
                unknown = names - set(ref)
                absent = set(ref) - names
                if unknown or absent:
                    parts = []
                    if unknown:
                        parts.append(f"unknown tensors: {_list(unknown)}")
                    if absent:
                        parts.append(f"missing tensors: {_list(absent)}")
                    raise ModelFileError(
                        f"{wpath} does not match the architecture of its config "
                        f"({'; '.join(parts)})"
                    )
                bad = []
                for k in sorted(names):
                    shp = tuple(f.get_slice(k).get_shape())
                    if shp != tuple(ref[k].shape):
                        bad.append(f"{k}: file {shp} vs model {tuple(ref[k].shape)}")
                if bad:
                    raise ModelFileError(
                        f"{wpath}: tensor shapes do not match the architecture of its "
                        f"config: {'; '.join(bad[:10])}"
                        + (f" ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
                    )
                state = {}
                for k in names:
                    t = f.get_tensor(k)
                    state[k] = t.to(ref[k].dtype) if t.is_floating_point() else t
        except ModelFileError:
            raise
        except Exception as e:  # safetensors raises its own error types
            raise ModelFileError(f"{wpath} is not a readable safetensors file: {e}") from None
        model.load_state_dict(state, strict=True)
        model.eval()
        return model.to(_resolve_device(device))


# ---------------------------------------------------------------------------------------


def _topo_slice(
    topo: Optional[np.ndarray], s0: int, n: int, dev: torch.device
) -> Optional[torch.Tensor]:
    if topo is None:
        return None
    if topo.shape[0] == 1:
        return torch.from_numpy(np.ascontiguousarray(topo)).to(dev)
    return torch.from_numpy(np.ascontiguousarray(topo[s0 : s0 + n])).to(dev)


def _progress(
    progress: Union[bool, Callable[[int, int], None]], total: int
) -> Optional[Callable[[int, int], None]]:
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        import sys

        def report(done: int, tot: int) -> None:
            if done == tot or done % max(1, tot // 20) == 0:
                print(f"xsuperres: {done}/{tot} network evaluations", file=sys.stderr)

        return report

    bar = tqdm(total=total, desc="diffusion", unit="eval")

    class _Bar:
        def __call__(self, done: int, tot: int) -> None:
            bar.update(done - bar.n)

        def close(self) -> None:
            bar.close()

    return _Bar()
