"""Tuning recipe (issue 4): the elbow rule for L and the PIT-deviation calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import xsuperres as xs
from xsuperres import tune
from xsuperres.config import SRConfig
from xsuperres.metrics import pitd


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def knmi_small():
    return xs.open_sample("knmi")["precip"].isel(time=slice(0, 16), y=slice(0, 32), x=slice(0, 32)).load()


def test_elbow_rule_on_hand_made_curves():
    k, gain = tune.elbow([1.0, 0.5, 0.45, 0.449], tolerance=0.02)
    np.testing.assert_allclose(gain, [0.551, 0.102, 0.001 / 0.45, 0.0], rtol=1e-9)
    assert k == 2
    # a bump does not stop the search early: the best of all larger candidates counts
    k, gain = tune.elbow([1.0, 0.9, 0.95, 0.5])
    assert k == 3
    np.testing.assert_allclose(gain[:3], [0.5, 0.4 / 0.9, 0.45 / 0.95])
    # flat curve: the smallest candidate
    assert tune.elbow([0.3, 0.3, 0.3])[0] == 0
    with pytest.raises(ValueError):
        tune.elbow([])


def test_pit_summary_diagnoses_dispersion():
    n = 10_000
    uniform = (np.arange(n) + 0.5) / n
    s = tune.pit_summary(uniform)
    assert s["pitd"] == pytest.approx(0.0, abs=1e-12)
    assert s["outer_fraction"] == pytest.approx(0.2) and s["advice"] == "keep"
    u_shaped = np.concatenate([np.full(400, 0.02), np.full(400, 0.98), np.full(200, 0.5)])
    s = tune.pit_summary(u_shaped)
    assert s["dispersion"] == "under" and s["advice"] == "larger" and s["outer_fraction"] == 0.8
    hump = np.full(1000, 0.5)
    s = tune.pit_summary(hump)
    assert s["dispersion"] == "over" and s["advice"] == "smaller" and s["outer_fraction"] == 0.0
    # same PITD as xsuperres.metrics.pitd on an ensemble whose PIT values are known
    rng = np.random.default_rng(0)
    ens = rng.random((4, 1, 3, 3))
    truth = rng.random((1, 3, 3))
    assert tune.pit_summary(xs.metrics.pit_values(ens, truth))["pitd"] == pytest.approx(pitd(ens, truth))


def test_context_length_table(knmi_small):
    cfg = SRConfig.recipe(4, 2, tile_size=16, preset="tiny")
    res = tune.context_length(knmi_small, 4, 2, candidates=(2, 1), epochs=1, config=cfg, n_folds=2,
                              batch_size=8, device="cpu", keep_models=True)
    t = res.table
    assert isinstance(t, pd.DataFrame)
    assert t["L"].tolist() == [1, 2]
    assert t["attention_horizon"].tolist() == [2, 4]
    assert t["attention_time"].tolist() == [str(pd.Timedelta("10min")), str(pd.Timedelta("20min"))]
    # every candidate is scored on the same validation targets
    assert t["n_valid"].nunique() == 1
    assert t["chosen"].sum() == 1
    k, gain = tune.elbow(t["valid_loss"].to_numpy())
    assert res.best == t["L"].iloc[k] and bool(t["chosen"].iloc[k])
    np.testing.assert_allclose(t["gain_beyond"], gain)
    assert res.config.L == res.best and res.config.cap is not None
    assert {m.config.L for m in res.models.values()} == {1, 2}
    assert len({m.config.cap for m in res.models.values()}) == 1
    with pytest.raises(TypeError, match="unexpected"):
        tune.context_length(knmi_small, 4, 2, candidates=(1,), wrong=1)


def test_calibrate_table(knmi_small):
    cfg = SRConfig.recipe(4, 2, tile_size=16, L=2, preset="tiny")
    res = tune.calibrate(knmi_small, 4, 2, beta_max_grid=(1e-2, 3e-2), power_grid=(1.0,), epochs=1,
                         n_members=2, steps=3, max_samples=3, config=cfg, n_folds=2, batch_size=8,
                         device="cpu")
    t = res.table
    assert len(t) == 2 and t["beta_max"].tolist() == [1e-2, 3e-2] and (t["power"] == 1.0).all()
    assert t["pitd"].between(0, 1).all()
    k = int(t["pitd"].idxmin())
    assert bool(t["chosen"].iloc[k]) and t["chosen"].sum() == 1
    assert res.best == {"beta_max": t["beta_max"].iloc[k], "power": 1.0}
    assert res.config.beta_max == res.best["beta_max"]
    # the two diffusion models share one mean model
    assert t["valid_loss_mean"].nunique() == 1
    with pytest.raises(ValueError, match="beta_max"):
        tune.calibrate(knmi_small, 4, 2, beta_max_grid=(2.0,), config=cfg)
