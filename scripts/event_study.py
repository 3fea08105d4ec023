#!/usr/bin/env python
"""Several models of the same (S, T) on one left-out event, through the public xarray API.

The validation scores of ``train_shared.py`` are computed on the run's own validation tiles,
so two runs with different training tiles (``--tile-size``) are scored on different tiles
(a 100 px tile touches the radar's no-data border more often than a 50 px one and covers
other pixels). This script puts them on the same pixels, as a user would run them: the
wettest ``--box`` x ``--box`` HR box of the event that has data at every time step (its
side a multiple of S, positions on the LR grid), coarsened perfectly; every LR block that
has ``L - 1`` blocks of context before it for every model (``context="drop"``) is scored
against the HR truth with :mod:`xsuperres.metrics`, frames pooled:

* nearest and bicubic interpolation (``xsuperres.interpolate``);
* RainFARM (``xsuperres.rainfarm``, needs pysteps): the event's whole LR frames (no data
  filled with 0) downscaled, then the box cut out (a spectral method needs a field);
* per model: the deterministic mean (``downscale_mean``) and the full model (``downscale``)
  with every other argument at its default (sampler, steps, tile size, overlap,
  ``mass_conservation="auto"``, the model's residual scale and its threshold unless
  ``--thresholds`` sets it).

Usage::

    python scripts/event_study.py --event knmi_2010-08-26_5min \\
        --models RUN_A/model RUN_B/model --labels "50 px" "100 px" --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import temporal_study  # noqa: E402

import xsuperres as xs  # noqa: E402
from xsuperres import metrics as xm  # noqa: E402

METRICS = ("crps", "pitd", "pe99", "lsd", "mae")  # the columns printed, of temporal_study.METRICS


def scores(pred: xr.DataArray, truth: xr.DataArray) -> dict:
    """:func:`temporal_study.scores` (pooled over frames) and, for an ensemble, the
    spread-error ratio."""
    out = temporal_study.scores(pred, truth)
    if pred.sizes.get("member", 1) > 1:
        out["spread_error"] = float(xm.spread_error_ratio(
            pred.transpose("member", "time", "y", "x").values, truth.values))
    return out


def wettest_covered_box(da: xr.DataArray, size: int, S: int) -> tuple[slice, slice]:
    """The ``size`` x ``size`` box (corners on multiples of ``S``) with data at every time
    step and the most rain; ``ValueError`` if no box is fully covered."""
    nan = np.isnan(da.values).any(axis=0)
    total = np.nan_to_num(da.values).sum(axis=0)
    best = None
    for y in range(0, da.sizes["y"] - size + 1, S):
        for x in range(0, da.sizes["x"] - size + 1, S):
            if nan[y:y + size, x:x + size].any():
                continue
            tot = float(total[y:y + size, x:x + size].sum())
            if best is None or tot > best[0]:
                best = (tot, y, x)
    if best is None:
        raise ValueError(f"no {size} x {size} px box of {da.name!r} has data at every time step; "
                         "pass a smaller --box")
    _, y, x = best
    return slice(y, y + size), slice(x, x + size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--event", required=True, help="file stem in --data, e.g. knmi_2010-08-26_5min")
    p.add_argument("--models", nargs="+", required=True, help="model directories or shipped names")
    p.add_argument("--labels", nargs="+", default=None, help="one per model (default: the paths)")
    p.add_argument("--thresholds", nargs="+", type=float, default=None, metavar="A",
                   help="one per model: the threshold a of its output (SRModel.with_config; default: "
                        "each model's own)")
    p.add_argument("--box", type=int, default=200, help="HR px, a multiple of S")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-rainfarm", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    labels = args.labels or args.models
    if len(labels) != len(args.models):
        p.error("--labels takes one label per model")
    torch.set_num_threads(args.threads)
    models = [xs.SRModel.load(m) if Path(m).is_dir() else xs.load_model(m) for m in args.models]
    if args.thresholds is not None:
        if len(args.thresholds) != len(models):
            p.error("--thresholds takes one value per model")
        models = [m.with_config(threshold=a) for m, a in zip(models, args.thresholds)]
    factors = {(m.config.S, m.config.T) for m in models}
    if len(factors) != 1:
        p.error(f"the models have different (S, T): {sorted(factors)}")
    S, T = factors.pop()
    if args.box % S:
        p.error(f"--box {args.box} is not a multiple of S = {S}")
    L = max(m.config.L for m in models)

    da = xr.open_dataset(Path(args.data) / f"{args.event}.nc")["precip"].astype("float32")
    da = da.isel(time=slice(0, da.sizes["time"] // T * T)).load()
    ys, xs_ = wettest_covered_box(da, args.box, S)
    box = da.isel(y=ys, x=xs_)
    lr = box.stsr.coarsen_perfect(S, T)
    nb = lr.sizes["time"]
    scored = slice((L - 1) * T, nb * T)
    truth = box.isel(time=scored)
    print(f"{args.event}: box y {ys.start}:{ys.stop}, x {xs_.start}:{xs_.stop}; blocks {L - 1}..{nb - 1} "
          f"scored ({nb - L + 1} blocks, {truth.sizes['time']} HR frames); truth mean "
          f"{float(truth.mean()):.3f}, max {float(truth.max()):.1f} mm/h", flush=True)

    rows: dict = {}
    seconds: dict = {}
    for name, method in (("nearest", "nearest"), ("bicubic", "bicubic")):
        rows[name] = scores(xs.interpolate(lr, S, T, method).isel(time=scored), truth)
    if not args.no_rainfarm:
        t0 = time.perf_counter()
        whole = da.fillna(0.0).stsr.coarsen_perfect(S, T)
        rf = xs.rainfarm(whole, S, T, args.members, seed=args.seed)
        rows[f"RainFARM ({args.members} members, whole LR frames)"] = scores(
            rf.isel(y=ys, x=xs_, time=scored).load(), truth)
        seconds["RainFARM"] = time.perf_counter() - t0
    for label, model in zip(labels, models):
        ctx = lr.isel(time=slice(L - model.config.L, nb))  # every model scores the same blocks
        t0 = time.perf_counter()
        det = xs.downscale_mean(ctx, model, context="drop").load()
        rows[f"deterministic mean, {label}"] = scores(det, truth)
        t1 = time.perf_counter()
        ens = xs.downscale(ctx, model, args.members, seed=args.seed, context="drop").load()
        rows[f"full model, {label}"] = scores(ens, truth)
        seconds[label] = {"deterministic": t1 - t0, "full": time.perf_counter() - t1}
        print(f"{label}: {seconds[label]['deterministic']:.0f} s + {seconds[label]['full']:.0f} s", flush=True)

    width = max(map(len, rows)) + 2
    print(f"\n{'method':<{width}}" + "".join(f"{m:>14}" for m in (*METRICS, "spread_error")))
    for name, r in rows.items():
        print(f"{name:<{width}}" + "".join(f"{r[m]:14.4f}" if m in r else f"{'-':>14}"
                                         for m in (*METRICS, "spread_error")))
    if args.json:
        out = {"event": args.event, "box": {"y": [ys.start, ys.stop], "x": [xs_.start, xs_.stop]},
               "S": S, "T": T, "blocks_scored": nb - L + 1, "members": args.members, "seed": args.seed,
               "models": dict(zip(labels, args.models)),
               "thresholds": dict(zip(labels, (m.config.threshold for m in models))),
               "results": rows, "seconds": seconds}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
