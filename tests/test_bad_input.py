"""Bad and unusual input: a clear error that names the variable or value and the fix, or a
correct result checked against an independent computation.

One table (``REFUSALS``) lists every refusal as ``(case, call, error type, phrase of the
message)``; the cases whose right answer is a value have a test each below it, named
``test_caseNN_...``. The case numbers follow the issue "A fresh machine runs the README
exactly as written, and no bad input passes silently"; add new cases at the end.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xsuperres
from xsuperres import ModelFileError, coarsen_perfect, interpolate, score
from xsuperres.downscaling import MAX_MEMBERS, MEMBERS_PER_CHUNK, downscale
from xsuperres.nn.mass import mass_conserve

KNMI_FILE = Path(xsuperres.__file__).parent / "data" / "knmi_2010-08-26_5min_sample.nc"

S, T, L, TILE, STEPS = 2, 2, 2, 8, 2


pytestmark = pytest.mark.usefixtures("synchronous_dask")


def _model(time_step: str = "1h") -> xsuperres.SRModel:
    """A tiny random model (S=2, T=2, L=2) whose blocks never sum to zero."""
    torch.manual_seed(0)
    cfg = xsuperres.SRConfig.recipe(S, T, preset="tiny", tile_size=TILE, cap=20.0, L=L,
                                    mass_conservation="block", threshold=0.0, time_step=time_step)
    m = xsuperres.SRModel(cfg, normalization={"cap": 20.0, "residual_scale": 0.01},
                          metadata={"name": "tiny-test", "grid_spacing_m": [1000.0, 1000.0]})
    with torch.no_grad():
        m.mean_net.decoder.out[2].bias.fill_(3.0)
    return m.eval()


MODEL = _model()


def _lr(nt=4, ny=6, nx=8, seed=0, dtype=np.float64, **attrs) -> xr.DataArray:
    """A positive LR field on a 2 km grid, 2-hourly (the tiny model's LR cadence)."""
    rng = np.random.default_rng(seed)
    data = (rng.gamma(0.8, 2.0, size=(nt, ny, nx)) + 0.1).astype(dtype)
    attrs = {"units": "mm h-1", **attrs}
    return xr.DataArray(
        data, dims=("time", "y", "x"), name="pr", attrs=attrs,
        coords={"time": pd.date_range("2021-06-01", periods=nt, freq="2h"),
                "y": ("y", np.arange(ny) * 2000.0, {"units": "m"}),
                "x": ("x", np.arange(nx) * 2000.0, {"units": "m"})})


def _hr(**kw) -> xr.DataArray:
    """An HR field (1 km, hourly) that the tiny model's factors divide."""
    kw.setdefault("nt", 8)
    kw.setdefault("ny", 12)
    kw.setdefault("nx", 16)
    da = _lr(**kw)
    return da.assign_coords(time=pd.date_range("2021-06-01", periods=da.sizes["time"], freq="1h"),
                            y=("y", np.arange(da.sizes["y"]) * 1000.0, {"units": "m"}),
                            x=("x", np.arange(da.sizes["x"]) * 1000.0, {"units": "m"}))


def _ds(model_or_obj, *a, **kw):
    kw.setdefault("steps", STEPS)
    kw.setdefault("device", "cpu")
    return downscale(model_or_obj, *a, **kw)


def _packed() -> xr.DataArray:
    """The KNMI sample as stored: int16 with scale_factor and _FillValue still in attrs."""
    ds = xr.open_dataset(KNMI_FILE, mask_and_scale=False)
    return ds["precip"].isel(time=slice(0, 8), y=slice(0, 8), x=slice(0, 8)).load()


def _no_units(da: xr.DataArray) -> xr.DataArray:
    out = da.copy()
    out.attrs = {k: v for k, v in da.attrs.items() if k != "units"}
    return out


def _string_time(da: xr.DataArray) -> xr.DataArray:
    return da.assign_coords(time=[str(t)[:19] for t in da.time.values])


def _numeric_time(da: xr.DataArray) -> xr.DataArray:
    return da.assign_coords(time=np.arange(da.sizes["time"]) * 2.0)


def _train(hr):
    return xsuperres.train(hr, S=S, T=T, epochs=1, progress=False)


# --------------------------------------------------------------------------- the table
REFUSALS = [
    # 1. raw packed integers (opened with mask_and_scale=False), in every entry point
    pytest.param(lambda: coarsen_perfect(_packed(), 2, 2), ValueError, "mask_and_scale=True",
                 id="01-packed-coarsen"),
    pytest.param(lambda: coarsen_perfect(_packed().to_dataset(), 2, 2), ValueError, "raw packed",
                 id="01-packed-coarsen-dataset"),
    pytest.param(lambda: interpolate(_packed(), 2, 2), ValueError, "mask_and_scale=True",
                 id="01-packed-interpolate"),
    pytest.param(lambda: score(_packed(), _packed()), ValueError, "raw packed", id="01-packed-score"),
    pytest.param(lambda: _ds(_packed(), MODEL, 2, strict=False), ValueError, "mask_and_scale=True",
                 id="01-packed-downscale"),
    pytest.param(lambda: _train(_packed()), ValueError, "mask_and_scale=True", id="01-packed-train"),
    # 5. units: one rule everywhere -- no units is an error, not "assumed mm h-1"
    pytest.param(lambda: score(_no_units(_hr()), _hr()), ValueError, "has no 'units' attribute",
                 id="05-units-score-pred"),
    pytest.param(lambda: score(_hr(), _no_units(_hr())), ValueError, "has no 'units' attribute",
                 id="05-units-score-truth"),
    pytest.param(lambda: coarsen_perfect(_no_units(_hr()), 2, 2), ValueError, "has no 'units' attribute",
                 id="05-units-coarsen"),
    pytest.param(lambda: coarsen_perfect(_hr().assign_attrs(units="mm"), 2, 2), ValueError, "amount",
                 id="05-units-coarsen-amount"),
    pytest.param(lambda: interpolate(_no_units(_lr()), 2, 2), ValueError, "has no 'units' attribute",
                 id="05-units-interpolate"),
    pytest.param(lambda: _ds(_no_units(_lr()), MODEL, 2), ValueError, "has no 'units' attribute",
                 id="05-units-downscale"),
    pytest.param(lambda: _train(_no_units(_hr())), ValueError, "has no 'units' attribute",
                 id="05-units-train"),
    # 8. non-finite eta
    pytest.param(lambda: _ds(_lr(), MODEL, 2, eta=float("nan")), ValueError, "eta must be finite",
                 id="08-eta-nan"),
    pytest.param(lambda: _ds(_lr(), MODEL, 2, eta=float("inf")), ValueError, "eta must be finite",
                 id="08-eta-inf"),
    pytest.param(lambda: MODEL.predict(np.ones((2, 4, 4), np.float32), sampler="ddim", eta=float("nan"), steps=2),
                 ValueError, "eta must be finite", id="08-eta-nan-predict"),
    # 9. unbounded ensembles
    pytest.param(lambda: _ds(_lr(), MODEL, 10**8), ValueError, "GB", id="09-members-1e8"),
    pytest.param(lambda: _ds(_lr(), MODEL, MAX_MEMBERS + 1), ValueError, f"at most {MAX_MEMBERS}",
                 id="09-members-limit"),
    # 10. unknown devices: the valid ones are listed
    pytest.param(lambda: _ds(_lr(), MODEL, 2, device="tpu"), ValueError, "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'",
                 id="10-device-downscale"),
    pytest.param(lambda: MODEL.predict(np.ones((2, 4, 4), np.float32), device="tpu"), ValueError,
                 "is not a valid device", id="10-device-predict"),
    pytest.param(lambda: xsuperres.train(_hr(), S=S, T=T, epochs=1, progress=False, device="gpu"),
                 ValueError, "is not a valid device", id="10-device-train"),
    # 11. time coordinates that are not datetimes
    pytest.param(lambda: _ds(_string_time(_lr()), MODEL, 2), ValueError, "datetime-like",
                 id="11-time-strings-downscale"),
    pytest.param(lambda: coarsen_perfect(_string_time(_hr()), 2, 2), ValueError, "datetime-like",
                 id="11-time-strings-coarsen"),
    pytest.param(lambda: _ds(_numeric_time(_lr()), MODEL, 2), ValueError, "xr.decode_cf",
                 id="11-time-numeric-downscale"),
    pytest.param(lambda: interpolate(_numeric_time(_lr()), 2, 2), ValueError, "plain numbers",
                 id="11-time-numeric-interpolate"),
    pytest.param(lambda: _train(_numeric_time(_hr())), ValueError, "plain numbers",
                 id="11-time-numeric-train"),
    # 16. real-number settings: one rule each (xsuperres.checks), the same message everywhere
    pytest.param(lambda: xsuperres.SRConfig.recipe(S, T, power=0.0), ValueError,
                 "power must be a finite number > 0, got 0.0", id="16-config-power"),
    pytest.param(lambda: xsuperres.SRConfig.recipe(S, T, threshold=-0.01), ValueError,
                 "threshold must be a finite number >= 0 (normalized units), got -0.01", id="16-config-threshold"),
    pytest.param(lambda: xsuperres.SRConfig.recipe(S, T, cap=float("nan")), ValueError,
                 "cap must be finite, got nan", id="16-config-cap-nan"),
    pytest.param(lambda: xsuperres.SRConfig.recipe(S, T, cap=-1.0), ValueError,
                 "cap must be a finite number > 0 (mm/h) or None, got -1.0", id="16-config-cap"),
    pytest.param(lambda: MODEL.with_residual_factor(0), ValueError,
                 "factor must be a finite number > 0 (it multiplies the residual scale), got 0", id="16-factor"),
    pytest.param(lambda: MODEL.with_residual_factor(True), ValueError, "factor must be a real number, got True",
                 id="16-factor-bool"),
    pytest.param(lambda: xsuperres.SRModel(MODEL.config, normalization={"cap": 20.0, "residual_scale": 0.0}),
                 ValueError, "normalization['residual_scale'] must be a finite number > 0, got 0.0",
                 id="16-residual-scale"),
    pytest.param(lambda: mass_conserve(torch.ones(1, T, 4, 4), torch.ones(1, 1, 2, 2), S, T, power=float("nan")),
                 ValueError, "power must be finite, got nan", id="16-mass-power-nan"),
    pytest.param(lambda: mass_conserve(torch.ones(1, T, 4, 4), torch.ones(1, 1, 2, 2), S, T, threshold=-1.0),
                 ValueError, "threshold must be a finite number >= 0, got -1.0", id="16-mass-threshold"),
]


@pytest.mark.parametrize(("call", "error", "phrase"), REFUSALS)
def test_refused_with_a_clear_message(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value)


# --------------------------------------------------------------------------- values
def test_case01_message_names_variable_and_packing():
    with pytest.raises(ValueError) as info:
        coarsen_perfect(_packed(), 2, 2)
    msg = str(info.value)
    assert "'precip'" in msg and "int16" in msg and "scale_factor=" in msg and "_FillValue=" in msg
    # decoded, the same file is accepted, and the numbers are the decoded ones
    decoded = xr.open_dataset(KNMI_FILE)["precip"].isel(time=slice(0, 8), y=slice(0, 8),
                                                                 x=slice(0, 8)).load()
    raw = _packed()
    expected = np.where(raw.values == raw.attrs["_FillValue"], np.nan, raw.values * raw.attrs["scale_factor"])
    np.testing.assert_allclose(decoded.values, expected, rtol=1e-6)
    out = coarsen_perfect(decoded, 2, 2)
    ref = expected.reshape(4, 2, 4, 2, 4, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(out.values, ref, rtol=1e-6)


def test_case02_integer_input_is_worked_on_as_float():
    lr = _lr(seed=3)
    ints = lr.round().astype(np.int16)            # decoded integers in mm h-1, numpy-backed
    floats = ints.astype(np.float32)
    a = _ds(ints, MODEL, 2).values
    b = _ds(floats, MODEL, 2).values
    assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # a Dataset with an int8 precipitation variable
    ds = xr.Dataset({"pr": ints.astype(np.int8)})
    out = _ds(ds, MODEL, 2)["pr"].values
    np.testing.assert_array_equal(out, b)
    # coarsening integers: float result equal to a numpy mean of the values
    hr = _hr(seed=4).round().astype(np.int16)
    got = coarsen_perfect(hr, 2, 2)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.values, hr.values.reshape(4, 2, 6, 2, 8, 2).mean(axis=(1, 3, 5)),
                               rtol=1e-6)


def test_case03_edited_config_json_is_refused(tmp_path):
    d = MODEL.save(tmp_path / "m")
    cfg = d / "config.json"
    doc = json.loads(cfg.read_text())
    doc["normalization"]["cap"] = 2 * doc["normalization"]["cap"]
    cfg.write_text(json.dumps(doc, indent=2))
    with pytest.raises(ModelFileError, match="config.json"):
        xsuperres.SRModel.load(d)


def test_case04_pred_nan_where_truth_valid_is_excluded_with_a_warning():
    properscoring = pytest.importorskip("properscoring")
    rng = np.random.default_rng(1)
    truth = _hr(seed=5)
    pred = xr.concat([truth * rng.uniform(0.5, 1.5, truth.shape) for _ in range(3)], "member")
    pred = pred.assign_attrs(units="mm h-1")
    holes = np.zeros(truth.shape, bool)
    holes[0, 0, 0] = holes[3, 5, 7] = True
    pred = pred.where(~holes[None])                 # one member would do; all are NaN there
    with pytest.warns(UserWarning, match=r"NaN at 2 pixel\(s\) where truth is valid"):
        got = score(pred, truth)
    assert got.attrs["n_excluded_pred_nan"] == 2
    p = pred.values[:, ~holes]
    t = truth.values[~holes]
    assert float(got["mae"]) == pytest.approx(np.mean(np.abs(p - t[None]).mean(axis=1)), rel=1e-9)
    assert float(got["mse"]) == pytest.approx(np.mean(((p - t[None]) ** 2).mean(axis=1)), rel=1e-9)
    crps = properscoring.crps_ensemble(t, p.T).mean()
    assert float(got["crps"]) == pytest.approx(crps, rel=1e-9)
    for name in got.data_vars:
        assert np.isfinite(float(got[name])), name


def test_case05_rate_units_are_converted_everywhere():
    truth = _hr(seed=6)
    per_day = (truth * 24.0).assign_attrs(units="mm/d")
    a, b = score(per_day, truth), score(truth, truth)
    assert float(a["mse"]) == pytest.approx(float(b["mse"]), abs=1e-9)
    # coarsening keeps the user's units (a mean of mm/d is mm/d)
    out = coarsen_perfect(per_day, 2, 2)
    assert out.attrs["units"] == "mm/d"


def test_case06_dataset_score_skips_non_precipitation_variables():
    truth = _hr(seed=7)
    pred = (truth * 1.1).assign_attrs(truth.attrs)
    tas = xr.full_like(truth, 290.0).assign_attrs(units="K")
    with pytest.warns(UserWarning, match="tas"):
        got = score(xr.Dataset({"pr": pred, "tas": tas}), xr.Dataset({"pr": truth, "tas": tas}))
    ref = score(pred, truth)
    assert sorted(got.data_vars) == sorted(ref.data_vars)
    for name in ref.data_vars:
        assert float(got[name]) == pytest.approx(float(ref[name]), rel=1e-12)


def test_case07_downscaled_latlon_match_the_true_hr_latlon():
    hr = xsuperres.open_sample("knmi")["precip"].isel(time=slice(0, 4), y=slice(0, 24), x=slice(0, 24))
    lr = coarsen_perfect(hr, S, T)
    model = _model(time_step="5min")
    out = _ds(lr, model, 1)
    for name in ("lat", "lon"):
        truth = hr[name].values.astype(np.float64)
        pixel = np.median(np.abs(np.diff(truth, axis=0 if name == "lat" else 1)))
        err = np.abs(out[name].values.astype(np.float64) - truth).max()
        assert err < 0.01 * pixel, (name, err, pixel)


def test_case08_sampler_settings_recorded():
    out = _ds(_lr(), MODEL, 2, sampler="ddim", eta=0.5, tile_size=6, overlap=1)
    a = out.attrs
    assert a["xsuperres_eta"] == 0.5 and a["xsuperres_tile_size"] == 6 and a["xsuperres_overlap"] == 1
    assert "eta=0.5" in a["history"] and "tile_size=6" in a["history"] and "overlap=1" in a["history"]


def test_case09_members_are_chunked_and_chunking_does_not_change_them():
    M = MEMBERS_PER_CHUNK + 3
    lr = _lr(nt=2, ny=4, nx=4, seed=8)
    out = _ds(lr, MODEL, M)
    assert out.chunks[0] == (MEMBERS_PER_CHUNK, 3)
    a = out.isel(member=[0, M - 1]).values
    b = _ds(lr.chunk(time=1, y=2), MODEL, M).isel(member=[0, M - 1]).values
    # the default batching mixes samples per call: equal to float rounding (1e-5 mm h-1,
    # docs/downscale.md); batch_size=1 (one sample per call) is bitwise chunk-invariant
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    a1 = _ds(lr, MODEL, M, batch_size=1).isel(member=[0, M - 1]).values
    b1 = _ds(lr.chunk(time=1, y=2), MODEL, M, batch_size=1).isel(member=[0, M - 1]).values
    np.testing.assert_array_equal(a1, b1)
    # a large ensemble builds a graph of bounded chunks, quickly and without computing
    big = _ds(lr, MODEL, MAX_MEMBERS)
    assert max(big.chunks[0]) == MEMBERS_PER_CHUNK
    assert big.nbytes / len(big.chunks[0]) < 1e6


def test_case12_missing_coordinates_warn_what_was_assumed():
    lr = _lr()
    bare = xr.DataArray(lr.values, dims=lr.dims, name="pr", attrs=lr.attrs)
    with pytest.warns(UserWarning) as rec:
        _ds(bare, MODEL, 1)
    text = " | ".join(str(w.message) for w in rec)
    assert "cadence cannot be checked" in text and "assuming LR steps of 2h" in text
    assert "grid spacing cannot be checked" in text and "assuming LR cells of (2000, 2000) m" in text
    # with coordinates nothing is assumed, and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ds(lr, MODEL, 1)


def test_case14_coarsen_dataset_drops_integer_flags():
    hr = _hr(seed=9)
    mask = xr.DataArray((hr.isel(time=0).values > 1).astype(np.int8), dims=("y", "x"))
    ds = xr.Dataset({"pr": hr, "mask": mask, "station": ((), 7)})
    with pytest.warns(UserWarning, match="mask"):
        out = coarsen_perfect(ds, 2, 2)
    assert "mask" not in out and int(out["station"]) == 7
    assert "dropped mask (int8)" in out.attrs["history"]
    np.testing.assert_allclose(out["pr"].values, hr.values.reshape(4, 2, 6, 2, 8, 2).mean(axis=(1, 3, 5)))
    # an integer precipitation rate in a Dataset is coarsened, not dropped
    ints = xr.Dataset({"pr": hr.round().astype(np.int16)})
    got = coarsen_perfect(ints, 2, 2)["pr"]
    np.testing.assert_allclose(got.values, hr.round().values.reshape(4, 2, 6, 2, 8, 2).mean(axis=(1, 3, 5)),
                               rtol=1e-6)


@pytest.mark.parametrize("where", ["missing-folder", "onto-input"])
def test_case13_cli_output_path_is_one_line_and_exit_2(tmp_path, capsys, where):
    # (the other sub-commands and output kinds: tests/test_cli.py)
    from xsuperres.cli import main

    src = tmp_path / "in.nc"
    _hr().to_netcdf(src)
    before = src.read_bytes()
    out = tmp_path / "no" / "such" / "lr.nc" if where == "missing-folder" else src
    assert main(["coarsen", str(src), str(out), "--S", "2", "--T", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "Permission" not in err
    assert ("does not exist" in err) if where == "missing-folder" else ("it is the input" in err)
    assert src.read_bytes() == before


def test_case15_two_topographies_computed_together_stay_apart(tmp_path):
    # a saved model (a path) gives both calls the same model token: only the topography
    # differs, and it must be part of the task names, or dask.compute(a, b) mixes them
    path = _model().save(tmp_path / "topo-model")
    m = xsuperres.SRModel.load(path)
    m.normalization["topo_min"], m.normalization["topo_max"] = 0.0, 1000.0
    path = m.save(tmp_path / "topo-model")
    lr = _lr(nt=2, ny=4, nx=4, seed=10)
    flat = xr.DataArray(np.zeros((8, 8), np.float32), dims=("y", "x"))
    hill = xr.DataArray(np.full((8, 8), 900.0, np.float32), dims=("y", "x"))
    a = _ds(lr, str(path), 1, topography=flat)
    b = _ds(lr, str(path), 1, topography=hill)
    both = dask.compute(a, b)
    np.testing.assert_array_equal(both[0].values, a.values)
    np.testing.assert_array_equal(both[1].values, b.values)
    assert not np.array_equal(a.values, b.values)
