"""The ``xsuperres train`` sub-command.

::

    xsuperres train INPUT.nc [INPUT2.nc ...] --S 10 --T 3 --out MODEL_DIR
        [--epochs N] [--preset tiny|small|standard] [--var precip] [--topography FILE]
        [--batch-size 12] [--fold 0] [--seed 0] [--tile-size 100] [--augment] ...

Each input file is one event (samples never cross files); all must share one cadence and
grid spacing. Without ``--topography``, a 2-D variable named ``topography`` in the first
input file is used if there is one (``--no-topography`` switches this off). The trained
model is written to ``--out`` with :meth:`xsuperres.model.SRModel.save`; the folder is
created (with its parents) if it does not exist, and is checked before training starts.

The training flags (``--epochs`` .. ``--stage``, ``--valid-start``/``--valid-end``,
``--valid-events``, ``--no-progress``) are the fields of :class:`xsuperres.training.options.TrainOptions`, with
its defaults; they are checked (one :class:`TrainOptions`) before any file is read.

Errors in the inputs (missing variable, wrong units, negative values, a grid too small
for the tiling, ...) print a one-line message and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from .options import DIFFUSION_MEANS, STAGE_CHOICES, TrainOptions

__all__ = ["add_parser", "run", "main"]

_TOPO_NAMES = ("topography", "orography", "orog", "elevation", "altitude", "dem")

#: The defaults of the training flags: those of TrainOptions.
_D = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
#: Fields of TrainOptions that are not one flag each (built in :func:`_options`).
_DERIVED = ("valid", "valid_events", "progress")


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
    p.add_argument("--epochs", type=int, default=_D["epochs"],
                   help=f"maximum epochs per stage (default {_D['epochs']})")
    p.add_argument("--preset", default=None, help="U-Net size: tiny, small or standard (default tiny)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="warm start (fine-tuning) from this model: a pretrained model's name (e.g. "
                        "radar-s10-t3) or a saved-model folder; its architecture and scaling are kept")
    p.add_argument("--L", type=int, default=None, help="context length (default: the recipe's)")
    p.add_argument("--tile-size", type=int, default=None, help="HR tile side in pixels (default: the recipe's, ~100)")
    p.add_argument("--batch-size", type=int, default=_D["batch_size"],
                   help=f"batch size (default {_D['batch_size']})")
    p.add_argument("--lr", type=float, default=_D["lr"], help=f"Adam learning rate (default {_D['lr']:g})")
    p.add_argument("--patience", type=int, default=_D["patience"],
                   help=f"early-stopping patience in epochs (default {_D['patience']})")
    p.add_argument("--mc-start-epoch", type=int, default=_D["mc_start_epoch"],
                   help=f"mass conservation in the loss after this epoch (default {_D['mc_start_epoch']})")
    p.add_argument("--fold", type=int, default=_D["fold"], help=f"validation fold (default {_D['fold']})")
    p.add_argument("--n-folds", type=int, default=_D["n_folds"], help=f"number of folds (default {_D['n_folds']})")
    p.add_argument("--valid-start", default=None, help="start of a held-out validation period (time label)")
    p.add_argument("--valid-end", default=None, help="end of a held-out validation period (time label)")
    p.add_argument("--valid-events", nargs="+", default=None, metavar="EVENT",
                   help="hold these events out whole for validation (0-based input file numbers "
                        "or event names) instead of the tile folds, e.g. one per run for "
                        "leave-one-event-out")
    p.add_argument("--seed", type=int, default=_D["seed"], help=f"random seed (default {_D['seed']})")
    p.add_argument("--device", default=_D["device"], help=f"auto, cpu or cuda (default {_D['device']})")
    p.add_argument("--checkpoint-dir", default=_D["checkpoint_dir"], help="per-epoch checkpoints (a rerun resumes)")
    p.add_argument("--stage", choices=STAGE_CHOICES, default=_D["stage"], help="train both stages or the mean only")
    p.add_argument("--augment", action="store_true",
                   help="turn every training sample by a random one of the 8 rotations/reflections")
    p.add_argument("--diffusion-mean", choices=DIFFUSION_MEANS, default=_D["diffusion_mean"],
                   help="the mean the diffusion stage learns the residual around: the mean network "
                        "(default) or, for S = 1, T > 1, a temporal peer (motion needs pysteps)")
    p.add_argument("--residual-power", type=float, default=_D["residual_power"],
                   help="residual scale growing with the mean, (D + floor) ** POWER "
                        f"(default {_D['residual_power']:g}: one global scale)")
    p.add_argument("--residual-floor", type=float, default=_D["residual_floor"],
                   help=f"floor of that scale, normalized units (default {_D['residual_floor']:g})")
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


def _options(args: argparse.Namespace) -> TrainOptions:
    """The :class:`TrainOptions` of parsed arguments (a ``ValueError`` for a bad value)."""
    valid = None
    if args.valid_start is not None or args.valid_end is not None:
        valid = slice(args.valid_start, args.valid_end)
    events = None
    if args.valid_events is not None:
        events = tuple(int(v) if v.isdigit() else v for v in args.valid_events)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions) if f.name not in _DERIVED}
    return TrainOptions(**flags, valid=valid, valid_events=events, progress=not args.no_progress)


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
    options = _options(args)                            # bad settings fail before any file is read
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
    init = config = None
    if args.init is not None:
        if args.preset is not None or args.L is not None:
            raise CLIError("--preset and --L come from the --init model; leave them out")
        from .warmstart import resolve_init

        init = resolve_init(args.init)
        if args.tile_size is not None:  # train() fills the cap and checks the architecture
            config = init.config.replace(time_step=None, tile_size=args.tile_size)
    else:
        overrides: dict[str, Any] = {"preset": args.preset or "tiny"}
        if args.L is not None:
            overrides["L"] = args.L
        if args.tile_size is not None:
            overrides["tile_size"] = args.tile_size
        config = SRConfig.recipe(args.S, args.T, **overrides)
    model = train(events if len(events) > 1 else events[0], args.S, args.T, topography=topo,
                  config=config, options=options, init=init)
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
