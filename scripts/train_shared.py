#!/usr/bin/env python
"""Train a tiny-preset (S, T) = (10, 3) model on the shared radar files and evaluate it.

What it does
------------
1. Opens the 5-min radar files of ``--data-dir`` (default ``../shared/data``; KNMI, two
   MeteoSwiss days and FMI), crops each to the same ``--crop`` box (default rows/cols
   120:280, a 160 x 160 km box well inside every radar's coverage; ``--crop all``: the
   full grids) and passes them to the trainer as a *list of events* (samples never cross
   files).
2. Tiles every event into ``--tile-size`` HR tiles (default 40: a 4 x 4 grid, the
   preprint's layout scaled down) and holds out the Latin-square fold ``--fold`` of 4
   (one tile per row and per column of every event) for validation; or, with
   ``--valid-event NAME``, the whole event ``NAME`` (leave-one-event-out: the held-out
   scores are then on a day the model never saw). ``--augment`` turns every training
   sample by a random one of the 8 rotations/reflections.
3. Trains the deterministic mean for ``--mean-epochs`` epochs, then the residual
   diffusion on the frozen mean for ``--diffusion-epochs`` epochs (the preprint's
   protocol: Adam, cosine annealing to 0, early stopping, best weights kept; mass
   conservation enters the training loss after ``--mc-start-epoch`` epochs). The two
   stages get different epoch counts because on a CPU the mean network (which sees all
   ``L`` context frames at full resolution) costs ~10x more per sample than the diffusion
   network. Per-epoch checkpoints go to ``OUT/checkpoints-*``: rerunning the script
   resumes. ``--mean-from MODEL`` takes the mean network of a trained model instead and
   trains the diffusion stage only; ``--residual-power 1`` divides the residual by a scale
   that grows with the mean (``TrainOptions.residual_power``).
4. Evaluates on the validation samples (validation tiles of every event): bicubic
   interpolation of the tile's last LR frame (``xsuperres.nn.baselines.bicubic_baseline``),
   nearest neighbour (``nearest_baseline``: every HR frame of the block is the LR frame),
   for ``T > 1`` the temporal peers linear and motion-compensated interpolation in time
   (``heldout.temporal_peer``: they use the following LR step, which the model does not
   see), RainFARM (pysteps, ``--members`` members; the event's whole LR frame downscaled,
   then the tile cut out; ``--no-rainfarm`` skips it and the motion peer), the EDSR baseline trained on the same
   samples with the mean stage's protocol (``--edsr-epochs N``; 0, the default, skips it),
   the deterministic-only model (``SRModel.predict_mean``) and the full model
   (``SRModel.predict``, ``--members`` members, for each sampler of ``--samplers``; for
   S = 1 also around the motion peer, ``predict(..., mean=...)``), with
   CRPS, PITD, pe99 and LSD of :mod:`xsuperres.metrics` on the uncapped truth in mm/h.
   LR inputs are the perfect coarsening of the *raw* HR data (the model caps them itself).
   No topography exists for these files: the topography input is zeros.
5. Prints a table and writes ``OUT/results.json`` (numbers, settings, wall times, machine)
   and the model to ``OUT/model``; with ``--valid-event``, ``OUT/heldout.png``: truth,
   bicubic, RainFARM and two members for the wettest block of the left-out event
   (``heldout.heldout_figure``).

Training and evaluation can run on different machines: ``--train-only`` stops after step 3
(``OUT/model`` and ``OUT/training.json``: stage wall times and the training machine),
``--eval-only`` does steps 4-5 for that model (e.g. trained on a lent GPU, scored here,
where pysteps is installed for RainFARM).

The defaults are those of the run reported in docs/training.md (32 min on 2 AMD EPYC
cores, one torch thread). Run::

    nohup python scripts/train_shared.py --out runs/shared_10x3 > runs/shared_10x3.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch
import xarray as xr

import xsuperres.metrics as xm
from xsuperres.checks import non_negative_float, positive_float
from xsuperres.config import SRConfig
from xsuperres.model import SRModel
from xsuperres.model.device import resolve_device
from xsuperres.nn.baselines import bicubic_baseline, nearest_baseline
from xsuperres.training.data import build_training_data
from xsuperres.training.edsr import train_edsr
from xsuperres.training.loop import fit
from xsuperres.training.options import DIFFUSION_MEANS
from xsuperres.training.warmstart import resolve_init

sys.path.insert(0, str(Path(__file__).parent))
from heldout import (heldout_figure, rainfarm_members, scores, table, temporal_peer,  # noqa: E402
                     validation_arrays)

FILES = ("knmi_2010-08-26_5min.nc", "mch_20160711_5min.nc", "mch_20170131_5min.nc",
         "fmi_2016-09-28_5min.nc")


def _crop(text: str) -> slice:
    if text == "all":  # the full grids
        return slice(None)
    a, b = text.split(":")
    return slice(int(a), int(b))


def parse(argv=None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--files", nargs="+", default=list(FILES))
    p.add_argument("--out", default="runs/shared_10x3")
    p.add_argument("--crop", default="120:280",
                   help="rows and cols kept (same box for y and x), or 'all' for the full grids")
    p.add_argument("--S", type=int, default=10)
    p.add_argument("--T", type=int, default=3)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--tile-size", type=int, default=40)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--valid-event", default=None,
                   help="hold this event (file name without .nc) out whole instead of fold --fold "
                        "(leave-one-event-out)")
    p.add_argument("--augment", action="store_true", help="dihedral augmentation of training samples")
    p.add_argument("--mean-epochs", type=int, default=4)
    p.add_argument("--diffusion-epochs", type=int, default=12)
    p.add_argument("--mc-start-epoch", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--samplers", default="dpmpp_2m:20,ddim:20",
                   help="comma-separated sampler:steps pairs for the full model")
    p.add_argument("--stride", type=int, default=1,
                   help="keep every k-th training and validation sample (cuts the cost of long-L pairs such as (10, 1))")
    p.add_argument("--max-eval", type=int, default=0, help="evaluate at most this many validation samples (0: all)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: tiny networks gain little from more, and shared CPUs suffer)")
    p.add_argument("--cap-quantile", type=float, default=None,
                   help="quantile of the fitted gamma used as the cap (default: the preprint's 0.995)")
    p.add_argument("--no-clip", action="store_true",
                   help="SRConfig(clip=False): the cap only scales, nothing is clipped")
    p.add_argument("--no-attention", action="store_true", help="ablation: no attention blocks")
    p.add_argument("--lookahead", type=int, default=0,
                   help="LR steps after the block that the networks also see (SRConfig.lookahead)")
    p.add_argument("--no-mc", action="store_true", help="ablation: no mass conservation")
    p.add_argument("--mass-conservation", choices=("tile", "block"), default="tile",
                   help="mass conservation in training and in the model (tile: the preprint's "
                        "Eq. 1; block: exact per LR pixel)")
    p.add_argument("--no-rainfarm", action="store_true", help="no RainFARM row (it needs pysteps)")
    p.add_argument("--edsr-epochs", type=int, default=0,
                   help="also train the EDSR baseline for this many epochs on the same samples (0: no EDSR row)")
    p.add_argument("--diffusion-mean", default="network", choices=DIFFUSION_MEANS,
                   help="the mean the diffusion stage is trained around (S = 1: a temporal peer)")
    p.add_argument("--residual-power", type=float, default=0.0,
                   help="diffusion stage: residual scale (D + floor) ** POWER (0: one global scale)")
    p.add_argument("--residual-floor", type=float, default=0.03, help="its floor (normalized units)")
    p.add_argument("--mean-from", default=None, metavar="MODEL",
                   help="take the mean network of this model (a saved folder or a shipped name) and "
                        "train the diffusion stage only (--mean-epochs is then unused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-only", action="store_true",
                   help="stop after training: OUT/model and OUT/training.json (e.g. trained on a GPU "
                        "machine, evaluated elsewhere with --eval-only)")
    p.add_argument("--infer-threshold", type=float, default=None, metavar="A",
                   help="score with the threshold a of the output's r_a set to A (normalized units) instead "
                        "of the trained value; the weights are unchanged (SRModel.with_config). The "
                        "results record it as protocol.infer_threshold")
    p.add_argument("--infer-residual-factor", type=float, default=None, metavar="K",
                   help="score with the members' departures from the mean K times the trained residual "
                        "scale (SRModel.with_residual_factor; same weights). The results record it as "
                        "protocol.infer_residual_factor")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the model of OUT/model trained by an earlier --train-only run "
                        "(its OUT/training.json gives the training times and machine)")
    args = p.parse_args(argv)
    # checked here, not after hours of training, by the rules SRConfig and with_residual_factor apply
    try:
        if args.infer_threshold is not None:
            non_negative_float(args.infer_threshold, "--infer-threshold", " (normalized units)")
        if args.infer_residual_factor is not None:
            positive_float(args.infer_residual_factor, "--infer-residual-factor", " (it multiplies the residual scale)")
    except ValueError as err:
        p.error(str(err))
    return args


def load_events(args) -> list[xr.DataArray]:
    crop = _crop(args.crop)
    events = []
    for name in args.files:
        ds = xr.open_dataset(Path(args.data_dir) / name, engine="netcdf4")   # the package's engine
        da = ds["precip"].isel(y=crop, x=crop).load()
        da.name = name.removesuffix(".nc")
        events.append(da)
    return events


def training_data(events: list[xr.DataArray], args: argparse.Namespace):
    """Tiles, fold ``--fold`` of 4 and samples of the run (every ``--stride``-th kept)."""
    cfg = SRConfig.recipe(args.S, args.T, preset=args.preset, tile_size=args.tile_size,
                          clip=not args.no_clip, attention=not args.no_attention,
                          lookahead=args.lookahead,
                          mass_conservation=None if args.no_mc else args.mass_conservation)
    held = None if args.valid_event is None else [args.valid_event]
    td = build_training_data(events, args.S, args.T, config=cfg, fold=args.fold, n_folds=4, seed=args.seed,
                             valid_events=held)
    if args.cap_quantile is not None:
        # the same gamma fit (same wet training values), another quantile as the cap
        fit = td.cap_fit
        if fit is None or fit.method != "gamma":
            raise SystemExit("--cap-quantile needs a gamma-fitted cap")
        cap = float(scipy.stats.gamma.ppf(args.cap_quantile, fit.shape, scale=fit.scale))
        td = build_training_data(events, args.S, args.T, config=cfg.replace(cap=cap), fold=args.fold,
                                 n_folds=4, seed=args.seed, valid_events=held)
    if args.stride > 1:
        td.train.records = td.train.records[::args.stride]
        td.valid.records = td.valid.records[::args.stride]
    return td


def eval_subset(n: int, k: int) -> np.ndarray:
    """Indices of ``k`` of ``n`` validation samples, evenly spread (``--max-eval``)."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def train_models(td, args: argparse.Namespace, out: Path, log: logging.Logger):
    """Train the mean, the residual diffusion and (``--edsr-epochs``) EDSR; save the model
    to ``OUT/model`` and the training times and machine to ``OUT/training.json``."""
    common = dict(batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                  mc_start_epoch=args.mc_start_epoch, seed=args.seed, device=args.device, progress=False,
                  augment=args.augment)
    t0 = time.perf_counter()
    if args.mean_from is not None:  # its mean network, frozen: only the diffusion stage trains
        mean_model = resolve_init(args.mean_from)
        log.info("mean network from %s (its mean stage: %s epochs)", args.mean_from,
                 (mean_model.history or {}).get("mean", {}).get("epochs_run"))
    else:
        mean_model = fit(None, args.S, args.T, training_data=td, stage="mean", epochs=args.mean_epochs,
                         checkpoint_dir=str(out / "checkpoints-mean"), **common)
    t_mean = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = fit(None, args.S, args.T, training_data=td, mean_from=mean_model, epochs=args.diffusion_epochs,
                checkpoint_dir=str(out / "checkpoints-diffusion"), diffusion_mean=args.diffusion_mean,
                residual_power=args.residual_power, residual_floor=args.residual_floor, **common)
    t_diff = time.perf_counter() - t0
    model.save(out / "model")
    log.info("training done: mean %.1f min, diffusion %.1f min", t_mean / 60, t_diff / 60)
    edsr = None
    if args.edsr_epochs:
        t0 = time.perf_counter()
        edsr = train_edsr(None, args.S, args.T, training_data=td, epochs=args.edsr_epochs, **common)
        log.info("EDSR trained in %.1f min: valid losses %s", (time.perf_counter() - t0) / 60,
                 [round(v, 6) for v in edsr.history["mean"]["valid"]])
    trained = {"wall_s": {"mean_stage": t_mean, "diffusion_stage": t_diff},
               "machine": model.metadata.get("machine")}
    (out / "training.json").write_text(json.dumps(trained, indent=1))
    return model, edsr, trained


def evaluate_only(out: Path, args: argparse.Namespace):
    """The model of ``OUT/model`` and the record of its ``--train-only`` run."""
    if args.edsr_epochs:
        raise SystemExit("--eval-only evaluates the saved model only: pass --edsr-epochs 0")
    if not (out / "training.json").exists():
        raise SystemExit(f"--eval-only: no {out / 'training.json'}; train with --train-only first")
    trained = json.loads((out / "training.json").read_text())
    return SRModel.load(out / "model", device=resolve_device(args.device)), None, trained


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("train_shared")
    t_all = time.perf_counter()

    events = load_events(args)
    for da in events:
        log.info("event %s: %s, %s .. %s", da.name, dict(da.sizes), str(da.time.values[0])[:16],
                 str(da.time.values[-1])[:16])
    td = training_data(events, args)
    log.info("config %s", td.config)
    log.info("samples: %d train, %d valid (NaN-skipped: %d / %d), cap %.3f mm/h", len(td.train),
             len(td.valid), td.split.n_nan_train, td.split.n_nan_valid, td.config.cap)

    if args.eval_only:
        model, edsr, trained = evaluate_only(out, args)
    else:
        model, edsr, trained = train_models(td, args, out, log)
        if args.train_only:
            return 0
    t_mean, t_diff = trained["wall_s"]["mean_stage"], trained["wall_s"]["diffusion_stage"]
    if args.infer_threshold is not None:
        log.info("scoring with the threshold a = %g (trained: %g)", args.infer_threshold, model.config.threshold)
        model = model.with_config(threshold=args.infer_threshold)
    if args.infer_residual_factor is not None:
        log.info("scoring with the residual scale x %g", args.infer_residual_factor)
        model = model.with_residual_factor(args.infer_residual_factor)

    # ------------------------------------------------------------------ evaluation
    ctx, truth, where = validation_arrays(td)
    records = td.valid.records
    if args.max_eval and len(ctx) > args.max_eval:
        idx = eval_subset(len(ctx), args.max_eval)
        ctx, truth, where, records = ctx[idx], truth[idx], [where[i] for i in idx], records[idx]
    log.info("evaluating on %d validation samples (%d HR frames of %d x %d)", len(ctx),
             truth.shape[0] * truth.shape[1], truth.shape[2], truth.shape[3])
    results: dict[str, dict[str, float]] = {}
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    upto = torch.from_numpy(ctx[:, :td.config.L])  # the baselines see x[t] last, no lookahead
    bic = bicubic_baseline(upto, args.S, args.T).numpy()
    results["bicubic"] = scores(bic[:, None], truth)
    timing["bicubic"] = time.perf_counter() - t0
    near = nearest_baseline(upto, args.S, args.T).numpy()
    results["nearest"] = scores(near[:, None], truth)
    if args.T > 1:  # the temporal peers (they use the following LR step: see heldout.py)
        results["linear in time"] = scores(temporal_peer(td, "linear", records), truth)
        if not args.no_rainfarm:  # pysteps, like RainFARM
            t0 = time.perf_counter()
            motion = temporal_peer(td, "motion", records)
            results["motion-compensated (Proesmans flow)"] = scores(motion, truth)
            timing["motion"] = time.perf_counter() - t0
    if not args.no_rainfarm:
        t0 = time.perf_counter()
        rf = rainfarm_members(td, args.members, args.seed, records=records)
        results[f"RainFARM ({args.members} members, whole LR frames)"] = scores(rf, truth)
        timing["rainfarm"] = time.perf_counter() - t0
    if edsr is not None:
        results[f"EDSR ({args.edsr_epochs} epochs)"] = scores(edsr.predict_mean(ctx, device=args.device)[:, None], truth)
    t0 = time.perf_counter()
    det = model.predict_mean(ctx, device=args.device)
    # the row's name says whether the mean is mass-conserved (the --no-mc ablation's is not)
    det_name = "deterministic (U_det + MC)" if model.config.mass_conservation else "deterministic (U_det)"
    results[det_name] = scores(det[:, None], truth)
    timing["deterministic"] = time.perf_counter() - t0
    for spec in args.samplers.split(","):
        sampler, steps = spec.split(":")
        t0 = time.perf_counter()
        ens = model.predict(ctx, n_members=args.members, sampler=sampler, steps=int(steps),
                            seed=args.seed, device=args.device)
        name = f"full model ({sampler}, {steps} steps, {args.members} members)"
        results[name] = scores(ens, truth)
        # ensemble mean as a deterministic forecast, for reference
        results[name]["mae_of_ensemble_mean"] = float(xm.mae(ens.mean(1)[:, None].transpose(1, 0, 2, 3, 4)
                                                             .reshape(1, -1, *truth.shape[2:]),
                                                             truth.reshape(-1, *truth.shape[2:])))
        timing[name] = time.perf_counter() - t0
        log.info("%s done in %.1f min", name, timing[name] / 60)
    if args.S == 1 and args.T > 1 and not args.no_rainfarm:
        # the diffusion stage around the motion peer instead of U_det's mean
        # (downscale(..., mean="motion"); uses the following LR step like the peer)
        sampler, steps = args.samplers.split(",")[0].split(":")
        t0 = time.perf_counter()
        ens = model.predict(ctx, n_members=args.members, sampler=sampler, steps=int(steps),
                            seed=args.seed, device=args.device, mean=motion[:, 0])
        name = f"full model around the motion mean ({sampler}, {steps} steps, {args.members} members)"
        results[name] = scores(ens, truth)
        timing[name] = time.perf_counter() - t0

    text = table(results, cols=("crps", "pitd", "pe99", "lsd", "mae", "pit_outer_fraction"), width=20)
    print(text, flush=True)

    meta = model.metadata
    doc = {
        "files": args.files,
        "crop_rows_cols": args.crop,
        "periods": {ev.name: ev.period for ev in td.data.events},
        "config": {**td.config.to_dict(), "threshold": model.config.threshold},
        "split": td.split.describe(),
        "n_samples": {"train": len(td.train), "valid": len(td.valid), "evaluated": int(len(ctx)),
                      "stride": args.stride},
        "protocol": {"mean_epochs": args.mean_epochs if args.mean_from is None
                     else (meta.get("history") or {}).get("mean", {}).get("epochs_run"),
                     "mean_from": args.mean_from, "diffusion_epochs": args.diffusion_epochs,
                     "lr": args.lr, "batch_size": args.batch_size, "patience": args.patience,
                     "mc_start_epoch": args.mc_start_epoch, "seed": args.seed,
                     "valid_event": args.valid_event, "augment": args.augment,
                     "diffusion_mean": args.diffusion_mean,
                     "cap_quantile": args.cap_quantile or 0.995, "cap_mm_h": td.config.cap,
                     "edsr": None if edsr is None else edsr.metadata,
                     "residual_scale": model.metadata.get("residual_scale_trained",
                                                          model.normalization.get("residual_scale")),
                     "infer_residual_factor": args.infer_residual_factor,
                     "residual_power": model.normalization.get("residual_power", 0.0),
                     "residual_floor": model.normalization.get("residual_floor"),
                     "infer_threshold": args.infer_threshold, "trained_threshold": td.config.threshold},
        "history": meta.get("history"),
        "wall_time_min": {"mean_stage": t_mean / 60, "diffusion_stage": t_diff / 60,
                          "evaluation": {k: v / 60 for k, v in timing.items()},
                          "total": (time.perf_counter() - t_all) / 60},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": str(model.device),
                    "training": trained.get("machine")},
        "metrics_units": "crps, pe99, mae in mm/h; pitd, lsd unitless; lower is better",
        "results": results,
        "table": text,
    }
    if args.valid_event is not None:
        held = next(da for da in events if da.name == args.valid_event)
        doc["figure"] = heldout_figure(model, held, out / "heldout.png", seed=args.seed,
                                       title=f"{args.valid_event} (left out), (S, T) = ({args.S}, {args.T})",
                                       rainfarm=not args.no_rainfarm)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    log.info("wrote %s (total %.1f min)", out / "results.json", (time.perf_counter() - t_all) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
