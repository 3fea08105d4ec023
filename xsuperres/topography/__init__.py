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
``pooch.os_cache("xsuperres")``; :mod:`xsuperres.cache`). The bucket publishes no checksums,
so tiles are fetched with ``known_hash=None``: pooch does not verify them (a file that GDAL
cannot read is deleted from the cache and reported). Tiles over the open sea do not exist:
an HTTP 404 means sea level (0 m) there, with a warning; the 404 is remembered in the cache
(a ``.absent`` marker) so that a later, offline call does not need the network.

Heights are in metres above the EGM2008 geoid (as in the Copernicus DEM). The Copernicus DEM
licence requires the attribution kept in the output's ``source`` attribute.

Modules, one concept each:

* :mod:`.copernicus` -- GLO-90 tile names and URLs, the cached download, the mosaic,
  :func:`glo90`;
* :mod:`.target` -- the target grid (:class:`~.target.RegularTarget`,
  :class:`~.target.CurvilinearTarget`) and how a raster is averaged onto its cells;
* :mod:`.reproject` -- opening, clipping and pre-averaging a DEM, the CF-attributed
  output, :func:`from_file`.
"""

from __future__ import annotations

from .copernicus import ENV_GLO90_URL, GLO90_URL, glo90, tile_names, tile_url
from .reproject import from_file

__all__ = ["glo90", "from_file", "tile_names", "tile_url", "GLO90_URL", "ENV_GLO90_URL"]
