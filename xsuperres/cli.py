"""The ``xsuperres`` command line.

Sub-commands
------------
``xsuperres demo``
    Coarsen the embedded 5-min KNMI radar sample to the factors of a shipped model
    (default ``radar-s10-t3``), downscale it to three members, score them against the
    truth next to bicubic, nearest neighbour and the deterministic mean, print the
    table and save a figure.
``xsuperres coarsen INPUT.nc OUTPUT.nc --S 10 --T 3``
    Perfect-model coarsening of a NetCDF file.
``xsuperres score PRED.nc TRUTH.nc``
    The eight metrics of a prediction (optionally with a ``member`` dim).
``xsuperres downscale INPUT.nc OUTPUT.zarr --model M --members 3 [--steps K] [--chunks time=24]``
    Lazy ensemble downscaling of a NetCDF file to zarr (or NetCDF), with a progress bar.
``xsuperres train INPUT.nc --S 10 --T 3 --out MODEL_DIR``
    Train a model (:mod:`xsuperres.training.cli`).

Output paths are checked before any work is done: an output file
(``OUTPUT.nc``, ``OUTPUT.zarr``) needs an existing folder (it is not created) and must not
be one of the inputs; an output folder (``--out DIR`` of ``demo`` and ``train``) is created,
with its parents, if it does not exist. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import xarray as xr

from .downscaling.options import MEAN_METHODS
from .metrics import EXTRA_METRICS, METRICS
from .nn.samplers import DEFAULT_SAMPLER, SAMPLERS

__all__ = ["main", "format_table", "check_output", "OutputPathError"]

#: The package's NetCDF engine (the ``netCDF4`` runtime dependency; see pyproject.toml).
NETCDF_ENGINE = "netcdf4"

_ORDER = (*METRICS, *EXTRA_METRICS)
_ARROWS = {"higher": " ↑", "lower": " ↓", "closer to 1": " →1"}


def format_table(scores: Mapping[str, xr.Dataset]) -> str:
    """A fixed-width table: one row per method, one column per metric (arrows: better).

    The eight metrics, then the extra ensemble scores that every row has.
    """
    metrics = [m for m in _ORDER if all(m in s for s in scores.values())]
    first = next(iter(scores.values()))
    heads = [m + _ARROWS.get(first[m].attrs.get("better"), "") for m in metrics]
    width = max([len(n) for n in scores] + [10])
    cols = [max(10, len(h)) for h in heads]
    lines = [f"{'method':<{width}} " + " ".join(f"{h:>{c}}" for h, c in zip(heads, cols))]
    for name, ds in scores.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{float(ds[m]):{c}.4g}" for m, c in zip(metrics, cols)))
    extra = [m for m in metrics if m in EXTRA_METRICS]
    units = "units: mse mm2 h-2; mae, pe99, emd, crps mm h-1; lsd, ssim, pitd unitless"
    units += "".join(f"; {m} {first[m].attrs['units']}" for m in extra)
    arrows = "↑ higher is better, ↓ lower is better" + (", →1 closer to 1 is better"
                                                        if any(h.endswith("→1") for h in heads) else "")
    lines.append(f"{units}; {arrows}")
    return "\n".join(lines)


class OutputPathError(ValueError):
    """An output path that cannot be written: printed as one line, exit status 2."""


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _writable_dir(d: Path, what: str) -> None:
    if not d.is_dir():
        raise OutputPathError(f"{what}: {d} is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what}: no write permission in the folder {d}")


def check_output(path: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = (), *,
                 kind: str = "file") -> Path:
    """Check an output path before any work is done; the CLI's one rule for outputs.

    Parameters
    ----------
    path
        The output.
    inputs
        Paths read by the same command (``None`` entries are ignored); the output must
        not be any of them (compared with :func:`os.path.samefile` / resolved paths).
    kind
        ``"file"`` (e.g. ``OUT.nc``): its folder must exist (it is not created) and an
        existing output must be a writable file. ``"store"`` (e.g. ``OUT.zarr``): the same,
        but an existing output must be a writable folder (it is replaced).
        ``"folder"`` (``--out DIR``): created later, with its parents, if missing; an
        existing one must be a writable folder.

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputPathError
        A :class:`ValueError` whose message is one line naming the path and the fix.
    """
    out = Path(path)
    what = f"cannot write {out}"
    for inp in inputs:
        if inp is not None and _same_path(out, Path(inp)):
            raise OutputPathError(f"{what}: it is the input {inp}; choose a different output "
                                  "(writing it would destroy the input while it is read)")
    if kind == "folder":
        if out.exists():
            if not out.is_dir():
                raise OutputPathError(f"{what}: it exists and is not a folder")
            _writable_dir(out, what)
            return out
        parent = out.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        _writable_dir(parent, f"cannot create the folder {out}")
        return out
    if kind not in ("file", "store"):
        raise ValueError(f"kind must be 'file', 'store' or 'folder', got {kind!r}")
    if out.exists():
        if kind == "file" and out.is_dir():
            raise OutputPathError(f"{what}: it is a folder, not a file")
        if kind == "store" and not out.is_dir():
            raise OutputPathError(f"{what}: it exists and is not a folder (a zarr store is a folder)")
        if not os.access(out, os.W_OK):
            raise OutputPathError(f"{what}: the existing {'file' if kind == 'file' else 'store'} "
                                  "is not writable (check its permissions or choose another output)")
    parent = out.absolute().parent
    if not parent.exists():
        raise OutputPathError(f"{what}: the folder {parent} does not exist; create it first "
                              f"(mkdir -p {shlex.quote(str(parent))})")
    _writable_dir(parent, what)
    return out


def _open_var(path: str, var: str | None) -> xr.DataArray:
    ds = xr.open_dataset(path, engine=NETCDF_ENGINE, decode_coords="all")
    if var is None:
        candidates = [v for v in ds.data_vars if ds[v].ndim >= 2]
        if len(candidates) != 1:
            raise SystemExit(f"{path}: choose the variable with --var (found {candidates})")
        var = candidates[0]
    if var not in ds:
        raise SystemExit(f"{path}: no variable {var!r}; variables are {list(ds.data_vars)}")
    return ds[var]


def _wettest_window(lr: xr.DataArray, first: int, n: int) -> int:
    """Start of the ``n`` consecutive LR steps (from index ``first`` on) with the most rain."""
    import numpy as np

    sums = np.convolve(lr.sum(("y", "x")).values, np.ones(n), "valid")   # sums[i]: steps i .. i+n-1
    return first + int(np.argmax(sums[first:]))


def _demo_folder(args: argparse.Namespace) -> Path:
    """Check ``--out`` and the files the demo writes there (the folder is created later)."""
    out = check_output(args.out, kind="folder")
    names = ["xsuperres_demo_scores.txt"] + ([] if args.no_figure else ["xsuperres_demo.png"])
    for name in names:
        if (out / name).exists():
            check_output(out / name)
    return out


def _demo(args: argparse.Namespace) -> int:
    from . import interpolate, load_model, open_sample, rainfarm
    from .scoring import score

    start = time.perf_counter()
    out = _demo_folder(args)
    model = load_model(args.model)
    c = model.config
    S, T, L = c.S, c.T, c.L
    ds = open_sample(args.sample)
    truth = ds["precip"].astype("float32")
    # a square crop of whole model tiles (at most --size HR px) keeps the demo under a minute
    n_tiles = max(1, min(truth.sizes["y"], truth.sizes["x"], args.size) // c.tile_size)
    size = n_tiles * c.tile_size
    truth = truth.isel(y=slice(0, size), x=slice(0, size))
    lr_all = truth.stsr.coarsen_perfect(S, T, boundary="trim")
    b0 = _wettest_window(lr_all, L - 1, args.blocks)
    lr = lr_all.isel(time=slice(b0 - L + 1, b0 + args.blocks))            # with L-1 context steps
    truth = truth.isel(time=slice(b0 * T, (b0 + args.blocks) * T))
    print(f"xsuperres demo: model {args.model} (S={S}, T={T}, L={L}, {c.time_step}), sample "
          f"{args.sample}: {truth.sizes['time']} x {size} x {size} HR frames at the wettest "
          f"{args.blocks} LR steps ({str(truth.time.values[0])[:16]} to {str(truth.time.values[-1])[:16]}), "
          f"LR input {lr.sizes['time']} x {lr.sizes['y']} x {lr.sizes['x']} (incl. {L - 1} context steps)")
    lr_blocks = lr.isel(time=slice(L - 1, None))
    predictions = {method: interpolate(lr_blocks, S, T, method) for method in ("bicubic", "nearest")}
    # the deterministic stage through the same tiles and blending as the ensemble
    mean = lr.stsr.downscale_mean(model, context="drop", device="cpu").compute()
    predictions["deterministic mean"] = mean.assign_coords(
        {d: truth[d] for d in ("time", "y", "x") if d in truth.coords})
    ens = lr.stsr.downscale(model, n_members=args.members, steps=args.steps, context="drop",
                            seed=args.seed, device="cpu")
    ens = ens.compute()
    ens = ens.assign_coords({d: truth[d] for d in ("time", "y", "x") if d in truth.coords})
    peer_note = None
    try:  # the classical stochastic peer, when pysteps (the peers extra) is installed
        farm = rainfarm(lr_blocks, S, T, args.members, seed=args.seed).compute()
        predictions[f"RainFARM ({args.members} members)"] = farm.assign_coords(
            {d: truth[d] for d in ("time", "y", "x") if d in truth.coords})
    except ImportError:
        peer_note = ('note: RainFARM skipped: it needs pysteps (pip install "xsuperres[peers]")')
    scores = {name: score(pred, truth) for name, pred in predictions.items()}
    scores[f"full model ({args.members} members)"] = score(ens, truth)
    table = format_table(scores)
    print(table)
    if peer_note:
        print(peer_note)
    if args.sample == "knmi" and args.model.startswith("radar-"):
        print("note: the shipped radar models were trained on the same KNMI day, so this "
              "is a smoke test, not a held-out score; see the model cards.")
    out.mkdir(parents=True, exist_ok=True)                                # checked at the start
    (out / "xsuperres_demo_scores.txt").write_text(table + "\n")
    print(f"table: {out / 'xsuperres_demo_scores.txt'}")
    if not args.no_figure:
        from .plot import plot_panels

        path = out / "xsuperres_demo.png"
        wettest = truth.mean(("y", "x")).argmax("time").item()
        block = (wettest // T) * T
        times = truth.time.values[block:block + T]
        members = {f"member {m + 1}": ens.isel(member=m) for m in range(min(3, args.members))}
        plot_panels({"LR input": lr_blocks, "truth": truth, "deterministic mean": predictions["deterministic mean"],
                     **members}, times=times, path=path,
                    title=f"{args.model} on sample {args.sample}: S={S}, T={T} (mm/h)")
        print(f"figure: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _coarsen(args: argparse.Namespace) -> int:
    from .coarsen import coarsen_perfect

    check_output(args.output, [args.input])
    ds = xr.open_dataset(args.input, engine=NETCDF_ENGINE, decode_coords="all", chunks={})
    out = coarsen_perfect(ds, args.S, args.T, boundary=args.boundary)
    out.to_netcdf(args.output, engine=NETCDF_ENGINE)
    print(f"wrote {args.output}: " + ", ".join(f"{d}={n}" for d, n in out.sizes.items()))
    return 0


def _score(args: argparse.Namespace) -> int:
    from .scoring import score

    pred, truth = _open_var(args.pred, args.var), _open_var(args.truth, args.var)
    result = score(pred, truth, args.dim, extra=args.extra or ())
    if args.dim:
        print(result.to_dataframe().to_string())
    else:
        print(format_table({Path(args.pred).name: result}))
    return 0


def _downscale(args: argparse.Namespace) -> int:
    from .downscaling.cli import run_cli

    model = args.model if Path(args.model).exists() else None     # a model folder is an input too
    check_output(args.output, [args.input, args.topography, model],
                 kind="file" if str(args.output).endswith(".nc") else "store")
    return run_cli(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xsuperres", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="downscale the embedded sample with a shipped model and score it")
    demo.add_argument("--model", default="radar-s10-t3", help="pretrained model name (default radar-s10-t3)")
    demo.add_argument("--sample", default="knmi",
                      help="embedded sample; must share the model's cadence (default knmi, 5 min)")
    demo.add_argument("--members", type=int, default=3, help="ensemble members (default 3)")
    demo.add_argument("--steps", type=int, default=None,
                      help=f"sampler steps (default: those of the default sampler, "
                           f"{DEFAULT_SAMPLER}: {SAMPLERS[DEFAULT_SAMPLER].steps})")
    demo.add_argument("--blocks", type=int, default=3, help="LR time steps downscaled (default 3)")
    demo.add_argument("--size", type=int, default=120, help="HR crop size in px (default 120)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default=".", metavar="DIR",
                      help="folder for the figure and the score table, created (with its parents) "
                           "if missing (default: current folder)")
    demo.add_argument("--no-figure", action="store_true", help="print the table only")
    demo.set_defaults(func=_demo)

    coarsen = sub.add_parser("coarsen", help="perfect-model coarsening of a NetCDF file")
    coarsen.add_argument("input", help="HR NetCDF file")
    coarsen.add_argument("output", help="NetCDF file to write; its folder must exist, and it must "
                                        "not be the input")
    coarsen.add_argument("--S", type=int, required=True)
    coarsen.add_argument("--T", type=int, required=True)
    coarsen.add_argument("--boundary", choices=("exact", "trim"), default="exact")
    coarsen.set_defaults(func=_coarsen)

    score = sub.add_parser("score", help="score a prediction file against a truth file")
    score.add_argument("pred")
    score.add_argument("truth")
    score.add_argument("--var", default=None, help="variable name in both files")
    score.add_argument("--dim", action="append", default=None, help="dimension to keep (repeatable)")
    score.add_argument("--extra", action="append", default=None, choices=sorted(EXTRA_METRICS),
                       help="an ensemble score to add after the eight (repeatable; needs >= 2 members)")
    score.set_defaults(func=_score)

    down = sub.add_parser("downscale", help="downscale a NetCDF file with a model to zarr or NetCDF")
    down.add_argument("input", help="LR precipitation (NetCDF)")
    down.add_argument("output", help="output store: .zarr (default; zarr format 2 with consolidated "
                                     "metadata) or .nc; its folder must exist, and it must not be an input")
    down.add_argument("--model", required=True, help="model directory (SRModel.save) or registry name")
    down.add_argument("--members", type=int, default=3, help="ensemble size (default 3)")
    down.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's)")
    down.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=tuple(SAMPLERS),
                      help=f"diffusion sampler (default {DEFAULT_SAMPLER})")
    down.add_argument("--eta", type=float, default=0.0,
                      help="stochasticity of ddim and dpmpp_2m (default 0: deterministic given the "
                           "initial noise; 1: fresh noise at every step, for dpmpp_2m its SDE form)")
    down.add_argument("--seed", type=int, default=0)
    down.add_argument("--chunks", action="append", default=None, metavar="DIM=N",
                      help="input chunks, e.g. time=24 (repeatable; default time=24)")
    down.add_argument("--var", default=None, help="variable to downscale (default: all precipitation)")
    down.add_argument("--topography", default=None, help="NetCDF/GeoTIFF elevation (m) on the HR grid")
    down.add_argument("--context", default="pad", choices=("pad", "drop"))
    down.add_argument("--mass-conservation", default="auto",
                      choices=("auto", "tile", "tile_refill", "block", "none"),
                      help="output mass conservation: auto (block for S=1 and for tiles of more than "
                           "2x2 LR pixels, tile_refill for other tile-trained models, else the training "
                           "mode), tile (the preprint's), tile_refill (tile, with the frames its "
                           "threshold leaves all dry given their block values), block (block means "
                           "equal the input exactly) or none")
    down.add_argument("--mean", default="auto", choices=MEAN_METHODS,
                      help="conditional mean of the diffusion stage: auto (default: motion for temporal "
                           "models, S=1 and T>1, else network), network (U_det) or, for temporal models, "
                           "an interpolation in time of the LR steps around each block (motion and "
                           "linear use the step after it)")
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
