"""A residual scale that grows with the mean: ``residual_scale * (D + floor) ** power``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsuperres.config import SRConfig
from xsuperres.model import SRModel
from xsuperres.model.normalization import check_normalization, residual_std
from xsuperres.training import TrainOptions, train

from test_diffusion_mean import config, linear_mean_blocks, rain


def test_residual_std_against_numpy():
    D = torch.tensor([[-0.2, 0.0, 0.01], [0.5, 2.0, 7.5]])
    norm = {"residual_scale": 0.4, "residual_power": 0.75, "residual_floor": 0.03}
    ref = 0.4 * (np.maximum(D.numpy(), 0) + 0.03) ** 0.75
    np.testing.assert_allclose(residual_std(D, norm).numpy(), ref, rtol=1e-6)
    # hand-computed: D = 2, power 1, floor 0.5, scale 0.1 -> 0.25
    assert float(residual_std(torch.tensor(2.0), {"residual_scale": 0.1, "residual_power": 1.0,
                                                  "residual_floor": 0.5})) == pytest.approx(0.25)
    # power 0 (and models without the keys): the global scale, a number
    assert residual_std(D, {"residual_scale": 0.4}) == 0.4
    assert residual_std(D, {"residual_scale": 0.4, "residual_power": 0.0, "residual_floor": 9.0}) == 0.4


def test_normalization_checks_the_new_keys_and_adds_none():
    cfg = SRConfig.recipe(10, 1, cap=5.0)
    old = check_normalization(cfg, {"cap": 5.0, "residual_scale": 0.2})
    assert "residual_power" not in old and "residual_floor" not in old  # old files read as before
    new = check_normalization(cfg, {"residual_power": 1, "residual_floor": 0.03})
    assert (new["residual_power"], new["residual_floor"]) == (1.0, 0.03)
    with pytest.raises(ValueError, match=r"residual_power.*>= 0"):
        check_normalization(cfg, {"residual_power": -1.0})
    with pytest.raises(ValueError, match=r"residual_floor.*> 0"):
        check_normalization(cfg, {"residual_power": 1.0, "residual_floor": 0.0})
    with pytest.raises(ValueError, match="residual_power"):
        TrainOptions(residual_power=float("nan"))
    with pytest.raises(ValueError, match="residual_floor"):
        TrainOptions(residual_floor=-0.1)


def test_predict_scales_the_sampled_residual_by_the_mean():
    """Same weights, same noise: the residual with ``power = 1`` is ``(D + floor)`` times
    the one with one global scale, wherever neither member is clamped at 0."""
    torch.manual_seed(3)
    cfg = SRConfig.recipe(4, 1, L=2, tile_size=8, preset="tiny", cap=10.0, mass_conservation=None)
    flat = SRModel(cfg, normalization={"residual_scale": 0.5})
    grow = SRModel(cfg, normalization={"residual_scale": 0.5, "residual_power": 1.0, "residual_floor": 0.2})
    grow.load_state_dict(flat.state_dict())
    x = np.random.default_rng(0).gamma(1.0, 3.0, (3, 2, 2, 2)).astype(np.float32)
    kw = dict(n_members=2, steps=4, seed=11)
    a, b = flat.predict(x, **kw), grow.predict(x, **kw)
    D = flat.predict_mean(x)[:, None]  # mm/h, (N, 1, T, H, W)
    D_norm = D / 10.0
    ok = (a > 0) & (b > 0)
    assert ok.mean() > 0.3
    expected = D + (D_norm + 0.2) * (a - D)  # r * 0.5 * (D + 0.2) against r * 0.5, in mm/h
    np.testing.assert_allclose(b[ok], np.broadcast_to(expected, b.shape)[ok], rtol=1e-4, atol=1e-4)
    assert not np.allclose(a[ok], b[ok])


def test_training_scales_residuals_by_the_mean():
    """``residual_scale`` is then the RMS of ``(target - D) / (D + floor)``, by a numpy loop."""
    da = rain()
    kw = dict(config=config(), epochs=1, progress=False, n_folds=2, diffusion_mean="linear")
    model = train(da, 1, 3, residual_power=1.0, residual_floor=0.05, **kw)
    assert model.normalization["residual_power"] == 1.0
    assert model.normalization["residual_floor"] == 0.05
    assert model.metadata["protocol"]["residual_power"] == 1.0
    _, hr, m = linear_mean_blocks(da)
    rms = float(np.sqrt(np.mean(np.concatenate([((h - d) / (np.maximum(d, 0) + 0.05)).ravel()
                                                for h, d in zip(hr, m)]) ** 2)))
    assert model.normalization["residual_scale"] == pytest.approx(rms, rel=1e-5)
    plain = train(da, 1, 3, **kw)
    assert "residual_power" not in plain.normalization
    assert plain.normalization["residual_scale"] != pytest.approx(rms, rel=1e-3)
