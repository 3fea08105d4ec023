"""The command ``xsuperres downscale``: open, chunk, downscale, write (the parser lives in :mod:`xsuperres.cli`)."""

from __future__ import annotations

import importlib
from typing import Optional

import xarray as xr

from .api import downscale

__all__ = ["run_cli"]


def _zarr_write_options() -> dict[str, int]:
    """Keyword arguments of ``to_zarr`` for the CLI's stores: zarr format 2.

    Format 2 with consolidated metadata is what every zarr reader opens (zarr-python 2
    and 3, other languages); with zarr-python 3, whose default is format 3, writing
    format 3 with consolidated metadata (xarray's default) warns that consolidated
    metadata is not part of that format's specification. With zarr-python 2 format 2
    is the only one (and older xarray has no ``zarr_format`` argument).
    """
    import zarr

    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


def _parse_chunks(items: Optional[list[str]]) -> dict[str, int]:
    chunks: dict[str, int] = {}
    for item in items or []:
        for part in str(item).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"--chunks takes DIM=N (e.g. time=24), got {part!r}")
            try:
                chunks[name.strip()] = int(value)
            except ValueError:
                raise ValueError(f"--chunks: {value!r} is not an integer (in {part!r})") from None
    return chunks


def _open_topography(path: str) -> xr.DataArray:
    if path.lower().endswith((".tif", ".tiff")):
        importlib.import_module("rioxarray")  # registers the engine

        da = xr.open_dataarray(path, engine="rasterio").squeeze(drop=True)
        return da.rename({k: v for k, v in {"band_data": "elevation"}.items() if k == da.name})
    ds = xr.open_dataset(path, decode_coords="all")
    names = [v for v in ds.data_vars if ds[v].ndim == 2]
    if len(names) != 1:
        raise ValueError(f"{path}: expected one 2-D elevation variable, found {names}")
    return ds[names[0]]


def run_cli(args) -> int:
    """``xsuperres downscale INPUT OUTPUT --model M ...`` (see ``xsuperres downscale -h``)."""
    import time as _time

    start = _time.perf_counter()
    chunks = _parse_chunks(args.chunks)
    ds = xr.open_dataset(args.input, engine="netcdf4", decode_coords="all")   # the package's engine
    if not chunks:
        chunks = {"time": 24} if "time" in ds.dims else {}
    missing = [d for d in chunks if d not in ds.dims]
    if missing:
        raise ValueError(f"--chunks names {missing}, not dimensions of {args.input} "
                         f"({', '.join(map(str, ds.dims))})")
    ds = ds.chunk(chunks)
    if args.var is not None:
        if args.var not in ds:
            raise ValueError(f"{args.input}: no variable {args.var!r}; variables are {list(ds.data_vars)}")
        keep = [args.var] + [v for v in ds.data_vars if ds[v].ndim == 0]
        ds = ds[keep]
    topo = _open_topography(args.topography) if args.topography else None
    out = downscale(ds, args.model, args.members, topography=topo, sampler=args.sampler,
                    steps=args.steps, eta=args.eta, seed=args.seed, device=args.device,
                    context=args.context, strict=not args.no_strict,
                    mass_conservation=None if args.mass_conservation == "none" else args.mass_conservation,
                    mean=args.mean)
    target = str(args.output)
    if target.endswith(".nc"):
        job = out.to_netcdf(target, engine="netcdf4", compute=False)
    else:
        job = out.to_zarr(target, mode="w", compute=False, **_zarr_write_options())
    if args.no_progress:
        job.compute()
    else:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            job.compute()
    sizes = ", ".join(f"{d}={n}" for d, n in out.sizes.items())
    print(f"wrote {target}: {sizes} ({_time.perf_counter() - start:.1f} s)")
    return 0
