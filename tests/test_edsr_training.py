"""The EDSR baseline trained like the mean stage (xsuperres.training.edsr)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.nn.baselines import EDSR, bicubic_baseline
from xsuperres.training.edsr import train_edsr


@pytest.fixture(scope="module")
def knmi():
    return xs.open_sample("knmi")["precip"].isel(time=slice(0, 16), y=slice(0, 32), x=slice(0, 32)).load()


def _cfg(**kw):
    return SRConfig.recipe(4, 2, **{"L": 2, "tile_size": 16, "preset": "tiny", **kw})


def test_untrained_edsr_is_the_bicubic_baseline(knmi):
    """lr = 0 keeps the zero-initialised tail: the EDSR is exactly BI(x[t]) repeated over
    the T frames; without mass conservation predict_mean is that, clamped at 0, in mm/h."""
    m = train_edsr(knmi, 4, 2, config=_cfg(mass_conservation=None), epochs=1, lr=0.0, n_folds=2,
                   batch_size=8, device="cpu", progress=False)
    assert isinstance(m.mean_net, EDSR) and m.metadata["baseline"] == "EDSR"
    rng = np.random.default_rng(0)
    ctx = rng.uniform(0.0, 0.9 * m.cap, (3, 2, 4, 4)).astype(np.float32)  # below the cap
    want = np.maximum(bicubic_baseline(torch.from_numpy(ctx), 4, 2).numpy(), 0.0)
    np.testing.assert_allclose(m.predict_mean(ctx, device="cpu"), want, rtol=1e-5, atol=1e-5)


def test_training_lowers_the_loss_and_conserves_mass(knmi):
    """Mass conservation per block with a = 0 (exact, xsuperres.nn.mass): every block of
    the output whose network output is not all zero has the LR value as its mean."""
    m = train_edsr(knmi, 4, 2, config=_cfg(mass_conservation="block", threshold=0.0), epochs=4, lr=2e-3,
                   mc_start_epoch=0, n_folds=2, batch_size=8, seed=1, device="cpu", progress=False)
    h = m.history["mean"]
    assert h["epochs_run"] == 4 and h["train"][-1] < h["train"][0]
    assert m.metadata["n_samples"]["train"] > 0 and m.metadata["edsr"]["parameters"] > 0
    ctx = xs.coarsen_perfect(knmi, 4, 2).values[:2][None].astype(np.float32)  # (1, L=2, 8, 8)
    out = m.predict_mean(ctx, device="cpu")[0]  # (T, 32, 32)
    blocks = out.reshape(2, 8, 4, 8, 4).mean(axis=(0, 2, 4))
    lr = np.minimum(ctx[0, -1], m.cap)
    kept = blocks > 0  # the zero-denominator caveat: an all-zero block stays zero
    assert kept.sum() >= 0.9 * (lr > 0).sum() > 0
    np.testing.assert_allclose(blocks[kept], lr[kept], rtol=1e-4, atol=1e-6)
    assert (blocks[lr == 0] == 0).all()


def test_checkpoints_are_refused(knmi, tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir=None"):
        train_edsr(knmi, 4, 2, config=_cfg(), epochs=1, checkpoint_dir=str(tmp_path), device="cpu")
