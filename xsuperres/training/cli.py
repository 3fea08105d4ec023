"""The ``xsuperres train`` sub-command.

::

    xsuperres train INPUT.nc [INPUT2.nc ...] --S 10 --T 3 --out MODEL_DIR
        [--epochs N] [--preset tiny|standard] [--var precip] [--topography FILE]
        [--batch-size 12] [--fold 0] [--seed 0] [--tile-size 100] ...

Each input file is one event (samples never cross files); all must share one cadence and
grid spacing. Without ``--topography``, a 2-D variable named ``topography`` in the first
input file is used if there is one (``--no-topography`` switches this off). The trained
model is written to ``--out`` with :meth:`xsuperres.model.SRModel.save`; the folder is
created (with its parents) if it does not exist, and is checked before training starts.

Errors in the inputs (missing variable, wrong units, negative values, a grid too small
for the tiling, ...) print a one-line message and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

__all__ = ["add_parser", "run", "main"]

_TOPO_NAMES = ("topography", "orography", "orog", "elevation", "altitude", "dem")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object.

    Parameters
    ----------
    subparsers
        The object returned by ``ArgumentParser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The ``train`` parser; its ``func`` default is :func:`run`.
    """
    p = subparsers.add_parser(
        "train", help="train a super-resolution model on HR precipitation NetCDF files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT.nc", help="HR precipitation file(s), one event each")
    p.add_argument("--S", type=int, required=True, help="spatial factor")
    p.add_argument("--T", type=int, required=True, help="temporal factor")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the trained model, created (with its parents) if missing")
    p.add_argument("--var", default=None, help="precipitation variable (default: 'precip' or the only 3-D variable)")
    p.add_argument("--topography", default=None, metavar="FILE", help="NetCDF file with the topography (m) on the HR grid")
    p.add_argument("--topography-var", default=None, help="topography variable name")
    p.add_argument("--no-topography", action="store_true", help="train without topography (zeros)")
    p.add_argument("--epochs", type=int, default=80, help="maximum epochs per stage (default 80)")
    p.add_argument("--preset", default="tiny", help="U-Net size: tiny or standard (default tiny)")
    p.add_argument("--L", type=int, default=None, help="context length (default: the recipe's)")
    p.add_argument("--tile-size", type=int, default=None, help="HR tile side in pixels (default: the recipe's, ~100)")
    p.add_argument("--batch-size", type=int, default=12, help="batch size (default 12)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)")
    p.add_argument("--mc-start-epoch", type=int, default=20, help="mass conservation in the loss after this epoch (default 20)")
    p.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    p.add_argument("--n-folds", type=int, default=4, help="number of folds (default 4)")
    p.add_argument("--valid-start", default=None, help="start of a held-out validation period (time label)")
    p.add_argument("--valid-end", default=None, help="end of a held-out validation period (time label)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--checkpoint-dir", default=None, help="per-epoch checkpoints (a rerun resumes)")
    p.add_argument("--stage", choices=("both", "mean"), default="both", help="train both stages or the mean only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no per-epoch log lines")
    p.set_defaults(func=run)
    return p


def _open(path: str) -> xr.Dataset:
    if not Path(path).is_file():
        raise CLIError(f"{path}: no such file")
    try:
        return xr.open_dataset(path, engine="netcdf4", decode_coords="all")   # the package's engine
    except Exception as err:  # noqa: BLE001 - any reader failure
        raise CLIError(f"{path}: cannot open as NetCDF ({type(err).__name__}: {err})") from None


def _pick_precip(ds: xr.Dataset, var: str | None, path: str) -> xr.DataArray:
    names = list(ds.data_vars)
    if var is not None:
        if var not in ds.data_vars:
            raise CLIError(f"{path}: no variable {var!r}; the variables are {names}")
        return ds[var]
    if "precip" in ds.data_vars:
        return ds["precip"]
    cands = [v for v in names if ds[v].ndim == 3]
    if len(cands) != 1:
        raise CLIError(f"{path}: choose the precipitation variable with --var; the variables are {names}")
    return ds[cands[0]]


def _pick_topography(ds: xr.Dataset, var: str | None, path: str, required: bool) -> xr.DataArray | None:
    names = list(ds.data_vars)
    if var is not None:
        if var not in ds.data_vars:
            raise CLIError(f"{path}: no topography variable {var!r}; the variables are {names}")
        return ds[var]
    found = [v for v in names if str(v).lower() in _TOPO_NAMES and ds[v].ndim == 2]
    if not found and required:
        two_d = [v for v in names if ds[v].ndim == 2]
        if len(two_d) == 1:
            return ds[two_d[0]]
        raise CLIError(f"{path}: choose the topography variable with --topography-var; the variables are {names}")
    return ds[found[0]] if found else None


def run(args: argparse.Namespace) -> int:
    """Execute ``xsuperres train`` for parsed arguments; returns the exit status."""
    try:
        return _run(args)
    except CLIError as err:
        print(f"xsuperres train: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"xsuperres train: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..config import SRConfig
    from .loop import train

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("xsuperres").setLevel(logging.INFO)
    start = time.perf_counter()
    from ..cli import check_output

    inputs = [*args.inputs, args.topography]
    check_output(args.out, inputs, kind="folder")        # before hours of training, not after
    if args.checkpoint_dir is not None:
        check_output(args.checkpoint_dir, inputs, kind="folder")
    datasets = [_open(p) for p in args.inputs]
    events = [_pick_precip(ds, args.var, p) for ds, p in zip(datasets, args.inputs)]
    topo = None
    if not args.no_topography:
        if args.topography is not None:
            topo = _pick_topography(_open(args.topography), args.topography_var, args.topography, True)
        else:
            topo = _pick_topography(datasets[0], args.topography_var, args.inputs[0], False)
            if topo is not None and len(events) > 1:
                topo = [_pick_topography(ds, args.topography_var, p, False) for ds, p in zip(datasets, args.inputs)]
            if topo is not None:
                name = topo[0].name if isinstance(topo, list) else topo.name
                print(f"using the topography variable {name!r} of the input file(s) "
                      "(--no-topography to switch off)", file=sys.stderr)
    overrides: dict[str, Any] = {"preset": args.preset}
    if args.L is not None:
        overrides["L"] = args.L
    if args.tile_size is not None:
        overrides["tile_size"] = args.tile_size
    config = SRConfig.recipe(args.S, args.T, **overrides)
    valid = None
    if args.valid_start is not None or args.valid_end is not None:
        valid = slice(args.valid_start, args.valid_end)
    model = train(
        events if len(events) > 1 else events[0], args.S, args.T, topography=topo, config=config,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        mc_start_epoch=args.mc_start_epoch, fold=args.fold, n_folds=args.n_folds, valid=valid,
        seed=args.seed, device=args.device, progress=not args.no_progress,
        checkpoint_dir=args.checkpoint_dir, stage=args.stage)
    out = model.save(args.out)
    hist = model.history or {}
    meta = model.metadata
    print(f"trained {model!r}")
    print(f"samples: {meta['n_samples']['train']} train, {meta['n_samples']['valid']} valid "
          f"({meta['n_nan_skipped']['train'] + meta['n_nan_skipped']['valid']} skipped for NaN); "
          f"cap {model.normalization['cap']:.4g} mm/h")
    for stage, h in hist.items():
        if h.get("valid"):
            print(f"{stage}: {h['epochs_run']} epoch(s), best validation loss {h['best_valid']:.5g} at "
                  f"epoch {h['best_epoch']}{' (early stopping)' if h.get('early_stopped') else ''}")
    print(f"model written to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xsuperres train`` alone (``argv`` without the leading ``train``)."""
    parser = argparse.ArgumentParser(prog="xsuperres")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
