"""xsuperres.scoring.score: the xarray face of the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xsuperres.metrics import METRICS
from xsuperres.scoring import score

NAMES = ["mse", "mae", "pe99", "lsd", "emd", "ssim", "pitd", "crps"]


def rain(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    a = rng.gamma(0.7, 2.0, shape)
    a[rng.random(shape) < 0.5] = 0.0
    return a.astype(np.float32)


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rain(rng, (3, 4, 16, 12)), rain(rng, (4, 16, 12))


def coords() -> dict[str, np.ndarray]:
    return {
        "time": np.arange(4) * np.timedelta64(1, "h") + np.datetime64("2020-01-01"),
        "y": 1000.0 * np.arange(16),
        "x": 1000.0 * np.arange(12),
    }


@pytest.fixture
def das(arrays) -> tuple[xr.DataArray, xr.DataArray]:
    pred, truth = arrays
    mmh = {"units": "mm h-1"}
    p = xr.DataArray(pred, dims=("member", "time", "y", "x"), coords=coords(), name="pr", attrs=mmh)
    t = xr.DataArray(truth, dims=("time", "y", "x"), coords=coords(), name="pr", attrs=mmh)
    return p, t


def numpy_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {name: info.func(pred, truth) for name, info in METRICS.items()}


def assert_scores(ds: xr.Dataset, expected: dict[str, float], prefix: str = "") -> None:
    for name, value in expected.items():
        assert float(ds[prefix + name]) == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_members(das, arrays):
    p, t = das
    ds = score(p.transpose("time", "x", "member", "y"), t)  # order of dims does not matter
    assert list(ds.data_vars) == NAMES
    assert all(ds[n].dims == () for n in NAMES)
    assert_scores(ds, numpy_scores(*arrays))
    assert ds.attrs["n_members"] == 3


def test_attrs(das):
    ds = score(*das)
    for name, info in METRICS.items():
        attrs = ds[name].attrs
        assert attrs["units"] == info.units
        assert attrs["long_name"] == info.long_name
        assert attrs["better"] == ("higher" if name == "ssim" else "lower")
    assert "per member, then averaged over members" in ds["mse"].attrs["description"]
    assert "per member, then averaged over members" in ds["mae"].attrs["description"]
    assert "NaN" in ds.attrs["missing_values"] and "mid-rank" in ds.attrs["pit_ties"]


def test_without_member_dim(das, arrays):
    _, t = das
    p = t.copy(data=arrays[0][1])
    ds = score(p, t)
    assert float(ds.crps) == pytest.approx(float(ds.mae), rel=1e-12)
    assert ds.attrs["n_members"] == 1
    assert_scores(ds, numpy_scores(arrays[0][1], arrays[1]))


def test_per_time(das, arrays):
    p, t = das
    ds = score(p, t, dim="time")
    assert ds["crps"].dims == ("time",)
    np.testing.assert_array_equal(ds["time"].values, t["time"].values)
    for i in range(4):
        expected = numpy_scores(arrays[0][:, i : i + 1], arrays[1][i : i + 1])
        assert_scores(ds.isel(time=i), expected)


def test_time_found_by_role(das):
    p, t = (a.rename(time="valid_time") for a in das)
    ds = score(p, t, dim="time")
    assert ds["mse"].dims == ("valid_time",)
    np.testing.assert_allclose(ds["mse"].values, score(*das, dim="time")["mse"].values)


def test_extra_dims_flattened_or_kept(arrays):
    pred, truth = arrays
    mmh = {"units": "mm h-1"}
    p = xr.DataArray(pred.reshape(3, 2, 2, 16, 12), dims=("member", "lead", "time", "y", "x"), attrs=mmh)
    t = xr.DataArray(truth.reshape(2, 2, 16, 12), dims=("lead", "time", "y", "x"), attrs=mmh)
    assert_scores(score(p, t), numpy_scores(pred, truth))
    per_lead = score(p, t, dim=["lead"])
    assert_scores(per_lead.isel(lead=1), numpy_scores(pred[:, 2:], truth[2:]))


def test_nan_in_truth(das, arrays):
    p, t = das
    t = t.where(t["x"] > 2000.0)
    truth = np.where(t.values == t.values, arrays[1], np.nan)
    assert_scores(score(p, t), numpy_scores(arrays[0], truth))


def test_coordinate_mismatch_names_dim(das):
    p, t = das
    with pytest.raises(ValueError, match="'x'"):
        score(p.assign_coords(x=p["x"] + 1.0), t)
    with pytest.raises(ValueError, match="'y'"):
        score(p.isel(y=slice(1, None)), t.isel(y=slice(None, -1)))
    with pytest.raises(ValueError, match="'time'"):
        score(p, t.isel(time=slice(0, 2)))


def test_bad_inputs(das):
    p, t = das
    with pytest.raises(ValueError, match="member"):
        score(p, p)
    with pytest.raises(ValueError, match="lead"):
        score(p, t, dim="lead")
    with pytest.raises(ValueError, match="spatial"):
        score(p, t, dim="x")


def test_dataset_input(das, arrays):
    p, t = das
    single = score(p.to_dataset(), t.to_dataset())
    assert list(single.data_vars) == NAMES
    assert_scores(single, numpy_scores(*arrays))
    assert_scores(score(p.to_dataset(), t), numpy_scores(*arrays))  # Dataset vs DataArray

    pds = xr.Dataset({"pr": p, "pr2": (2 * p).assign_attrs(p.attrs), "other": p.isel(x=0)})
    tds = xr.Dataset({"pr": t, "pr2": (2 * t).assign_attrs(t.attrs)})
    both = score(pds, tds)
    assert sorted(both.data_vars) == sorted(f"{v}_{n}" for v in ("pr", "pr2") for n in NAMES)
    assert_scores(both, numpy_scores(*arrays), prefix="pr_")
    assert float(both["pr2_mae"]) == pytest.approx(2 * float(both["pr_mae"]), rel=1e-6)
    assert both["pr2_mae"].attrs["units"] == "mm h-1"


def test_dask_same_numbers(das):
    p, t = das
    lazy = score(p.chunk({"time": 2}), t.chunk({"time": 1}), dim="time")
    xr.testing.assert_identical(lazy, score(p, t, dim="time"))


def test_units_converted(das):
    p, t = das
    per_day = (t * 24.0).assign_attrs(units="mm/d")
    ds = score(p.assign_attrs(units="mm h-1"), per_day)
    ref = score(p, t)
    for name in NAMES:
        assert float(ds[name]) == pytest.approx(float(ref[name]), rel=1e-5), name


def _loop_fair_and_ratio(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Fair CRPS and spread-error ratio by a plain loop over valid pixels and member pairs."""
    m = pred.shape[0]
    fair, miss, spread, n = 0.0, 0.0, 0.0, 0
    for idx in np.ndindex(truth.shape):
        y = float(truth[idx])
        if np.isnan(y):
            continue
        xs = [float(pred[(k, *idx)]) for k in range(m)]
        err = sum(abs(x - y) for x in xs) / m
        pairs = [abs(xs[i] - xs[j]) for i in range(m) for j in range(m) if i != j]
        fair += err - 0.5 * sum(pairs) / len(pairs)
        miss += err
        spread += sum(pairs) / len(pairs)
        n += 1
    return fair / n, spread / miss


def test_extra_ensemble_scores_match_a_loop(das, arrays):
    p, t = das
    pred, truth = arrays
    truth = truth.copy()
    truth[0, :3, :5] = np.nan  # outside coverage: excluded from both scores
    t = t.copy(data=truth)
    ds = score(p, t, extra=["crps_fair", "spread_error_ratio"])
    assert list(ds.data_vars) == NAMES + ["crps_fair", "spread_error_ratio"]
    fair, ratio = _loop_fair_and_ratio(pred.astype(np.float64), truth.astype(np.float64))
    assert float(ds.crps_fair) == pytest.approx(fair, rel=1e-10)
    assert float(ds.spread_error_ratio) == pytest.approx(ratio, rel=1e-10)
    # the fair score is below the default one (it does not charge the ensemble for its size)
    assert float(ds.crps_fair) < float(ds.crps)
    assert ds.crps_fair.attrs["units"] == "mm h-1" and ds.crps_fair.attrs["better"] == "lower"
    assert ds.spread_error_ratio.attrs["better"] == "closer to 1"
    # per time step, through the accessor (a single string works too)
    per = p.stsr.score(t, dim="time", extra="crps_fair")
    assert per.crps_fair.dims == ("time",)
    for k in range(truth.shape[0]):
        expect, _ = _loop_fair_and_ratio(pred[:, k:k + 1].astype(np.float64), truth[k:k + 1].astype(np.float64))
        assert float(per.crps_fair[k]) == pytest.approx(expect, rel=1e-10)


def test_extra_refuses_unknown_names_and_one_member(das):
    p, t = das
    with pytest.raises(ValueError, match=r"unknown extra metric\(s\) \['crps_fiar'\]; choose from"):
        score(p, t, extra="crps_fiar")
    with pytest.raises(ValueError, match="need an ensemble, but pred 'pr' has one member"):
        score(p.isel(member=0), t, extra="crps_fair")
