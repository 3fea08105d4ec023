"""The target grid of a topography: what the reprojection needs to know about ``like``.

Two kinds of grid, one class each, sharing the :class:`Target` interface:

* :class:`RegularTarget` -- a CRS and regular 1-D x/y dimension coordinates. The CRS is the
  one rioxarray reads (``like.rio.crs``: a ``grid_mapping`` variable, a ``spatial_ref``
  coordinate, ...), else the one of a CF grid-mapping coordinate that lost its
  ``grid_mapping`` link (e.g. after ``coarsen``), else WGS 84 (EPSG:4326) for 1-D
  ``lat``/``lon`` (or ``latitude``/``longitude``) dimension coordinates. The DEM is
  averaged onto exactly these cells (``rio.reproject_match``).
* :class:`CurvilinearTarget` -- 2-D ``lat``/``lon`` coordinates over the (y, x) dimensions
  and no CRS. The DEM is averaged onto a regular latitude-longitude grid of the target's
  mean cell size, then interpolated bilinearly at the cell centres (an approximation of
  the cell average; not for grids across the antimeridian or over a pole).

:func:`as_target` tells which one ``like`` is.
"""

from __future__ import annotations

import importlib
import math
from typing import Optional

import numpy as np
import xarray as xr

__all__ = ["Target", "RegularTarget", "CurvilinearTarget", "as_target"]

_LAT_NAMES = ("lat", "latitude", "nav_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon")


def _coord(like, names) -> Optional[xr.DataArray]:
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


def _xy_dims(like) -> tuple[str, str]:
    try:
        return like.rio.x_dim, like.rio.y_dim
    except Exception:
        from ..dims import find_dims

        d = find_dims(like, roles=("y", "x"))
        return d["x"], d["y"]


class Target:
    """A (y, x) target grid: its dimensions, its lon/lat extent, and how a DEM is averaged
    onto its cells.

    Attributes
    ----------
    like
        The DataArray/Dataset the grid comes from.
    y_dim, x_dim, ny, nx
        Its grid dimensions and their sizes.
    crs
        The ``rasterio`` CRS written on the output, or ``None`` (curvilinear grids).
    method
        What :meth:`resample` does beyond average resampling, for the ``history`` attribute
        (appended after "... with rioxarray (average resampling)"; empty if nothing).
    """

    crs = None
    method = ""

    def __init__(self, like, y_dim: str, x_dim: str):
        self.like = like
        self.y_dim, self.x_dim = y_dim, x_dim
        self.ny, self.nx = like.sizes[y_dim], like.sizes[x_dim]

    def lonlat_bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) of the cell edges; lon_min > lon_max across 180."""
        raise NotImplementedError

    def resolution_deg(self) -> float:
        """Rough target cell size in degrees of latitude (to pre-average the DEM)."""
        raise NotImplementedError

    def resample(self, src: xr.DataArray) -> np.ndarray:
        """Average-resample the raster ``src`` (with a CRS) onto the target cells.

        Returns a (ny, nx) float32 array, NaN where ``src`` has no data.
        """
        return self._resample(src.rio.write_nodata(np.nan, encoded=False))

    def _resample(self, src: xr.DataArray) -> np.ndarray:
        raise NotImplementedError

    def coords(self) -> dict:
        """The coordinates of ``like`` the output keeps: the y/x dimension coordinates and any
        lat/lon coordinates over the grid dimensions."""
        like = self.like
        out = {}
        for d in (self.y_dim, self.x_dim):
            if d in like.coords:
                out[d] = like.coords[d]
        for c in (_coord(like, _LAT_NAMES), _coord(like, _LON_NAMES)):
            if c is not None and set(c.dims) <= {self.y_dim, self.x_dim}:
                out[c.name] = c
        return out


class RegularTarget(Target):
    """A grid with a CRS and regularly spaced 1-D x/y dimension coordinates."""

    def __init__(self, like, crs, y_dim: str, x_dim: str):
        super().__init__(like, y_dim, x_dim)
        self.crs = crs
        for d in (x_dim, y_dim):
            if d not in like.coords:
                raise ValueError(f"`like` needs coordinate values for its dimension {d!r}")
        xs = np.asarray(like[x_dim].values, dtype=np.float64)
        ys = np.asarray(like[y_dim].values, dtype=np.float64)
        for name, v in ((x_dim, xs), (y_dim, ys)):
            if v.size < 2:
                raise ValueError(f"`like` needs at least 2 points along {name!r}")
            dv = np.diff(v)
            if not np.allclose(dv, dv[0], rtol=1e-6, atol=0):
                raise ValueError(f"coordinate {name!r} of `like` is not regularly spaced")
        self.xs, self.ys = xs, ys

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

    def resolution_deg(self) -> float:
        dx = abs(self.xs[1] - self.xs[0])
        dy = abs(self.ys[1] - self.ys[0])
        if self.crs.is_geographic:
            return min(dx, dy)
        try:
            unit = self.crs.linear_units_factor[1]
        except Exception:
            unit = 1.0
        return min(dx, dy) * unit / 111_320.0

    def _resample(self, src: xr.DataArray) -> np.ndarray:
        from rasterio.enums import Resampling

        out = src.rio.reproject_match(self.template(), resampling=Resampling.average,
                                      nodata=np.nan)
        # reproject_match returns the template's orientation (rows as in like's y order)
        return np.asarray(out.values, dtype=np.float32)


class CurvilinearTarget(Target):
    """A grid given by 2-D ``lat``/``lon`` coordinates over (y, x) and no CRS."""

    method = ", then bilinear interpolation at the 2-D lat/lon cell centres"

    def __init__(self, like, lat: xr.DataArray, lon: xr.DataArray):
        super().__init__(like, *lat.dims)
        self.lat = np.asarray(lat.values, dtype=np.float64)
        self.lon = np.asarray(lon.values, dtype=np.float64)

    def spacing_deg(self) -> tuple[float, float]:
        """Mean cell size, (dlat, dlon) in degrees."""
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

    def lonlat_bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        lat, lon = self.lat, self.lon
        dlat = self.spacing_deg()[0]  # half a cell, with room: pad by 2 cells
        coslat = max(math.cos(math.radians(float(np.nanmax(np.abs(lat))))), 0.05)
        pad_lat, pad_lon = 2 * dlat + margin, 2 * dlat / coslat + margin
        return (float(np.nanmin(lon)) - pad_lon, max(float(np.nanmin(lat)) - pad_lat, -90.0),
                float(np.nanmax(lon)) + pad_lon, min(float(np.nanmax(lat)) + pad_lat, 90.0))

    def resolution_deg(self) -> float:
        return self.spacing_deg()[0]

    def _resample(self, src: xr.DataArray) -> np.ndarray:
        # average onto a regular lat/lon grid of about the target cell size,
        # then interpolate bilinearly at the cell centres.
        from rasterio.enums import Resampling

        dlat, dlon = self.spacing_deg()
        lon_min, lat_min, lon_max, lat_max = self.lonlat_bounds()
        nlon = max(2, int(math.ceil((lon_max - lon_min) / dlon)))
        nlat = max(2, int(math.ceil((lat_max - lat_min) / dlat)))
        lons = lon_min + (np.arange(nlon) + 0.5) * (lon_max - lon_min) / nlon
        lats = lat_max - (np.arange(nlat) + 0.5) * (lat_max - lat_min) / nlat
        tmpl = xr.DataArray(np.zeros((nlat, nlon), np.float32), dims=("y", "x"),
                            coords={"y": lats, "x": lons}).rio.write_crs("EPSG:4326")
        reg = src.rio.reproject_match(tmpl, resampling=Resampling.average, nodata=np.nan)
        reg = reg.assign_coords(y=lats, x=lons)
        at = {"y": xr.DataArray(self.lat, dims=("j", "i")),
              "x": xr.DataArray(self.lon, dims=("j", "i"))}
        vals = np.asarray(reg.interp(at, method="linear").values, dtype=np.float32)
        gap = ~np.isfinite(vals)  # next to cells the DEM does not reach: nearest cell instead
        if gap.any():
            near = np.asarray(reg.interp(at, method="nearest").values, dtype=np.float32)
            vals[gap] = near[gap]
        return vals


def as_target(like) -> Target:
    """The target grid of ``like`` (see the module docstring for the accepted grids).

    Raises
    ------
    TypeError
        ``like`` is not an xarray DataArray or Dataset.
    ValueError
        No usable grid: no CRS, no 1-D or 2-D lat/lon, missing or irregular x/y values.
    """
    importlib.import_module("rioxarray")  # registers the .rio accessor

    if not isinstance(like, (xr.DataArray, xr.Dataset)):
        raise TypeError(
            f"like must be an xarray DataArray or Dataset, got {type(like).__name__}"
        )
    try:
        crs = like.rio.crs
    except Exception:
        crs = None
    if crs is None:
        crs = _grid_mapping_crs(like)
    lat, lon = _coord(like, _LAT_NAMES), _coord(like, _LON_NAMES)
    if crs is not None:
        x_dim, y_dim = _xy_dims(like)
        return RegularTarget(like, crs, y_dim, x_dim)
    if lat is not None and lon is not None and lat.ndim == 1 and lon.ndim == 1 \
            and lat.dims[0] in like.dims and lon.dims[0] in like.dims and lat.dims != lon.dims:
        from rasterio.crs import CRS

        return RegularTarget(like, CRS.from_epsg(4326), lat.dims[0], lon.dims[0])
    if lat is not None and lon is not None and lat.ndim == 2 and lat.dims == lon.dims:
        return CurvilinearTarget(like, lat, lon)
    raise ValueError(
        "cannot tell the grid of `like`: it needs a CRS readable by rioxarray "
        "(like.rio.crs, e.g. a grid_mapping variable or like.rio.write_crs(...)) with "
        "x/y dimension coordinates, 1-D lat/lon dimension coordinates, or 2-D lat/lon "
        "coordinates"
    )
