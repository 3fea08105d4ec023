#!/usr/bin/env python
"""How many training samples the shared radar data give, per (S, T) pair and hold-out.

For each of the preprint's pairs with the shipped models' settings (``L`` of the recipe,
their tile sizes), the four 5-min radar events of ``--data-dir`` (KNMI 2010-08-26,
MeteoSwiss 2016-07-11 and 2017-01-31, FMI 2016-09-28) on their **full grids** (no crop)
are split leave-one-event-out (``xsuperres.train(..., valid_events=[event])``) and, for
comparison, by the Latin-square tile folds (fold 0 of 4) and as the shipped models were
(rows/cols 120:280 crops, fold 0). A sample is one tile at one target LR step with its
``L``-step context; samples touching NaN (outside radar coverage) are skipped and
counted. With ``augment=True`` every sample is seen in one of 8 orientations per epoch.

Prints a table; ``--json FILE`` writes it. A minute or two on 2 cores (no training).

Usage::

    python scripts/sample_counts.py [--data-dir ../shared/data] [--json counts.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import xarray as xr

from xsuperres.config import SRConfig
from xsuperres.training.data import build_training_data

FILES = ("knmi_2010-08-26_5min.nc", "mch_20160711_5min.nc", "mch_20170131_5min.nc",
         "fmi_2016-09-28_5min.nc")
#: (S, T) -> HR tile side of the shipped model
PAIRS = {(1, 3): 40, (10, 1): 40, (10, 3): 40, (25, 6): 50}


def load(data_dir: Path, crop: slice | None) -> list[xr.DataArray]:
    events = []
    for name in FILES:
        ds = xr.open_dataset(data_dir / name, engine="netcdf4")  # the package's engine
        da = ds["precip"]
        if crop is not None:
            da = da.isel(y=crop, x=crop)
        da = da.load()
        da.name = name.removesuffix("_5min.nc")
        events.append(da)
    return events


def counts(events: list[xr.DataArray], S: int, T: int, tile: int, **split) -> dict:
    cfg = SRConfig.recipe(S, T, preset="tiny", tile_size=tile, cap=10.0)  # cap: no fit needed
    td = build_training_data(events, S, T, config=cfg, **split)
    sp = td.split
    return {"train": int(sp.train_records.size), "valid": int(sp.valid_records.size),
            "nan_skipped": int(sp.n_nan_train + sp.n_nan_valid), "tile": int(sp.tile_size),
            "L": int(td.config.L)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--json", help="write the counts here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    full = load(Path(args.data_dir), None)
    crop = load(Path(args.data_dir), slice(120, 280))
    names = [e.name for e in full]
    print("events:", ", ".join(f"{e.name} {tuple(e.shape)}" for e in full))
    rows = []
    for (S, T), tile in PAIRS.items():
        row = {"S": S, "T": T, "shipped (crops, fold 0)": counts(crop, S, T, tile, fold=0),
               "full grids, fold 0": counts(full, S, T, tile, fold=0)}
        for name in names:
            row[f"full grids, without {name}"] = counts(full, S, T, tile, valid_events=[name])
        rows.append(row)
        print(f"\n(S, T) = ({S}, {T}), L = {row['full grids, fold 0']['L']}, tile {tile} px:")
        for key, c in row.items():
            if isinstance(c, dict):
                print(f"  {key:<40s} train {c['train']:6d}  valid {c['valid']:6d}  "
                      f"(NaN-skipped {c['nan_skipped']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": names, "pairs": rows}, indent=1))


if __name__ == "__main__":
    main()
