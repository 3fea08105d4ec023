"""Topography on a target grid: a DEM file averaged onto the grid with rioxarray.

Runs offline. The DEM here is the embedded RADOLAN sample's own 1-km topography written
to a GeoTIFF in a temporary directory; it is averaged onto a 5-km grid over the same area
(the low-resolution grid of a model with S = 5) with ``xsuperres.topography.from_file``,
which must agree with the 5 x 5 block means of the 1-km field.

With network access, the Copernicus GLO-90 DEM tiles covering any grid are fetched (once,
then cached) and averaged the same way::

    from xsuperres.topography import glo90, tile_names
    z = glo90(ds)                      # 9 tiles N49..N51 x E006..E008, about 50 MB
    tile_names(6.0, 49.0, 8.9, 51.7)   # the tiles it needs
    # mirrors / air-gapped clusters: XSUPERRES_GLO90_URL=http://mirror/dem  (or base_url=)
    # cache: XSUPERRES_CACHE=/scratch/xsuperres-cache  (or cache=)

Run: ``python examples/05_topography.py`` (a few seconds).
"""

import tempfile
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)

import xsuperres
from xsuperres.topography import from_file, tile_names

ds = xsuperres.open_sample("radolan")            # 300 x 200 km at 1 km, polar stereographic
print("target CRS:", ds.rio.crs.to_proj4()[:60], "...")
print("GLO-90 tiles glo90(ds) would fetch:")
for name in tile_names(float(ds.lon.min()), float(ds.lat.min()),
                       float(ds.lon.max()), float(ds.lat.max())):
    print("  ", name)

# a 5-km grid over the same area: cell centres of 5 x 5 blocks of the 1-km grid
lr = ds.precip.isel(time=0).coarsen(y=5, x=5).mean()
print("5-km grid:", dict(lr.sizes))

with tempfile.TemporaryDirectory() as tmp:
    dem_path = Path(tmp) / "radolan_topography.tif"
    dem = ds.topography.rio.write_crs(ds.rio.crs)
    dem.rio.to_raster(dem_path)                  # a DEM "the user already has"
    z = from_file(dem_path, lr)

print(z)
block_mean = ds.topography.coarsen(y=5, x=5).mean().values
diff = np.abs(z.values - block_mean)
print(f"5-km topography: {float(z.min()):.1f} .. {float(z.max()):.1f} m, "
      f"max |from_file - 5x5 block mean| = {diff.max():.3f} m")
assert diff.max() < 0.01, diff.max()
