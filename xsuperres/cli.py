"""The ``xsuperres`` command line.

Sub-commands
------------
``xsuperres demo``
    Coarsen the embedded radar sample, rebuild it with the interpolation
    baselines, score them against the truth, print the table and save a figure.
``xsuperres coarsen INPUT.nc OUTPUT.nc --S 10 --T 3``
    Perfect-model coarsening of a NetCDF file.
``xsuperres score PRED.nc TRUTH.nc``
    The eight metrics of a prediction (optionally with a ``member`` dim).
``xsuperres downscale INPUT.nc OUTPUT.zarr --model M --members 3 [--steps K] [--chunks time=24]``
    Lazy ensemble downscaling of a NetCDF file to zarr (or NetCDF), with a progress bar.
``xsuperres train INPUT.nc --S 10 --T 3 --out MODEL_DIR``
    Train a model (:mod:`xsuperres.training.cli`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import xarray as xr

__all__ = ["main", "format_table"]

_ORDER = ("mse", "mae", "pe99", "lsd", "emd", "ssim", "pitd", "crps")


def format_table(scores: Mapping[str, xr.Dataset]) -> str:
    """A fixed-width table: one row per method, one column per metric (arrows: better)."""
    metrics = [m for m in _ORDER if all(m in s for s in scores.values())]
    first = next(iter(scores.values()))
    heads = [m + (" ↑" if first[m].attrs.get("better") == "higher" else " ↓") for m in metrics]
    width = max([len(n) for n in scores] + [10])
    lines = [f"{'method':<{width}} " + " ".join(f"{h:>10}" for h in heads)]
    for name, ds in scores.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{float(ds[m]):10.4g}" for m in metrics))
    lines.append("units: mse mm2 h-2; mae, pe99, emd, crps mm h-1; lsd, ssim, pitd unitless; "
                 "↑ higher is better, ↓ lower is better")
    return "\n".join(lines)


def _open_var(path: str, var: str | None) -> xr.DataArray:
    ds = xr.open_dataset(path, decode_coords="all")
    if var is None:
        candidates = [v for v in ds.data_vars if ds[v].ndim >= 2]
        if len(candidates) != 1:
            raise SystemExit(f"{path}: choose the variable with --var (found {candidates})")
        var = candidates[0]
    if var not in ds:
        raise SystemExit(f"{path}: no variable {var!r}; variables are {list(ds.data_vars)}")
    return ds[var]


def _demo(args: argparse.Namespace) -> int:
    from . import interpolate, open_sample
    from .scoring import score

    start = time.perf_counter()
    ds = open_sample(args.sample)
    truth = ds["precip"].astype("float32")
    S, T = args.S, args.T
    lr = truth.stsr.coarsen_perfect(S, T, boundary="trim")
    truth = truth.isel(time=slice(0, lr.sizes["time"] * T), y=slice(0, lr.sizes["y"] * S),
                       x=slice(0, lr.sizes["x"] * S))
    predictions = {method: interpolate(lr, S, T, method) for method in ("bicubic", "nearest")}
    scores = {name: score(pred, truth) for name, pred in predictions.items()}
    print(f"xsuperres demo: sample {args.sample or 'radolan'} "
          f"({truth.sizes['time']} x {truth.sizes['y']} x {truth.sizes['x']}), "
          f"coarsened by S={S}, T={T} to {lr.sizes['time']} x {lr.sizes['y']} x {lr.sizes['x']}")
    print(format_table(scores))
    if not args.no_figure:
        from .plot import plot_panels

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "xsuperres_demo.png"
        wettest = truth.mean(("y", "x")).argmax("time").item()
        block = (wettest // T) * T
        times = truth.time.values[block:block + T]
        plot_panels({"LR input": lr, "truth": truth, **predictions}, times=times, path=path,
                    title=f"sample {args.sample or 'radolan'}, S={S}, T={T}")
        print(f"figure: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _coarsen(args: argparse.Namespace) -> int:
    from .coarsen import coarsen_perfect

    ds = xr.open_dataset(args.input, decode_coords="all", chunks={})
    out = coarsen_perfect(ds, args.S, args.T, boundary=args.boundary)
    out.to_netcdf(args.output)
    print(f"wrote {args.output}: " + ", ".join(f"{d}={n}" for d, n in out.sizes.items()))
    return 0


def _score(args: argparse.Namespace) -> int:
    from .scoring import score

    pred, truth = _open_var(args.pred, args.var), _open_var(args.truth, args.var)
    result = score(pred, truth, args.dim)
    if args.dim:
        print(result.to_dataframe().to_string())
    else:
        print(format_table({Path(args.pred).name: result}))
    return 0


def _downscale(args: argparse.Namespace) -> int:
    from .downscale import run_cli

    return run_cli(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xsuperres", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the baselines on the embedded sample and print the scores")
    demo.add_argument("--sample", default=None, help="embedded sample name (default: radolan)")
    demo.add_argument("--S", type=int, default=10, help="spatial factor (default 10)")
    demo.add_argument("--T", type=int, default=3, help="temporal factor (default 3)")
    demo.add_argument("--out", default=".", help="folder for the figure (default: current folder)")
    demo.add_argument("--no-figure", action="store_true", help="print the table only")
    demo.set_defaults(func=_demo)

    coarsen = sub.add_parser("coarsen", help="perfect-model coarsening of a NetCDF file")
    coarsen.add_argument("input")
    coarsen.add_argument("output")
    coarsen.add_argument("--S", type=int, required=True)
    coarsen.add_argument("--T", type=int, required=True)
    coarsen.add_argument("--boundary", choices=("exact", "trim"), default="exact")
    coarsen.set_defaults(func=_coarsen)

    score = sub.add_parser("score", help="score a prediction file against a truth file")
    score.add_argument("pred")
    score.add_argument("truth")
    score.add_argument("--var", default=None, help="variable name in both files")
    score.add_argument("--dim", action="append", default=None, help="dimension to keep (repeatable)")
    score.set_defaults(func=_score)

    down = sub.add_parser("downscale", help="downscale a NetCDF file with a model to zarr or NetCDF")
    down.add_argument("input", help="LR precipitation (NetCDF)")
    down.add_argument("output", help="output store: .zarr (default) or .nc")
    down.add_argument("--model", required=True, help="model directory (SRModel.save) or registry name")
    down.add_argument("--members", type=int, default=3, help="ensemble size (default 3)")
    down.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's)")
    down.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp_2m", "ancestral"))
    down.add_argument("--seed", type=int, default=0)
    down.add_argument("--chunks", action="append", default=None, metavar="DIM=N",
                      help="input chunks, e.g. time=24 (repeatable; default time=24)")
    down.add_argument("--var", default=None, help="variable to downscale (default: all precipitation)")
    down.add_argument("--topography", default=None, help="NetCDF/GeoTIFF elevation (m) on the HR grid")
    down.add_argument("--context", default="pad", choices=("pad", "drop"))
    down.add_argument("--device", default="auto")
    down.add_argument("--no-strict", action="store_true", help="warn instead of failing on a "
                      "cadence or grid-spacing mismatch")
    down.add_argument("--no-progress", action="store_true", help="no progress bar")
    down.set_defaults(func=_downscale)

    from .training.cli import add_parser as _add_train_parser

    _add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xsuperres`` console script."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"xsuperres {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
