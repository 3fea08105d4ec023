"""Benchmark: ``coarsen_perfect`` against xarray's own ``.coarsen(...).mean()``.

A year of hourly 400 x 400 float32 precipitation (8760 x 400 x 400, 5.6 GB) held
in memory and wrapped as a chunked dask array, coarsened by (S, T) = (10, 3).
Both operations reduce the same dask input to an in-memory result with dask's
threaded scheduler. A plain ``sum`` over the same input is timed too, as the
cost of merely streaming the chunks.

Run::

    python benchmarks/bench_coarsen.py            # full year
    python benchmarks/bench_coarsen.py --days 30  # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

import xsuperres  # noqa: F401


def make_input(days: int, size: int, chunk_days: int) -> xr.DataArray:
    nt = 24 * days
    rng = np.random.default_rng(0)
    values = rng.random((nt, size, size), dtype=np.float32)
    values[values < 0.6] = 0.0  # zero-inflated, like precipitation
    data = dsa.from_array(values, chunks=(24 * chunk_days, size, size))
    return xr.DataArray(
        data,
        dims=("time", "y", "x"),
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq="1h"),
            "y": 1000.0 * np.arange(size)[::-1],
            "x": 1000.0 * np.arange(size),
        },
        name="precip",
        attrs={"units": "mm h-1", "standard_name": "lwe_precipitation_rate"},
    )


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--chunk-days", type=int, default=10)
    parser.add_argument("--S", type=int, default=10)
    parser.add_argument("--T", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    da = make_input(args.days, args.size, args.chunk_days)
    S, T = args.S, args.T
    print(f"input: {da.sizes['time']} x {args.size} x {args.size} float32 ({da.nbytes / 1e9:.2f} GB), "
          f"chunks of {24 * args.chunk_days} steps, coarsened by S={S}, T={T}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"dask scheduler threads, numpy {np.__version__}, dask {dask.__version__}, xarray {xr.__version__}")

    cases = {
        "stream input only (sum)": lambda: da.data.sum().compute(),
        "xarray .coarsen().mean()": lambda: da.coarsen(time=T, y=S, x=S).mean().compute(),
        "xsuperres coarsen_perfect": lambda: da.stsr.coarsen_perfect(S, T).compute(),
    }
    best: dict[str, float] = {}
    results = {}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            seconds, results[name] = timed(fn)
            best[name] = min(best.get(name, np.inf), seconds)

    ref = results["xarray .coarsen().mean()"].values
    ours = results["xsuperres coarsen_perfect"].values
    max_rel = float(np.max(np.abs(ours.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-6)))

    print(f"\n{'case':32s} {'best s':>8s}")
    for name, seconds in best.items():
        print(f"{name:32s} {seconds:8.2f}")
    xr_t, ours_t = best["xarray .coarsen().mean()"], best["xsuperres coarsen_perfect"]
    print(f"\nratio coarsen_perfect / xarray coarsen (totals): {ours_t / xr_t:.2f}")
    print(f"max relative difference to xarray's result: {max_rel:.2e}")


if __name__ == "__main__":
    main()
