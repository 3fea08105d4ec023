"""From the user's DataArrays to normalized training and validation datasets.

:func:`build_training_data` chains the steps of the training data pipeline:

1. :func:`~xsuperres.training.inputs.prepare_events`: units (mm/h), checks, cadence,
   grid spacing;
2. :func:`~xsuperres.training.split.split_samples`: tiles, Latin-square folds, optional
   held-out period, sample records (NaN samples skipped);
3. the cap: the config's ``cap`` if set, else :func:`~xsuperres.training.normalization.fit_cap`
   on the HR values of the training samples' target blocks (training tiles, outside any
   held-out period);
4. normalization of every event: ``clip(hr, 0, cap) / cap`` (the data set is *capped*
   before anything else, as in the preprint), then the LR frames are the perfect-model
   coarsening (:func:`xsuperres.coarsen_perfect`) of the capped, normalized HR frames:
   target and context are thus exactly consistent (``coarsen(target) == context[-1]``),
   which is what mass conservation assumes. At inference the model clips LR inputs at
   the cap the same way. With ``config.clip = False`` nothing is clipped
   (``max(hr, 0) / cap``): the cap is only a scale.
5. topography: min-max scaled with the range over the training tiles (all events);
   without topography the input is zeros (and the model's ``topo_min``/``topo_max`` stay
   unset, so that :meth:`~xsuperres.model.SRModel.predict` uses zeros too).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..config import SRConfig
from ..model import normalize_topography
from .inputs import PreparedData, prepare_events
from .normalization import CapFit, fit_cap
from .normalization import topography_range as fit_topography_range
from .samples import SampleDataset, coarsen_numpy
from .split import Split, split_samples

__all__ = ["TrainingData", "build_training_data", "fill_config", "time_means"]

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Everything the training loop needs from the data.

    Attributes
    ----------
    config
        The configuration with ``time_step``, ``cap`` and ``tile_size`` filled in.
    data
        The prepared events (mm/h).
    split
        Tiles, folds and sample records.
    cap_fit
        How the cap was obtained (``None`` if the config fixed it).
    topo_range
        ``(topo_min, topo_max)`` in m, or ``None`` without topography.
    train, valid
        The datasets (normalized tensors).
    clipped_fraction
        Fraction of the valid training-target values above the cap (clipped).
    topography_fitted
        ``topo_range`` was fitted on the training tiles (``False``: given by the caller).
    """

    config: SRConfig
    data: PreparedData
    split: Split
    cap_fit: CapFit | None
    topo_range: tuple[float, float] | None
    train: SampleDataset
    valid: SampleDataset
    clipped_fraction: float
    topography_fitted: bool = True

    @property
    def normalization(self) -> dict[str, Any]:
        """``{"cap": mm/h, "topo_min": m, "topo_max": m}`` for :class:`~xsuperres.model.SRModel`."""
        lo, hi = self.topo_range if self.topo_range is not None else (None, None)
        return {"cap": float(self.config.cap), "topo_min": lo, "topo_max": hi}

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description of the data for the model's metadata."""
        d = self.data
        return {
            "variable": d.variable,
            "time_step": d.time_step,
            "grid_spacing": None if d.spacing is None else {"y": d.spacing[0], "x": d.spacing[1],
                                                            "units": d.spacing_units},
            "events": [
                {"name": e.name, "shape": list(e.hr.shape), "period": e.period,
                 "source": e.attrs, "topography": e.topography is not None}
                for e in d.events
            ],
            "split": self.split.describe(),
            "cap": {"value_mm_h": float(self.config.cap),
                    "fit": None if self.cap_fit is None else self.cap_fit.to_dict(),
                    "source": "config" if self.cap_fit is None else "fitted on the training tiles",
                    "clipped_fraction": self.clipped_fraction},
            "topography": ("none: the topography input is zeros" if self.topo_range is None
                           else {"min_m": self.topo_range[0], "max_m": self.topo_range[1],
                                 "scaling": "min-max over the training tiles" if self.topography_fitted
                                 else "min-max over a given range (warm start)"}),
        }


def fill_config(config: SRConfig | None, S: int, T: int, data: PreparedData) -> SRConfig:
    """The configuration to train: ``SRConfig.recipe(S, T)`` by default, ``time_step`` filled.

    Parameters
    ----------
    config
        A configuration or ``None``.
    S, T
        The factors asked for; must match ``config``.
    data
        Prepared events (for the cadence).

    Returns
    -------
    SRConfig
    """
    cfg = SRConfig.recipe(S, T) if config is None else config
    if (cfg.S, cfg.T) != (int(S), int(T)):
        raise ValueError(f"config is for S={cfg.S}, T={cfg.T} but train() was called with S={S}, T={T}")
    if data.time_step is not None:
        if cfg.time_step is None:
            cfg = cfg.replace(time_step=data.time_step)
        elif cfg.time_step != data.time_step:
            log.warning("config.time_step=%r but the data's cadence is %r", cfg.time_step, data.time_step)
    return cfg


def _training_values(data: PreparedData, split: Split, T: int) -> np.ndarray:
    """HR values (mm/h) of the training tiles in the blocks training samples may use."""
    parts = []
    for ev, tiles, tr, blocks in zip(data.events, split.tiles, split.train_tiles, split.train_blocks):
        nb = blocks.size
        frames = np.repeat(blocks, T)
        hr = ev.hr[: nb * T][frames]
        for k in tr:
            parts.append(hr[:, tiles[k].yslice, tiles[k].xslice].ravel())
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def build_training_data(
    hr: xr.DataArray | Sequence[xr.DataArray],
    S: int,
    T: int,
    *,
    topography: Any = None,
    config: SRConfig | None = None,
    fold: int = 0,
    n_folds: int = 4,
    valid: slice | None = None,
    first_block: int | None = None,
    seed: int = 0,
    valid_events: Sequence[int | str] | None = None,
    dims: dict[str, Hashable] | None = None,
    topography_range: tuple[float, float] | None = None,
) -> TrainingData:
    """Prepare, split and normalize the training data (see the module notes).

    Parameters
    ----------
    hr, topography, config, fold, n_folds, valid, seed, valid_events
        As in :func:`xsuperres.train`.
    S, T
        Spatial and temporal factors.
    first_block
        Earliest target block (LR index) of every event (see
        :func:`~xsuperres.training.split.split_samples`).
    dims
        Explicit dimension names (:func:`xsuperres.find_dims`).
    topography_range
        ``(min, max)`` altitude (m) of the topography scaling instead of the training
        tiles' range (a warm start keeps its model's scaling,
        :mod:`~xsuperres.training.warmstart`).

    Returns
    -------
    TrainingData
    """
    data = prepare_events(hr, topography, dims=dims)
    cfg = fill_config(config, S, T, data)
    split = split_samples(data, cfg.S, cfg.T, cfg.L, tile_size=cfg.tile_size, fold=fold,
                          n_folds=n_folds, valid=valid, first_block=first_block,
                          valid_events=valid_events, lookahead=cfg.lookahead)
    if split.tile_size != cfg.tile_size:
        cfg = cfg.replace(tile_size=split.tile_size)

    values = _training_values(data, split, cfg.T)
    cap_fit = None
    if cfg.cap is None:
        cap_fit = fit_cap(values, seed=seed)
        cfg = cfg.replace(cap=cap_fit.cap)
    cap = float(cfg.cap)
    finite = values[np.isfinite(values)]
    clipped = float((finite > cap).mean()) if finite.size else 0.0
    log.info("precipitation cap %.4g mm/h (%s); %.3g%% of the training values are %s",
             cap, "config" if cap_fit is None else "gamma fit", 100 * clipped,
             "clipped" if cfg.clip else "above it (not clipped: clip=False)")

    with_topo = [e.topography is not None for e in data.events]
    topo_range = None
    if any(with_topo):
        if not all(with_topo):
            log.warning("topography given for some events only: the others use zeros")
        fields = []
        for ev, tiles, tr, va in zip(data.events, split.tiles, split.train_tiles, split.valid_tiles):
            if ev.topography is None:
                continue
            for k in tr + va:
                t = ev.topography[tiles[k].yslice, tiles[k].xslice]
                if not np.isfinite(t).all():
                    raise ValueError(
                        f"topography of {ev.name} has NaN in tile (row {tiles[k].row}, col "
                        f"{tiles[k].col}); crop the data to where topography is defined or fill it"
                    )
            fields += [ev.topography[tiles[k].yslice, tiles[k].xslice] for k in tr]
        topo_range = fit_topography_range(fields) if topography_range is None else topography_range

    hr_n, lr_n, topo_n = [], [], []
    for ev, tiles in zip(data.events, split.tiles):
        nb = ev.hr.shape[0] // cfg.T
        ny = (tiles[-1].row + 1) * split.tile_size
        nx = (tiles[-1].col + 1) * split.tile_size
        x = np.clip(ev.hr[: nb * cfg.T, :ny, :nx], 0.0, cap if cfg.clip else None) / np.float32(cap)
        x = x.astype(np.float32)
        hr_n.append(x)
        lr_n.append(coarsen_numpy(x, cfg.S, cfg.T).astype(np.float32))
        if ev.topography is None or topo_range is None:
            topo_n.append(np.zeros((ny, nx), np.float32))
        else:
            topo_n.append(np.asarray(normalize_topography(ev.topography[:ny, :nx], *topo_range),
                                     dtype=np.float32))
    tiles = split.tiles
    train = SampleDataset(hr_n, lr_n, topo_n, tiles, split.train_records, cfg.S, cfg.T, cfg.L,
                          cfg.lookahead)
    valid_ds = SampleDataset(hr_n, lr_n, topo_n, tiles, split.valid_records, cfg.S, cfg.T, cfg.L,
                             cfg.lookahead)
    return TrainingData(cfg, data, split, cap_fit, topo_range, train, valid_ds, clipped,
                        topography_fitted=topography_range is None)


def time_means(td: TrainingData, method: str) -> list[np.ndarray]:
    """Per event, a temporal peer as the conditional mean of every block (normalized units).

    The diffusion stage of a temporal model (``S = 1``, ``T > 1``) trained with
    ``diffusion_mean=method`` learns the residual around this mean instead of ``U_det``'s
    (:class:`~xsuperres.training.options.TrainOptions`).

    Parameters
    ----------
    td
        The training data (``td.config.S`` must be 1).
    method
        A time method of :mod:`xsuperres.temporal` (``"motion"``, ``"linear"``,
        ``"persistence"``).

    Returns
    -------
    list of numpy.ndarray
        Per event ``(n_blocks T, y, x)`` float32: :func:`xsuperres.temporal.upsample_in_time`
        of the event's whole normalized LR sequence (the training contexts' frames) times
        the cap, divided by the cap again. Block ``t`` is what
        :func:`~xsuperres.temporal.block_in_time` gives on ``x[t-1], x[t], x[t+1]``, the
        mean of ``downscale(..., mean=method)``: the same flow (on the whole domain, NaN as
        0), the same per-pixel block conservation (each block averages to the context's
        last frame). The first and last blocks of an event hold their open side flat.
        NaN where the LR frame is NaN (such samples are skipped anyway).
    """
    from ..temporal import upsample_in_time

    cfg = td.config
    if cfg.S != 1:
        raise ValueError(f"a temporal peer as the diffusion mean needs S = 1 (the LR grid is the HR "
                         f"grid), got S={cfg.S}")
    cap = float(cfg.cap)
    lrs = td.train.lr
    out = []
    for ev, lr in zip(td.data.events, lrs):
        log.info("%s: %s mean of %d blocks (whole domain)", ev.name, method, lr.shape[0])
        out.append((upsample_in_time(lr.astype(np.float64) * cap, cfg.T, method) / cap).astype(np.float32))
    return out
