#!/usr/bin/env python
"""Build the small radar samples embedded in ``xsuperres/data/``.

The samples are plain subsets (no resampling, no re-quantisation) of the CF-1.8
files in the shared data folder (see its ``README.md``):

* ``radolan_rw_2022-10-18_hourly_sample.nc``: DWD RADOLAN RW, rows 370:670,
  cols 240:440 of the 900 x 900 km grid (the box where GTOPO30 topography is
  complete), all 24 hourly frames, with ``topography``.
* ``knmi_2010-08-26_5min_sample.nc``: KNMI 5-min composite, rows 100:300,
  cols 100:300 of the shared 400 x 400 crop (= rows 320:520, cols 270:470 of
  the full 765 x 700 km grid; no NaN), all 92 frames.

Precipitation keeps the source packing (int16, same ``scale_factor``, fill -1),
so the decoded values are bit-identical to the shared files.

Usage (from the repository root)::

    python scripts/make_sample.py [SHARED_DATA_DIR]

``SHARED_DATA_DIR`` defaults to ``../shared/data`` relative to the repository
root.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "xsuperres" / "data"

#: name -> (source file, row slice, col slice, output file, per-sample attributes)
SAMPLES: dict[str, dict] = {
    "radolan": {
        "source": "radolan_rw_2022-10-18_hourly.nc",
        "rows": (370, 670),
        "cols": (240, 440),
        "output": "radolan_rw_2022-10-18_hourly_sample.nc",
        "attrs": {
            "title": (
                "DWD RADOLAN RW hourly radar-gauge adjusted precipitation, "
                "western Germany (300 x 200 km), 2022-10-18 (xsuperres sample)"
            ),
            "institution": "Deutscher Wetterdienst (DWD)",
            "provider": "Deutscher Wetterdienst (DWD); topography: U.S. Geological Survey (USGS)",
            "source": (
                "DWD RADOLAN RW ASCII grids, wradlib-data "
                "data/radolan/asc/RW-20221018.tar.gz; topography GTOPO30 (USGS) "
                "from wradlib-data data/geo/bonn_gtopo.tif"
            ),
            "references": (
                "Precipitation: Deutscher Wetterdienst (DWD), RADOLAN RW "
                "(hourly radar-gauge adjusted precipitation, 1 km), 2022-10-18; "
                "obtained from wradlib-data (https://github.com/wradlib/wradlib-data). "
                "Topography: GTOPO30 global 30 arc-second elevation, U.S. Geological "
                "Survey (USGS), obtained from wradlib-data data/geo/bonn_gtopo.tif. "
                "Attribution: 'Deutscher Wetterdienst'."
            ),
            "time_step": "1 hour",
        },
        "time_comment": (
            "label = end of accumulation interval: the value at 00:50 is the mean "
            "rate over the hour 23:50 (previous day) .. 00:50 UTC"
        ),
        "cell_methods": "time: mean (interval: 1 hour)",
    },
    "knmi": {
        "source": "knmi_2010-08-26_5min.nc",
        "rows": (100, 300),
        "cols": (100, 300),
        "output": "knmi_2010-08-26_5min_sample.nc",
        "attrs": {
            "title": (
                "KNMI radar precipitation, Netherlands (200 x 200 km), "
                "2010-08-26 00:00-07:35 UTC, 5-min (xsuperres sample)"
            ),
            "institution": "KNMI (Royal Netherlands Meteorological Institute)",
            "provider": "KNMI (Royal Netherlands Meteorological Institute)",
            "source": (
                "KNMI RAD_NL25_RAP_5min composite (De Bilt + Den Helder), "
                "pysteps-data radar/KNMI/2010/08/RAD_NL25_RAP_5min_*.h5"
            ),
            "references": (
                "KNMI (Royal Netherlands Meteorological Institute), radar "
                "precipitation composite RAD_NL25_RAP_5min, 2010-08-26; obtained "
                "from pysteps-data (https://github.com/pySTEPS/pysteps-data). "
                "Licensed CC BY 4.0: cite KNMI."
            ),
            "time_step": "5 minutes",
        },
        "time_comment": (
            "label = end of accumulation interval: the value at 00:05 is the mean "
            "rate over 00:00 .. 00:05 UTC (5-min accumulation x 12)"
        ),
        "cell_methods": "time: mean (interval: 5 minutes)",
    },
}


def _make_one(shared: Path, name: str, spec: dict) -> Path:
    src = shared / spec["source"]
    r0, r1 = spec["rows"]
    c0, c1 = spec["cols"]
    with xr.open_dataset(src, engine="netcdf4", decode_coords="all") as full:
        sub = full.isel(y=slice(r0, r1), x=slice(c0, c1)).load()
        src_attrs = dict(full.attrs)
        penc = dict(full["precip"].encoding)
        tenc = dict(full["time"].encoding)
        nrow, ncol = full.sizes["y"], full.sizes["x"]

    # --- checks on the cut ------------------------------------------------
    p = sub["precip"].values
    if np.isnan(p).mean() > 0.01:
        raise RuntimeError(f"{name}: more than 1% NaN in the cut box")
    if not (np.nanmean(p > 0) > 0.01):
        raise RuntimeError(f"{name}: less than 1% wet pixels in the cut box")
    if "topography" in sub and not np.isfinite(sub["topography"].values).all():
        raise RuntimeError(f"{name}: topography not complete in the cut box")

    # --- attributes -------------------------------------------------------
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    licence = src_attrs.get("license", src_attrs.get("licence", ""))
    attrs = {
        "Conventions": "CF-1.8",
        **spec["attrs"],
        "license": licence,
        "licence": licence,
        "history": (
            f"{now}: cut by xsuperres scripts/make_sample.py from {spec['source']} "
            f"(shared xsuperres data, {nrow} x {ncol} grid): rows (y) {r0}:{r1}, "
            f"cols (x) {c0}:{c1}, all {sub.sizes['time']} time steps; values "
            "copied unchanged (same int16 packing as the source)."
        ),
        "comment": (
            "Small real radar sample embedded in xsuperres for examples and tests. "
            "precip is a rate in mm h-1, 0 where dry. Time labels are the END of each "
            "accumulation interval, as in the source. Source comment: "
            + src_attrs.get("comment", "")
        ),
    }
    sub.attrs = attrs

    sub["precip"].attrs.update(
        {
            "units": "mm h-1",
            "standard_name": "lwe_precipitation_rate",
            "cell_methods": spec["cell_methods"],
        }
    )
    sub["time"].attrs.update(
        {
            "standard_name": "time",
            "long_name": "end of accumulation interval",
            "axis": "T",
            "comment": spec["time_comment"],
        }
    )
    if "topography" in sub:
        sub["topography"].attrs["long_name"] = (
            "surface altitude, GTOPO30 elevation averaged onto the 1 km grid"
        )
    sub["x"].attrs.update({"long_name": "x coordinate of projection (cell centre)"})
    sub["y"].attrs.update({"long_name": "y coordinate of projection (cell centre)"})

    # --- encoding ---------------------------------------------------------
    ny, nx = sub.sizes["y"], sub.sizes["x"]
    comp = {"zlib": True, "complevel": 9, "shuffle": True}
    enc: dict[str, dict] = {
        "precip": {
            "dtype": "int16",
            "scale_factor": float(penc["scale_factor"]),
            "_FillValue": np.int16(penc.get("_FillValue", -1)),
            "chunksizes": (min(12, sub.sizes["time"]), ny, nx),
            **comp,
        },
        "time": {"units": tenc["units"], "calendar": tenc["calendar"], "dtype": "int64"},
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
    }
    for v in ("lat", "lon"):
        if v in sub.variables:
            enc[v] = {"_FillValue": None, "dtype": "float32", **comp}
    if "topography" in sub:
        enc["topography"] = {"dtype": "float32", "_FillValue": np.float32(np.nan), **comp}

    out = OUT_DIR / spec["output"]
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    # Merge into each variable's own encoding (rather than passing ``encoding=``)
    # so that xarray keeps ``grid_mapping``/``coordinates`` from the source.
    for v in sub.variables:
        old = sub[v].encoding
        sub[v].encoding = {k: old[k] for k in ("grid_mapping", "coordinates") if k in old}
        sub[v].encoding.update(enc.get(v, {}))
    for v in ("precip", "topography"):
        if v in sub:
            sub[v].encoding["grid_mapping"] = "crs"
    sub.to_netcdf(out, engine="netcdf4", format="NETCDF4")

    # --- verify the round trip -------------------------------------------
    with xr.open_dataset(out, engine="netcdf4", decode_coords="all", mask_and_scale=False) as a, \
            xr.open_dataset(src, engine="netcdf4", decode_coords="all", mask_and_scale=False) as b:
        ref = b["precip"].isel(y=slice(r0, r1), x=slice(c0, c1)).values
        if not np.array_equal(a["precip"].values, ref):
            raise RuntimeError(f"{name}: packed precip differs from the source")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "shared",
        nargs="?",
        default=str(REPO.parent / "shared" / "data"),
        help="shared data folder (default: ../shared/data relative to the repository root)",
    )
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    for name, spec in SAMPLES.items():
        out = _make_one(shared, name, spec)
        print(f"{name}: {out.relative_to(REPO)} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
