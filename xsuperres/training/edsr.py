"""Training the EDSR baseline (the preprint's deep deterministic peer) on the same data.

:func:`train_edsr` trains :class:`~xsuperres.nn.baselines.EDSR` exactly as the mean stage
of :func:`~xsuperres.training.train` trains ``U_det``: the same samples, normalization,
loss (MSE in normalized units), mass conservation from ``mc_start_epoch`` on, Adam with
cosine annealing, early stopping and best weights, the same loop. The result is an
:class:`~xsuperres.model.SRModel` whose ``mean_net`` is the EDSR, so that
:meth:`~xsuperres.model.SRModel.predict_mean` (capping, normalization, mass conservation,
batching) serves it like the U-Net; it is a deterministic baseline for evaluation tables:
its diffusion network is untrained and it cannot be saved and loaded as an ``SRModel``
(the configuration does not describe an EDSR).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import xarray as xr

from ..model import SRModel, _jsonable, _resolve_device
from ..nn.baselines import EDSR
from .data import TrainingData, build_training_data
from .loop import _Run, _run_stage
from .options import TrainOptions, combine

__all__ = ["train_edsr"]


def train_edsr(
    hr: xr.DataArray | Sequence[xr.DataArray] | None,
    S: int,
    T: int,
    *,
    training_data: TrainingData | None = None,
    topography: Any = None,
    config: Any = None,
    n_resblocks: int = 8,
    n_feats: int = 32,
    options: TrainOptions | None = None,
    **overrides: Any,
) -> SRModel:
    """Train the EDSR baseline like the mean stage of :func:`~xsuperres.training.train`.

    Parameters
    ----------
    hr, S, T, topography, config
        As in :func:`~xsuperres.training.train` (``config`` gives ``L``, the tiles, the
        cap and the mass-conservation settings).
    training_data
        Prepared data (:func:`~xsuperres.training.data.build_training_data`) to reuse, e.g.
        the one the compared model was trained on; ``hr``, ``topography`` and ``config``
        are then ignored.
    n_resblocks, n_feats
        Depth and width of the EDSR (:class:`~xsuperres.nn.baselines.EDSR`).
    options, **overrides
        The training options and keyword overrides of their fields, as in
        :func:`~xsuperres.training.loop.fit` (``checkpoint_dir`` is not supported).

    Returns
    -------
    SRModel
        In eval mode; ``mean_net`` is the trained EDSR (``predict_mean`` works),
        ``metadata["baseline"] == "EDSR"`` with the loss history.
    """
    opts = combine(options, overrides)
    if opts.checkpoint_dir is not None:
        raise ValueError("train_edsr does not write checkpoints: leave checkpoint_dir=None")
    dev = _resolve_device(opts.device)
    td = training_data
    if td is None:
        td = build_training_data(hr, S, T, topography=topography, config=config, fold=opts.fold,
                                 n_folds=opts.n_folds, valid=opts.valid, seed=opts.seed,
                                 valid_events=opts.valid_events)
    cfg = td.config
    torch.manual_seed(opts.seed)
    model = SRModel(cfg, normalization=td.normalization)
    model.mean_net = EDSR(cfg.n_context, cfg.T, n_resblocks=n_resblocks, n_feats=n_feats, topography=True)
    model.to(dev)
    run = _Run(model, td, dev, opts, fingerprint={"baseline": "EDSR"})
    t0 = time.perf_counter()
    _run_stage(run, "mean", None)
    model.eval()
    model.metadata = _jsonable({
        "baseline": "EDSR",
        "edsr": {"n_resblocks": n_resblocks, "n_feats": n_feats,
                 "parameters": sum(p.numel() for p in model.mean_net.parameters())},
        "history": {"mean": run.history["mean"]},
        "n_samples": {"train": len(td.train), "valid": len(td.valid)},
        "wall_time_s": time.perf_counter() - t0,
        "protocol": {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr,
                     "patience": opts.patience, "mc_start_epoch": opts.mc_start_epoch,
                     "seed": opts.seed, "augment": "dihedral" if opts.augment else None},
    })
    return model
