"""From a DEM raster to topography on the target grid, and :func:`from_file`.

The DEM side of the reprojection: open a single-band raster with a CRS (:func:`_open_dem`),
clip it lazily to the target's lon/lat box (:func:`_clip`), block-average a fine
geographic raster so its pixels stay at most half a target cell (:func:`_coarsen`); then
the target grid (:mod:`.target`) averages it onto its cells, and :func:`_finish` wraps the
values as the CF-attributed ``topography`` DataArray (``history`` through
:func:`xsuperres.cf.append_history`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import xarray as xr

from ..cache import PathLike
from ..cf import append_history
from .target import Target, as_target

__all__ = ["from_file"]


def _open_dem(path: PathLike) -> xr.DataArray:
    import rioxarray

    da = rioxarray.open_rasterio(path, masked=True)
    if "band" in da.dims:
        if da.sizes["band"] != 1:
            raise ValueError(f"{path}: expected a single-band DEM, got {da.sizes['band']} bands")
        da = da.isel(band=0, drop=True)
    if da.rio.crs is None:
        raise ValueError(f"{path} has no CRS; cannot place it on the target grid")
    return da


def _clip(dem: xr.DataArray, bounds: tuple[float, float, float, float], path) -> xr.DataArray:
    """Clip a (lazily opened) DEM to a lon/lat box plus a few of its pixels, before reading."""
    from rioxarray.exceptions import NoDataInBounds

    lon_min, lat_min, lon_max, lat_max = bounds
    if lon_min > lon_max:  # across the antimeridian: read it all
        return dem
    try:
        return dem.rio.clip_box(lon_min, lat_min, lon_max, lat_max, crs="EPSG:4326",
                                auto_expand=True)
    except NoDataInBounds:
        raise ValueError(f"the DEM {path} does not overlap the target grid") from None


def _coarsen(da: xr.DataArray, target_deg: float) -> xr.DataArray:
    """Block-average a geographic tile so its pixels stay <= half the target cell size."""
    xres, yres = (abs(r) for r in da.rio.resolution())
    kx = int(target_deg / (2 * xres)) if xres > 0 else 1
    ky = int(target_deg / (2 * yres)) if yres > 0 else 1
    # whole blocks only (a divisor of the tile size), so that no strip is left uncovered
    kx = max(d for d in range(1, max(1, kx) + 1) if da.sizes[da.rio.x_dim] % d == 0)
    ky = max(d for d in range(1, max(1, ky) + 1) if da.sizes[da.rio.y_dim] % d == 0)
    if kx == 1 and ky == 1:
        return da
    crs = da.rio.crs
    out = da.coarsen({da.rio.x_dim: kx, da.rio.y_dim: ky}).mean()
    out = out.rio.write_crs(crs)
    return out.rio.write_transform(out.rio.transform(recalc=True))


def _finish(
    vals: np.ndarray, target: Target, history: str, source: str,
    long_name: str = "surface altitude",
) -> xr.DataArray:
    """``vals`` on the target grid as ``topography`` (m, float32) with CF attributes."""
    attrs = {
        "standard_name": "surface_altitude",
        "long_name": long_name,
        "units": "m",
        "cell_methods": "area: mean",
        "source": source,
    }
    da = xr.DataArray(
        vals.astype(np.float32),
        dims=(target.y_dim, target.x_dim),
        coords=target.coords(),
        name="topography",
        attrs=append_history(attrs, history),
    )
    if target.crs is not None:
        da = da.rio.write_crs(target.crs)
    return da


def from_file(
    path: PathLike,
    like: Union[xr.DataArray, xr.Dataset],
) -> xr.DataArray:
    """Topography from a DEM file the user already has, averaged onto the grid of ``like``.

    Parameters
    ----------
    path
        A single-band raster GDAL reads (GeoTIFF, ...) with a CRS, heights in m. Its
        nodata value is honoured; cells the DEM does not cover come out as NaN.
    like
        Target grid, as for :func:`~xsuperres.topography.glo90`.

    Returns
    -------
    xarray.DataArray
        ``topography`` (y, x) in m with CF attributes, as for
        :func:`~xsuperres.topography.glo90`.
    """
    target = as_target(like)
    dem = _open_dem(path)
    res = max(abs(r) for r in dem.rio.resolution())
    if not dem.rio.crs.is_geographic:
        res = res * dem.rio.crs.linear_units_factor[1] / 111_320.0
    dem = _clip(dem, target.lonlat_bounds(margin=max(0.01, 3 * res)), path).astype(np.float32)
    if dem.rio.crs.is_geographic:
        dem = _coarsen(dem, target.resolution_deg())
    vals = target.resample(dem)
    hist = (
        f"xsuperres.topography.from_file: {os.fspath(path)} reprojected onto the target grid "
        "with rioxarray (average resampling)" + target.method
    )
    return _finish(vals, target, hist, f"DEM file {Path(path).name}")
