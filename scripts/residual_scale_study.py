#!/usr/bin/env python
"""How the residual of the diffusion stage grows with the mean, and which scale evens it out.

For each leave-one-event-out fold of a pair (a ``scripts/loeo.py`` run folder with its
``model``), on that fold's **training** samples only (up to 384, evenly spaced; the
left-out event is never read):

* the RMS of the residual ``target - D`` of the fold's frozen mean network (normalized
  units, ``D`` with mass conservation, as the diffusion stage sees it) per bin of ``D``;
* for every ``(floor, power)`` of a small grid, the RMS of ``(target - D) / (D + floor) **
  power`` per bin, rescaled to unit RMS overall, and its **evenness**: the largest over
  the smallest bin RMS among the wet bins (``D >= 0.001``; lower is more even);
* the grid point with the lowest evenness, the fold's own choice of
  ``TrainOptions.residual_floor`` and ``residual_power``.

Usage::

    python scripts/residual_scale_study.py --runs RUNS --pair 10x1 --json docs/results/residual_scale_study.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_shared as ts  # noqa: E402
from loeo import EVENTS, PAIRS  # noqa: E402

from xsuperres.model import SRModel  # noqa: E402
from xsuperres.training.losses import batch_inputs, loader, mean_output  # noqa: E402

#: bin edges of the mean D (normalized units, mm/h / cap)
EDGES = (0.0, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, np.inf)
FLOORS = (0.01, 0.03, 0.1)
POWERS = (0.5, 0.75, 1.0)


def residuals(run: Path, event: str, pair_args: list[str], data_dir: str, n: int = 384):
    """``(D, target - D)`` flattened over ``n`` training samples of the fold leaving ``event`` out."""
    args = ts.parse([*pair_args, "--crop", "all", "--valid-event", event, "--data-dir", data_dir])
    td = ts.training_data(ts.load_events(args), args)
    model = SRModel.load(run / "model").eval()
    idx = np.unique(np.linspace(0, len(td.train) - 1, min(n, len(td.train))).round().astype(int)).tolist()
    Ds, Rs = [], []
    dev = torch.device("cpu")
    with torch.no_grad():
        for batch in loader(Subset(td.train, idx), 16, False, None):
            ctx, up, topo, target = batch_inputs(batch, model.config.S, dev)
            D = mean_output(model, ctx, up, topo, True, dev)
            Ds.append(D.flatten().numpy())
            Rs.append((target - D).flatten().numpy())
    return np.concatenate(Ds), np.concatenate(Rs)


def binned_rms(D: np.ndarray, r: np.ndarray) -> list[dict]:
    """RMS of ``r`` per bin of ``D`` (empty bins left out)."""
    out = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        sel = (D >= lo) & (D < hi)
        if sel.any():
            out.append({"D_from": lo, "D_to": None if np.isinf(hi) else hi, "n": int(sel.sum()),
                        "rms": float(np.sqrt(np.mean(r[sel] ** 2)))})
    return out


def study(D: np.ndarray, r: np.ndarray) -> dict:
    """The module notes' numbers for one fold."""
    grid = []
    for floor in FLOORS:
        for power in POWERS:
            z = r / (np.maximum(D, 0) + floor) ** power
            z = z / np.sqrt(np.mean(z ** 2))
            bins = binned_rms(D, z)
            wet = [b["rms"] for b in bins if b["D_from"] >= 1e-3]
            grid.append({"floor": floor, "power": power, "rms_per_bin": [round(b["rms"], 3) for b in bins],
                         "evenness": max(wet) / min(wet)})
    best = min(grid, key=lambda g: g["evenness"])
    return {"residual_rms_per_bin": binned_rms(D, r), "global_rms": float(np.sqrt(np.mean(r ** 2))),
            "grid": grid, "choice": {"floor": best["floor"], "power": best["power"]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    p.add_argument("--runs", required=True, help="folder of scripts/loeo.py runs (loeo_{pair}_{event}/model)")
    p.add_argument("--pair", default="10x1", choices=sorted(PAIRS))
    p.add_argument("--data-dir", default=str(here.parent.parent / "shared" / "data"))
    p.add_argument("--events", nargs="+", default=None, choices=sorted(EVENTS.values()),
                   help="only these folds (default: every fold with a model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pair_args = [a for a in PAIRS[args.pair]]
    doc = {"pair": args.pair, "bins": [None if np.isinf(e) else e for e in EDGES], "folds": {}}
    for event, short in EVENTS.items():
        run = Path(args.runs) / f"loeo_{args.pair}_{short}"
        if not (run / "model").exists() or (args.events and short not in args.events):
            continue
        res = study(*residuals(run, event, pair_args, args.data_dir))
        doc["folds"][short] = res
        print(f"{short}: residual RMS per bin of D",
              [round(b["rms"], 4) for b in res["residual_rms_per_bin"]],
              f"-> floor {res['choice']['floor']}, power {res['choice']['power']}", flush=True)
        for g in res["grid"]:
            print(f"   floor {g['floor']:<5} power {g['power']:<5} evenness {g['evenness']:.2f}",
                  g["rms_per_bin"])
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
