"""GLO-90 topography: tile naming, fetching (local HTTP server only), mosaic + reprojection.

Synthetic 1 x 1 degree GeoTIFF tiles hold a plane ``z = A lon + B lat`` (EPSG:4326, named and
laid out like the Copernicus tiles); averaged onto a projected grid, the result must equal the
plane at the target cells' lon/lat to within the resampling error. Nothing reaches the
internet: a ``http.server`` on 127.0.0.1 serves the tiles.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

rioxarray = pytest.importorskip("rioxarray")
pytest.importorskip("rasterio")
from pyproj import Transformer  # noqa: E402  (rasterio/rioxarray bring pyproj)

import xsuperres  # noqa: E402
from xsuperres.topography import from_file, glo90, tile_names, tile_url  # noqa: E402

# rasterio/affine deprecation noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")

A, B = 100.0, 50.0  # m per degree of longitude / latitude
N = 100  # pixels per degree in the synthetic tiles (0.01 deg)


def plane(lon, lat):
    return A * np.asarray(lon) + B * np.asarray(lat)


def stem(lat: int, lon: int) -> str:
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    return f"Copernicus_DSM_COG_30_{ns}{abs(lat):02d}_00_{ew}{abs(lon):03d}_00_DEM"


# ---------------------------------------------------------------------------------------
# tile naming
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "box, expected",
    [
        # north-east
        ((7.2, 45.1, 8.5, 45.9), ["N45_00_E007", "N45_00_E008"]),
        # north-west (New York): two longitudes
        ((-74.1, 40.6, -73.9, 40.8), ["N40_00_W075", "N40_00_W074"]),
        # south-east (Sydney)
        ((151.1, -33.9, 151.3, -33.8), ["S34_00_E151"]),
        # south-west (Santiago), two latitudes, north first
        ((-70.8, -34.2, -70.2, -33.1), ["S34_00_W071", "S35_00_W071"]),
        # equator: latitude exactly 0 is N00, -0.5 is S01
        ((10.5, 0.0, 10.5, 0.0), ["N00_00_E010"]),
        ((10.5, -0.5, 10.6, -0.2), ["S01_00_E010"]),
        ((10.5, -0.5, 10.6, 0.5), ["N00_00_E010", "S01_00_E010"]),
        # prime meridian: 0 is E000, -0.5 is W001
        ((-0.5, 51.2, 0.3, 51.7), ["N51_00_W001", "N51_00_E000"]),
        # box edges on whole degrees do not pull in the next tile
        ((7.0, 45.0, 8.0, 46.0), ["N45_00_E007"]),
        ((-1.0, -1.0, 0.0, 0.0), ["S01_00_W001"]),
        # antimeridian crossing: E179 and W180
        ((179.5, 10.2, -179.5, 10.8), ["N10_00_E179", "N10_00_W180"]),
        ((179.5, -0.5, -179.5, 0.5),
         ["N00_00_E179", "N00_00_W180", "S01_00_E179", "S01_00_W180"]),
        # ending on the antimeridian; longitudes beyond 180 wrap
        ((179.5, 0.2, 180.0, 0.4), ["N00_00_E179"]),
        ((-180.0, 0.2, -179.5, 0.4), ["N00_00_W180"]),
        ((190.5, 0.2, 190.7, 0.4), ["N00_00_W170"]),
        # poles
        ((20.2, 89.5, 20.4, 90.0), ["N89_00_E020"]),
        ((20.2, -90.0, 20.4, -89.5), ["S90_00_E020"]),
    ],
)
def test_tile_names(box, expected):
    assert tile_names(*box) == [f"Copernicus_DSM_COG_30_{e}_00_DEM" for e in expected]


def test_tile_names_whole_world_width_and_errors():
    names = tile_names(-200, 10.5, 200, 10.6)
    assert len(names) == 360 and len(set(names)) == 360
    assert names[0].endswith("N10_00_W180_00_DEM") and names[-1].endswith("N10_00_E179_00_DEM")
    with pytest.raises(ValueError, match="lat_min"):
        tile_names(0, 1, 1, 0)
    with pytest.raises(ValueError, match="finite"):
        tile_names(0, np.nan, 1, 1)


def test_tile_url_default_env_and_template(monkeypatch):
    monkeypatch.delenv("XSUPERRES_GLO90_URL", raising=False)
    s = stem(45, 7)
    assert tile_url(s) == f"https://copernicus-dem-90m.s3.amazonaws.com/{s}/{s}.tif"
    monkeypatch.setenv("XSUPERRES_GLO90_URL", "http://mirror.example/dem/")
    assert tile_url(s) == f"http://mirror.example/dem/{s}/{s}.tif"
    assert tile_url(s, "http://flat.example/{stem}.tif") == f"http://flat.example/{s}.tif"


# ---------------------------------------------------------------------------------------
# local server and synthetic tiles
# ---------------------------------------------------------------------------------------
def write_tile(root: Path, lat: int, lon: int, n: int = N, wrap360: bool = False) -> Path:
    """A Copernicus-like tile ``{stem}/{stem}.tif`` holding the plane (float32, EPSG:4326)."""
    s = stem(lat, lon)
    xs = lon + (np.arange(n) + 0.5) / n
    ys = lat + 1 - (np.arange(n) + 0.5) / n
    lon_v = np.where(xs < 0, xs + 360, xs) if wrap360 else xs
    da = xr.DataArray(
        plane(lon_v[None, :], ys[:, None]).astype("float32"),
        dims=("y", "x"), coords={"y": ys, "x": xs},
    ).rio.write_crs("EPSG:4326")
    (root / s).mkdir(parents=True, exist_ok=True)
    p = root / s / f"{s}.tif"
    da.rio.to_raster(p)
    return p


@pytest.fixture
def server(tmp_path, local_server):
    (tmp_path / "www").mkdir()
    srv = local_server(tmp_path / "www")
    srv.url = srv.url.rstrip("/")  # the GLO-90 base URL is written without the slash
    return srv


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for v in ("XSUPERRES_CACHE", "XSUPERRES_BASE_URL", "XSUPERRES_GLO90_URL"):
        monkeypatch.delenv(v, raising=False)


def utm_grid(lon0=8.0, lat0=45.5, epsg=32632, nx=60, ny=30, dx=2000.0):
    """A (y, x) UTM grid of ``dx`` m cells centred on (lon0, lat0), y descending."""
    x0, y0 = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon0, lat0)
    xs = x0 + (np.arange(nx) - nx / 2 + 0.5) * dx
    ys = y0 - (np.arange(ny) - ny / 2 + 0.5) * dx
    like = xr.DataArray(np.zeros((ny, nx)), dims=("y", "x"), coords={"y": ys, "x": xs})
    return like.rio.write_crs(f"EPSG:{epsg}")


def cell_lonlat(like, epsg):
    X, Y = np.meshgrid(like.x.values, like.y.values)
    return Transformer.from_crs(epsg, 4326, always_xy=True).transform(X, Y)


# ---------------------------------------------------------------------------------------
# glo90
# ---------------------------------------------------------------------------------------
def test_glo90_plane_on_utm_grid_and_cache(server, tmp_path):
    for lon in (7, 8):
        write_tile(server.root, 45, lon)
    like = utm_grid()  # 120 x 60 km around 8E 45.5N: spans the E007/E008 tile boundary
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no missing tile, no warning
        z = glo90(like, base_url=server.url, cache=cache)
    lon, lat = cell_lonlat(like, 32632)
    assert lon.min() < 7.5 and lon.max() > 8.5  # both tiles are used
    assert z.dims == ("y", "x") and z.shape == like.shape and z.dtype == np.float32
    np.testing.assert_array_equal(z.x, like.x)
    np.testing.assert_array_equal(z.y, like.y)
    # 2 km cells, 0.01 deg pixels (1 m of plane each in longitude): within 0.3 m
    err = np.abs(z.values - plane(lon, lat))
    assert err.max() < 0.3, err.max()
    assert z.name == "topography"
    assert z.attrs["standard_name"] == "surface_altitude" and z.attrs["units"] == "m"
    assert "average" in z.attrs["history"] and server.url in z.attrs["history"]
    assert stem(45, 7) in z.attrs["source"] and "Copernicus" in z.attrs["source"]
    assert z.rio.crs.to_epsg() == 32632
    assert sorted(server.requests) == sorted(f"/{stem(45, lo)}/{stem(45, lo)}.tif" for lo in (7, 8))
    assert sorted(p.name for p in (cache / "glo90").iterdir()) == sorted(
        f"{stem(45, lo)}.tif" for lo in (7, 8)
    )
    # second call: served from the cache, same values, no request
    n = len(server.requests)
    z2 = glo90(like, base_url=server.url, cache=cache)
    assert len(server.requests) == n
    np.testing.assert_array_equal(z2.values, z.values)


def test_glo90_on_the_radolan_sample_grid(server, tmp_path):
    """The sample's own polar-stereographic grid (y descending, 'south' axes) and lat/lon."""
    ds = xsuperres.open_sample("radolan").drop_vars("precip").isel(
        y=slice(0, 300, 10), x=slice(0, 200, 10)
    )  # 30 x 20 cells of 1 km, 10 km apart (1-km cells, regular spacing)
    for la in (49, 50, 51):
        for lo in (6, 7, 8):
            write_tile(server.root, la, lo, n=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the 9 tiles cover the grid
        z = glo90(ds, base_url=server.url, cache=tmp_path / "c")
    assert len(server.requests) == 9
    assert z.shape == (30, 20)
    assert "lat" in z.coords and "lon" in z.coords
    err = np.abs(z.values - plane(ds.lon.values, ds.lat.values))
    assert err.max() < 0.5, err.max()


def test_glo90_missing_tile_is_sea_level_with_warning(server, tmp_path):
    write_tile(server.root, 45, 7)  # E008 does not exist: HTTP 404
    like = utm_grid()
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match=r"1 of 2 Copernicus GLO-90 tiles do not exist.*0 m.*E008"):
        z = glo90(like, base_url=server.url, cache=cache)
    # classify cells by the longitudes of their corners
    dx = 1000.0
    inv = Transformer.from_crs(32632, 4326, always_xy=True)
    X, Y = np.meshgrid(like.x.values, like.y.values)
    lons = np.stack([inv.transform(X + sx * dx, Y + sy * dx)[0]
                     for sx in (-1, 1) for sy in (-1, 1)])
    lon, lat = cell_lonlat(like, 32632)
    west, east = lons.max(0) < 7.99, lons.min(0) > 8.01
    assert west.sum() > 100 and east.sum() > 100
    assert np.all(z.values[east] == 0.0)
    np.testing.assert_allclose(z.values[west], plane(lon, lat)[west], atol=0.3)
    assert "1 absent (HTTP 404" in z.attrs["history"]
    # the 404 is remembered: an offline second call needs no server and warns again
    n = len(server.requests)
    with pytest.warns(UserWarning, match="do not exist"):
        z2 = glo90(like, base_url=server.url, cache=cache)
    assert len(server.requests) == n
    np.testing.assert_array_equal(z2.values, z.values)


def test_glo90_all_tiles_missing_gives_zeros(server, tmp_path):
    like = utm_grid(nx=4, ny=4)
    with pytest.warns(UserWarning, match="2 of 2"):
        z = glo90(like, base_url=server.url, cache=tmp_path / "c")
    assert np.all(z.values == 0) and z.shape == (4, 4)


def test_glo90_env_overrides_url_and_cache(server, tmp_path, monkeypatch):
    for lon in (7, 8):
        write_tile(server.root, 45, lon)
    monkeypatch.setenv("XSUPERRES_GLO90_URL", server.url)
    monkeypatch.setenv("XSUPERRES_CACHE", str(tmp_path / "env-cache"))
    like = utm_grid(nx=16, ny=8, dx=5000.0)  # 5 km cells: tiles are block-averaged 2 x 2 first
    z = glo90(like)
    assert len(server.requests) == 2
    assert (tmp_path / "env-cache" / "glo90" / f"{stem(45, 7)}.tif").is_file()
    lon, lat = cell_lonlat(like, 32632)
    err = np.abs(z.values - plane(lon, lat))
    assert err.max() < 0.3, err.max()


def test_glo90_server_error_is_not_taken_for_sea(tmp_path):
    like = utm_grid(nx=4, ny=4)
    with pytest.raises(OSError, match="could not download the Copernicus GLO-90 tile"):
        glo90(like, base_url="http://127.0.0.1:9", cache=tmp_path / "c")


def test_glo90_across_the_antimeridian(server, tmp_path):
    """A UTM zone 60 grid straddling 180E uses the E179 and W180 tiles."""
    write_tile(server.root, 10, 179, wrap360=True)
    write_tile(server.root, 10, -180, wrap360=True)
    like = utm_grid(lon0=180.0, lat0=10.5, epsg=32660, nx=40, ny=20, dx=2000.0)
    z = glo90(like, base_url=server.url, cache=tmp_path / "c")
    assert sorted(server.requests) == sorted(
        f"/{s}/{s}.tif" for s in (stem(10, 179), stem(10, -180))
    )
    lon, lat = cell_lonlat(like, 32660)
    lon360 = np.where(lon < 0, lon + 360, lon)
    assert lon360.min() < 179.9 and lon360.max() > 180.1
    err = np.abs(z.values - plane(lon360, lat))
    assert err.max() < 0.3, err.max()


# ---------------------------------------------------------------------------------------
# from_file and other target grids
# ---------------------------------------------------------------------------------------
@pytest.fixture
def laea_dem(tmp_path):
    """A DEM in a projected CRS (EPSG:3035, 500 m) holding the plane of its pixels' lon/lat."""
    x0, y0 = Transformer.from_crs(4326, 3035, always_xy=True).transform(8.0, 45.5)
    xs = x0 + (np.arange(-200, 200) + 0.5) * 500.0
    ys = y0 - (np.arange(-150, 150) + 0.5) * 500.0
    X, Y = np.meshgrid(xs, ys)
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(X, Y)
    da = xr.DataArray(plane(lon, lat).astype("float32"), dims=("y", "x"),
                      coords={"y": ys, "x": xs}).rio.write_crs("EPSG:3035")
    p = tmp_path / "dem_3035.tif"
    da.rio.to_raster(p)
    return p


def test_from_file_projected_dem_onto_utm_grid(laea_dem):
    like = utm_grid(nx=30, ny=20, dx=3000.0).to_dataset(name="precip")
    z = from_file(laea_dem, like)
    lon, lat = cell_lonlat(like, 32632)
    # the plane is linear in lon/lat, not in the DEM's metres: 500 m pixels, 3 km cells
    err = np.abs(z.values - plane(lon, lat))
    assert err.max() < 0.3, err.max()
    assert z.attrs["units"] == "m" and str(laea_dem) in z.attrs["history"]


def test_from_file_onto_2d_latlon_grid_without_crs(laea_dem):
    like = utm_grid(nx=20, ny=15, dx=3000.0)
    lon, lat = cell_lonlat(like, 32632)
    curvi = xr.Dataset(coords={"lat": (("y", "x"), lat), "lon": (("y", "x"), lon)})
    z = from_file(laea_dem, curvi)
    assert z.dims == ("y", "x") and "lat" in z.coords
    err = np.abs(z.values - plane(lon, lat))
    assert err.max() < 0.5, err.max()
    assert "bilinear" in z.attrs["history"]


def test_from_file_onto_regular_latlon_grid(laea_dem):
    like = xr.DataArray(np.zeros((10, 12)), dims=("lat", "lon"),
                        coords={"lat": 45.8 - 0.05 * np.arange(10),
                                "lon": 7.5 + 0.08 * np.arange(12)})
    z = from_file(laea_dem, like)
    assert z.dims == ("lat", "lon")
    LON, LAT = np.meshgrid(like.lon.values, like.lat.values)
    np.testing.assert_allclose(z.values, plane(LON, LAT), atol=0.3)
    flipped = from_file(laea_dem, like.isel(lat=slice(None, None, -1)))  # ascending lat
    np.testing.assert_allclose(flipped.values, plane(LON, LAT)[::-1], atol=0.3)


def test_bad_target_grid_is_a_clear_error(laea_dem):
    with pytest.raises(ValueError, match="cannot tell the grid"):
        from_file(laea_dem, xr.DataArray(np.zeros((3, 3)), dims=("a", "b")))
    with pytest.raises(TypeError):
        from_file(laea_dem, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="does not overlap"):
        from_file(laea_dem, utm_grid(lon0=20.0, lat0=45.5, epsg=32634, nx=4, ny=4))


def test_from_file_gives_block_means_on_a_coarsened_sample_grid(tmp_path):
    """Real data: the sample's 1-km topography averaged onto its 5-km grid = 5 x 5 block means.

    ``coarsen`` drops the ``grid_mapping`` attribute; the CRS is found on the ``crs``
    coordinate all the same.
    """
    ds = xsuperres.open_sample("radolan")
    p = tmp_path / "topo.tif"
    ds.topography.rio.write_crs(ds.rio.crs).rio.to_raster(p)
    lr = ds.precip.isel(time=0).coarsen(y=5, x=5).mean()
    assert "grid_mapping" not in lr.attrs
    z = from_file(p, lr)
    assert z.rio.crs == ds.rio.crs
    np.testing.assert_allclose(z.values, ds.topography.coarsen(y=5, x=5).mean().values,
                               atol=0.01)
    np.testing.assert_array_equal(z.lat, lr.lat)
    # the same grid given by its 2-D lat/lon only: approximate, but no gaps at the edges
    curvi = xr.Dataset(coords={"lat": (("y", "x"), lr.lat.values.astype("float64")),
                               "lon": (("y", "x"), lr.lon.values.astype("float64"))})
    z2 = from_file(p, curvi)
    assert "spatial_ref" not in z2.coords and "bilinear" in z2.attrs["history"]
    assert np.isfinite(z2.values).all()
    rel = np.abs(z2.values - z.values).mean() / float(z.values.std())
    assert rel < 0.1, rel  # observed 0.06: the lat/lon route is an approximation
