"""Models that also see the LR steps after the block (``SRConfig.lookahead``).

Checked against hand-built references: the frame order the networks get, which samples
exist, what ``predict`` conserves (the block's own frame, not the last one), and that
``downscale`` builds the same chronological contexts as a numpy loop, pads or drops the
last blocks, and stays chunk-invariant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xsuperres as xs
from xsuperres.model.inputs import network_order
from xsuperres.training.samples import SampleDataset, make_samples
from xsuperres.training.tiles import tile_grid

S, T, L, K = 2, 2, 2, 1


def make_model(seed=0, **kw) -> xs.SRModel:
    torch.manual_seed(seed)
    cfg = xs.SRConfig.recipe(S, T, L=L, lookahead=K, preset="tiny", tile_size=8, cap=20.0,
                             mass_conservation="block", threshold=0.0, time_step="1h", **kw)
    m = xs.SRModel(cfg, normalization={"cap": 20.0, "residual_scale": 0.01},
                   metadata={"name": "lookahead-test", "grid_spacing_m": [1000.0, 1000.0]})
    return m.eval()


def lr_field(nt=6, ny=4, nx=4, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.gamma(0.6, 1.5, size=(nt, ny, nx)).astype("float32"), dims=("time", "y", "x"),
        coords={"time": pd.date_range("2021-06-01", periods=nt, freq="2h"),
                "y": ("y", np.arange(ny) * 2000.0, {"units": "m"}),
                "x": ("x", np.arange(nx) * 2000.0, {"units": "m"})},
        attrs={"units": "mm h-1"}, name="pr")


def test_network_order_puts_the_block_last():
    a = np.arange(5)[:, None, None] * np.ones((1, 2, 2))
    np.testing.assert_array_equal(network_order(a, 3, axis=0)[:, 0, 0], [0, 1, 3, 4, 2])
    t = torch.arange(5.0).reshape(1, 5, 1, 1)
    assert network_order(t, 3)[0, :, 0, 0].tolist() == [0, 1, 3, 4, 2]
    assert network_order(a, 5, axis=0) is a  # no lookahead: unchanged, not copied
    cfg = xs.SRConfig.recipe(S, T, L=3, lookahead=2)
    assert cfg.n_context == 5 and cfg.to_dict()["lookahead"] == 2
    assert xs.SRConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "lookahead"}).lookahead == 0
    with pytest.raises(ValueError, match="lookahead"):
        xs.SRConfig.recipe(S, T, lookahead=-1)


def test_samples_need_the_blocks_after_the_target():
    hr = np.ones((6 * T, 4, 4), np.float32)  # 6 blocks
    tiles = tile_grid(4, 4, 4)
    rec, _ = make_samples(hr, S, T, L, tiles, lookahead=K)
    assert rec["block"].tolist() == [1, 2, 3, 4]  # t - 1 and t + 1 exist
    rec, _ = make_samples(hr, S, T, 3, tiles, lookahead=2)
    assert rec["block"].tolist() == [2, 3]
    # a context block that is not allowed (held out) removes the targets that see it
    ok = np.array([1, 1, 1, 0, 1, 1], bool)
    rec, _ = make_samples(hr, S, T, L, tiles, context_blocks=ok, lookahead=K)
    assert rec["block"].tolist() == [1]
    hr[4 * T] = np.nan  # block 4 has NaN: targets 3, 4 (and 5, no sample anyway) skip
    rec, n_nan = make_samples(hr, S, T, L, tiles, lookahead=K)
    assert rec["block"].tolist() == [1, 2] and n_nan == 2
    lr = np.arange(6.0)[:, None, None] * np.ones((1, 2, 2), np.float32)
    ds = SampleDataset([hr], [lr], [np.zeros((4, 4))], [tiles], rec, S, T, L, K)
    assert ds[1]["context"][:, 0, 0].tolist() == [1.0, 3.0, 2.0]  # x[t-1], x[t+1], x[t]


def test_predict_conserves_the_block_not_the_last_frame():
    m = make_model()
    rng = np.random.default_rng(1)
    lr = rng.gamma(0.6, 1.5, size=(3, L + K, 3, 2)).astype(np.float32)
    mean = m.predict_mean(lr, device="cpu")
    blocks = mean.reshape(3, 1, T, 3, S, 2, S).mean(axis=(2, 4, 6))[:, 0]
    np.testing.assert_allclose(blocks, lr[:, L - 1], rtol=1e-4, atol=1e-6)
    ens = m.predict(lr, n_members=2, steps=2, device="cpu")
    eb = ens.reshape(3, 2, 1, T, 3, S, 2, S).mean(axis=(3, 5, 7))[:, :, 0]
    np.testing.assert_allclose(eb, np.broadcast_to(lr[:, None, L - 1], eb.shape), rtol=1e-4, atol=1e-6)
    # the lookahead frame reaches the networks: changing it changes the prediction
    lr2 = lr.copy()
    lr2[:, -1] *= 3.0
    assert np.abs(m.predict_mean(lr2, device="cpu") - mean).max() > 1e-4
    with pytest.raises(ValueError, match=r"expected L \+ lookahead = 2 \+ 1 = 3"):
        m.predict_mean(lr[:, :L], device="cpu")


def test_downscale_builds_chronological_contexts_and_pads_or_drops_the_end():
    m = make_model()
    lr = lr_field(nt=6, ny=4, nx=4)  # one 4 x 4 LR tile: no blending
    x = lr.values
    out = xs.downscale_mean(lr, m, device="cpu", context="drop").values
    assert out.shape == ((6 - L + 1 - K) * T, 8, 8)
    ref = np.stack([m.predict_mean(x[t - L + 1:t + K + 1], device="cpu")
                    for t in range(L - 1, 6 - K)])  # (blocks, T, 8, 8)
    np.testing.assert_allclose(out, ref.reshape(-1, 8, 8), rtol=1e-4, atol=1e-4)  # batching rounding
    pad = xs.downscale_mean(lr, m, device="cpu")
    assert pad.sizes["time"] == 6 * T
    last = np.concatenate([x[-L:], x[-1:]])  # block 5: x[4], x[5], and x[5] again
    np.testing.assert_allclose(pad.values[-T:], m.predict_mean(last, device="cpu"), rtol=1e-4, atol=1e-4)
    drop = xs.downscale_mean(lr, m, device="cpu", context="drop")
    np.testing.assert_array_equal(drop.time.values[::T], lr.time.values[L - 1:6 - K])
    assert "the last 1 (without their lookahead)" in drop.attrs["xsuperres_context"]
    assert drop.attrs["xsuperres_lookahead"] == K
    back = pad.stsr.coarsen_perfect(S, T)
    np.testing.assert_allclose(back.values, x, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="plus the lookahead 1"):
        xs.downscale_mean(lr.isel(time=slice(0, 2)), m, device="cpu", context="drop")


def test_downscale_with_lookahead_is_chunk_invariant():
    m = make_model()
    lr = lr_field(nt=7, ny=6, nx=8, seed=3)
    ref = xs.downscale(lr, m, 2, steps=2, device="cpu", seed=4, batch_size=1).values
    for chunks in ({"time": 1}, {"time": 3, "x": 3}):
        got = xs.downscale(lr.chunk(chunks), m, 2, steps=2, device="cpu", seed=4, batch_size=1).values
        np.testing.assert_array_equal(got, ref)


def test_training_with_lookahead(tmp_path):
    da = xs.open_sample("knmi")["precip"].isel(time=slice(0, 24), y=slice(0, 32), x=slice(0, 32)).load()
    cfg = xs.SRConfig.recipe(4, 2, L=2, lookahead=1, tile_size=16, preset="tiny")
    model = xs.train(da, 4, 2, config=cfg, epochs=1, batch_size=8, lr=1e-3, mc_start_epoch=1,
                     seed=0, device="cpu", progress=False)
    assert model.config.lookahead == 1 and model.mean_net.L == 3
    back = xs.SRModel.load(model.save(tmp_path / "m"))
    assert back.config.lookahead == 1
    lr = xs.coarsen_perfect(da, 4, 2).values[:3, :4, :4]
    np.testing.assert_allclose(back.predict_mean(lr, device="cpu"), model.predict_mean(lr, device="cpu"),
                               rtol=1e-5, atol=1e-6)
