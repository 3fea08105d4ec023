"""Copernicus DEM GLO-90: tile names and URLs, the cached download, the mosaic, :func:`glo90`.

The 1 x 1 degree tiles are named by their south-west corner,
``Copernicus_DSM_COG_30_{N|S}{lat:02d}_00_{E|W}{lon:03d}_00_DEM`` (:func:`tile_names` lists
those of a lon/lat box), at ``{base}/{stem}/{stem}.tif`` (:func:`tile_url`), where ``base``
is the ``base_url`` argument, else ``$XSUPERRES_GLO90_URL``, else :data:`GLO90_URL` (the
public AWS open-data bucket); a base containing ``{stem}`` is used as a template instead.

Tiles are fetched once with pooch into ``<cache root>/glo90/`` (the cache rule of
:mod:`xsuperres.cache`). The bucket publishes no checksums, so tiles are fetched with
``known_hash=None``: pooch does not verify them (a file that GDAL cannot read is deleted
from the cache and reported). Tiles over the open sea do not exist: an HTTP 404 means sea
level (0 m) there, with a warning, and is remembered in the cache (a ``.absent`` marker) so
that a later, offline call does not need the network.

:func:`glo90` block-averages the tiles, mosaics them (across the antimeridian on one
continuous longitude axis) and has the target grid (:mod:`.target`) average the mosaic
onto its cells.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import xarray as xr

from .. import cache as _cache
from ..cache import PathLike
from .reproject import _coarsen, _finish, _open_dem
from .target import as_target

__all__ = ["glo90", "tile_names", "tile_url", "GLO90_URL", "ENV_GLO90_URL"]

#: Default base URL of the Copernicus DEM GLO-90 tiles (AWS open data, no sign-in).
GLO90_URL = "https://copernicus-dem-90m.s3.amazonaws.com"
#: Environment variable that overrides :data:`GLO90_URL`.
ENV_GLO90_URL = "XSUPERRES_GLO90_URL"

_ATTRIBUTION = (
    "Copernicus DEM GLO-90 (c) DLR e.V. 2010-2014 and (c) Airbus Defence and Space GmbH "
    "2014-2018 provided under COPERNICUS by the European Union and ESA; all rights reserved"
)


# ---------------------------------------------------------------------------------------
# tiles: names, URLs, download
# ---------------------------------------------------------------------------------------
def _tile_stem(lat: int, lon: int) -> str:
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"Copernicus_DSM_COG_30_{ns}{abs(lat):02d}_00_{ew}{abs(lon):03d}_00_DEM"


def _wrap_lon(lon: float) -> float:
    """Longitude in [-180, 180] (180 stays 180, so a box may end at the antimeridian)."""
    if -180.0 <= lon <= 180.0:
        return float(lon)
    return (lon + 180.0) % 360.0 - 180.0


def _index_range(lo: float, hi: float) -> range:
    """Integer south-west corners of the 1-degree cells that cover [lo, hi]."""
    a = math.floor(lo)
    b = max(a + 1, math.ceil(hi))
    return range(a, b)


def tile_names(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> list[str]:
    """Copernicus DEM tiles (file stems) that cover a longitude-latitude box.

    Parameters
    ----------
    lon_min, lat_min, lon_max, lat_max
        The box in degrees (WGS 84). ``lon_min > lon_max`` is a box that crosses the
        antimeridian (e.g. ``179.5 .. -179.5``). Longitudes outside [-180, 180] are wrapped;
        latitudes are clipped to [-90, 90]. A box edge on a whole degree does not pull in
        the tile beyond it (``lat_max = 0`` needs no ``N00`` tile unless ``lat_min = 0``).

    Returns
    -------
    list of str
        Stems ``Copernicus_DSM_COG_30_{N|S}{lat:02d}_00_{E|W}{lon:03d}_00_DEM`` named by each
        tile's south-west corner (latitude 0 is ``N00``, -0.5 lies in ``S01``), ordered
        north to south, then west to east (east of the antimeridian last).

    Examples
    --------
    >>> tile_names(7.2, 45.1, 8.5, 45.9)
    ['Copernicus_DSM_COG_30_N45_00_E007_00_DEM', 'Copernicus_DSM_COG_30_N45_00_E008_00_DEM']
    >>> tile_names(179.5, -0.5, -179.5, 0.5)[:2]
    ['Copernicus_DSM_COG_30_N00_00_E179_00_DEM', 'Copernicus_DSM_COG_30_N00_00_W180_00_DEM']
    """
    vals = [float(v) for v in (lon_min, lat_min, lon_max, lat_max)]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"tile_names needs finite bounds, got {vals}")
    lon_min, lat_min, lon_max, lat_max = vals
    if lat_min > lat_max:
        raise ValueError(f"lat_min ({lat_min}) must be <= lat_max ({lat_max})")
    lat_min = min(max(lat_min, -90.0), 90.0)
    lat_max = min(max(lat_max, -90.0), 90.0)
    lats = [la for la in _index_range(lat_min, lat_max) if -90 <= la <= 89]
    if not lats:  # a box on the north pole itself
        lats = [89]

    if lon_max - lon_min >= 360.0:
        lons = list(range(-180, 180))
    else:
        lo, hi = _wrap_lon(lon_min), _wrap_lon(lon_max)
        if lo == 180.0:
            lo = -180.0
        if lo <= hi:
            lons = list(_index_range(lo, hi))
        else:  # crosses the antimeridian
            lons = list(_index_range(lo, 180.0)) + list(_index_range(-180.0, hi))
        lons = [((v + 180) % 360) - 180 for v in lons]
        lons = list(dict.fromkeys(lons))  # unique, order kept
    return [_tile_stem(la, lo_) for la in sorted(lats, reverse=True) for lo_ in lons]


def _base(base_url: Optional[str]) -> str:
    return (base_url or os.environ.get(ENV_GLO90_URL) or GLO90_URL).rstrip("/")


def tile_url(stem: str, base_url: Optional[str] = None) -> str:
    """URL of one tile: ``{base}/{stem}/{stem}.tif``, or ``base`` formatted if it has ``{stem}``."""
    base = _base(base_url)
    if "{stem}" in base:
        return base.format(stem=stem)
    return f"{base}/{stem}/{stem}.tif"


def _is_404(err: BaseException) -> bool:
    resp = getattr(err, "response", None)
    return getattr(resp, "status_code", None) == 404


def _fetch_tile(stem: str, base_url: Optional[str], cache: Path, progress: bool) -> Optional[Path]:
    """Path of the cached tile, or ``None`` when the server answers 404 (sea)."""
    import pooch

    url = tile_url(stem, base_url)
    fname = f"{stem}.tif"
    marker = cache / f"{fname}.absent"
    if (cache / fname).is_file():
        return cache / fname
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == url:
        return None
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch would advise pinning a hash we cannot know
    try:
        path = pooch.retrieve(url, known_hash=None, fname=fname, path=cache, progressbar=progress)
    except Exception as err:
        if _is_404(err):
            cache.mkdir(parents=True, exist_ok=True)
            marker.write_text(url + "\n", encoding="utf-8")
            return None
        raise OSError(
            f"could not download the Copernicus GLO-90 tile {stem} from {url}: "
            f"{type(err).__name__}: {err} (set {ENV_GLO90_URL} or base_url= for a mirror; "
            f"the cache is {cache})"
        ) from err
    finally:
        logger.setLevel(level)
    return Path(path)


# ---------------------------------------------------------------------------------------
# mosaic
# ---------------------------------------------------------------------------------------
def _zero_tile(stem: str, like_tile: Optional[xr.DataArray], target_deg: float) -> xr.DataArray:
    """A 1 x 1 degree tile of zeros (sea) at the resolution of ``like_tile``."""
    lat = int(stem.split("_")[4][1:]) * (1 if stem.split("_")[4][0] == "N" else -1)
    lon = int(stem.split("_")[6][1:]) * (1 if stem.split("_")[6][0] == "E" else -1)
    if like_tile is not None:
        xres, yres = (abs(r) for r in like_tile.rio.resolution())
    else:
        xres = yres = max(min(target_deg / 2, 0.25), 1 / 1200)
    nx, ny = max(1, round(1 / xres)), max(1, round(1 / yres))
    xs = lon + (np.arange(nx) + 0.5) / nx
    ys = lat + 1 - (np.arange(ny) + 0.5) / ny
    da = xr.DataArray(np.zeros((ny, nx), np.float32), dims=("y", "x"), coords={"y": ys, "x": xs})
    return da.rio.write_crs("EPSG:4326")


def _shift_east(arrays: list[xr.DataArray]) -> list[xr.DataArray]:
    """Tiles on both sides of the antimeridian on one continuous longitude axis.

    Tiles west of 0 get ``lon + 360`` and every tile the CRS ``+lon_wrap=180`` (longitudes
    in [0, 360)), so the mosaic is one contiguous raster across 180 E and the warper maps
    the target cells there.
    """
    wrap = "+proj=longlat +datum=WGS84 +lon_wrap=180 +no_defs"
    out = []
    for a in arrays:
        if float(a.x.min()) < 0:
            a = a.assign_coords(x=a.x + 360.0)
        a = a.rio.write_crs(wrap)
        out.append(a.rio.write_transform(a.rio.transform(recalc=True)))
    return out


# ---------------------------------------------------------------------------------------
# glo90
# ---------------------------------------------------------------------------------------
def glo90(
    like: Union[xr.DataArray, xr.Dataset],
    *,
    base_url: Optional[str] = None,
    cache: Optional[PathLike] = None,
    progress: bool = False,
) -> xr.DataArray:
    """Copernicus GLO-90 topography averaged onto the grid of ``like``.

    Parameters
    ----------
    like
        Target grid: a DataArray/Dataset with a CRS readable by rioxarray and regular x/y
        dimension coordinates (e.g. the embedded samples), a regular lat/lon grid, or 2-D
        ``lat``/``lon`` coordinates (see :mod:`xsuperres.topography.target`).
    base_url
        Where the tiles are; overrides ``$XSUPERRES_GLO90_URL`` and :data:`GLO90_URL`.
        ``{base}/{stem}/{stem}.tif``, or a template containing ``{stem}``.
    cache
        Cache root; overrides ``$XSUPERRES_CACHE`` (tiles go to ``<root>/glo90/``).
    progress
        Show download progress bars.

    Returns
    -------
    xarray.DataArray
        ``topography`` (y, x) in m (float32; ``standard_name = surface_altitude``) on the
        target cells, with the target's x/y (and lat/lon) coordinates, its CRS, and
        ``source``/``history`` naming the tiles, the URL and the resampling.

    Warns
    -----
    UserWarning
        For tiles that do not exist (HTTP 404: open sea), set to 0 m.

    Raises
    ------
    OSError
        A tile could not be downloaded (other than 404) or read.
    ValueError
        ``like`` has no usable grid.

    Examples
    --------
    >>> import xsuperres
    >>> from xsuperres.topography import glo90
    >>> ds = xsuperres.open_sample("radolan")          # doctest: +SKIP
    >>> z = glo90(ds)  # 9 tiles, about 50 MB, once  # doctest: +SKIP
    """
    from rioxarray.merge import merge_arrays

    target = as_target(like)
    res_deg = target.resolution_deg()
    # cell-edge bounds plus two GLO-90 pixels (3 arcsec each), so that edge cells see all of
    # their footprint without pulling in a neighbouring row of tiles
    bounds = target.lonlat_bounds(margin=2 / 1200)
    stems = tile_names(*bounds)
    if len(stems) > 2000:
        raise ValueError(
            f"the target grid needs {len(stems)} GLO-90 tiles; split it into smaller regions"
        )
    tdir = _cache.cache_root(cache, _cache.GLO90)
    found: list[tuple[str, xr.DataArray]] = []
    absent: list[str] = []
    for stem in stems:
        path = _fetch_tile(stem, base_url, tdir, progress)
        if path is None:
            absent.append(stem)
            continue
        try:
            da = _open_dem(path).astype(np.float32)
        except Exception as err:
            Path(path).unlink(missing_ok=True)
            raise OSError(
                f"GLO-90 tile {path} is not a readable GeoTIFF ({err}); it was removed from "
                "the cache, try again"
            ) from err
        found.append((stem, _coarsen(da, res_deg)))
    base = _base(base_url)
    if absent:
        warnings.warn(
            f"{len(absent)} of {len(stems)} Copernicus GLO-90 tiles do not exist at {base} "
            f"(HTTP 404: open sea); their area is set to sea level, 0 m: {', '.join(absent)}",
            UserWarning,
            stacklevel=2,
        )
    if not found:
        vals = np.zeros((target.ny, target.nx), np.float32)
    else:
        arrays = [t for _, t in found] + [_zero_tile(s, found[0][1], res_deg) for s in absent]
        xres = min(abs(t.rio.resolution()[0]) for t in arrays)
        yres = min(abs(t.rio.resolution()[1]) for t in arrays)
        lon_min, lat_min, lon_max, lat_max = bounds
        if lon_min > lon_max:  # across the antimeridian
            arrays = _shift_east(arrays)
        mosaic = merge_arrays(arrays, res=(xres, yres), nodata=np.nan)
        vals = target.resample(mosaic)
        # cells that no tile reaches (beyond the poles' tiles): sea level
        vals = np.where(np.isfinite(vals), vals, 0.0).astype(np.float32)
    n_ok = len(found)
    hist = (
        f"xsuperres.topography.glo90: {n_ok} Copernicus GLO-90 tile(s) from {base}"
        + (f", {len(absent)} absent (HTTP 404, set to 0 m)" if absent else "")
        + "; mosaicked with rioxarray.merge.merge_arrays and reprojected onto the target "
        "grid with rioxarray (average resampling)"
        + target.method
    )
    return _finish(vals, target, hist, f"{_ATTRIBUTION}. Tiles: {', '.join(stems)}",
                   "surface altitude above the EGM2008 geoid (Copernicus GLO-90 DEM)")
