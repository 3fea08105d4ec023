"""The training protocol of the preprint (section 5; docs/training.md): :func:`train`.

Two stages, one after the other, each with the same protocol (their forward passes and
losses: :mod:`xsuperres.training.losses`):

1. ``mean``: the deterministic U-Net ``U_det``; loss = MSE between the mean ``D`` and the
   target in normalized units. Mass conservation (:func:`xsuperres.nn.mass.mass_conserve`
   with the config's mode, power and threshold) is applied to the output used in the
   *training* loss only from epoch ``mc_start_epoch + 1`` on (the preprint switches it on
   "after the 20th epoch"); before that the raw network output enters the loss (identity,
   no clamp, so that negative outputs still get gradients). The *validation* loss always
   uses the output as at inference (with MC if the config enables it, else clamped at 0),
   so validation losses are comparable across all epochs and the kept weights are the
   best ones for inference.
2. ``diffusion``: the residual diffusion U-Net ``U_dif`` on the residuals
   ``r0 = (target - D) / residual_scale`` of the frozen mean model, ``D`` computed with MC
   exactly as at inference. ``residual_scale`` is the root-mean-square residual of (up to
   256 evenly spaced) training samples, stored in ``model.normalization`` so that the
   diffusion works on unit-scale data (see :mod:`xsuperres.nn.diffusion`, "Data scale").
   With ``residual_power > 0`` the residual is divided by a scale that grows with ``D``
   (:func:`~xsuperres.model.normalization.residual_std`) and ``residual_scale`` is the
   RMS of the residual divided by its ``D``-dependent part.
   Loss = :func:`~xsuperres.nn.diffusion.v_loss` (``j ~ U{1..J}``, L2 on ``v``). The
   validation loss is the same v-loss with noise and steps from a generator re-seeded
   identically every epoch, so it is comparable across epochs. ``D`` of every training
   and validation sample is computed once at the start of the stage when the result
   fits in :data:`~xsuperres.training.losses.MEAN_CACHE_BYTES` (the mean network is
   frozen and deterministic), else for every batch.
   With ``diffusion_mean`` set to a temporal peer (``S = 1``, ``T > 1``), ``D`` is that
   peer's block (:func:`~xsuperres.training.data.time_means`), the mean that
   ``downscale(..., mean=...)`` samples around, instead of ``U_det``'s output.

Protocol of each stage: Adam (learning rate ``lr``), ``CosineAnnealingLR(T_max=epochs)``
stepped once per epoch (down to 0 at ``epochs``), early stopping after ``patience`` epochs
without a strictly lower validation loss, the best weights restored at the end.

Determinism: the model is initialised after ``torch.manual_seed(seed)``; batches are
shuffled by a DataLoader with its own seeded generator (``num_workers=0``); the diffusion
noise comes from another seeded generator. On CPU a run is reproducible for a seed, and a
resumed run continues the same random streams. bf16 autocast is used on CUDA only.

Checkpoints (``checkpoint_dir``): written after every epoch (see
:mod:`xsuperres.training.checkpoint`; safetensors + JSON, no pickle). Calling
:func:`train` again with the same ``checkpoint_dir`` (and the same data and settings)
resumes after the last completed epoch of the stage that was running. A stage is
continued (not restarted) when ``epochs`` is raised, unless it stopped early; once the
diffusion stage has started the mean stage is final. Raising ``epochs`` on resume
continues the cosine schedule on the curve of the new ``epochs``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..config import SRConfig
from ..model import SRModel, _jsonable, _resolve_device
from ..progress import progress_bar
from .checkpoint import (check_fingerprint, load_checkpoint, machine, optimizer_from_safe, rng_states,
                         save_checkpoint, set_rng_states)
from .augment import dihedral_batch
from .data import TrainingData, build_training_data, time_means
from .losses import diffusion_loss, loader, mean_loss, residual_scale, with_frozen_mean
from .options import DEFAULT, TrainOptions, combine
from .samples import GivenMeanDataset
from .warmstart import init_topography_range, resolve_init, warm_start_config, weights_digest

__all__ = ["train", "fit", "STAGES"]

log = logging.getLogger(__name__)

#: Training stages, in order.
STAGES: tuple[str, ...] = ("mean", "diffusion")

# Seeds of the independent random streams, offset from the user's seed.
_LOADER_SEED = {"mean": 1, "diffusion": 2}
_NOISE_SEED = 3
_VALID_SEED = 4
_AUGMENT_SEED = {"mean": 5, "diffusion": 6}


# ---------------------------------------------------------------------------------------
# run state
# ---------------------------------------------------------------------------------------
@dataclass
class _Run:
    model: SRModel
    td: TrainingData
    device: torch.device
    options: TrainOptions
    fingerprint: dict[str, Any]
    history: dict[str, Any] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    #: per event, the given diffusion mean (normalized), or None for U_det's
    given_means: list[np.ndarray] | None = None

    # the two options read most often
    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def seed(self) -> int:
        return self.options.seed


def _empty_history() -> dict[str, Any]:
    return {"train": [], "valid": [], "lr": [], "wall_s": [], "best_epoch": None,
            "best_valid": None, "early_stopped": False, "epochs_run": 0}


def _stage_data(run: _Run, ds):
    """``ds`` with the mean ``D`` of the diffusion stage on every item: the given temporal
    mean (``run.given_means``), else the frozen mean network's (:func:`with_frozen_mean`)."""
    if run.given_means is not None:
        return GivenMeanDataset(ds, run.given_means)
    return with_frozen_mean(run.model, ds, run.batch_size, run.device)


def _validate(run: _Run, stage: str) -> float:
    model, device = run.model, run.device
    total, count = 0.0, 0
    g = torch.Generator(device="cpu").manual_seed(run.seed * 1000 + _VALID_SEED)
    model.eval()
    with torch.no_grad():
        for batch in loader(run.datasets.get("valid", run.td.valid), run.batch_size, False, None):
            if stage == "mean":
                loss = mean_loss(model, batch, device, mc=True)
            else:
                loss = diffusion_loss(model, batch, device, g)
            n = batch["target"].shape[0]
            total += float(loss.detach()) * n
            count += n
    return total / max(count, 1)


def _run_stage(run: _Run, stage: str, resume: dict[str, Any] | None) -> None:
    """Train one stage (see the module notes); restores the best weights at the end."""
    model, device, opts = run.model, run.device, run.options
    net = model.mean_net if stage == "mean" else model.diffusion_net
    for p in model.parameters():
        p.requires_grad_(False)
    for p in net.parameters():
        p.requires_grad_(True)
    # fused: one kernel for all parameters (a few ms per step on a CPU for the tiny
    # U-Nets); the same update to float rounding
    opt = torch.optim.Adam(net.parameters(), lr=opts.lr, fused=device.type in ("cpu", "cuda"))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.epochs)
    gens = {"loader": torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + _LOADER_SEED[stage]),
            "noise": torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + _NOISE_SEED)}
    if opts.augment:
        gens["augment"] = torch.Generator(device="cpu").manual_seed(opts.seed * 1000 + _AUGMENT_SEED[stage])
    hist = run.history.setdefault(stage, _empty_history())
    best_state = copy.deepcopy(net.state_dict())
    bad = 0
    start = 0
    if resume is not None:
        state = resume["state"]
        optimizer_from_safe(opt, resume["optimizer"], state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if sched.T_max != opts.epochs:
            # continue on the cosine curve of the new number of epochs
            sched.T_max = opts.epochs
            n = sched.last_epoch
            for g, base in zip(opt.param_groups, sched.base_lrs):
                g["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * n / opts.epochs)) / 2
            sched._last_lr = [g["lr"] for g in opt.param_groups]
        best_state = {k: v.to(device) for k, v in resume["best"].items()}
        bad = int(state["bad_epochs"])
        start = int(state["epoch"])
        set_rng_states(resume["rng"], gens, device)
    todo = 0 if hist["early_stopped"] else max(0, opts.epochs - start)
    run.datasets = {}
    if stage == "diffusion" and todo:
        run.datasets = {"train": _stage_data(run, run.td.train), "valid": _stage_data(run, run.td.valid)}
    train_loader = loader(run.datasets.get("train", run.td.train), opts.batch_size, True, gens["loader"])
    bar = None
    if opts.progress and todo:
        bar = progress_bar(todo * len(train_loader), f"train {stage}", "batch")
    t_stage = time.perf_counter()
    try:
        for epoch in range(start, start + todo):
            t0 = time.perf_counter()
            mc = epoch >= opts.mc_start_epoch
            model.eval()
            net.train()
            total, count = 0.0, 0
            for batch in train_loader:
                if opts.augment:
                    batch = dihedral_batch(batch, gens["augment"])
                opt.zero_grad(set_to_none=True)
                if stage == "mean":
                    loss = mean_loss(model, batch, device, mc)
                else:
                    loss = diffusion_loss(model, batch, device, gens["noise"])
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the {stage} training loss is {float(loss)} at epoch {epoch + 1}; "
                        "lower the learning rate or check the data"
                    )
                loss.backward()
                opt.step()
                n = batch["target"].shape[0]
                total += float(loss.detach()) * n
                count += n
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, train=f"{total / count:.4g}",
                                    valid=f"{hist['valid'][-1]:.4g}" if hist["valid"] else "-")
            train_loss = total / max(count, 1)
            valid_loss = _validate(run, stage)
            lr_used = opt.param_groups[0]["lr"]
            sched.step()
            improved = hist["best_valid"] is None or valid_loss < hist["best_valid"]
            if improved:
                hist["best_valid"], hist["best_epoch"] = valid_loss, epoch + 1
                best_state = copy.deepcopy(net.state_dict())
                bad = 0
            else:
                bad += 1
            hist["train"].append(train_loss)
            hist["valid"].append(valid_loss)
            hist["lr"].append(lr_used)
            hist["wall_s"].append(time.perf_counter() - t0)
            hist["epochs_run"] = epoch + 1
            if stage == "mean":
                hist.setdefault("mc", []).append(mc)
            log.info("%s epoch %d/%d: train %.5g, valid %.5g%s (%.1f s)", stage, epoch + 1, opts.epochs,
                     train_loss, valid_loss, " *" if improved else "", hist["wall_s"][-1])
            if bad >= opts.patience:
                hist["early_stopped"] = True
                log.info("%s: early stopping after epoch %d (%d epochs without improvement; best "
                         "epoch %d)", stage, epoch + 1, bad, hist["best_epoch"])
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, train=f"{train_loss:.4g}", valid=f"{valid_loss:.4g}")
            if opts.checkpoint_dir is not None:
                save_checkpoint(
                    opts.checkpoint_dir,
                    state={"stage": stage, "epoch": epoch + 1, "bad_epochs": bad,
                           "history": run.history, "fingerprint": run.fingerprint,
                           "normalization": model.normalization},
                    model_state=model.state_dict(), best_state=best_state, optimizer=opt,
                    scheduler=sched, rng=rng_states(gens, device))
            if hist["early_stopped"]:
                break
    finally:
        if bar is not None:
            bar.close()
    run.datasets = {}
    run.wall[stage] = run.wall.get(stage, 0.0) + time.perf_counter() - t_stage
    net.load_state_dict(best_state)
    for p in net.parameters():
        p.requires_grad_(False)


# ---------------------------------------------------------------------------------------
def fit(
    hr: xr.DataArray | Sequence[xr.DataArray] | None,
    S: int,
    T: int,
    *,
    options: TrainOptions | None = None,
    topography: Any = None,
    config: SRConfig | None = None,
    dims: dict[str, Hashable] | None = None,
    first_block: int | None = None,
    mean_from: SRModel | None = None,
    training_data: TrainingData | None = None,
    init: SRModel | str | None = None,
    **overrides: Any,
) -> SRModel:
    """:func:`train` with the extra options used by :mod:`xsuperres.tune`.

    Parameters
    ----------
    first_block
        Earliest target block of every event (so that runs with different ``L`` share
        one sample set).
    mean_from
        A trained model whose ``mean_net`` (and normalization) is copied; the mean stage
        is then skipped (its history is copied too).
    training_data
        Prepared data (:func:`~xsuperres.training.data.build_training_data`) to reuse;
        ``hr``, ``topography``, ``config``, ``fold``, ``n_folds``, ``valid`` and
        ``first_block`` are then ignored.

    options, **overrides
        The training options (:class:`~xsuperres.training.options.TrainOptions`) and
        keyword overrides of its fields (``epochs=...``, ``stage=...``), combined as in
        :func:`train`; a keyword that is not a field is a ``TypeError``.

    Other parameters and the return value are those of :func:`train`.
    """
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise TypeError(f"fit() got unexpected keyword argument(s) {unknown}; the training "
                        "options are the fields of TrainOptions")
    opts = combine(options, overrides)
    t_start = time.perf_counter()
    dev = _resolve_device(opts.device)
    td = training_data
    if init is not None:
        init = resolve_init(init)
        if mean_from is not None:
            raise ValueError("give init (warm start of both networks) or mean_from, not both")
        config = warm_start_config(init, S, T, config)
        if not opts.residual_power and init.normalization.get("residual_power"):
            # its diffusion network models residuals scaled by the mean: keep that scaling
            opts = dataclasses.replace(opts, residual_power=float(init.normalization["residual_power"]),
                                       residual_floor=float(init.normalization["residual_floor"]))
            log.info("residual scale by the mean as in init: power %g, floor %g", opts.residual_power,
                     opts.residual_floor)
    if td is None:
        td = build_training_data(hr, S, T, topography=topography, config=config, fold=opts.fold,
                                 n_folds=opts.n_folds, valid=opts.valid, first_block=first_block,
                                 seed=opts.seed, dims=dims, valid_events=opts.valid_events,
                                 topography_range=None if init is None else init_topography_range(init))
    cfg = td.config
    norm = td.normalization
    if init is not None and training_data is not None and cfg.cap != init.normalization.get("cap"):
        raise ValueError(f"training_data was prepared with cap {cfg.cap} mm/h but init was trained with "
                         f"{init.normalization.get('cap')}: prepare it with config="
                         "warm_start_config(init, S, T, None)")
    if mean_from is not None:
        if mean_from.config.replace(beta_max=cfg.beta_max) != cfg.replace(beta_max=cfg.beta_max):
            raise ValueError("mean_from was trained with another configuration (only beta_max may differ)")
    torch.manual_seed(opts.seed)
    model = SRModel(cfg, normalization=norm).to(dev)
    fingerprint = {"config": cfg.to_dict(), "normalization": norm, "n_train": len(td.train),
                   "n_valid": len(td.valid), "batch_size": opts.batch_size, "lr": opts.lr,
                   "seed": opts.seed}
    if opts.augment:  # only when set, so that earlier checkpoints still resume
        fingerprint["augment"] = "dihedral"
    if opts.diffusion_mean != "network":  # likewise
        fingerprint["diffusion_mean"] = opts.diffusion_mean
    if opts.residual_power:  # likewise
        fingerprint["residual_power"] = [opts.residual_power, opts.residual_floor]
    init_digest = None
    if init is not None:
        init_digest = weights_digest(init)
        fingerprint["init"] = init_digest
        model.load_state_dict({k: v.to(dev) for k, v in init.state_dict().items()})
        log.info("warm start from a model with weights %s", init_digest[:12])
    run = _Run(model, td, dev, opts, fingerprint)
    if opts.diffusion_mean != "network" and opts.stage == "both":
        if not (cfg.S == 1 and cfg.T > 1):
            raise ValueError(f"diffusion_mean={opts.diffusion_mean!r} needs a temporal model (S = 1, T > 1), "
                             f"got S={cfg.S}, T={cfg.T}; use diffusion_mean='network'")
        run.given_means = time_means(td, opts.diffusion_mean)

    checkpoint_dir = opts.checkpoint_dir
    resume = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    resumed_from = None
    if resume is not None:
        st = resume["state"]
        check_fingerprint(st["fingerprint"], _jsonable(fingerprint), str(checkpoint_dir))
        model.load_state_dict({k: v.to(dev) for k, v in resume["model"].items()})
        model.normalization.update(st["normalization"])
        run.history = st["history"]
        resumed_from = {"stage": st["stage"], "epoch": st["epoch"]}
        log.info("resuming from %s: stage %s, %d epoch(s) done", checkpoint_dir, st["stage"], st["epoch"])

    # ---- stage 1: the mean
    if mean_from is not None:
        model.mean_net.load_state_dict(mean_from.mean_net.state_dict())
        run.history["mean"] = copy.deepcopy((mean_from.history or {}).get("mean", _empty_history()))
    elif resume is None or resume["state"]["stage"] == "mean":
        _run_stage(run, "mean", resume)
    # ---- stage 2: the residual diffusion
    if opts.stage == "both":
        for p in model.mean_net.parameters():
            p.requires_grad_(False)
        diff_resume = resume if resume is not None and resume["state"]["stage"] == "diffusion" else None
        if opts.residual_power:
            model.normalization.update(residual_power=opts.residual_power, residual_floor=opts.residual_floor)
        if diff_resume is None:
            # a given mean rides on the items; U_det's is computed on the 256 samples only
            scale_ds = run.td.train if run.given_means is None else _stage_data(run, run.td.train)
            model.normalization["residual_scale"] = residual_scale(model, scale_ds, run.batch_size, run.device)
            log.info("residual scale %.4g (normalized units)", model.normalization["residual_scale"])
        _run_stage(run, "diffusion", diff_resume)

    model.eval()
    wall = time.perf_counter() - t_start
    split = td.split
    model.metadata = _jsonable({
        "history": run.history,
        "time_step": cfg.time_step,
        "grid_spacing_m": None if td.data.spacing is None or td.data.spacing_units != "m"
        else list(td.data.spacing),
        "data": td.describe(),
        "n_samples": {"train": len(td.train), "valid": len(td.valid)},
        "n_nan_skipped": {"train": split.n_nan_train, "valid": split.n_nan_valid},
        "epochs_run": {s: run.history.get(s, {}).get("epochs_run", 0) for s in STAGES},
        "wall_time_s": {"total": wall, **{f"{s}_stage": v for s, v in run.wall.items()}},
        "protocol": {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr,
                     "patience": opts.patience, "mc_start_epoch": opts.mc_start_epoch,
                     "fold": opts.fold, "n_folds": opts.n_folds,
                     "valid_events": None if opts.valid_events is None else list(opts.valid_events),
                     "seed": opts.seed,
                     "stage": opts.stage, "augment": "dihedral" if opts.augment else None,
                     "diffusion_mean": opts.diffusion_mean,
                     "optimizer": "Adam", "schedule": "CosineAnnealingLR(T_max=epochs)",
                     "amp": "bf16 autocast" if dev.type == "cuda" else None,
                     "residual_scale": model.normalization.get("residual_scale"),
                     "residual_power": opts.residual_power,
                     "residual_floor": opts.residual_floor if opts.residual_power else None,
                     "resumed_from": resumed_from, "mean_from_model": mean_from is not None,
                     "init": None if init is None else {
                         "weights_sha256": init_digest, "config": init.config.to_dict(),
                         "trained_on": [e.get("name") for e in
                                        (init.metadata or {}).get("data", {}).get("events", [])]}},
        "machine": machine(dev),
        "torch_version": torch.__version__,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return model


def train(
    hr: xr.DataArray | Sequence[xr.DataArray],
    S: int,
    T: int,
    *,
    topography: Any = None,
    config: SRConfig | None = None,
    epochs: int = DEFAULT.epochs,
    batch_size: int = DEFAULT.batch_size,
    lr: float = DEFAULT.lr,
    patience: int = DEFAULT.patience,
    mc_start_epoch: int = DEFAULT.mc_start_epoch,
    fold: int = DEFAULT.fold,
    n_folds: int = DEFAULT.n_folds,
    valid: slice | None = DEFAULT.valid,
    valid_events: Sequence[int | str] | None = DEFAULT.valid_events,
    seed: int = DEFAULT.seed,
    device: str | torch.device = DEFAULT.device,
    progress: bool = DEFAULT.progress,
    checkpoint_dir: str | None = DEFAULT.checkpoint_dir,
    stage: str = DEFAULT.stage,
    augment: bool = DEFAULT.augment,
    diffusion_mean: str = DEFAULT.diffusion_mean,
    residual_power: float = DEFAULT.residual_power,
    residual_floor: float = DEFAULT.residual_floor,
    dims: dict[str, Hashable] | None = None,
    options: TrainOptions | None = None,
    init: SRModel | str | None = None,
) -> SRModel:
    """Train an :class:`~xsuperres.model.SRModel` for the factors ``(S, T)``.

    Parameters
    ----------
    hr
        High-resolution precipitation, a DataArray ``(time, y, x)`` with a precipitation
        ``units`` attribute (converted to mm/h; data without units or with negative values
        are refused), or a list of DataArrays: separate events or files with the same
        cadence and grid spacing (samples never cross events). NaN marks missing data;
        samples touching NaN are skipped. The LR inputs are made from ``hr`` with the
        perfect-model coarsening :func:`xsuperres.coarsen_perfect`.
    S, T
        Spatial and temporal factors.
    topography
        Surface altitude (m) on the HR grid: ``None`` (zeros), a 2-D DataArray/array for
        all events, or a list with one per event.
    config
        Hyperparameters; default ``SRConfig.recipe(S, T)``. ``time_step`` is filled from
        the data's cadence and ``cap`` fitted on the training tiles when they are ``None``
        (see :mod:`xsuperres.training.data`). ``tile_size`` is the requested tile side;
        small domains get smaller tiles (:mod:`xsuperres.training.tiles`).
    epochs
        Maximum epochs per stage (80 in the preprint).
    batch_size
        Samples per batch (12 in the preprint).
    lr
        Adam learning rate (1e-4), annealed to 0 over ``epochs`` with a cosine.
    patience
        Early stopping after this many epochs without validation improvement (8).
    mc_start_epoch
        Mass conservation enters the training loss of the mean from epoch
        ``mc_start_epoch + 1`` on (20: "after the 20th epoch").
    fold, n_folds
        Validation fold of the Latin-square tile folds (:mod:`xsuperres.training.tiles`).
    valid
        Optional held-out period ``slice(t0, t1)`` (:mod:`xsuperres.training.split`).
    valid_events
        Events held out whole for validation, by index or name (e.g. leave-one-event-out:
        one event per run, the others train); replaces the tile folds; not combined with
        ``valid`` (:mod:`xsuperres.training.split`).
    seed
        Seed of the weights' initialisation, the shuffling and the diffusion noise.
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, or a ``torch.device``.
    progress
        Show a tqdm progress bar with the running losses.
    checkpoint_dir
        Folder for per-epoch checkpoints; an existing checkpoint there is resumed.
    stage
        ``"both"`` (default) or ``"mean"`` (train the deterministic mean only, e.g. for
        tuning ``L``; the diffusion network stays untrained).
    augment
        Turn every training sample of every epoch by a random one of the 8 rotations and
        reflections (:mod:`xsuperres.training.augment`); validation samples are not
        turned.
    diffusion_mean
        ``"network"`` (default): the diffusion stage learns the residual around ``U_det``'s
        mean, as in the preprint. For temporal models (``S = 1``, ``T > 1``) also
        ``"motion"``, ``"linear"`` or ``"persistence"``: around that temporal peer, the
        mean ``downscale(..., mean=...)`` gives it at inference (see
        :class:`~xsuperres.training.options.TrainOptions`).
    residual_power, residual_floor
        The residual of the diffusion stage divided by
        ``residual_scale * (D + residual_floor) ** residual_power`` (``D`` and the floor in
        normalized units): ``0`` (default) one global scale; ``1`` a scale that grows
        with the mean (:func:`~xsuperres.model.normalization.residual_std`).
    dims
        Explicit dimension names (:func:`xsuperres.find_dims`).
    options
        The training options as one :class:`~xsuperres.training.options.TrainOptions`
        (the fields are the keywords ``epochs`` .. ``stage`` above, with the same
        defaults and rules). The keywords given explicitly override its fields:
        ``train(hr, S, T, options=opts, lr=1e-3)`` is
        ``train(hr, S, T, options=dataclasses.replace(opts, lr=1e-3))``; keywords left
        out never do. ``None``: ``TrainOptions()``.
    init
        Warm start (fine-tuning): both networks start from the weights of this trained
        model (an :class:`~xsuperres.model.SRModel`, a saved-model folder or a
        pretrained model's name such as ``"radar-s10-t3"``) instead of a random
        initialisation, with its architecture, cap and topography scaling; ``config``
        defaults to ``init.config`` (the cadence taken from the data). An ``init`` trained
        with a residual scale that grows with the mean keeps its ``residual_power`` and
        ``residual_floor`` unless a non-zero ``residual_power`` is given. See
        :mod:`xsuperres.training.warmstart`.

    Returns
    -------
    SRModel
        In eval mode, on the training device, with ``normalization`` (cap in mm/h,
        topography range in m, residual scale), and ``metadata`` holding the loss
        ``history`` (also :attr:`SRModel.history`: per stage the per-epoch ``train`` and
        ``valid`` losses, learning rates and wall times, ``best_epoch``, ``best_valid``,
        ``early_stopped``, ``epochs_run``), the data description (grid spacing, cadence,
        source attributes, periods, tiles and folds, cap fit), sample counts (train,
        valid, NaN-skipped), wall times and the machine.

    Raises
    ------
    ValueError
        Missing/invalid units, negative values, inconsistent events, a grid too small for
        the tiling, no training or validation samples, bad settings (the messages of
        :class:`~xsuperres.training.options.TrainOptions`), or a checkpoint of a
        different run in ``checkpoint_dir``.
    TypeError
        ``options`` is not a :class:`~xsuperres.training.options.TrainOptions`, or
        ``init`` is not a model, folder or name.

    Examples
    --------
    >>> import xsuperres as xs  # doctest: +SKIP
    >>> da = xs.open_sample("knmi").precip  # doctest: +SKIP
    >>> model = xs.train(da, S=4, T=2, epochs=2, config=xs.SRConfig.recipe(4, 2, tile_size=40))  # doctest: +SKIP
    >>> model.history["mean"]["valid"]  # doctest: +SKIP
    >>> opts = xs.training.TrainOptions(epochs=2, batch_size=8)  # doctest: +SKIP
    >>> model = xs.train(da, S=4, T=2, options=opts, seed=1)  # doctest: +SKIP
    """
    return fit(hr, S, T, topography=topography, config=config, dims=dims, init=init,
               options=combine(options, locals()))
