"""Tuning recipe (issue 4): the elbow rule for L and the PIT-deviation calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xsuperres as xs
from xsuperres import tune
from xsuperres.config import SRConfig
from xsuperres.training import TrainOptions, build_training_data




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
    # all values at 0.5: sum_i (0.5 - (i - 0.5) / N)^2 / N = (N^2 - 1) / (12 N^2)
    assert s["pitd"] == pytest.approx(np.sqrt((1000 ** 2 - 1) / 12) / 1000, rel=1e-12)
    # by hand: sorted (0.1, 0.2, 0.4, 0.9) vs (0.125, 0.375, 0.625, 0.875): squared
    # deviations 0.000625 + 0.030625 + 0.050625 + 0.000625 = 0.0825; NaN is ignored
    s = tune.pit_summary(np.array([0.9, np.nan, 0.1, 0.4, 0.2]))
    assert s["pitd"] == pytest.approx(np.sqrt(0.0825 / 4), rel=1e-12)
    assert s["outer_fraction"] == 0.0 and s["dispersion"] == "over"  # 0.1 and 0.9 are not outer


def test_dispersion_of_a_perfect_ensemble_with_dry_pixels():
    # why calibrate uses the randomized PIT: members drawn like the truth (70 % dry,
    # gamma-distributed wet pixels) are calibrated, yet the mid-rank PIT stacks the dry
    # pixels at 0.35 and reads as over-dispersive
    from xsuperres.metrics import pit_values

    rng = np.random.default_rng(1)  # not the PIT's seed 0: its draws would be the dry mask's
    x = np.where(rng.random((4, 6, 50, 50)) < 0.7, 0.0, rng.gamma(0.5, 2.0, (4, 6, 50, 50)))
    members, truth = x[1:], x[0]
    mid = tune.pit_summary(pit_values(members, truth))
    assert mid["dispersion"] == "over" and mid["outer_fraction"] < 0.12
    rand = tune.pit_summary(pit_values(members, truth, ties="randomized", seed=0))
    assert rand["dispersion"] == "ok" and rand["outer_fraction"] == pytest.approx(0.2, abs=0.01)


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
    # the losses are those of the kept models: the best validation loss of their history
    for L, loss, best_epoch in zip(t["L"], t["valid_loss"], t["best_epoch"]):
        h = res.models[L].history["mean"]
        assert loss == min(h["valid"]) and best_epoch == 1 and h["epochs_run"] == 1
        assert res.models[L].metadata["protocol"]["stage"] == "mean"
        assert res.models[L].metadata["protocol"]["n_folds"] == 2
    # the elbow by hand: two candidates, gain = ((v1 - v2) / v1, 0); L = 1 unless the
    # larger L still improves the loss by 2 % or more
    v1, v2 = t["valid_loss"]
    np.testing.assert_allclose(t["gain_beyond"], [(v1 - v2) / v1, 0.0], rtol=1e-12)
    assert res.best == (1 if (v1 - v2) / v1 < 0.02 else 2)
    assert t["chosen"].tolist() == [res.best == 1, res.best == 2]
    assert res.config.L == res.best and res.config.cap is not None
    assert {m.config.L for m in res.models.values()} == {1, 2}
    assert len({m.config.cap for m in res.models.values()}) == 1
    # the same search from one TrainOptions: its epochs apply (no epochs keyword), and
    # the losses are identical (CPU runs are deterministic)
    opts = TrainOptions(epochs=1, batch_size=8, n_folds=2, device="cpu", progress=False)
    again = tune.context_length(knmi_small, 4, 2, candidates=(2, 1), config=cfg, options=opts)
    assert again.table["epochs_run"].tolist() == [1, 1]
    assert again.table["valid_loss"].tolist() == t["valid_loss"].tolist()
    with pytest.raises(TypeError, match="unexpected"):
        tune.context_length(knmi_small, 4, 2, candidates=(1,), wrong=1)
    # the tuning functions set the stage and keep no checkpoints
    for bad in ({"stage": "both"}, {"checkpoint_dir": "ck"}):
        with pytest.raises(TypeError, match="unexpected"):
            tune.context_length(knmi_small, 4, 2, candidates=(1,), **bad)
    with pytest.raises(ValueError, match="no checkpoints"):
        tune.context_length(knmi_small, 4, 2, candidates=(1,), options=TrainOptions(checkpoint_dir="ck"))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        tune.context_length(knmi_small, 4, 2, candidates=(1,), batch_size=0)


def test_calibrate_table(knmi_small):
    cfg = SRConfig.recipe(4, 2, tile_size=16, L=2, preset="tiny")
    res = tune.calibrate(knmi_small, 4, 2, beta_max_grid=(1e-2, 3e-2), power_grid=(1.0,), epochs=1,
                         n_members=2, steps=3, max_samples=3, config=cfg, n_folds=2, batch_size=8,
                         device="cpu", keep_models=True)
    t = res.table
    assert len(t) == 2 and t["beta_max"].tolist() == [1e-2, 3e-2] and (t["power"] == 1.0).all()
    # PITD and outer share recomputed by hand from the ensembles on the 3 validation samples
    td = build_training_data(knmi_small, 4, 2, config=cfg, n_folds=2)
    lr, topo, truth = tune._validation_arrays(td, 3)
    assert lr.shape[0] == 3 and topo is None
    for row in t.itertuples():
        model = res.models[(1.0, row.beta_max)]
        pred = model.predict(lr, topo, n_members=2, sampler="dpmpp_2m", steps=3, seed=0, device="cpu")
        u, rng = [], np.random.default_rng(0)  # randomized PIT, seed 0, frames in order
        for i in range(3):
            for f in range(truth.shape[1]):
                x = pred[i][:, f].ravel()  # both members' pixels of the frame
                y = truth[i, f].ravel()
                below = (x[None, :] < y[:, None]).sum(axis=1)
                tied = (x[None, :] == y[:, None]).sum(axis=1)
                u.append((below + rng.random(y.size) * tied) / x.size)
        u = np.sort(np.concatenate(u))
        n = u.size
        assert n == 3 * 2 * 16 * 16
        assert row.pitd == pytest.approx(np.sqrt(np.mean((u - (np.arange(1, n + 1) - 0.5) / n) ** 2)), rel=1e-9)
        assert row.outer_fraction == pytest.approx(np.mean((u < 0.1) | (u > 0.9)), abs=1e-12)
        p64, t64 = pred.astype(np.float64), truth.astype(np.float64)
        error = np.abs(p64 - t64[:, None]).mean()
        spread = np.abs(p64[:, 0] - p64[:, 1]).mean()  # two members: one distinct pair
        assert row.spread_error == pytest.approx(spread / error, rel=1e-9)
    k = int(t["pitd"].idxmin())
    assert bool(t["chosen"].iloc[k]) and t["chosen"].sum() == 1
    assert res.best == {"beta_max": t["beta_max"].iloc[k], "power": 1.0}
    assert res.config.beta_max == res.best["beta_max"]
    # the two diffusion models share one mean model
    assert t["valid_loss_mean"].nunique() == 1
    with pytest.raises(ValueError, match="beta_max"):
        tune.calibrate(knmi_small, 4, 2, beta_max_grid=(2.0,), config=cfg)
