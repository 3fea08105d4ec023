#!/usr/bin/env python
"""Fine-tuning ``radar-s10-t3`` on the hourly RADOLAN day against training from scratch.

What it does
------------
1. Opens the shared RADOLAN RW file (DWD, 2022-10-18, hourly, 1 km) and tiles it into
   40 px tiles (``--box full``, the default: the whole 900 x 900 km composite, NaN outside
   the radars' coverage, without topography; ``--box topography``: the 300 x 200 km box
   of rows 370:670, cols 240:440 where the file has GTOPO30 altitudes, with them). Why
   the default has no topography: with T = 3 and L = 5 the first target block is hours
   12-14, and the topography box is dry from hour 9 on (wet fraction < 2 %, none after
   hour 18), so its held-out tiles would score dry fields only; the Latin-square fold 0 of 4
   (one tile per row and column, a quarter of the tiles) is held out for validation
   and scoring: the same tiles for every method.
2. Trains models for the same budget (``--epochs`` per stage, the same batch size, seed
   and augmentation): from scratch (learning rate ``--lr``) (``SRConfig.recipe(10, 3)``, tiny
   preset, the shipped model's settings, its representation ``clip`` included) and
   warm-started from the shipped ``radar-s10-t3`` (``train(..., init="radar-s10-t3")``:
   trained on 5-min data of other radars, here fine-tuned on hourly data), once per
   ``--finetune-lr``. Each run records its epochs' wall time; per-run checkpoints make a
   rerun score without retraining.
3. Scores on the held-out tiles, uncapped truth in mm/h: bicubic, RainFARM (pysteps, on
   the whole LR frame of the crop, then cut to the tile; applied per LR frame), the
   shipped model as it is (zero-shot), and the two trained models (deterministic mean
   and the full model, ``--members`` members, the default sampler).
4. Prints a table and writes ``OUT/results.json``.

Run::

    nohup python scripts/finetune_radolan.py --out runs/finetune_radolan > runs/finetune_radolan.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.nn.baselines import bicubic_baseline
from xsuperres.training import build_training_data, train

sys.path.insert(0, str(Path(__file__).parent))
from heldout import rainfarm_members, scores, table, validation_arrays  # noqa: E402

FILE = "radolan_rw_2022-10-18_hourly.nc"
S, T = 10, 3
INIT = "radar-s10-t3"
#: name -> (rows, columns, with topography)
BOXES = {"full": (slice(0, 900), slice(0, 900), False),
         "topography": (slice(370, 670), slice(240, 440), True)}


def parse(argv=None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--out", default="runs/finetune_radolan")
    p.add_argument("--box", choices=sorted(BOXES), default="full",
                   help="whole composite without topography, or the box with topography")
    p.add_argument("--epochs", type=int, default=4, help="epochs per stage, both runs")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate from scratch")
    p.add_argument("--finetune-lr", type=float, nargs="+", default=None,
                   help="learning rate(s) of the fine-tuning run(s) (default: --lr)")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-rainfarm", action="store_true", help="skip RainFARM (needs pysteps)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("finetune_radolan")
    rows, cols, with_topo = BOXES[args.box]
    ds = xr.open_dataset(Path(args.data_dir) / FILE, engine="netcdf4").isel(y=rows, x=cols)
    precip = ds["precip"].load()
    topo = ds["topography"].load() if with_topo else None
    log.info("RADOLAN rows %s cols %s: %s, NaN fraction %.4f, max %.1f mm/h", rows, cols,
             dict(precip.sizes),
             float(precip.isnull().mean()), float(precip.max()))

    shipped = xs.load_model(INIT)
    # the shipped model's recipe, representation (clip) included: only the weights differ
    scratch_cfg = SRConfig.recipe(S, T, preset=shipped.config.preset, tile_size=shipped.config.tile_size,
                                  clip=shipped.config.clip)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, mc_start_epoch=1,
                  seed=args.seed, n_folds=4, fold=0, augment=True, device="cpu", progress=False)
    plan = [("from scratch", "ck-from", {"config": scratch_cfg, "lr": args.lr})]
    plan += [(f"fine-tuned {INIT}, lr {lr:g}", f"ck-fine-tuned-lr{lr:g}", {"init": shipped, "lr": lr})
             for lr in (args.finetune_lr or [args.lr])]
    runs, wall = {}, {}
    for name, ck, kw in plan:
        runs[name] = train(precip, S, T, topography=topo, checkpoint_dir=str(out / ck), **kw, **common)
        h = runs[name].history
        # the epochs' own times (also right when a finished run is read back from its checkpoint)
        wall[name] = sum(sum(h[s]["wall_s"]) for s in ("mean", "diffusion"))
        log.info("%s: %.1f min; valid losses mean %s, diffusion %s", name, wall[name] / 60,
                 [round(v, 5) for v in h["mean"]["valid"]], [round(v, 4) for v in h["diffusion"]["valid"]])

    # ------------------------------------------------------------------ scoring
    td = build_training_data(precip, S, T, topography=topo, config=scratch_cfg, fold=0, n_folds=4,
                             seed=args.seed)
    ctx, truth, where = validation_arrays(td)
    tiles = [td.split.tiles[0][int(k)] for _, k, _ in td.valid.records]
    topo_tiles = None if topo is None else np.stack([topo.values[t.yslice, t.xslice] for t in tiles])
    log.info("scoring on %d held-out samples (%d tiles)", len(ctx), len({(w[1], w[2]) for w in where}))
    results: dict[str, dict[str, float]] = {}
    results["bicubic"] = scores(bicubic_baseline(torch.from_numpy(ctx), S, T).numpy()[:, None], truth)
    if not args.no_rainfarm:
        results[f"RainFARM ({args.members} members)"] = scores(
            rainfarm_members(td, args.members, args.seed), truth)
    models = {f"{INIT} as shipped (zero-shot)": shipped, **runs}
    for name, m in models.items():
        tp = topo_tiles if m.normalization.get("topo_min") is not None else None
        tp = None if tp is None else tp.astype(np.float32)
        results[f"{name}: deterministic"] = scores(m.predict_mean(ctx, tp, device="cpu")[:, None], truth)
        ens = m.predict(ctx, tp, n_members=args.members, seed=args.seed, device="cpu")
        results[f"{name}: full ({args.members} members)"] = scores(ens, truth)

    text = table(results)
    print(text, flush=True)
    doc = {
        "file": FILE, "box": args.box, "rows": [rows.start, rows.stop],
        "cols": [cols.start, cols.stop], "topography": with_topo, "S": S, "T": T, "init": INIT,
        "protocol": {**{k: v for k, v in common.items() if k != "progress"},
                     "lr": {n: m.metadata["protocol"]["lr"] for n, m in runs.items()}},
        "n_samples": {n: m.metadata["n_samples"] for n, m in runs.items()},
        "held_out": "Latin-square fold 0 of 4 of the 40 px tiles (the same tiles for every method)",
        "history": {n: m.history for n, m in runs.items()},
        "cap_mm_h": {n: m.normalization["cap"] for n, m in runs.items()},
        "wall_time_min": {n: v / 60 for n, v in wall.items()},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "metrics_units": "crps, pe99, mae in mm/h; pitd, lsd unitless; lower is better",
        "results": results, "table": text,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
