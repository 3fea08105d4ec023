"""Tests of the interpolation baselines and the EDSR-style network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsuperres.nn.baselines import EDSR, bicubic_baseline, nearest_baseline
from xsuperres.nn.interp import upsample
from xsuperres.nn.mass import coarsen

FACTORS = [(1, 3), (10, 1), (10, 3), (25, 6), (2, 2), (5, 4)]




@pytest.mark.parametrize("S,T", FACTORS)
@pytest.mark.parametrize("fn", [bicubic_baseline, nearest_baseline])
def test_interp_shapes_and_frames(fn, S, T):
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 4, 3, 2, generator=g)  # (B, L, h, w)
    out = fn(lr, S, T)
    assert out.shape == (2, T, 3 * S, 2 * S) and out.dtype == lr.dtype
    assert (out >= 0).all()
    for k in range(T):  # every HR frame of the block takes the block's LR frame
        torch.testing.assert_close(out[:, k], out[:, 0])
    # only the last LR frame is used
    lr2 = lr.clone()
    lr2[:, :-1] = 7.0
    torch.testing.assert_close(fn(lr2, S, T), out)
    # extra leading axes are kept
    assert fn(lr[None], S, T).shape == (1, 2, T, 3 * S, 2 * S)


@pytest.mark.parametrize("S,T", FACTORS)
def test_nearest_conserves_block_means(S, T):
    g = torch.Generator().manual_seed(1)
    lr = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64)
    out = nearest_baseline(lr, S, T)
    torch.testing.assert_close(coarsen(out, S, T), lr[:, -1:], rtol=1e-12, atol=0)
    # independent reference: np.kron with an S x S block of ones
    ref = np.kron(lr[:, -1].numpy(), np.ones((S, S)))
    np.testing.assert_array_equal(out[:, 0].numpy(), ref)


@pytest.mark.parametrize("S,T", FACTORS)
def test_bicubic_constant_field(S, T):
    lr = torch.full((1, 2, 4, 3), 0.37)
    out = bicubic_baseline(lr, S, T)
    torch.testing.assert_close(out, torch.full_like(out, 0.37), rtol=0, atol=1e-6)


def test_bicubic_clamps_undershoot():
    lr = torch.zeros(1, 1, 5, 5)
    lr[0, 0, 2, 2] = 1.0  # a single wet LR pixel: bicubic rings below zero
    raw = upsample(lr[:, -1], 10, "bicubic")
    assert float(raw.min()) < 0
    out = bicubic_baseline(lr, 10, 2)
    torch.testing.assert_close(out[:, 0], raw.clamp(min=0))


def test_edsr_shape_and_initial_identity():
    torch.manual_seed(0)
    L, T = 3, 4
    net = EDSR(L, T, n_resblocks=2, n_feats=8)
    ctx = torch.rand(2, L, 20, 15)
    topo = torch.rand(2, 1, 20, 15)
    out = net(ctx, topo)
    assert out.shape == (2, T, 20, 15)
    # zero-initialised tail: untrained network = last upsampled frame repeated
    torch.testing.assert_close(out, ctx[:, -1:].expand(2, T, 20, 15))
    with pytest.raises(ValueError):
        net(ctx)  # topography required
    with pytest.raises(ValueError):
        net(ctx[:, :2], topo)  # wrong L
    no_topo = EDSR(L, T, n_resblocks=1, n_feats=8, topography=False)
    assert no_topo(ctx).shape == (2, T, 20, 15)
    assert no_topo.head.in_channels == L and net.head.in_channels == L + 1


def test_edsr_overfits_tiny_batch():
    torch.manual_seed(0)
    L, T = 2, 3
    net = EDSR(L, T, n_resblocks=2, n_feats=16)
    ctx = torch.rand(2, L, 12, 12)
    topo = torch.rand(2, 1, 12, 12)
    # a learnable target: a smooth function of the inputs, different per frame
    target = torch.cat([ctx[:, :1] * (k + 1) / T + 0.5 * topo for k in range(T)], dim=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(ctx, topo), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]
    assert all(np.isfinite(losses))
