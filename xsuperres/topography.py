"""Topography for a target grid: Copernicus GLO-90 DEM tiles (pooch) or a DEM file, averaged
onto the grid with rioxarray.

:func:`glo90` works out the 1 x 1 degree tiles of the Copernicus DEM GLO-90 (90 m) that cover
a target grid (:func:`tile_names`), downloads them once into the xsuperres cache with pooch,
mosaics them (:func:`rioxarray.merge.merge_arrays`) and reprojects the mosaic onto the target
grid with **average** resampling. :func:`from_file` does the same with a DEM the user already
has (any raster GDAL reads, in any CRS).

Target grids (``like``):

* a DataArray/Dataset whose CRS rioxarray reads (``like.rio.crs``: a ``grid_mapping``
  variable, a ``spatial_ref`` coordinate, ...) with 1-D x/y dimension coordinates of a
  regular grid -- the output is on exactly these cells;
* a regular latitude-longitude grid: 1-D ``lat``/``lon`` (or ``latitude``/``longitude``)
  dimension coordinates and no CRS (taken as WGS 84, EPSG:4326);
* a curvilinear grid: 2-D ``lat``/``lon`` coordinates over the (y, x) dimensions and no CRS.
  The DEM is first averaged onto a regular latitude-longitude grid whose spacing matches the
  target's mean cell size, then interpolated bilinearly at the cell centres (an
  approximation of the cell average; grids that cross the antimeridian or contain a pole
  are not supported in this mode -- give such grids a CRS).

Tiles and their URL: ``Copernicus_DSM_COG_30_{N|S}{lat:02d}_00_{E|W}{lon:03d}_00_DEM`` named by
their south-west corner, at ``{base}/{stem}/{stem}.tif``, where ``base`` is the ``base_url``
argument, else ``$XSUPERRES_GLO90_URL``, else :data:`GLO90_URL` (the public AWS open-data
bucket). A base containing ``{stem}`` is used as a template instead (``.../{stem}.tif`` for a
flat mirror). Tiles are cached in ``<cache root>/glo90/`` (``$XSUPERRES_CACHE`` or
``pooch.os_cache("xsuperres")``). The bucket publishes no checksums, so tiles are fetched
with ``known_hash=None``: pooch does not verify them (a file that GDAL cannot read is
deleted from the cache and reported). Tiles over the open sea do not exist: an HTTP 404
means sea level (0 m) there, with a warning; the 404 is remembered in the cache (a
``.absent`` marker) so that a later, offline call does not need the network.

Heights are in metres above the EGM2008 geoid (as in the Copernicus DEM). The Copernicus DEM
licence requires the attribution kept in the output's ``source``/``license`` attributes.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import xarray as xr

__all__ = ["glo90", "from_file", "tile_names", "tile_url", "GLO90_URL", "ENV_GLO90_URL"]

#: Default base URL of the Copernicus DEM GLO-90 tiles (AWS open data, no sign-in).
GLO90_URL = "https://copernicus-dem-90m.s3.amazonaws.com"
#: Environment variable that overrides :data:`GLO90_URL`.
ENV_GLO90_URL = "XSUPERRES_GLO90_URL"

_ATTRIBUTION = (
    "Copernicus DEM GLO-90 (c) DLR e.V. 2010-2014 and (c) Airbus Defence and Space GmbH "
    "2014-2018 provided under COPERNICUS by the European Union and ESA; all rights reserved"
)
PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------------------
# tiles
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


def _cache_root(cache: Optional[PathLike]) -> Path:
    """Same rule as :func:`xsuperres.pretrained.cache_root` (kept here: no torch import)."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("XSUPERRES_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("xsuperres"))


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
# target grids
# ---------------------------------------------------------------------------------------
_LAT_NAMES = ("lat", "latitude", "nav_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon")


def _coord(like, names):
    for n in names:
        if n in like.coords:
            return like.coords[n]
    return None


def _grid_mapping_crs(like):
    """CRS of a CF grid-mapping coordinate that lost its ``grid_mapping`` link (e.g. after
    ``coarsen``, which drops attributes), or ``None``."""
    from pyproj import CRS as PCRS
    from rasterio.crs import CRS

    found = []
    for name, c in like.coords.items():
        if c.ndim != 0:
            continue
        a = c.attrs
        if not any(k in a for k in ("crs_wkt", "spatial_ref", "grid_mapping_name")):
            continue
        try:
            found.append(CRS.from_wkt(PCRS.from_cf(dict(a)).to_wkt()))
        except Exception:
            continue
    return found[0] if len(found) == 1 else None


class _Target:
    """What the reprojection needs to know about ``like``."""

    def __init__(self, like):
        import rioxarray  # noqa: F401  (registers .rio)

        if not isinstance(like, (xr.DataArray, xr.Dataset)):
            raise TypeError(
                f"like must be an xarray DataArray or Dataset, got {type(like).__name__}"
            )
        self.like = like
        crs = None
        try:
            crs = like.rio.crs
        except Exception:
            crs = None
        if crs is None:
            crs = _grid_mapping_crs(like)
        lat, lon = _coord(like, _LAT_NAMES), _coord(like, _LON_NAMES)
        if crs is not None:
            self.kind = "crs"
            self.crs = crs
            self.x_dim, self.y_dim = self._xy_dims(like)
        elif lat is not None and lon is not None and lat.ndim == 1 and lon.ndim == 1 \
                and lat.dims[0] in like.dims and lon.dims[0] in like.dims and lat.dims != lon.dims:
            from rasterio.crs import CRS

            self.kind = "crs"
            self.crs = CRS.from_epsg(4326)
            self.y_dim, self.x_dim = lat.dims[0], lon.dims[0]
        elif lat is not None and lon is not None and lat.ndim == 2 and lat.dims == lon.dims:
            self.kind = "latlon2d"
            self.y_dim, self.x_dim = lat.dims
            self.lat = np.asarray(lat.values, dtype=np.float64)
            self.lon = np.asarray(lon.values, dtype=np.float64)
            self.crs = None
        else:
            raise ValueError(
                "cannot tell the grid of `like`: it needs a CRS readable by rioxarray "
                "(like.rio.crs, e.g. a grid_mapping variable or like.rio.write_crs(...)) with "
                "x/y dimension coordinates, 1-D lat/lon dimension coordinates, or 2-D lat/lon "
                "coordinates"
            )
        self.ny, self.nx = like.sizes[self.y_dim], like.sizes[self.x_dim]
        if self.kind == "crs":
            for d in (self.x_dim, self.y_dim):
                if d not in like.coords:
                    raise ValueError(f"`like` needs coordinate values for its dimension {d!r}")
            xs = np.asarray(like[self.x_dim].values, dtype=np.float64)
            ys = np.asarray(like[self.y_dim].values, dtype=np.float64)
            for name, v in ((self.x_dim, xs), (self.y_dim, ys)):
                if v.size < 2:
                    raise ValueError(f"`like` needs at least 2 points along {name!r}")
                dv = np.diff(v)
                if not np.allclose(dv, dv[0], rtol=1e-6, atol=0):
                    raise ValueError(f"coordinate {name!r} of `like` is not regularly spaced")
            self.xs, self.ys = xs, ys

    @staticmethod
    def _xy_dims(like):
        try:
            return like.rio.x_dim, like.rio.y_dim
        except Exception:
            from .dims import find_dims

            d = find_dims(like, roles=("y", "x"))
            return d["x"], d["y"]

    # -------------------------------------------------------------- geometry
    def template(self) -> xr.DataArray:
        """An empty (y, x) DataArray carrying the target grid and CRS."""
        da = xr.DataArray(
            np.zeros((self.ny, self.nx), dtype=np.float32),
            dims=(self.y_dim, self.x_dim),
            coords={self.y_dim: self.ys, self.x_dim: self.xs},
        )
        da = da.rio.set_spatial_dims(x_dim=self.x_dim, y_dim=self.y_dim, inplace=False)
        return da.rio.write_crs(self.crs)

    def lonlat_bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) of the cell edges; lon_min > lon_max across 180."""
        if self.kind == "latlon2d":
            lat, lon = self.lat, self.lon
            dlat = self._spacing_deg()[0]  # half a cell, with room: pad by 2 cells
            coslat = max(math.cos(math.radians(float(np.nanmax(np.abs(lat))))), 0.05)
            pad_lat, pad_lon = 2 * dlat + margin, 2 * dlat / coslat + margin
            return (float(np.nanmin(lon)) - pad_lon, max(float(np.nanmin(lat)) - pad_lat, -90.0),
                    float(np.nanmax(lon)) + pad_lon, min(float(np.nanmax(lat)) + pad_lat, 90.0))
        from rasterio.warp import transform_bounds

        dx = abs(self.xs[1] - self.xs[0])
        dy = abs(self.ys[1] - self.ys[0])
        left, right = self.xs.min() - dx / 2, self.xs.max() + dx / 2
        bottom, top = self.ys.min() - dy / 2, self.ys.max() + dy / 2
        if self.crs.is_geographic:
            b = (left, bottom, right, top)
        else:
            b = transform_bounds(self.crs, "EPSG:4326", left, bottom, right, top, densify_pts=51)
        lon_min, lat_min, lon_max, lat_max = (float(v) for v in b)
        return (lon_min - margin, max(lat_min - margin, -90.0),
                lon_max + margin, min(lat_max + margin, 90.0))

    def _spacing_deg(self) -> tuple[float, float]:
        """Mean cell size of a 2-D lat/lon grid, (dlat, dlon) in degrees."""
        lat, lon = self.lat, self.lon
        coslat = np.cos(np.radians(lat))

        def step(axis):
            if lat.shape[axis] < 2:
                return np.inf
            dl = np.diff(lat, axis=axis)
            dn = np.diff(lon, axis=axis)
            dn = (dn + 180.0) % 360.0 - 180.0
            c = coslat[tuple(slice(0, -1) if a == axis else slice(None) for a in range(2))]
            return float(np.nanmedian(np.hypot(dl, dn * c)))

        s = min(step(0), step(1))
        if not math.isfinite(s) or s <= 0:
            raise ValueError("cannot work out the cell size of the 2-D lat/lon grid")
        cmean = max(float(np.nanmean(coslat)), 0.05)
        return s, s / cmean

    def resolution_deg(self) -> float:
        """Rough target cell size in degrees of latitude (to pre-average the DEM)."""
        if self.kind == "latlon2d":
            return self._spacing_deg()[0]
        dx = abs(self.xs[1] - self.xs[0])
        dy = abs(self.ys[1] - self.ys[0])
        if self.crs.is_geographic:
            return min(dx, dy)
        try:
            unit = self.crs.linear_units_factor[1]
        except Exception:
            unit = 1.0
        return min(dx, dy) * unit / 111_320.0


# ---------------------------------------------------------------------------------------
# mosaic and reprojection
# ---------------------------------------------------------------------------------------
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


def _reproject(src: xr.DataArray, target: _Target) -> np.ndarray:
    """Average-resample ``src`` onto the target cells; returns a (ny, nx) float32 array."""
    from rasterio.enums import Resampling

    src = src.rio.write_nodata(np.nan, encoded=False)
    if target.kind == "crs":
        out = src.rio.reproject_match(target.template(), resampling=Resampling.average,
                                      nodata=np.nan)
        vals = np.asarray(out.values, dtype=np.float32)
        # reproject_match returns the template's orientation (rows as in like's y order)
        return vals
    # curvilinear: average onto a regular lat/lon grid of about the target cell size,
    # then interpolate bilinearly at the cell centres.
    dlat, dlon = target._spacing_deg()
    lon_min, lat_min, lon_max, lat_max = target.lonlat_bounds()
    nlon = max(2, int(math.ceil((lon_max - lon_min) / dlon)))
    nlat = max(2, int(math.ceil((lat_max - lat_min) / dlat)))
    lons = lon_min + (np.arange(nlon) + 0.5) * (lon_max - lon_min) / nlon
    lats = lat_max - (np.arange(nlat) + 0.5) * (lat_max - lat_min) / nlat
    tmpl = xr.DataArray(np.zeros((nlat, nlon), np.float32), dims=("y", "x"),
                        coords={"y": lats, "x": lons}).rio.write_crs("EPSG:4326")
    reg = src.rio.reproject_match(tmpl, resampling=Resampling.average, nodata=np.nan)
    reg = reg.assign_coords(y=lats, x=lons)
    at = {"y": xr.DataArray(target.lat, dims=("j", "i")),
          "x": xr.DataArray(target.lon, dims=("j", "i"))}
    vals = np.asarray(reg.interp(at, method="linear").values, dtype=np.float32)
    gap = ~np.isfinite(vals)  # next to cells the DEM does not reach: nearest cell instead
    if gap.any():
        near = np.asarray(reg.interp(at, method="nearest").values, dtype=np.float32)
        vals[gap] = near[gap]
    return vals


def _finish(
    vals: np.ndarray, target: _Target, history: str, source: str,
    long_name: str = "surface altitude",
) -> xr.DataArray:
    like = target.like
    coords = {}
    for d in (target.y_dim, target.x_dim):
        if d in like.coords:
            coords[d] = like.coords[d]
    for c in (_coord(like, _LAT_NAMES), _coord(like, _LON_NAMES)):
        if c is not None and set(c.dims) <= {target.y_dim, target.x_dim}:
            coords[c.name] = c
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    da = xr.DataArray(
        vals.astype(np.float32),
        dims=(target.y_dim, target.x_dim),
        coords=coords,
        name="topography",
        attrs={
            "standard_name": "surface_altitude",
            "long_name": long_name,
            "units": "m",
            "cell_methods": "area: mean",
            "source": source,
            "history": f"{stamp}: {history}",
        },
    )
    if target.kind == "crs":
        da = da.rio.write_crs(target.crs)
    return da


# ---------------------------------------------------------------------------------------
# public functions
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
        ``lat``/``lon`` coordinates (see the module docstring).
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

    target = _Target(like)
    res_deg = target.resolution_deg()
    # cell-edge bounds plus two GLO-90 pixels (3 arcsec each), so that edge cells see all of
    # their footprint without pulling in a neighbouring row of tiles
    bounds = target.lonlat_bounds(margin=2 / 1200)
    stems = tile_names(*bounds)
    if len(stems) > 2000:
        raise ValueError(
            f"the target grid needs {len(stems)} GLO-90 tiles; split it into smaller regions"
        )
    tdir = _cache_root(cache) / "glo90"
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
        vals = _reproject(mosaic, target)
        # cells that no tile reaches (beyond the poles' tiles): sea level
        vals = np.where(np.isfinite(vals), vals, 0.0).astype(np.float32)
    n_ok = len(found)
    hist = (
        f"xsuperres.topography.glo90: {n_ok} Copernicus GLO-90 tile(s) from {base}"
        + (f", {len(absent)} absent (HTTP 404, set to 0 m)" if absent else "")
        + "; mosaicked with rioxarray.merge.merge_arrays and reprojected onto the target "
        "grid with rioxarray (average resampling)"
        + (", then bilinear interpolation at the 2-D lat/lon cell centres"
           if target.kind == "latlon2d" else "")
    )
    return _finish(vals, target, hist, f"{_ATTRIBUTION}. Tiles: {', '.join(stems)}",
                   "surface altitude above the EGM2008 geoid (Copernicus GLO-90 DEM)")


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
        Target grid, as for :func:`glo90`.

    Returns
    -------
    xarray.DataArray
        ``topography`` (y, x) in m with CF attributes, as for :func:`glo90`.
    """
    target = _Target(like)
    dem = _open_dem(path)
    res = max(abs(r) for r in dem.rio.resolution())
    if not dem.rio.crs.is_geographic:
        res = res * dem.rio.crs.linear_units_factor[1] / 111_320.0
    dem = _clip(dem, target.lonlat_bounds(margin=max(0.01, 3 * res)), path).astype(np.float32)
    if dem.rio.crs.is_geographic:
        dem = _coarsen(dem, target.resolution_deg())
    vals = _reproject(dem, target)
    hist = (
        f"xsuperres.topography.from_file: {os.fspath(path)} reprojected onto the target grid "
        "with rioxarray (average resampling)"
        + (", then bilinear interpolation at the 2-D lat/lon cell centres"
           if target.kind == "latlon2d" else "")
    )
    return _finish(vals, target, hist, f"DEM file {Path(path).name}")
