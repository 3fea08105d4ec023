#!/usr/bin/env python
"""How much of the heavy tail the preprint's cap takes away before any network sees it.

The normalization clips every input and target at the cap (``clip(x, 0, cap) / cap``,
the 99.5th percentile of a gamma fitted to the wet training values) and the mean stage
conserves the mass of the *clipped* LR input. This script measures, on the full 400 x 400
grids of the four shared 5-min events, without any model:

* the truth's 99th and 99.9th percentiles and maximum (mm/h), the fraction of HR values
  above each shipped model's cap and the fraction of the rain mass above it;
* ``pe99`` of the **clipped truth** (``min(truth, cap)``) against the truth: what a
  perfect model of clipped targets scores;
* for the model's LR inputs (perfect coarsening by the pair's S and T): the fraction of
  LR values above the cap and the share of the LR mass the clipping removes; and
  ``pe99`` of the **best field the inputs allow under mass conservation per block**:
  the truth with every ``T x S x S`` block scaled down to the clipped LR value
  (``truth * min(1, cap / lr)``). A model that conserves the mass of its clipped input
  cannot put more rain into a block than that.

Usage::

    python scripts/cap_study.py [--json docs/results/cap_study.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr

import xsuperres as xs
from xsuperres import metrics as xm
from xsuperres.training.samples import coarsen_numpy

FILES = ("knmi_2010-08-26_5min.nc", "mch_20160711_5min.nc", "mch_20170131_5min.nc",
         "fmi_2016-09-28_5min.nc")


def study(hr: np.ndarray, S: int, T: int, cap: float) -> dict[str, float]:
    """The numbers of the module notes for one event ``hr (time, y, x)`` in mm/h."""
    nt = hr.shape[0] // T * T
    ny, nx = hr.shape[1] // S * S, hr.shape[2] // S * S
    hr = hr[:nt, :ny, :nx]
    lr = coarsen_numpy(hr, S, T)
    ok = np.isfinite(hr)
    v = hr[ok]
    clipped = np.minimum(hr, cap)
    # every T x S x S block scaled to the clipped LR value
    factor = np.where(lr > cap, cap / np.where(lr > 0, lr, 1.0), 1.0)
    full = np.repeat(np.repeat(np.repeat(factor, T, 0), S, 1), S, 2)
    conserved = hr * full
    lv = lr[np.isfinite(lr)]
    return {
        "q99_mm_h": float(np.percentile(v, 99)), "q999_mm_h": float(np.percentile(v, 99.9)),
        "max_mm_h": float(v.max()),
        "hr_fraction_above_cap": float((v > cap).mean()),
        "hr_mass_above_cap": float(np.maximum(v - cap, 0).sum() / max(v.sum(), 1e-12)),
        "pe99_clipped_truth": xm.pe99(clipped[None], hr),
        "lr_fraction_above_cap": float((lv > cap).mean()),
        "lr_mass_removed": float(np.maximum(lv - cap, 0).sum() / max(lv.sum(), 1e-12)),
        "pe99_mass_conserving_bound": xm.pe99(conserved[None], hr),
    }


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    models = {n: xs.load_model(n) for n in xs.list_models()}
    res: dict = {}
    cols = ("q99_mm_h", "hr_fraction_above_cap", "hr_mass_above_cap", "pe99_clipped_truth",
            "lr_fraction_above_cap", "lr_mass_removed", "pe99_mass_conserving_bound")
    print(f"{'event':<26}{'model':<14}{'cap':>6}" + "".join(f"{c[:18]:>20}" for c in cols))
    for f in FILES:
        hr = xr.open_dataset(Path(args.data_dir) / f, engine="netcdf4")["precip"].values.astype(np.float64)
        ev = f.removesuffix(".nc")
        res[ev] = {}
        for name, m in models.items():
            c = m.config
            r = study(hr, c.S, c.T, m.cap)
            r["cap_mm_h"] = m.cap
            res[ev][name] = r
            print(f"{ev:<26}{name:<14}{m.cap:>6.2f}" + "".join(f"{r[k]:>20.4f}" for k in cols))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
