"""Inference tile size against quality, seams and time on a left-out event (a script, not a test).

``ds.stsr.downscale`` cuts the domain into square HR tiles (``tile_size``, default the
training tile), downscales them with an overlap and blends them. Larger tiles are
faster (fewer tiles, less overlap), but the networks were trained on one tile size. This
script measures both sides on an event the model was *not* trained on: pass a
leave-one-event-out fold of ``scripts/loeo.py`` (``--model RUNS/loeo_10x3_knmi2010/model``)
and its left-out file (``--heldout knmi_2010-08-26_5min``), with the inference settings
of the shipped recipe (``--threshold``, ``--residual-factor``; the model card gives them).

What is downscaled
------------------
For each ``--domains`` size D (HR px, a multiple of S): the D x D box of the left-out file
with no missing pixel whose ``--lr-steps`` consecutive LR steps hold the most rain (LR
cells on the perfect coarsening's grid, blocks aligned at the first frame of the file),
with the ``L - 1`` LR steps before them as context (``context="drop"``: only the scored
steps are output). The LR input is ``truth.stsr.coarsen_perfect(S, T)`` of the raw HR
file. Every tile size runs the public path, ``lr.stsr.downscale(model, members,
tile_size=..., overlap=..., seed=...)`` with the default sampler, synchronous dask
scheduler and ``--threads`` torch threads. Noise is keyed by global position, so two tile
sizes with one seed start from the same noise field and their scores are paired.

Scores: ``xsuperres.score`` against the HR truth (CRPS, MAE, PITD, LSD, pe99; mm/h, all
frames pooled), the fair CRPS (``score(..., extra="crps_fair")``) and the seam
ratio of ``xsuperres.downscaling.tiles.seam_statistic`` (mean HR gradient across tile
borders over that across other LR-cell borders; NaN with one tile). Time: wall seconds
of the ``compute()``, with the first (warm-up) call of each domain discarded by running
the training tile once before timing.

Output: a Markdown table on stdout (CRPS change against the training tile with the same
seed) and ``--json``.

Usage (docs/performance.md, "Tile size")::

    python benchmarks/tile_size.py --model RUNS/loeo_10x3_knmi2010/model \\
        --label "radar-s10-t3 recipe, KNMI 2010 left out" --heldout knmi_2010-08-26_5min \\
        --threshold 0 --json docs/results/tile_size_heldout.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import dask
import numpy as np
import torch
import xarray as xr

import xsuperres
from xsuperres.downscaling.tiles import default_overlap, seam_statistic
from xsuperres.downscaling.workers import resolve_model
from xsuperres.training.samples import coarsen_numpy

METRICS = ("crps", "mae", "pitd", "lsd", "pe99", "crps_fair")


def parse(argv=None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a saved-model folder or a shipped name")
    p.add_argument("--label", default=None)
    p.add_argument("--heldout", required=True, metavar="FILE", help="the left-out event file")
    p.add_argument("--threshold", type=float, default=None, metavar="A")
    p.add_argument("--residual-factor", type=float, default=None, metavar="K")
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--domains", type=int, nargs="+", default=[80, 200], help="HR px")
    p.add_argument("--tile-sizes", type=int, nargs="+", default=None,
                   help="HR px (default: 1, 2 and 3 training tiles and the whole domain)")
    p.add_argument("--narrow-overlap", action="store_true",
                   help="also run every tile larger than the training tile with overlap 1")
    p.add_argument("--lr-steps", type=int, default=4)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def wettest_valid_box(hr: np.ndarray, S: int, T: int, L: int, steps: int, box: int):
    """``(time slice, y slice, x slice)`` of ``hr`` (n, Y, X): the NaN-free ``box`` x
    ``box`` HR box whose ``steps`` consecutive LR steps (after ``L - 1`` of context) hold
    the most rain; the time slice includes the context."""
    n = hr.shape[0] // T * T
    lr = coarsen_numpy(np.nan_to_num(hr[:n]), S, T)
    bad = coarsen_numpy(np.isnan(hr[:n]).astype(np.float32), S, T).max(axis=0) > 0
    k = box // S

    def box_sums(a):
        c = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 0)]).cumsum(-2).cumsum(-1)
        return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]

    nbad = box_sums(bad.astype(np.float64))
    tot = box_sums(lr.astype(np.float64))
    best, arg = -1.0, None
    for t in range(L - 1 + steps - 1, lr.shape[0]):
        s = tot[t - steps + 1:t + 1].sum(0)
        s[nbad > 0] = -1.0
        i, j = np.unravel_index(np.argmax(s), s.shape)
        if s[i, j] > best:
            best, arg = float(s[i, j]), (t, i, j)
    if arg is None or best < 0:
        raise SystemExit(f"no NaN-free {box} px box with {L - 1 + steps} LR steps in this file")
    t, i, j = arg
    return (slice((t - steps - L + 2) * T, (t + 1) * T), slice(i * S, i * S + box),
            slice(j * S, j * S + box))


def one_run(model, lr, truth, members, tile, overlap, seed):
    t0 = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        pred = lr.stsr.downscale(model, members, tile_size=tile, overlap=overlap, seed=seed,
                                 context="drop").compute()
    wall = time.perf_counter() - t0
    tr = truth.sel(time=pred["time"])
    sc = xsuperres.score(pred, tr, extra="crps_fair")
    out = {m: float(sc[m]) for m in METRICS}
    seam = seam_statistic(pred.values, model.config.S, tile, overlap)
    out["seam_ratio"] = float(seam["ratio"])
    out["seconds"] = wall
    return out


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    if args.threshold is not None:
        model = model.with_config(threshold=args.threshold)
    if args.residual_factor is not None:
        model = model.with_residual_factor(args.residual_factor)
    c = model.config
    S, T, L, p = c.S, c.T, c.L, c.tile_size
    name = args.heldout if args.heldout.endswith(".nc") else args.heldout + ".nc"
    with xr.open_dataset(Path(args.data_dir) / name) as ds:
        da = ds["precip"].load()
    rows = []
    for D in args.domains:
        D = D // S * S
        ts, ys, xs = wettest_valid_box(da.values, S, T, L, args.lr_steps, D)
        truth = da.isel(time=ts, y=ys, x=xs)
        lr = truth.stsr.coarsen_perfect(S, T)
        where = {"file": name, "rows": f"{ys.start}:{ys.stop}", "cols": f"{xs.start}:{xs.stop}",
                 "time": f"{str(truth.time.values[(L - 1) * T])[:16]} .. {str(truth.time.values[-1])[:16]}"}
        print(f"domain {D} px: {where}, mean {float(truth[(L - 1) * T:].mean()):.3f} mm/h", flush=True)
        tiles = args.tile_sizes or sorted({p, 2 * p, 3 * p, D} & set(range(p, D + 1, S)))
        runs = [(t, None) for t in tiles if t <= D]
        if args.narrow_overlap:
            runs += [(t, 1) for t in tiles if p < t < D]
        one_run(model, lr, truth, args.members, p, None, args.seeds[0])  # warm-up
        for seed in args.seeds:
            for tile, ov in runs:
                o = default_overlap(tile // S) if ov is None else ov
                r = one_run(model, lr, truth, args.members, tile, ov, seed)
                r.update(domain=D, tile_size=tile, overlap=o, seed=seed, where=where)
                rows.append(r)
                print(f"  tile {tile:4d} overlap {o} seed {seed}: CRPS {r['crps']:.4f} "
                      f"PITD {r['pitd']:.3f} LSD {r['lsd']:.3f} seams {r['seam_ratio']:.2f} "
                      f"{r['seconds']:.1f} s", flush=True)
    ref = {(r["domain"], r["seed"]): r for r in rows if r["tile_size"] == p}
    lines = ["| domain [px] | tile_size | overlap | seed | CRPS | vs training tile | fair CRPS "
             "| PITD | LSD | pe99 | seam ratio | time [s] | speed-up |", "|" + "---|" * 13]
    for r in rows:
        base = ref[(r["domain"], r["seed"])]
        r["crps_vs_training_tile"] = r["crps"] / base["crps"] - 1
        r["speedup"] = base["seconds"] / r["seconds"]
        lines.append(
            f"| {r['domain']} | {r['tile_size']} ({r['tile_size'] / p:g} x) | {r['overlap']} | "
            f"{r['seed']} | {r['crps']:.4f} | {100 * r['crps_vs_training_tile']:+.1f} % | "
            f"{r['crps_fair']:.4f} | {r['pitd']:.3f} | {r['lsd']:.3f} | {r['pe99']:.2f} | "
            f"{r['seam_ratio']:.2f} | {r['seconds']:.1f} | {r['speedup']:.2f} |")
    text = "\n".join(lines)
    print(text, flush=True)
    if args.json:
        doc = {"script": "benchmarks/tile_size.py", "model": args.label or args.model,
               "args": {k: v for k, v in vars(args).items() if k != "json"},
               "machine": f"{platform.machine()} {platform.processor() or ''}, "
                          f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
               "rows": rows, "table": text}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
