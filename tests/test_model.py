"""Tests of :mod:`xsuperres.config` and :mod:`xsuperres.model` (untrained tiny U-Nets, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xsuperres.config import PREPRINT_RECIPES, SRConfig
from xsuperres.model import (
    ModelFileError,
    SRModel,
    denormalize_precip,
    normalize_precip,
    normalize_topography,
)

CAP = 55.0


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def make_model(S: int, T: int, seed: int = 0, **overrides) -> SRModel:
    overrides.setdefault("cap", CAP)
    torch.manual_seed(seed)
    return SRModel(SRConfig.recipe(S, T, **overrides), {"topo_min": 0.0, "topo_max": 2000.0})


def rain(shape, seed=0, zero_frac=0.3) -> np.ndarray:
    """Zero-inflated gamma LR rates in mm/h."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.6, 3.0, size=shape) * (rng.random(shape) > zero_frac)
    return x.astype(np.float32)


def coarsen_np(y: np.ndarray, S: int, T: int) -> np.ndarray:
    """Independent reference: mean over (T, S, S) blocks of ``(..., T k, H, W)``."""
    *lead, KT, H, W = y.shape
    return y.reshape(*lead, KT // T, T, H // S, S, W // S, S).mean(axis=(-5, -3, -1))


@pytest.fixture(scope="module")
def m103() -> SRModel:
    return make_model(10, 3)


# --------------------------------------------------------------------------- config
def test_recipe_preprint_pairs():
    table = {
        (1, 3): (4, 1.5e-2, 1e-2),
        (10, 1): (10, 1e-2, 1e-2),
        (10, 3): (5, 2e-2, 2e-2),
        (25, 6): (2, 3e-2, 4e-2),
    }
    for (S, T), (L, bmax, a) in table.items():
        c = SRConfig.recipe(S, T)
        assert (c.S, c.T, c.L) == (S, T, L)
        assert c.beta_max == pytest.approx(bmax)
        assert c.threshold == pytest.approx(a)
        assert c.power == 1.0
        assert c.mass_conservation == "tile"
        assert c.beta_min == 1e-4 and c.J == 1000
    # attention horizons of the preprint: 12, 10, 15, 12
    assert [SRConfig.recipe(*p).attention_horizon for p in table] == [12, 10, 15, 12]
    # beta_max ordering the preprint describes: (10,1) < (1,3) < (10,3) < (25,6)
    b = [SRConfig.recipe(*p).beta_max for p in [(10, 1), (1, 3), (10, 3), (25, 6)]]
    assert b == sorted(b) and len(set(b)) == 4
    assert set(PREPRINT_RECIPES) == set(table)


def test_recipe_overrides():
    c = SRConfig.recipe(10, 3, preset="standard", cap=40.0, mass_conservation="block")
    assert (c.preset, c.cap, c.mass_conservation, c.L) == ("standard", 40.0, "block", 5)
    # tile size follows S when 100 is not a multiple of it
    assert SRConfig.recipe(3, 2).tile_size % 3 == 0


def test_recipe_rule_monotone_and_close_to_table():
    Ss, Ts = range(1, 31), range(1, 9)
    beta = np.array([[SRConfig.rule_beta_max(S, T) for T in Ts] for S in Ss])
    thr = np.array([[SRConfig.rule_threshold(S, T) for T in Ts] for S in Ss])
    for a in (beta, thr):
        assert (np.diff(a, axis=0) >= -1e-15).all()  # non-decreasing in S
        assert (np.diff(a, axis=1) >= -1e-15).all()  # non-decreasing in T
        assert a.min() >= 1e-2 and a.max() <= 5e-2
    assert beta[-1, -1] > beta[0, 0]  # it does grow
    assert thr[-1, -1] > thr[0, 0]
    # the rule reproduces the table's values (exact or within 5e-4)
    for (S, T), v in PREPRINT_RECIPES.items():
        assert SRConfig.rule_beta_max(S, T) == pytest.approx(v["beta_max"], abs=5e-4)
    assert SRConfig.rule_threshold(10, 3) == pytest.approx(2e-2)
    assert SRConfig.rule_threshold(25, 6) == pytest.approx(4e-2)
    # L T within half an LR step of 12 HR steps (L >= 1)
    for T in range(1, 13):
        L = SRConfig.rule_L(T)
        assert L >= 1 and abs(L * T - 12) <= T / 2
    # other pairs use the rule
    c = SRConfig.recipe(5, 4)
    assert (c.L, c.beta_max, c.threshold) == (
        3, SRConfig.rule_beta_max(5, 4), SRConfig.rule_threshold(5, 4))


@pytest.mark.parametrize(
    "field, value",
    [
        ("S", 0), ("T", -1), ("L", 2.5), ("tile_size", 0), ("S", True),
        ("beta_max", 1e-5), ("beta_max", 1.0), ("beta_min", 0.0), ("power", 0.0),
        ("threshold", -0.1), ("mass_conservation", "global"), ("preset", "huge"),
        ("cap", -3.0), ("time_step", "every hour"), ("J", 1),
    ],
)
def test_config_validation_names_field(field, value):
    base = SRConfig.recipe(10, 3).to_dict()
    base[field] = value
    with pytest.raises(ValueError, match=field):
        SRConfig.from_dict(base)


def test_config_tile_size_multiple_of_S_and_dict_round_trip():
    with pytest.raises(ValueError, match="tile_size.*divisible by S"):
        SRConfig.recipe(10, 3, tile_size=105)
    c = SRConfig.recipe(25, 6, cap=55.0, time_step="5min")
    d = json.loads(json.dumps(c.to_dict()))
    assert SRConfig.from_dict(d) == c
    with pytest.raises(ValueError, match="unknown SRConfig field.*'sigma'"):
        SRConfig.from_dict({**d, "sigma": 1})
    d.pop("beta_max")
    with pytest.raises(ValueError, match="missing.*beta_max"):
        SRConfig.from_dict(d)
    c2 = c.replace(threshold=0.0)
    assert c2.threshold == 0.0 and c.threshold == 4e-2
    with pytest.raises(ValueError, match="power"):
        c.replace(power=-1)
    with pytest.raises(Exception):
        c.S = 3  # frozen


# --------------------------------------------------------------------------- normalization
def test_normalization_functions():
    x = np.array([-1.0, 0.0, 11.0, 80.0, np.nan])
    n = normalize_precip(x, CAP)
    np.testing.assert_allclose(n[:4], [0.0, 0.0, 0.2, 1.0])
    assert np.isnan(n[4]) and np.isnan(x[4]) and x[0] == -1.0  # input untouched
    nt = normalize_precip(torch.tensor(x[:4]), CAP)
    assert isinstance(nt, torch.Tensor)
    np.testing.assert_allclose(nt.numpy(), n[:4])
    np.testing.assert_allclose(denormalize_precip(n[:4], CAP), [0.0, 0.0, 11.0, 55.0])
    z = np.array([[0.0, 500.0], [1000.0, 2000.0]])
    np.testing.assert_allclose(normalize_topography(z, 0.0, 2000.0), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(normalize_topography(torch.tensor(z), 0, 2000).numpy(),
                               [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(normalize_topography(z, 300.0, 300.0), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cap"):
        normalize_precip(x, 0.0)


def test_normalization_without_clip():
    x = np.array([-1.0, 0.0, 11.0, 80.0, np.nan])
    n = normalize_precip(x, CAP, clip=False)
    np.testing.assert_allclose(n[:4], [0.0, 0.0, 11.0 / 55.0, 80.0 / 55.0])
    np.testing.assert_allclose(normalize_precip(torch.tensor(x[:4]), CAP, clip=False).numpy(), n[:4])
    with pytest.raises(ValueError, match="clip must be True or False"):
        SRConfig.recipe(1, 3, clip="no")


@pytest.mark.parametrize("clip", [True, False])
def test_a_heavy_cell_reaches_the_network_only_without_clip(clip):
    """An 80 mm/h cell (15-min block, S = 1) with a 7.6 mm/h cap: only with clip=False
    does the network's input carry the cell's intensity (80 / cap) instead of the cap (1).
    Block mass conservation uses the unclipped LR value either way: every block's mean is
    the LR value, the 80 mm/h cell's included (exact, even where this untrained network
    predicts no rain: the LR value then fills the block)."""
    m = make_model(1, 3, mass_conservation="block", threshold=0.0, clip=clip)
    m.normalization["cap"] = 7.6
    L = m.config.L
    lr = np.full((1, L, 8, 8), 0.5, np.float32)
    lr[0, :, 3, 4] = 80.0
    seen = {}
    def grab(mod, args):
        seen["x"] = args[0].detach().clone()  # BI(x_n(L)), the identity at S = 1

    hook = m.mean_net.register_forward_pre_hook(grab)
    try:
        out = m.predict_mean(lr, device="cpu")[0]  # (T, 8, 8)
    finally:
        hook.remove()
    np.testing.assert_allclose(out.mean(axis=0), lr[0, -1], rtol=0, atol=1e-4)
    assert out[:, 3, 4].mean() == pytest.approx(80.0, abs=1e-4)
    members = m.predict(lr, n_members=2, steps=2, device="cpu")[0]  # (M, T, 8, 8)
    np.testing.assert_allclose(members.mean(axis=1), np.broadcast_to(lr[0, -1], (2, 8, 8)),
                               rtol=0, atol=1e-4)
    want = 80.0 / 7.6 if not clip else 1.0
    assert float(seen["x"][0, -1, 3, 4]) == pytest.approx(want, rel=1e-5)


# --------------------------------------------------------------------------- predict
@pytest.mark.parametrize("S, T", [(1, 3), (10, 1), (10, 3), (25, 6), (2, 2), (5, 4)])
def test_predict_shapes_nonnegative(S, T):
    m = make_model(S, T)
    L = m.config.L
    lr = rain((2, L, 2, 3), seed=S * 10 + T)
    y = m.predict(lr, n_members=2, steps=2, device="cpu")
    assert y.shape == (2, 2, T, 2 * S, 3 * S) and y.dtype == np.float32
    assert np.isfinite(y).all() and (y >= 0).all()
    # no leading axis
    y1 = m.predict(lr[0], n_members=2, steps=2, device="cpu")
    assert y1.shape == (2, T, 2 * S, 3 * S)
    np.testing.assert_allclose(y1, y[0], rtol=1e-3, atol=1e-3)  # same flat index 0 (batch rounding,
    # amplified by block rescaling where this random network predicts little rain)
    ym = m.predict_mean(lr, device="cpu")
    assert ym.shape == (2, T, 2 * S, 3 * S) and (ym >= 0).all()


def test_predict_25_6_tile():
    """(S, T) = (25, 6): a 4 x 4 LR frame becomes 6 x 100 x 100 HR values."""
    m = make_model(25, 6)
    lr = rain((m.config.L, 4, 4), seed=3)
    topo = np.linspace(0.0, 1500.0, 100 * 100).reshape(100, 100)
    y = m.predict(lr, topography=topo, n_members=1, steps=2, device="cpu")
    assert y.shape == (1, 6, 100, 100)
    assert y[0].size // lr[-1].size == 3750
    assert (y >= 0).all() and y.max() > 0


def test_block_mass_conservation():
    S, T = 5, 4
    m = make_model(S, T, mass_conservation="block", threshold=0.0)
    lr = rain((2, m.config.L, 3, 4), seed=7, zero_frac=0.4)
    lr[1, -1, 0, 0] = 80.0  # above the 55 mm/h cap: the target is not capped
    y = m.predict(lr, n_members=2, steps=2, device="cpu")
    target = lr[:, -1]  # (2, h, w)
    blocks = coarsen_np(y, S, T)[:, :, 0]  # (2, M, h, w)
    np.testing.assert_allclose(blocks, np.broadcast_to(target[:, None], blocks.shape), rtol=1e-4,
                               atol=1e-6)
    assert blocks[1, :, 0, 0] == pytest.approx(80.0, rel=1e-4)
    assert (blocks[np.broadcast_to(target[:, None], blocks.shape) == 0] == 0).all()  # dry stays dry
    # the deterministic mean conserves too
    bm = coarsen_np(m.predict_mean(lr, device="cpu"), S, T)[:, 0]
    np.testing.assert_allclose(bm, target, rtol=1e-4, atol=1e-6)


def block_conserve_np(z: np.ndarray, lr: np.ndarray, S: int, T: int, a: float) -> np.ndarray:
    """Independent reference of block mass conservation with power 1: ``u = max(z - a, 0)``
    rescaled so every (T, S, S) block's mean is the LR value (``lr`` where ``u`` is all dry)."""
    u = np.maximum(z - a, 0.0)
    out = np.empty_like(u)
    for idx in np.ndindex(*lr.shape):
        *lead, i, j = idx
        blk = (*lead, slice(None), slice(i * S, (i + 1) * S), slice(j * S, (j + 1) * S))
        tot = u[blk].sum()
        out[blk] = u[blk] * (lr[idx] * T * S * S / tot) if tot > 0 else lr[idx]
    return out


def test_with_config_changes_only_the_output_settings():
    S, T = 5, 4
    m = make_model(S, T, mass_conservation="block", threshold=0.02)
    lr = rain((2, m.config.L, 3, 4), seed=3, zero_frac=0.4)
    z = m.predict_mean(lr, device="cpu", mass_conservation=None)  # the network's mean, mm/h
    refs = {a: block_conserve_np(z, lr[:, -1], S, T, a * CAP) for a in (0.02, 0.0)}
    assert np.abs(refs[0.0] - refs[0.02]).max() > 0.1  # the threshold matters here
    for a, ref in refs.items():
        got = m.with_config(threshold=a).predict_mean(lr, device="cpu")
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)
    m0 = m.with_config(threshold=0.0)
    assert m.config.threshold == 0.02 and m0.config.threshold == 0.0  # the original is untouched
    assert all(torch.equal(v, m0.state_dict()[k]) for k, v in m.state_dict().items())
    assert m0.metadata["config_changes"] == {"threshold": 0.02}
    # chained changes keep the trained value
    assert m0.with_config(threshold=0.01, power=1.25).metadata["config_changes"] == {"threshold": 0.02, "power": 1.0}
    with pytest.raises(ValueError, match=r"\['S'\] must match the trained weights"):
        m.with_config(S=10)
    with pytest.raises(ValueError, match="threshold"):
        m.with_config(threshold=-1.0)


def test_with_residual_factor_scales_the_members_departures_from_the_mean():
    """Same seed, same noise: with the residual scale times k, every member departs k times
    as far from the network's mean (where nothing is clamped at 0); weights untouched."""
    S, T, k = 5, 2, 0.5
    m = make_model(S, T, mass_conservation=None, threshold=0.0)
    m.normalization["residual_scale"] = 0.3
    lr = rain((2, m.config.L, 3, 3), seed=4, zero_frac=0.2)
    mk = m.with_residual_factor(k)
    assert mk.normalization["residual_scale"] == pytest.approx(0.3 * k)
    assert m.normalization["residual_scale"] == 0.3  # the original is untouched
    assert mk.metadata["residual_scale_trained"] == 0.3
    assert mk.with_residual_factor(2.0).metadata["residual_scale_trained"] == 0.3  # chained: still the trained one
    assert all(torch.equal(v, mk.state_dict()[key]) for key, v in m.state_dict().items())
    d = m.predict_mean(lr, device="cpu", mass_conservation=None)[:, None]  # (N, 1, T, H, W) mm/h
    y1 = m.predict(lr, n_members=2, steps=3, seed=7, device="cpu")
    yk = mk.predict(lr, n_members=2, steps=3, seed=7, device="cpu")
    ok = (y1 > 0) & (yk > 0) & (d > 0)
    assert ok.sum() > 100  # an untrained network: about a quarter of the pixels
    np.testing.assert_allclose((yk - d)[ok], k * (y1 - d)[ok], rtol=1e-4, atol=1e-4)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="factor"):
            m.with_residual_factor(bad)


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_s1_models_give_back_their_input_by_default(threshold):
    """S = 1: "auto" conserves every block (the coarse input is every pixel's block mean),
    whatever the model's training mode and threshold; asking for "tile" does not."""
    m = make_model(1, 3, threshold=threshold)  # trained with "tile" (the recipe's default)
    assert m.config.mass_conservation == "tile"
    lr = rain((3, m.config.L, 6, 7), seed=21, zero_frac=0.3)
    lr[0, -1, 2, 2] = 100.0
    ref = lr[:, -1]
    mean = m.predict_mean(lr, device="cpu")
    np.testing.assert_allclose(coarsen_np(mean, 1, 3)[:, 0], ref, rtol=0, atol=1e-4)
    y = m.predict(lr, n_members=2, steps=2, device="cpu")
    np.testing.assert_allclose(coarsen_np(y, 1, 3)[:, :, 0], np.broadcast_to(ref[:, None], (3, 2, 6, 7)),
                               rtol=0, atol=1e-4)
    tile = m.predict_mean(lr, device="cpu", mass_conservation="tile")
    assert np.abs(coarsen_np(tile, 1, 3)[:, 0] - ref).max() > 1e-2
    with pytest.raises(ValueError, match=r"mass_conservation must be 'auto' or one of \('tile', 'tile_refill', 'block', None\)"):
        m.predict_mean(lr, device="cpu", mass_conservation="pixel")


def test_tile_mass_conservation():
    S, T = 2, 2
    m = make_model(S, T, threshold=0.0)  # "tile" is the recipe's default
    lr = rain((3, m.config.L, 4, 4), seed=11)
    y = m.predict(lr, n_members=2, steps=2, device="cpu")
    tot = y.sum(axis=(-3, -2, -1), dtype=np.float64)  # (3, M)
    ref = T * S * S * lr[:, -1].sum(axis=(-2, -1), dtype=np.float64)
    np.testing.assert_allclose(tot, np.broadcast_to(ref[:, None], tot.shape), rtol=1e-4)


def test_predict_reproducible_and_batch_invariant(m103):
    lr = rain((3, 5, 2, 2), seed=1)
    kw = dict(n_members=3, steps=2, device="cpu")
    a = m103.predict(lr, seed=5, **kw)
    b = m103.predict(lr, seed=5, **kw)
    np.testing.assert_array_equal(a, b)
    c = m103.predict(lr, seed=5, batch_size=1, **kw)
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-4)
    d = m103.predict(lr, seed=6, **kw)
    assert np.abs(d - a).max() > 1e-3
    # members differ from each other
    assert np.abs(a[:, 0] - a[:, 1]).max() > 1e-3
    assert np.abs(a[:, 1] - a[:, 2]).max() > 1e-3
    # a sample's members do not depend on the other samples (given its noise key)
    e = m103.predict(lr[2:], seed=5, noise_keys=np.array([2]), **kw)
    np.testing.assert_allclose(e[0], a[2], rtol=1e-5, atol=1e-4)
    f = m103.predict(lr[2:], seed=5, **kw)  # default key 0 -> different noise
    assert np.abs(f[0] - a[2]).max() > 1e-3


def test_stochastic_samplers_batch_invariant():
    """Ancestral (short schedule) and DDIM eta=1 draw per-step noise: still batch-invariant."""
    m = make_model(2, 2, J=20)
    lr = rain((2, m.config.L, 2, 2), seed=4)
    for kw in (dict(sampler="ancestral"), dict(sampler="ddim", steps=4, eta=1.0)):
        a = m.predict(lr, n_members=2, seed=1, device="cpu", **kw)
        b = m.predict(lr, n_members=2, seed=1, device="cpu", batch_size=1, **kw)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
        assert (a >= 0).all() and np.abs(a[:, 0] - a[:, 1]).max() > 1e-3
    calls = []
    m.predict(lr, n_members=2, sampler="ancestral", device="cpu", batch_size=3,
              progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (40, 40)  # 2 diffusion calls of 20 steps each
    # one item per call: two calls per sample, the count rising across samples and calls
    calls = []
    m.predict(lr, n_members=2, sampler="ancestral", device="cpu", batch_size=1,
              progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert calls[-1] == (80, 80) and done == sorted(done) and {t for _, t in calls} == {80}


def test_predict_input_errors(m103):
    lr = rain((5, 2, 2))
    with pytest.raises(ValueError, match=r"L=4.*expected L=5.*\(S, T, L\) = \(10, 3, 5\)"):
        m103.predict(lr[:4], steps=2, device="cpu")
    bad = lr.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m103.predict(bad, steps=2, device="cpu")
    bad = lr.copy()
    bad[1, 1, 1] = -0.5
    with pytest.raises(ValueError, match="negative"):
        m103.predict(bad, steps=2, device="cpu")
    with pytest.raises(ValueError, match="h, w >= 1"):
        m103.predict(np.zeros((5, 0, 3), np.float32), device="cpu")
    with pytest.raises(ValueError, match="topography must have shape"):
        m103.predict(lr, topography=np.zeros((20, 21)), steps=2, device="cpu")
    with pytest.raises(ValueError, match="unknown sampler"):
        m103.predict(lr, sampler="euler", device="cpu")
    with pytest.raises(ValueError, match="ancestral"):
        m103.predict(lr, sampler="ancestral", steps=10, device="cpu")
    with pytest.raises(ValueError, match="seed"):
        m103.predict(lr, seed=-1, device="cpu")
    with pytest.raises(ValueError, match="n_members"):
        m103.predict(lr, n_members=0, device="cpu")
    no_cap = SRModel(SRConfig.recipe(10, 3))
    with pytest.raises(ValueError, match="cap"):
        no_cap.predict(lr, device="cpu")
    no_topo = SRModel(SRConfig.recipe(10, 3, cap=CAP))
    with pytest.raises(ValueError, match="topo_min"):
        no_topo.predict(lr, topography=np.zeros((20, 20)), steps=2, device="cpu")


def test_check_factors(m103):
    m103.check_factors(10, 3)
    with pytest.raises(ValueError, match="trained for S=10, T=3; the data asks for S=5, T=3"):
        m103.check_factors(5, 3)


def test_inputs_not_modified(m103):
    lr = rain((2, 5, 2, 2), seed=9)
    lr[0, 0, 0, 0] = 90.0  # above the cap
    topo = np.full((2, 20, 20), 700.0)
    lr0, topo0 = lr.copy(), topo.copy()
    m103.predict(lr, topography=topo, n_members=1, steps=2, device="cpu")
    m103.predict_mean(lr, topography=topo, device="cpu")
    np.testing.assert_array_equal(lr, lr0)
    np.testing.assert_array_equal(topo, topo0)


def test_topography_matters_and_broadcasts(m103):
    lr = rain((2, 5, 2, 2), seed=2)
    flat = m103.predict_mean(lr, device="cpu")
    hill = np.tile(np.linspace(0, 2000, 20), (20, 1))
    a = m103.predict_mean(lr, topography=hill, device="cpu")
    b = m103.predict_mean(lr, topography=np.stack([hill, hill]), device="cpu")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert np.abs(a - flat).max() > 1e-4


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path, m103):
    m103.metadata = {"history": {"loss": [np.float32(0.5), 0.25]}, "epochs": np.int64(2),
                     "region": ("NL", "DE")}
    lr = rain((1, 5, 2, 2), seed=3)
    ref = m103.predict(lr, n_members=2, steps=2, seed=4, device="cpu")
    d = m103.save(tmp_path / "m")
    doc = json.loads((d / "config.json").read_text())
    assert doc["format"] == "xsuperres.SRModel" and doc["format_version"] == 2
    assert doc["config"]["S"] == 10 and doc["normalization"]["cap"] == CAP
    assert doc["metadata"]["epochs"] == 2 and len(doc["tensors_sha256"]) == 64
    m2 = SRModel.load(d)
    assert m2.config == m103.config and m2.history == {"loss": [0.5, 0.25]}
    np.testing.assert_array_equal(m2.predict(lr, n_members=2, steps=2, seed=4, device="cpu"), ref)
    for k, v in m103.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    # fp16: about half the size, loads as float32, predicts close but not identical
    d16 = m103.save(tmp_path / "m16", dtype="float16")
    assert (d16 / "model.safetensors").stat().st_size < 0.6 * (d / "model.safetensors").stat().st_size
    m3 = SRModel.load(d16 / "config.json")
    assert all(p.dtype == torch.float32 for p in m3.parameters())
    y3 = m3.predict(lr, n_members=2, steps=2, seed=4, device="cpu")
    assert not np.array_equal(y3, ref)
    assert np.abs(y3 - ref).max() < 0.02 * max(ref.max(), 1.0) + 0.05
    with pytest.raises(ValueError, match="dtype"):
        m103.save(tmp_path / "x", dtype="int8")


def test_metadata_must_be_json(tmp_path):
    m = make_model(2, 2)
    m.metadata = {"bad": object()}
    with pytest.raises(ValueError, match=r"metadata\['bad'\]"):
        m.save(tmp_path / "m")


def _saved(tmp_path) -> Path:
    return make_model(2, 2).save(tmp_path / "m")


def _fix_hash(d: Path) -> None:
    import hashlib

    doc = json.loads((d / "config.json").read_text())
    doc["tensors_sha256"] = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    (d / "config.json").write_text(json.dumps(doc))


def _weights_meta(d: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        return dict(f.metadata() or {})


def _edit(d: Path, fn) -> None:
    """Apply ``fn`` to the parsed config.json of ``d`` and write it back (re-indented)."""
    c = d / "config.json"
    doc = json.loads(c.read_text())
    fn(doc)
    c.write_text(json.dumps(doc, indent=1))


def _make_v1(d: Path) -> None:
    """Rewrite a saved model directory the way xsuperres wrote format version 1.

    Version 1: the safetensors metadata held only ``format`` and ``dtype`` (no
    ``config_sha256``) and config.json said ``"format_version": 1``; the tensors are kept.
    """
    from safetensors.torch import load_file, save_file

    w = d / "model.safetensors"
    meta = _weights_meta(d)
    assert "config_sha256" in meta
    save_file(load_file(str(w)), str(w), metadata={"format": meta["format"], "dtype": meta["dtype"]})
    _edit(d, lambda doc: doc.update(format_version=1))
    _fix_hash(d)


def test_load_rejects_truncated_and_edited(tmp_path):
    d = _saved(tmp_path)
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupted or modified: expected sha256"):
        SRModel.load(d)
    # truncated with a matching hash: safetensors' own error is wrapped
    _fix_hash(d)
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        SRModel.load(d)
    edited = bytearray(data)
    edited[-3] ^= 0xFF
    w.write_bytes(bytes(edited))
    _fix_hash(d)
    SRModel.load(d)  # a consistent (if odd) file loads
    w.write_bytes(bytes(edited[:-1]) + bytes([edited[-1] ^ 1]))
    with pytest.raises(ModelFileError, match="sha256"):
        SRModel.load(d)


def test_load_rejects_wrong_tensors(tmp_path):
    from safetensors.torch import save_file

    d = _saved(tmp_path)
    sd = {k: v.contiguous() for k, v in SRModel.load(d).state_dict().items()}
    name = "mean_net.stem.weight"
    cases = {
        "unknown tensors: extra.weight": {**sd, "extra.weight": torch.zeros(3)},
        f"missing tensors: {name}": {k: v for k, v in sd.items() if k != name},
        f"{name}: file \\(1, 2, 3, 3\\)": {**sd, name: torch.zeros(1, 2, 3, 3)},
    }
    meta = _weights_meta(d)  # keeps the configuration binding of the saved model
    for msg, tensors in cases.items():
        save_file(tensors, str(d / "model.safetensors"), metadata=meta)
        _fix_hash(d)
        with pytest.raises(ModelFileError, match=msg):
            SRModel.load(d)


def test_load_rejects_bad_config(tmp_path):
    d = _saved(tmp_path)
    c = d / "config.json"
    doc = json.loads(c.read_text())
    for bad in (3, 0, "2", 2.0, None, True):
        c.write_text(json.dumps({**doc, "format_version": bad}))
        with pytest.raises(ModelFileError, match=f"format_version {bad!r}; .* reads "
                                                 "format_version 1 and 2 only"):
            SRModel.load(d)
    c.write_text(json.dumps({**doc, "format": "something.else"}))
    with pytest.raises(ModelFileError, match="not an xsuperres model"):
        SRModel.load(d)
    c.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        SRModel.load(d)
    c.write_text(json.dumps({**doc, "config": {**doc["config"], "L": 0}}))
    with pytest.raises(ModelFileError, match="edited after saving"):
        SRModel.load(d)
    # an invalid configuration is reported as such where nothing binds it (version 1)
    _make_v1(d)
    doc1 = json.loads(c.read_text())
    c.write_text(json.dumps({**doc1, "config": {**doc1["config"], "L": 0}}))
    with pytest.warns(UserWarning, match="without a configuration binding"), \
            pytest.raises(ModelFileError, match="invalid configuration: .*L must be a positive"):
        SRModel.load(d)
    c.unlink()
    with pytest.raises(ModelFileError, match="lacks config.json"):
        SRModel.load(d)
    with pytest.raises(ModelFileError, match="does not exist"):
        SRModel.load(tmp_path / "nowhere")


def test_model_properties(m103):
    n = m103.n_parameters
    assert n["total"] == n["mean_net"] + n["diffusion_net"] == sum(
        p.numel() for p in m103.parameters())
    r = repr(m103)
    assert "S=10" in r and "T=3" in r and "L=5" in r and "tiny" in r and "55 mm/h" in r
    total = f"params={n['total'] / 1e6:.2f}M"
    assert total in r and "\n" not in r  # one line with the parameter count
    assert {k for k, _ in m103.named_children()} == {"mean_net", "diffusion_net"}
    assert m103.schedule.beta_max == 2e-2
    no_attn = SRModel(SRConfig.recipe(10, 3, attention=False, cap=CAP))
    assert no_attn.n_parameters["total"] < n["total"]
    with pytest.raises(ValueError, match="disagrees"):
        SRModel(SRConfig.recipe(10, 3, cap=CAP), {"cap": 40.0})


def test_noise_fn_replaces_the_keyed_generator(m103):
    """``noise_fn(i, m, k)`` supplies the draws: noise that ignores the sample index makes
    two identical contexts give identical members, while the default keys make them differ;
    ``check_sampler`` and ``cap`` are the public validation helpers."""
    rng = np.random.default_rng(3)
    one = rng.gamma(0.5, 2.0, size=(m103.config.L, 2, 2)).astype(np.float32)
    lr = np.stack([one, one])
    calls = []

    def noise_fn(i, m, k):
        calls.append((i, m, k))
        g = torch.Generator().manual_seed(1000 * m + k)
        return torch.randn((3, 20, 20), generator=g)

    kw = dict(n_members=2, sampler="ddim", steps=3, eta=1.0, device="cpu")
    same = m103.predict(lr, noise_fn=noise_fn, **kw)
    np.testing.assert_array_equal(same[0], same[1])
    assert {i for i, _, _ in calls} == {0, 1} and {m for _, m, _ in calls} == {0, 1}
    default = m103.predict(lr, **kw)
    assert not np.array_equal(default[0], default[1])
    assert not np.array_equal(same[0], default[0])
    assert m103.check_sampler("ddim", 3) == 3
    assert m103.check_sampler("ancestral") == m103.config.J
    with pytest.raises(ValueError, match="unknown sampler"):
        m103.check_sampler("euler")
    assert m103.cap == CAP
    with pytest.raises(ValueError, match="cap"):
        SRModel(SRConfig.recipe(10, 3)).cap  # no cap anywhere: a clear error, not None


def test_sampler_defaults_come_from_the_sampler_table(m103, monkeypatch):
    """``check_sampler`` (and so ``predict``) reads the default steps and spacing of
    ``xsuperres.nn.diffusion.SAMPLERS``; it returns the network calls per sampler run."""
    import dataclasses

    from xsuperres.nn import diffusion

    sch = m103.schedule
    n_dpm = len(diffusion.sampling_timesteps(sch, 10, "logsnr"))
    assert m103.check_sampler() == n_dpm  # the default sampler: DPM-Solver++(2M), 10 steps
    assert m103.check_sampler("dpmpp_2m") == n_dpm
    assert m103.check_sampler("ddim") == 50
    assert m103.check_sampler("ddim", spacing="logsnr") == len(
        diffusion.sampling_timesteps(sch, 50, "logsnr"))
    monkeypatch.setitem(diffusion.SAMPLERS, "dpmpp_2m",
                        dataclasses.replace(diffusion.SAMPLERS["dpmpp_2m"], steps=4))
    n4 = len(diffusion.sampling_timesteps(sch, 4, "logsnr"))
    assert m103.check_sampler() == n4
    lr = rain((1, m103.config.L, 2, 2), seed=8)
    seen = []
    m103.predict(lr, n_members=1, device="cpu", progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, n4) for i in range(1, n4 + 1)]


def test_default_sampler_name_is_read_from_one_place():
    """Every ``sampler=`` default (predict, check_sampler, downscale, sample, the command
    line) is ``xsuperres.nn.samplers.DEFAULT_SAMPLER``, a key of ``SAMPLERS``."""
    import inspect

    import xsuperres
    from xsuperres.cli import _parser
    from xsuperres.nn import samplers

    assert samplers.DEFAULT_SAMPLER == "dpmpp_2m" and samplers.DEFAULT_SAMPLER in samplers.SAMPLERS
    for fn in (SRModel.predict, SRModel.check_sampler, xsuperres.downscale, samplers.sample,
               samplers.check_sampler):
        assert inspect.signature(fn).parameters["sampler"].default == samplers.DEFAULT_SAMPLER, fn
    args = _parser().parse_args(["downscale", "in.nc", "out.zarr", "--model", "m"])
    assert (args.sampler, args.steps) == (samplers.DEFAULT_SAMPLER, None)
    demo = _parser().parse_args(["demo"])
    assert demo.steps is None  # the default sampler's steps


# --------------------------------------------------------------------------- config binding
EDITS = {
    "residual_scale": lambda doc: doc["normalization"].update(residual_scale=0.5),
    "cap": lambda doc: (doc["normalization"].update(cap=40.0), doc["config"].update(cap=40.0)),
    "mass_conservation": lambda doc: doc["config"].update(mass_conservation="block"),
    "time_step": lambda doc: doc["config"].update(time_step="10min"),
    "S": lambda doc: doc["config"].update(S=5),
    "metadata field": lambda doc: doc["metadata"].update(data="another data set"),
    "new metadata field": lambda doc: doc["metadata"].update(extra=1),
    "topo_max": lambda doc: doc["normalization"].update(topo_max=3000.0),
    "dtype": lambda doc: doc.update(dtype="float16"),
    "new top-level entry": lambda doc: doc.update(note="hand-edited"),
}


@pytest.fixture
def bound_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = SRConfig.recipe(2, 2, cap=CAP, time_step="5min")
    m = SRModel(cfg, {"topo_min": 0.0, "topo_max": 2000.0, "residual_scale": 0.25},
                {"data": "synthetic", "epochs": 2})
    return m.save(tmp_path / "m")


def test_saved_weights_carry_the_configuration_binding(bound_dir):
    import hashlib

    meta = _weights_meta(bound_dir)
    doc = json.loads((bound_dir / "config.json").read_text())
    bound = {k: v for k, v in doc.items()
             if k not in ("tensors_sha256", "xsuperres_version", "torch_version")}
    assert {"format", "format_version", "dtype", "config", "normalization", "metadata"} <= set(bound)
    canon = json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert meta == {"format": "xsuperres.SRModel", "dtype": "float32",
                    "config_sha256": hashlib.sha256(canon.encode()).hexdigest()}
    # tensors_sha256 covers the header metadata, i.e. the binding
    assert doc["tensors_sha256"] == hashlib.sha256(
        (bound_dir / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("what", list(EDITS))
def test_edited_config_json_is_rejected(bound_dir, what):
    SRModel.load(bound_dir)  # loads as saved
    _edit(bound_dir, EDITS[what])
    with pytest.raises(ModelFileError) as err:
        SRModel.load(bound_dir)
    msg = str(err.value)
    assert "config.json was edited after saving (or belongs to other weights)" in msg
    assert str(bound_dir / "config.json") in msg and str(bound_dir / "model.safetensors") in msg
    assert "re-save the model with SRModel.save or restore the original config.json" in msg


def test_formatting_and_version_strings_are_not_bound(bound_dir):
    """Whitespace, key order and the informational version strings may change."""
    m = SRModel.load(bound_dir)
    lr = rain((1, m.config.L, 3, 3), seed=1)
    ref = m.predict_mean(lr, device="cpu")
    c = bound_dir / "config.json"
    doc = json.loads(c.read_text())
    doc = dict(reversed(list(doc.items())))
    doc["config"] = dict(reversed(list(doc["config"].items())))
    doc["xsuperres_version"], doc["torch_version"] = "9.9.9", "0.0.1"
    c.write_text(json.dumps(doc, separators=(",", ":")))
    np.testing.assert_array_equal(SRModel.load(bound_dir).predict_mean(lr, device="cpu"), ref)


def test_edited_weights_are_still_rejected(bound_dir):
    w = bound_dir / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="model.safetensors is corrupted or modified: "
                                             "expected sha256"):
        SRModel.load(bound_dir)


def test_config_of_other_weights_is_rejected(bound_dir, tmp_path):
    """Weights of the same architecture with another configuration, hash fixed up."""
    other = SRModel.load(bound_dir)
    other.normalization["residual_scale"] = 1.0
    o = other.save(tmp_path / "other")
    (bound_dir / "model.safetensors").write_bytes((o / "model.safetensors").read_bytes())
    _fix_hash(bound_dir)
    with pytest.raises(ModelFileError, match="edited after saving \\(or belongs to other weights\\)"):
        SRModel.load(bound_dir)


def test_version_2_weights_without_binding_are_rejected(bound_dir):
    from safetensors.torch import load_file, save_file

    w = bound_dir / "model.safetensors"
    save_file(load_file(str(w)), str(w), metadata={"format": "xsuperres.SRModel", "dtype": "float32"})
    _fix_hash(bound_dir)
    with pytest.raises(ModelFileError, match="carries no configuration binding .* format_version 2"):
        SRModel.load(bound_dir)


def test_version_1_directory_loads_with_a_warning(bound_dir):
    m = SRModel.load(bound_dir)
    lr = rain((2, m.config.L, 3, 3), seed=2)
    ref_mean = m.predict_mean(lr, device="cpu")
    ref_ens = m.predict(lr, n_members=2, sampler="ddim", steps=2, seed=3, device="cpu")
    _make_v1(bound_dir)
    assert "config_sha256" not in _weights_meta(bound_dir)
    assert json.loads((bound_dir / "config.json").read_text())["format_version"] == 1
    with pytest.warns(UserWarning, match="saved by an older xsuperres without a configuration "
                                         "binding; re-save with model.save\\(path\\) to bind it"):
        old = SRModel.load(bound_dir)
    assert old.config == m.config and old.normalization == m.normalization
    assert old.metadata == m.metadata
    for k, v in m.state_dict().items():
        assert torch.equal(v, old.state_dict()[k]), k
    np.testing.assert_array_equal(old.predict_mean(lr, device="cpu"), ref_mean)
    np.testing.assert_array_equal(
        old.predict(lr, n_members=2, sampler="ddim", steps=2, seed=3, device="cpu"), ref_ens)
    # re-saving binds it: version 2, no warning, and edits are detected again
    old.save(bound_dir)
    assert json.loads((bound_dir / "config.json").read_text())["format_version"] == 2
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SRModel.load(bound_dir)
    _edit(bound_dir, EDITS["cap"])
    with pytest.raises(ModelFileError, match="edited after saving"):
        SRModel.load(bound_dir)


def test_claiming_version_1_does_not_bypass_the_binding(bound_dir):
    _edit(bound_dir, lambda doc: doc.update(format_version=1))
    with pytest.raises(ModelFileError, match="edited after saving"):
        SRModel.load(bound_dir)
    _edit(bound_dir, EDITS["cap"])  # version 1 claimed *and* the cap edited
    with pytest.raises(ModelFileError, match="config.json was edited after saving"):
        SRModel.load(bound_dir)


def test_save_is_byte_reproducible(tmp_path):
    """Saving one model twice writes identical files (the safetensors header is sorted),
    so the same in-memory model always gets the same hash (and downscale's worker cache
    one folder, not a new one per call)."""
    torch.manual_seed(0)
    m = SRModel(SRConfig.recipe(2, 2, preset="tiny", tile_size=8, L=2),
                normalization={"cap": 10.0, "residual_scale": 0.5})
    a, b = m.save(tmp_path / "a"), m.save(tmp_path / "b")
    for name in ("model.safetensors", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    back = SRModel.load(a)
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
