"""Warm starts: training that begins from a trained model's weights (fine-tuning).

``train(hr, S, T, init=model)`` trains both stages as usual, but the two networks start
from ``model``'s weights instead of a random initialisation, so that a short budget on a
user's own data (another radar, grid or cadence) starts from what the shipped models
learned. What is kept and what is refitted:

* the **architecture** (``L``, ``lookahead``, ``T``, ``preset``, ``attention``): from ``init``; a
  ``config`` that changes it is refused (the weights would not fit);
* the **input scaling**: the precipitation cap (mm/h) and, when ``init`` was trained with
  topography, its altitude range: the networks' inputs keep the meaning they were trained
  with, so they are taken from ``init`` instead of being fitted on the new data;
* the **residual scale** of the diffusion stage: refitted after the mean stage, as in a
  run from scratch (it is the spread of *this* data's residuals, and the diffusion works
  on unit-scale residuals);
* the other hyperparameters (``beta_max``, ``F``, ``tile_size``, mass conservation):
  those of ``config``, by default ``init``'s with the cadence (``time_step``) of the new
  data.

The optimizer starts afresh (Adam moments at zero, the learning rate's cosine over the
new ``epochs``); a smaller ``lr`` than from scratch is the usual choice for fine-tuning.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from ..config import SRConfig
from ..model import SRModel

__all__ = ["ARCHITECTURE_FIELDS", "init_topography_range", "resolve_init", "warm_start_config",
           "weights_digest"]

#: :class:`~xsuperres.config.SRConfig` fields that shape the networks' weights.
ARCHITECTURE_FIELDS = ("L", "lookahead", "T", "preset", "attention")


def resolve_init(init: Any) -> SRModel:
    """``init`` as an :class:`~xsuperres.model.SRModel`: a model, a folder written by
    :meth:`SRModel.save <xsuperres.model.SRModel.save>`, or a pretrained model's name."""
    if isinstance(init, SRModel):
        return init
    if isinstance(init, (str, os.PathLike)):
        from ..downscaling.workers import resolve_model

        return resolve_model(init)
    raise TypeError("init must be an SRModel, a saved-model folder or a pretrained model's name "
                    f"(e.g. 'radar-s10-t3'), got {type(init).__name__}")


def _check_init(init: SRModel, S: int, T: int) -> SRModel:
    try:
        init.check_factors(S, T)
    except ValueError as err:
        raise ValueError(f"init: {err}; warm-start from a model of the same factors") from None
    return init


def warm_start_config(init: SRModel, S: int, T: int, config: SRConfig | None) -> SRConfig:
    """The configuration of a run warm-started from ``init``.

    Parameters
    ----------
    init
        The trained model whose weights the run starts from.
    S, T
        The factors asked for (must be ``init``'s).
    config
        ``None``: ``init.config`` with ``time_step=None`` (filled from the new data).
        Otherwise a configuration whose :data:`ARCHITECTURE_FIELDS` equal ``init``'s.

    Returns
    -------
    SRConfig
        With ``cap`` set to ``init``'s cap unless ``config`` sets one.

    Raises
    ------
    ValueError
        Other factors, another architecture, or ``init`` without a cap.
    """
    _check_init(init, S, T)
    base = init.config
    cfg = base.replace(time_step=None) if config is None else config
    diff = [f"{f}={getattr(cfg, f)!r} (init has {getattr(base, f)!r})"
            for f in ARCHITECTURE_FIELDS if getattr(cfg, f) != getattr(base, f)]
    if diff:
        raise ValueError("config differs from init in the architecture: " + ", ".join(diff)
                         + "; leave these fields as init.config has them (config=None keeps "
                         "all of init's settings)")
    if cfg.cap is None:
        cap = init.normalization.get("cap")
        if cap is None:
            raise ValueError("init has no normalization cap: it is not a trained model")
        cfg = cfg.replace(cap=float(cap))
    return cfg


def init_topography_range(init: SRModel) -> tuple[float, float] | None:
    """``init``'s altitude range (m) if it was trained with topography, else ``None``."""
    lo, hi = init.normalization.get("topo_min"), init.normalization.get("topo_max")
    return None if lo is None or hi is None else (float(lo), float(hi))


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over a model's parameters and buffers (names, dtypes, shapes and bytes).

    Identifies the weights a run started from (checkpoint fingerprint, metadata)
    independently of how the model was saved.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
