"""Tests of ``xsuperres.downscaling`` (lazy, chunked, chunk-invariant ensemble downscaling).

A tiny model (S = 2, T = 2, L = 2, 8-pixel HR tiles) with random weights is built inside
the tests. Its mean network gets a positive output bias and the residual a small scale,
so that the block mass conservation never meets an all-zero block (random weights
otherwise give blocks whose prediction is <= 0 everywhere, where the preprint's fallback
does not conserve). Few sampler steps; torch on one thread; the synchronous dask
scheduler unless a test says otherwise.
"""

from __future__ import annotations

import sys
import warnings

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xsuperres
from xsuperres.downscaling import (
    blend_weights,
    downscale,
    downscale_mean,
    position_noise,
    seam_statistic,
    tile_layout,
)
from xsuperres.downscaling.workers import loaded_models

S, T, L, TILE = 2, 2, 2, 8
STEPS = 2


pytestmark = pytest.mark.usefixtures("synchronous_dask")


def _make_model(seed: int = 0, tile: int = TILE, **cfg_overrides) -> xsuperres.SRModel:
    torch.manual_seed(seed)
    kw = dict(preset="tiny", tile_size=tile, cap=20.0, L=L, mass_conservation="block",
              threshold=0.0, time_step="1h")
    kw.update(cfg_overrides)
    cfg = xsuperres.SRConfig.recipe(S, T, **kw)
    model = xsuperres.SRModel(cfg, normalization={"cap": 20.0, "residual_scale": 0.01},
                              metadata={"name": "tiny-test", "grid_spacing_m": [1000.0, 1000.0]})
    with torch.no_grad():
        model.mean_net.decoder.out[2].bias.fill_(3.0)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _make_model()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    return str(model.save(tmp_path_factory.mktemp("models") / "tiny"))


def _lr(nt=5, ny=6, nx=8, seed=0, freq="2h", dx=2000.0, units="mm h-1"):
    rng = np.random.default_rng(seed)
    data = rng.gamma(0.6, 1.5, size=(nt, ny, nx)).astype("float32")
    return xr.DataArray(
        data, dims=("time", "y", "x"), name="pr",
        coords={"time": pd.date_range("2021-06-01", periods=nt, freq=freq),
                "y": ("y", np.arange(ny) * dx, {"units": "m", "standard_name": "projection_y_coordinate"}),
                "x": ("x", 1e5 + np.arange(nx) * dx, {"units": "m", "standard_name": "projection_x_coordinate"})},
        attrs={"units": units, "standard_name": "lwe_precipitation_rate", "long_name": "rain rate"},
    )


def _run(obj, model, members=2, **kw):
    kw.setdefault("steps", STEPS)
    kw.setdefault("device", "cpu")
    return downscale(obj, model, members, **kw)


# ------------------------------------------------------------------- building blocks
def test_tile_layout_and_weights():
    assert tile_layout(8, 4, 1) == [0, 3, 4]
    assert tile_layout(6, 4, 1) == [0, 2]
    assert tile_layout(3, 4, 1) == [0]
    assert tile_layout(10, 4, 0) == [0, 4, 6]
    starts = tile_layout(100, 10, 2)
    assert starts[0] == 0 and starts[-1] == 90 and all(b - a <= 8 for a, b in zip(starts, starts[1:]))
    w = blend_weights(8, 2)
    assert np.all(w > 0) and w.max() == 1.0
    # two neighbours' weights add up to one across the overlap (a cross-fade)
    np.testing.assert_allclose(w[-2:] + w[:2], 1.0)


def test_position_noise_is_keyed_by_global_position():
    a = position_noise((0, 0, 1, 5, 0), 2, 10, 20, 8, 8)
    b = position_noise((0, 0, 1, 5, 0), 2, 14, 22, 8, 8)
    np.testing.assert_array_equal(a[:, 4:, 2:], b[:, :4, :6])
    c = position_noise((1, 0, 1, 5, 0), 2, 10, 20, 8, 8)
    assert not np.allclose(a, c)
    big = position_noise((3,), 4, 0, 0, 64, 64)
    assert abs(big.mean()) < 0.03 and abs(big.std() - 1) < 0.03


# ------------------------------------------------------------------- laziness
def test_lazy_until_computed(model):
    lr = _lr().chunk(time=2)

    def boom(*args, **kwargs):
        raise AssertionError("downscale computed something before it was asked to")

    with dask.config.set(scheduler=boom):
        out = _run(lr, model)
        out2 = _run(lr.to_dataset(), model)
    assert isinstance(out.data, dask.array.Array)
    assert isinstance(out2["pr"].data, dask.array.Array)
    # numpy input gives a dask-backed result too
    assert isinstance(_run(_lr(), model).data, dask.array.Array)
    assert np.isfinite(out.values).all()


# ------------------------------------------------------------------- coordinates and attributes
def test_coordinates_against_hand_computed_case(model):
    lr = _lr(nt=3, ny=2, nx=3)
    lat = xr.DataArray([[50.0, 50.0, 50.0], [52.0, 52.0, 52.0]], dims=("y", "x"),
                       attrs={"units": "degrees_north", "standard_name": "latitude"})
    lr = lr.assign_coords(lat=lat, crs=xr.DataArray(0, attrs={"grid_mapping_name": "transverse_mercator"}))
    lr.attrs["grid_mapping"] = "crs"
    lr.attrs["cell_methods"] = "time: mean"
    # a bare transverse Mercator (default parameters) does not give these latitudes: the
    # grid mapping is not trusted and lat is interpolated instead, with a warning
    with pytest.warns(UserWarning, match="not trusted"):
        out = _run(lr, model, members=3)
    assert out.dims == ("member", "time", "y", "x")
    assert out.dtype == np.float32
    assert out.sizes == {"member": 3, "time": 6, "y": 4, "x": 6}
    np.testing.assert_array_equal(out.member.values, [0, 1, 2])
    # LR cells of 2000 m split into two HR cells of 1000 m: centres at -500, +500 around 0
    np.testing.assert_allclose(out.y.values, [-500.0, 500.0, 1500.0, 2500.0])
    np.testing.assert_allclose(out.x.values, 1e5 + np.array([-500.0, 500.0, 1500.0, 2500.0, 3500.0, 4500.0]))
    # LR steps of 2 h split into T = 2 HR steps of 1 h starting at the block label
    expected = pd.to_datetime(["2021-06-01T00", "2021-06-01T01", "2021-06-01T02",
                               "2021-06-01T03", "2021-06-01T04", "2021-06-01T05"])
    np.testing.assert_array_equal(pd.to_datetime(out.time.values), expected)
    # 2-D latitude interpolated onto the HR grid (constant along x, increasing along y)
    assert out.lat.shape == (4, 6)
    assert np.all(np.diff(out.lat.values[:, 0]) > 0) and np.allclose(out.lat.values.std(axis=1), 0)
    assert "crs" in out.coords and out.attrs["grid_mapping"] == "crs"
    a = out.attrs
    assert a["units"] == "mm h-1" and a["standard_name"] == "lwe_precipitation_rate"
    assert a["cell_methods"] == "time: mean" and "downscale(" in a["history"]
    assert (a["xsuperres_S"], a["xsuperres_T"], a["xsuperres_L"]) == (S, T, L)
    assert a["xsuperres_sampler"] == "dpmpp_2m" and a["xsuperres_steps"] == STEPS  # the default
    assert a["xsuperres_model"] == "tiny-test" and a["xsuperres_model_version"]
    assert a["xsuperres_context"].startswith("pad")


def test_units_are_converted(model):
    lr = _lr(nt=3, ny=4, nx=4)
    per_day = (lr * 24).assign_attrs(lr.attrs, units="mm/d")
    a = _run(lr, model).values
    b = _run(per_day, model).values
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="units"):
        _run(lr.assign_attrs(units="K"), model)


def test_negative_values_raise(model):
    bad = _lr(nt=3, ny=4, nx=4)
    bad[1, 0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        _run(bad, model)
    lazy = _run(bad.chunk(time=1), model)  # dask input: found when computed
    with pytest.raises(ValueError, match="negative"):
        lazy.compute()


# ------------------------------------------------------------------- chunk invariance
def test_chunk_invariance_in_time(model):
    lr = _lr(nt=5)
    ref = _run(lr.chunk(time=5), model).values
    for chunks in ({"time": 1}, {"time": 2}, {"time": 3}):
        got = _run(lr.chunk(chunks), model).values
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # context="drop" leaves out the first L - 1 steps; the others are the same members
    drop = _run(lr.chunk(time=2), model, context="drop")
    assert drop.sizes["time"] == (5 - L + 1) * T
    assert drop.attrs["xsuperres_context"].startswith("drop")
    np.testing.assert_allclose(drop.values, ref[:, (L - 1) * T:], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(drop.time.values, lr.time.values[L - 1:].repeat(T)[::T].repeat(T)
                                  + np.tile(np.array([0, 3600], "timedelta64[s]"), 5 - L + 1))


def test_chunk_invariance_in_space(model):
    lr = _lr(nt=2, ny=6, nx=8)
    ref = _run(lr, model).values
    for chunks in ({"y": 2, "x": 3}, {"y": 5, "x": 1}, {"time": 1, "y": 3, "x": 4}):
        out = _run(lr.chunk(chunks), model)
        assert out.chunks[2] == tuple(c * S for c in lr.chunk(chunks).chunks[1])
        np.testing.assert_allclose(out.values, ref, rtol=0, atol=1e-5)


def test_chunk_invariance_of_a_stochastic_sampler(model):
    """DPM-Solver++(2M) with eta = 1 draws noise at every step: keyed by position too."""
    lr = _lr(nt=3, ny=6, nx=8, seed=3)
    kw = {"sampler": "dpmpp_2m", "steps": 4, "eta": 1.0}
    ref = _run(lr, model, **kw).values
    assert not np.allclose(ref, _run(lr, model, steps=4).values)  # the noise did something
    for chunks in ({"time": 1}, {"y": 2, "x": 3}, {"time": 2, "y": 5, "x": 1}):
        np.testing.assert_allclose(_run(lr.chunk(chunks), model, **kw).values, ref, rtol=0, atol=1e-5)


def test_seed_changes_members(model):
    lr = _lr(nt=2, ny=4, nx=4)
    a = _run(lr, model, seed=0).values
    b = _run(lr, model, seed=1).values
    assert not np.allclose(a, b)
    assert not np.allclose(a[0], a[1])  # members differ


# ------------------------------------------------------------------- seams, mass, NaN
def test_no_seams_on_smooth_field():
    m = _make_model(seed=0, tile=16)
    ny = nx = 24
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    field = (2 + np.sin(yy / 5.0) + np.cos(xx / 6.0)).astype("float32")
    lr = xr.DataArray(np.repeat(field[None], 2, 0), dims=("time", "y", "x"), name="pr",
                      coords={"time": pd.date_range("2021-06-01", periods=2, freq="2h"),
                              "y": ("y", np.arange(ny) * 2000.0, {"units": "m"}),
                              "x": ("x", np.arange(nx) * 2000.0, {"units": "m"})},
                      attrs={"units": "mm h-1"})
    blended = seam_statistic(_run(lr, m, members=1).values, S, 16)
    assert abs(blended["ratio"] - 1) < 0.10, blended
    # the statistic does see seams when tiles are butted together without blending
    raw = seam_statistic(_run(lr, m, members=1, overlap=0).values, S, 16, overlap=0)
    assert raw["ratio"] > 1.3, raw


def test_block_mass_conservation(model):
    lr = _lr(nt=4, ny=6, nx=8, seed=3)
    out = _run(lr.chunk(time=2, x=5), model, members=2)
    back = out.stsr.coarsen_perfect(S, T)
    assert back.sizes == {"member": 2, "time": 4, "y": 6, "x": 8}
    np.testing.assert_allclose(back.values, np.broadcast_to(lr.values, back.shape), rtol=0, atol=1e-4)


def test_block_conservation_asked_of_a_tile_model():
    """A model trained with tile conservation and a threshold, asked for "block" at
    inference: the blended tiles of the mean and of every member give the input back
    (the attribute and history say so); "auto" picks block for its 4 x 4 LR-pixel tile;
    its training mode ("tile") does not give the input back."""
    m = _make_model(mass_conservation="tile", threshold=0.02)
    lr = _lr(nt=4, ny=6, nx=8, seed=4)
    for out in (downscale_mean(lr.chunk(x=3), m, device="cpu", mass_conservation="block"),
                _run(lr.chunk(time=2), m, members=2, mass_conservation="block")):
        back = out.stsr.coarsen_perfect(S, T)
        np.testing.assert_allclose(back.values, np.broadcast_to(lr.values, back.shape), rtol=0,
                                   atol=1e-4)
        assert out.attrs["xsuperres_mass_conservation"] == "block"
        assert "mass_conservation='block'" in out.attrs["history"]
    assert downscale_mean(lr, m, device="cpu").attrs["xsuperres_mass_conservation"] == "block"  # auto
    own = downscale_mean(lr, m, device="cpu", mass_conservation="tile")
    assert own.attrs["xsuperres_mass_conservation"] == "tile"
    assert np.abs(own.stsr.coarsen_perfect(S, T).values - lr.values).max() > 1e-2
    with pytest.raises(ValueError, match="mass_conservation must be"):
        downscale_mean(lr, m, device="cpu", mass_conservation="blocks")


def test_nan_propagation(model):
    lr = _lr(nt=4, ny=6, nx=8, seed=1)
    lr[2, 1, 3] = np.nan
    lr[0, :, 7] = np.nan
    out = _run(lr.chunk(time=3, y=4), model).values  # (M, 8, 12, 16)
    nan_lr = np.isnan(lr.values)
    expected = nan_lr.repeat(T, 0).repeat(S, 1).repeat(S, 2)
    np.testing.assert_array_equal(np.isnan(out), np.broadcast_to(expected, out.shape))
    # a NaN in the context only (the frame before) does not blank the next block
    assert np.isfinite(out[:, 3 * T:, 1 * S:2 * S, 3 * S:4 * S]).all()


# ------------------------------------------------------------------- metadata checks
def test_cadence_and_grid_mismatch(model):
    hourly = _lr(nt=3, ny=4, nx=4, freq="1h")
    with pytest.raises(ValueError, match=r"1h.*2h|2h.*1h") as err:
        _run(hourly, model)
    assert "strict=False" in str(err.value)
    with pytest.warns(UserWarning, match="1h"):
        out = _run(hourly, model, strict=False)
    assert out.sizes["time"] == 3 * T
    coarse = _lr(nt=3, ny=4, nx=4, dx=5000.0)
    with pytest.raises(ValueError, match=r"2500.*1000|1000.*2500"):
        _run(coarse, model)
    with pytest.warns(UserWarning):
        _run(coarse, model, strict=False)


def test_irregular_time_raises(model):
    lr = _lr(nt=4, ny=4, nx=4)
    lr = lr.assign_coords(time=lr.time.values[[0, 1, 2]].tolist() + [lr.time.values[3] + np.timedelta64(1, "h")])
    with pytest.raises(ValueError, match="irregular"):
        _run(lr, model)


def test_arguments_are_validated(model):
    lr = _lr(nt=3, ny=4, nx=4)
    with pytest.raises(ValueError, match="n_members"):
        _run(lr, model, members=0)
    with pytest.raises(ValueError, match="context"):
        _run(lr, model, context="zero")
    with pytest.raises(ValueError, match="sampler"):
        _run(lr, model, sampler="euler")
    with pytest.raises(ValueError, match="not an existing model directory"):
        _run(lr, "no-such-model-anywhere")


# ------------------------------------------------------------------- inputs
def test_model_path_registry_hook_and_accessor(model, model_dir, monkeypatch):
    lr = _lr(nt=3, ny=4, nx=6)
    ref = _run(lr, model).values
    np.testing.assert_array_equal(_run(lr, model_dir).values, ref)
    # the registry hook: a name that is not a directory goes to xsuperres.pretrained.load_model
    monkeypatch.setattr(xsuperres.pretrained, "load_model",
                        lambda name: xsuperres.SRModel.load(model_dir) if name == "tiny" else None)
    np.testing.assert_array_equal(_run(lr, "tiny").values, ref)
    acc = lr.stsr.downscale(model, 2, steps=STEPS, device="cpu")
    np.testing.assert_array_equal(acc.values, ref)


def test_topography(model):
    lr = _lr(nt=2, ny=4, nx=4)
    topo_model = _make_model()
    topo_model.normalization.update(topo_min=0.0, topo_max=1000.0)
    with pytest.warns(UserWarning, match="xsuperres.topography"):
        flat = _run(lr, topo_model)
    hr_y = np.arange(8) * 1000.0 - 500.0
    hr_x = 1e5 + np.arange(8) * 1000.0 - 500.0
    topo = xr.DataArray(np.linspace(0, 800, 64).reshape(8, 8), dims=("y", "x"), coords={"y": hr_y, "x": hr_x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hilly = _run(lr, topo_model, topography=topo)
    assert hilly.shape == flat.shape and not np.allclose(hilly.values, flat.values)
    with pytest.raises(ValueError, match="HR grid"):
        _run(lr, topo_model, topography=topo.isel(y=slice(0, 6)))
    with pytest.raises(ValueError, match="without topography"):
        _run(lr, model, topography=topo)


def test_dataset_and_extra_dims(model):
    lr = _lr(nt=2, ny=4, nx=4)
    ds = xr.Dataset({"pr": lr, "tas": lr.assign_attrs(units="K"),
                     "crs": xr.DataArray(0, attrs={"grid_mapping_name": "latitude_longitude"})},
                    attrs={"title": "test"})
    with pytest.warns(UserWarning, match="tas"):
        out = _run(ds, model)
    assert set(out.data_vars) == {"pr", "crs"} and out.attrs["title"] == "test"
    np.testing.assert_array_equal(out["pr"].values, _run(lr, model).values)
    assert out["pr"].attrs["units"] == "mm h-1" and "history" in out.attrs
    # an extra dimension (e.g. an input ensemble) is kept and gets its own noise
    stacked = xr.concat([lr, lr], dim="realization")
    many = _run(stacked, model)
    assert many.dims == ("member", "realization", "time", "y", "x")
    assert not np.allclose(many.isel(realization=0).values, many.isel(realization=1).values)


# ------------------------------------------------------------------- ecosystem
def test_xclim_chain(model):
    xclim = pytest.importorskip("xclim")
    from xclim.core.units import convert_units_to

    lr = _lr(nt=48, ny=2, nx=4, seed=5)  # 4 days of 2-hourly input (xclim wants > 3 days)
    out = _run(lr.chunk(time=12), model, members=1).isel(member=0)
    daily = out.resample(time="D").mean()
    assert daily.attrs["units"] == "mm h-1"
    mm_day = convert_units_to(daily, "mm/d")
    np.testing.assert_allclose(mm_day.values, daily.values * 24, rtol=1e-5)
    # a 4-day test period: switch off xclim's missing-month check (real use: whole months)
    with warnings.catch_warnings(), xclim.set_options(check_missing="skip"):
        warnings.simplefilter("ignore")  # xclim's CF-compliance notes on the cell_methods
        rx1day = xclim.atmos.max_1day_precipitation_amount(daily, freq="MS")
        wet = xclim.atmos.wetdays(daily, thresh="1 mm/d", freq="MS")
    np.testing.assert_allclose(rx1day.isel(time=0).values, mm_day.max("time").values, rtol=1e-4)
    assert wet.attrs["units"] in ("days", "d") and int(wet.max()) <= 4


def test_distributed_matches_local(model_dir, model):
    distributed = pytest.importorskip("distributed")
    lr = _lr(nt=3, ny=4, nx=6)
    local = _run(lr, model).values
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = _run(lr.chunk(time=1), model_dir)
        got = out.compute().values
        loads = {w: info["loaded"] for w, info in client.run(loaded_models).items()}
        tuned = client.run(_allocator_state)
    np.testing.assert_allclose(got, local, rtol=0, atol=1e-5)
    assert all(n <= 1 for n in loads.values()), loads
    # the nanny's eager-trim setting is there, and every worker that ran a task undid it
    # once (Linux/glibc); a worker without tasks was left alone
    if sys.platform.startswith("linux"):
        ran = [w for w, n in loads.items() if n]
        assert ran and all(tuned[w] == ("65536", [True]) for w in ran), tuned


def _allocator_state():
    import os

    from xsuperres.downscaling import allocator

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), list(allocator._DONE)


def test_tune_allocator_only_where_the_nanny_asked(monkeypatch):
    """tune_allocator acts once per process, only under MALLOC_TRIM_THRESHOLD_ (set by a
    distributed nanny), and never with XSUPERRES_KEEP_MALLOC=1."""
    from xsuperres.downscaling import allocator

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    for env, keep, expected in (({}, None, False), ({"MALLOC_TRIM_THRESHOLD_": "65536"}, "1", False),
                                ({"MALLOC_TRIM_THRESHOLD_": "65536"}, None, True)):
        monkeypatch.setattr(allocator, "_DONE", [])
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
        monkeypatch.delenv("XSUPERRES_KEEP_MALLOC", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        if keep:
            monkeypatch.setenv("XSUPERRES_KEEP_MALLOC", keep)
        calls.clear()
        assert allocator.tune_allocator() is expected
        assert allocator.tune_allocator() is expected  # once per process
        assert calls == ([(-3, 32 << 20), (-1, 64 << 20)] if expected else [])


def test_cli_round_trip(model, model_dir, tmp_path):
    pytest.importorskip("zarr")
    from xsuperres.cli import main

    lr = _lr(nt=4, ny=4, nx=6)
    src = tmp_path / "lr.nc"
    lr.to_dataset().to_netcdf(src)
    dst = tmp_path / "hr.zarr"
    rc = main(["downscale", str(src), str(dst), "--model", model_dir, "--members", "2",
               "--steps", str(STEPS), "--chunks", "time=2", "--device", "cpu", "--no-progress"])
    assert rc == 0
    # zarr format 2 with consolidated metadata (readable by zarr-python 2 and 3)
    assert (dst / ".zmetadata").is_file() and not (dst / "zarr.json").exists()
    back = xr.open_zarr(dst)
    assert back["pr"].dims == ("member", "time", "y", "x")
    assert back["pr"].attrs["units"] == "mm h-1"
    np.testing.assert_allclose(back["pr"].values, _run(lr, model).values, rtol=0, atol=1e-5)
    assert main(["downscale", str(src), str(tmp_path / "x.zarr"), "--model", model_dir,
                 "--chunks", "nope=2"]) == 2
    # --eta reaches the sampler: DPM-Solver++(2M) in its SDE form
    sde = tmp_path / "sde.zarr"
    assert main(["downscale", str(src), str(sde), "--model", model_dir, "--members", "2", "--steps",
                 str(STEPS), "--eta", "1", "--device", "cpu", "--no-progress"]) == 0
    back = xr.open_zarr(sde)
    assert back["pr"].attrs["xsuperres_eta"] == 1.0
    np.testing.assert_allclose(back["pr"].values, _run(lr, model, eta=1.0).values, rtol=0, atol=1e-5)


# ------------------------------------------------------------------- fast defaults: batching
def _spy_calls(monkeypatch):
    """Record the number of samples of every network call of the downscaling tasks."""
    import xsuperres.downscaling.graph as graph

    calls: list[int] = []
    orig = graph._sample_tiles

    def spy(model, x, *args, **kwargs):
        calls.append(x.shape[0])
        return orig(model, x, *args, **kwargs)

    monkeypatch.setattr(graph, "_sample_tiles", spy)
    return calls


def test_bitwise_mode_is_chunk_invariant(model, monkeypatch):
    """batch_size=1: one sample (with its members) per call, bitwise for any chunking."""
    calls = _spy_calls(monkeypatch)
    lr = _lr(nt=4, ny=6, nx=8, seed=2)
    ref = _run(lr, model, batch_size=1).values
    assert set(calls) == {1}
    for chunks in ({"time": 1}, {"time": 3, "y": 4}, {"y": 2, "x": 3}, {"time": 2, "x": 5}):
        np.testing.assert_array_equal(_run(lr.chunk(chunks), model, batch_size=1).values, ref)


def test_default_batching_matches_bitwise_mode(model, monkeypatch):
    """Automatic batching (several samples per call) changes results at float rounding only."""
    calls = _spy_calls(monkeypatch)
    lr = _lr(nt=4, ny=6, nx=8, seed=2)
    one = _run(lr, model, batch_size=1).values
    calls.clear()
    auto = _run(lr, model).values
    assert max(calls) > 1  # samples were batched
    # stated tolerance: 1e-5 mm h-1 (float32 rounding of the networks; docs/downscale.md)
    np.testing.assert_allclose(auto, one, rtol=0, atol=1e-5)
    # chunk invariance with the default batching, within the same tolerance
    for chunks in ({"time": 1}, {"time": 3, "y": 4}, {"y": 2, "x": 3}):
        np.testing.assert_allclose(_run(lr.chunk(chunks), model).values, auto, rtol=0, atol=1e-5)
    # an explicit batch_size is rounded down to whole samples (2 members: 5 // 2 = 2 samples)
    calls.clear()
    two = _run(lr, model, batch_size=5).values
    assert max(calls) == 2
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)


def test_automatic_batch_size_respects_memory(model, monkeypatch):
    from xsuperres.downscaling import batching

    c = model.config
    per_sample = batching.call_bytes(c, 8, 8, 2)
    assert per_sample > 0
    # no memory at all: still one sample per call
    monkeypatch.setattr(batching, "available_memory", lambda device="cpu": 0)
    assert batching.samples_per_call(None, c, 8, 8, 2, 100) == 1
    # room for exactly 3 samples (in the memory share), shared by 1 or 3 tasks
    room = int(3 * per_sample / batching.MEMORY_FRACTION) + 1
    monkeypatch.setattr(batching, "available_memory", lambda device="cpu": room)
    assert batching.samples_per_call(None, c, 8, 8, 2, 100) == 3
    assert batching.samples_per_call(None, c, 8, 8, 2, 100, tasks=3) == 1
    # capped by MAX_ITEMS items (on a GPU), by the HR pixels of a CPU call and by the
    # samples of the chunk; explicit sizes in items
    monkeypatch.setattr(batching, "available_memory", lambda device="cpu": 1 << 50)
    assert batching.samples_per_call(None, c, 8, 8, 2, 1000, "meta") == batching.MAX_ITEMS // 2
    assert batching.samples_per_call(None, c, 8, 8, 2, 1000) == batching.MAX_ITEMS // 2
    assert batching.samples_per_call(None, c, 40, 40, 3, 1000) == batching.CPU_MAX_PIXELS // 4800
    assert batching.samples_per_call(None, c, 200, 200, 3, 1000) == 1
    assert batching.samples_per_call(None, c, 8, 8, 2, 5) == 5
    assert batching.samples_per_call(None, c, 8, 8, 100, 5) == 1
    assert batching.samples_per_call(1, c, 8, 8, 2, 100) == 1
    assert batching.samples_per_call(7, c, 8, 8, 2, 100) == 3
    # larger tiles and larger presets need more memory per sample
    assert batching.call_bytes(c, 16, 16, 2) == 4 * per_sample
    # the probe itself answers a positive number of bytes here
    monkeypatch.undo()
    assert batching.available_memory("cpu") > 0
    # end to end: a small budget gives one sample per call
    calls = _spy_calls(monkeypatch)
    monkeypatch.setattr(batching, "available_memory", lambda device="cpu": room)
    _run(_lr(nt=3, ny=6, nx=8), model).values
    assert calls and max(calls) == 3


# ------------------------------------------------------------------- fast defaults: threads
def test_threads_set_in_task_and_restored(model, monkeypatch):
    import xsuperres.downscaling.graph as graph
    from xsuperres.downscaling import threads

    seen: list[tuple[int, int]] = []
    orig = graph._compute_block

    def spy(*args, **kwargs):
        seen.append((torch.get_num_threads(), threads.dask_threads()))
        return orig(*args, **kwargs)

    monkeypatch.setattr(graph, "_compute_block", spy)
    cores = threads.available_cores()
    before = torch.get_num_threads()
    lr = _lr(nt=4, ny=4, nx=4)
    try:
        torch.set_num_threads(3)
        # synchronous scheduler: one task at a time, all cores (at most the user's 3)
        _run(lr.chunk(time=2), model).values
        assert seen and all(s == (min(3, cores), 1) for s in seen), seen
        assert torch.get_num_threads() == 3
        # threaded scheduler with 2 workers: at most cores // 2 torch threads per task (at
        # most the setting of the pool's threads, which torch keeps per thread)
        seen.clear()
        with dask.config.set(scheduler="threads", num_workers=2):
            _run(lr.chunk(time=1), model).values
        assert seen and all(1 <= n <= max(1, cores // 2) and d == 2 for n, d in seen), seen
        assert torch.get_num_threads() == 3
        # the library only lowers torch's setting: one thread stays one thread
        seen.clear()
        torch.set_num_threads(1)
        _run(lr, model).values
        assert seen and all(n == 1 for n, _ in seen)
        assert torch.get_num_threads() == 1
        # restored after a task that raised (negative dask input is found in the task)
        torch.set_num_threads(3)
        bad = lr.copy()
        bad[1, 0, 0] = -1.0
        with pytest.raises(ValueError, match="negative"):
            _run(bad.chunk(time=2), model).compute()
        assert torch.get_num_threads() == 3
        with dask.config.set(scheduler="threads", num_workers=2), pytest.raises(ValueError, match="negative"):
            _run(bad.chunk(time=1), model).compute()
        assert torch.get_num_threads() == 3
        assert threads._ACTIVE == 0
    finally:
        torch.set_num_threads(before)


def test_task_threads_reference_count():
    """Concurrent tasks: first in saves the setting, last out restores it, in every thread."""
    import threading

    from xsuperres.downscaling import threads

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    inside = threading.Barrier(2)
    leave = threading.Barrier(2)
    after: list[int] = []
    errors: list[BaseException] = []

    def task(first_out: bool):
        try:
            with threads.task_threads() as n:
                assert n == torch.get_num_threads() >= 1
                inside.wait(timeout=30)
                assert threads._ACTIVE == 2
                leave.wait(timeout=30)
            after.append(torch.get_num_threads())
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    try:
        workers = [threading.Thread(target=task, args=(i == 0,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert not errors, errors
        assert threads._ACTIVE == 0
        assert after == [3, 3]  # each worker thread is back to the user's setting
        assert torch.get_num_threads() == 3
        # an exception inside the body restores too
        with pytest.raises(RuntimeError), threads.task_threads():
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 3 and threads._ACTIVE == 0
    finally:
        torch.set_num_threads(before)


def test_dask_threads_by_scheduler():
    from xsuperres.downscaling import threads

    probe = dask.delayed(lambda: threads.dask_threads())
    with dask.config.set(scheduler="synchronous"):
        assert probe().compute() == 1
    with dask.config.set(scheduler="threads", num_workers=3):
        assert probe().compute() == 3
    assert threads.dask_threads() == 1  # outside any task: the calling thread
    assert threads.torch_threads_rule(1) == 1
    assert threads.torch_threads_rule(1000) == threads.available_cores()


# ------------------------------------------------------------------- deterministic stage
def _blended_mean_reference(lr: xr.DataArray, model, overlap: int) -> np.ndarray:
    """A numpy loop: predict_mean of every tile of the global layout at every LR step
    (context="drop"), blended with the per-LR-pixel weights, as downscale's tiles are."""
    c = model.config
    x = lr.values.astype(np.float32)
    nt, ny, nx = x.shape
    p = c.tile_size // c.S
    out = np.zeros((nt - c.L + 1, c.T, ny * c.S, nx * c.S))
    wsum = np.zeros((ny, nx))
    for ty in tile_layout(ny, p, overlap):
        for tx in tile_layout(nx, p, overlap):
            py, px = min(p, ny), min(p, nx)
            wy, wx = blend_weights(py, overlap), blend_weights(px, overlap)
            w = np.outer(wy, wx)
            ctx = np.stack([x[t - c.L + 1:t + 1, ty:ty + py, tx:tx + px] for t in range(c.L - 1, nt)])
            d = model.predict_mean(ctx, device="cpu")  # (n, T, py S, px S)
            whr = np.repeat(np.repeat(w, c.S, 0), c.S, 1)
            out[:, :, ty * c.S:(ty + py) * c.S, tx * c.S:(tx + px) * c.S] += d * whr
            wsum[ty:ty + py, tx:tx + px] += w
    return (out / np.repeat(np.repeat(wsum, c.S, 0), c.S, 1)).astype(np.float32)


def test_downscale_mean_is_the_blended_deterministic_stage(model):
    """downscale_mean = the tile-blended predict_mean (numpy loop reference), no member
    dimension, the same for every chunking, and not any member of the ensemble."""
    lr = _lr(nt=5, ny=7, nx=9, seed=3)
    p = model.config.tile_size // model.config.S
    overlap = max(1, p // 4)
    out = downscale_mean(lr, model, device="cpu", context="drop")
    assert out.dims == ("time", "y", "x") and "member" not in out.coords
    assert out.sizes["time"] == (5 - L + 1) * T
    ref = _blended_mean_reference(lr, model, overlap)
    got = out.values.reshape(ref.shape[0], T, *ref.shape[2:])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    for chunks in ({"time": 1}, {"y": 3, "x": 4}):
        np.testing.assert_allclose(downscale_mean(lr.chunk(chunks), model, device="cpu",
                                                  context="drop").values, out.values,
                                   rtol=0, atol=1e-5)
    # the accessor, attributes and history
    acc = lr.stsr.downscale_mean(model, device="cpu", context="drop")
    np.testing.assert_array_equal(acc.values, out.values)
    assert out.attrs["xsuperres_stage"] == "deterministic"
    assert "xsuperres_sampler" not in out.attrs and "xsuperres_seed" not in out.attrs
    assert out.attrs["units"] == "mm h-1" and "deterministic mean" in out.attrs["long_name"]
    assert "downscale_mean(S=" in out.attrs["history"]
    ens = _run(lr, model, context="drop")
    assert ens.attrs["xsuperres_stage"] == "ensemble"
    assert not np.allclose(ens.isel(member=0).values, out.values)


def test_downscale_mean_dataset_and_extra_dims(model):
    lr = _lr(nt=4, ny=4, nx=6, seed=5)
    two = xr.concat([lr, lr * 2], dim="scenario").assign_coords(scenario=["a", "b"])
    out = downscale_mean(two, model, device="cpu")
    assert out.dims == ("scenario", "time", "y", "x")
    np.testing.assert_allclose(out.sel(scenario="a").values,
                               downscale_mean(lr, model, device="cpu").values, rtol=0, atol=1e-5)
    ds = xr.Dataset({"pr": lr, "orog": lr.isel(time=0, drop=True) * 0 + 100,
                     "tas": lr.assign_attrs(units="K")})
    with pytest.warns(UserWarning) as record:
        dso = ds.stsr.downscale_mean(model, device="cpu")
    messages = [str(w.message) for w in record]
    assert any("downscale_mean: variables ['tas'] are not precipitation" in m for m in messages)
    assert any("downscale_mean: variables ['orog'] have some but not all" in m for m in messages)
    assert set(dso.data_vars) == {"pr"} and dso["pr"].dims == ("time", "y", "x")
    np.testing.assert_allclose(dso["pr"].values, downscale_mean(lr, model, device="cpu").values,
                               rtol=0, atol=1e-5)
