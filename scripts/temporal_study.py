#!/usr/bin/env python
"""The shipped (1, 3) model against the temporal peers, through the public xarray API.

For each of the four shared 5-min events: the wettest 120 x 120 km (100 x 100 km for S = 25)
corner box *outside* the shipped model's training crop (rows and columns 120:280 of every event), the wettest run of
``--blocks`` consecutive 15-min blocks in it. Scored with :mod:`xsuperres.metrics` against
the 5-min truth (NaN filled with 0):

* persistence (``interpolate(..., "nearest")``), linear and motion-compensated
  interpolation in time (``interpolate(..., time_method="linear" / "motion")``, which use
  the following LR step);
* the deterministic mean (``downscale_mean``) and the full model (``downscale``,
  ``--members`` members, the default sampler, ``mean="network"``) of ``radar-s1-t3``, each with
  ``mass_conservation="block"`` (the default ``"auto"`` at S = 1) and ``"tile"`` (the
  mode it was trained with and that its card's scores used);
* for S = 1 models, the full model with ``mean="motion"`` (the default ``"auto"`` of
  temporal models): the diffusion stage samples around the motion-compensated
  interpolation instead of ``U_det``'s mean.

``--model`` picks another shipped model or a model directory (a model with
``config.lookahead = 1`` also gets the block after the scored ones, as the linear and
motion peers do) (the peers then use its S and T; for T = 1 only
persistence, i.e. nearest neighbour, is scored). The boxes are outside the training crop, but the days are training days (the shipped
model saw other parts of them): these are **not** scores on unseen days. Also reported:
the largest difference between the deterministic mean's block means and the LR input
(mm/h).

Usage::

    python scripts/temporal_study.py --json docs/results/temporal_study.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xsuperres as xs
from xsuperres import metrics as xm

FILES = ("knmi_2010-08-26_5min", "mch_20160711_5min", "mch_20170131_5min", "fmi_2016-09-28_5min")


def corners(S: int, n: int = 400, crop: tuple[int, int] = (120, 280)) -> dict:
    """The four corner boxes outside the training crop, sides a multiple of ``S`` (120 km
    for S = 1 and 10, 100 km for S = 25)."""
    b = S * (crop[0] // S)
    return {"NW": (slice(0, b), slice(0, b)), "NE": (slice(0, b), slice(n - b, n)),
            "SW": (slice(n - b, n), slice(0, b)), "SE": (slice(n - b, n), slice(n - b, n))}

METRICS = ("crps", "mae", "pe99", "lsd", "pitd")


def scores(pred: xr.DataArray, truth: xr.DataArray) -> dict:
    p = pred.transpose("member", "time", "y", "x").values if "member" in pred.dims \
        else pred.values[None]
    return {m: float(getattr(xm, m)(p, truth.values)) for m in METRICS}


def event_case(path: Path, S: int, L: int, T: int, blocks: int):
    """(HR window with context and one block after, its first scored HR step, box name)."""
    da = xr.open_dataset(path)["precip"].fillna(0.0).astype("float32")
    nb = da.sizes["time"] // T
    da = da.isel(time=slice(0, nb * T)).load()
    best = None
    boxes = corners(S)
    for name, (ys, xs_) in boxes.items():
        box = da.isel(y=ys, x=xs_)
        lr = box.values.reshape(nb, T, -1).mean(axis=(1, 2))
        for b0 in range(L - 1, nb - blocks):  # L - 1 context blocks before, one block after
            tot = float(lr[b0:b0 + blocks].sum())
            if best is None or tot > best[0]:
                best = (tot, name, b0)
    _, name, b0 = best
    ys, xs_ = boxes[name]
    window = da.isel(y=ys, x=xs_, time=slice((b0 - L + 1) * T, (b0 + blocks + 1) * T))
    return window, (L - 1) * T, name, b0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--model", default="radar-s1-t3", help="a shipped model's name or a model directory")
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = xs.SRModel.load(args.model) if Path(args.model).is_dir() else xs.load_model(args.model)
    c = model.config
    S, T, L = c.S, c.T, c.L
    out = {"model": args.model, "blocks": args.blocks, "members": args.members, "events": {}}
    for f in FILES:
        t0 = time.perf_counter()
        window, first, box, b0 = event_case(Path(args.data) / f"{f}.nc", S, L, T, args.blocks)
        lr = window.stsr.coarsen_perfect(S, T)
        scored = slice(first, first + args.blocks * T)
        truth = window.isel(time=scored)
        lr_scored = lr.isel(time=slice(L - 1, L - 1 + args.blocks))
        rows = {}
        for tm in ("persistence", "linear", "motion") if T > 1 else ("persistence",):
            hr = xs.interpolate(lr, S, T, "nearest", time_method=tm).isel(time=scored)
            rows[tm] = scores(hr, truth)
        # the model sees no block after the scored ones, unless it was trained to (lookahead)
        ctx = lr.isel(time=slice(0, L - 1 + args.blocks + c.lookahead))
        for mode in ("block", "tile"):
            det = xs.downscale_mean(ctx, model, context="drop", strict=False,
                                    mass_conservation=mode).load()
            rows[f"deterministic mean ({mode} MC)"] = scores(det, truth)
            err = np.abs(det.stsr.coarsen_perfect(S, T).values - lr_scored.values).max()
            rows[f"deterministic mean ({mode} MC)"]["max_block_error"] = float(err)
            ens = xs.downscale(ctx, model, args.members, context="drop", strict=False,
                               mass_conservation=mode, mean="network").load()
            rows[f"full model ({mode} MC, {args.members} members)"] = scores(ens, truth)
        if S == 1 and T > 1:
            # the diffusion stage around the motion-compensated interpolation instead of
            # U_det's mean (it uses the block after the scored ones, like the motion peer)
            ctx1 = lr.isel(time=slice(0, L + args.blocks + max(c.lookahead - 1, 0)))
            ens = xs.downscale(ctx1, model, args.members, context="drop", strict=False,
                               mean="motion").load()
            rows[f"full model (motion mean, block MC, {args.members} members)"] = scores(ens, truth)
        out["events"][f] = {"box": box, "first_block": b0, "wet_mean_mm_h": float(truth.mean()),
                            "max_mm_h": float(truth.max()), "rows": rows,
                            "seconds": time.perf_counter() - t0}
        print(f"\n{f}: box {box}, blocks {b0}..{b0 + args.blocks - 1}, truth max "
              f"{float(truth.max()):.1f} mm/h ({time.perf_counter() - t0:.0f} s)")
        for name, r in rows.items():
            print(f"  {name:<34}" + "".join(f" {k} {v:7.4f}" for k, v in r.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
