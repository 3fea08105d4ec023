"""Tests of the mass-conservation transform against an independent numpy loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsuperres.nn.mass import block_sum, coarsen, mass_conserve


# --------------------------------------------------------------------------- reference
def ref_mass_conserve(z, lr, S, T, power=1.0, threshold=0.0, mode="tile"):
    """Loop-based numpy float64 reference: r_a(MC(F(r_a(z)), x)) per tile, or per block
    MC(F(r_a(z)), x) with no final shift and a uniform x where F(r_a(z)) is dry; for
    "tile_refill" the tile result with every all-dry frame taken from the block result.

    ``z``: (B, T, H, W), ``lr``: (B, h, w).
    """
    if mode == "tile_refill":
        tile = ref_mass_conserve(z, lr, S, T, power, threshold, "tile")
        block = ref_mass_conserve(z, lr, S, T, power, threshold, "block")
        for b in range(tile.shape[0]):
            for t in range(T):
                if tile[b, t].max() <= 0:
                    tile[b, t] = block[b, t]
        return tile
    z = np.asarray(z, dtype=np.float64)
    lr = np.asarray(lr, dtype=np.float64)
    B, _, H, W = z.shape
    f = np.maximum(z - threshold, 0.0) ** power
    out = np.empty_like(f)
    for b in range(B):
        if mode == "tile":
            den = f[b].sum()
            scale = T * S * S * lr[b].sum() / den if den != 0 else 1.0
            out[b] = f[b] * scale
        else:
            for n in range(H // S):
                for m in range(W // S):
                    blk = (slice(None), slice(n * S, (n + 1) * S), slice(m * S, (m + 1) * S))
                    den = f[b][blk].sum()
                    if den != 0:
                        out[b][blk] = f[b][blk] * (T * S * S * lr[b, n, m] / den)
                    else:
                        out[b][blk] = lr[b, n, m]
    if mode == "block":
        return np.maximum(out, 0.0)
    return np.maximum(out - threshold, 0.0)


def ref_block_totals(hr, S, T):
    """Loop-based sums over (T, S, S) blocks of (B, T, H, W) -> (B, h, w)."""
    B, _, H, W = hr.shape
    tot = np.zeros((B, H // S, W // S))
    for b in range(B):
        for n in range(H // S):
            for m in range(W // S):
                tot[b, n, m] = hr[b, :, n * S:(n + 1) * S, m * S:(m + 1) * S].sum()
    return tot


def _case(seed, B, T, h, w, S, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, h * S, w * S, generator=g, dtype=dtype) * 0.5 + 0.3  # has negatives
    lr = torch.rand(B, h, w, generator=g, dtype=dtype)
    return z, lr


# --------------------------------------------------------------------------- block_sum
@pytest.mark.parametrize("S,T", [(1, 3), (2, 2), (5, 4), (10, 1)])
def test_block_sum_and_coarsen(S, T):
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3 * T, 2 * S, 3 * S, generator=g, dtype=torch.float64)
    bs = block_sum(hr, S, T)
    assert bs.shape == (2, 3, 2, 3)
    for k in range(3):
        ref = ref_block_totals(hr[:, k * T:(k + 1) * T].numpy(), S, T)
        np.testing.assert_allclose(bs[:, k].numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(coarsen(hr, S, T), bs / (T * S * S))
    with pytest.raises(ValueError):
        block_sum(torch.zeros(1, 5, 4, 4), 2, 2)  # time not divisible by T
    with pytest.raises(ValueError):
        block_sum(torch.zeros(1, 2, 4, 5), 2, 2)  # x not divisible by S


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("mode", ["tile", "tile_refill", "block"])
@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("threshold", [0.0, 0.05])
@pytest.mark.parametrize("S,T", [(1, 3), (2, 2), (5, 4)])
def test_matches_numpy_reference(mode, power, threshold, S, T):
    z, lr = _case(1, 3, T, 3, 4, S)
    out = mass_conserve(z, lr, S, T, power=power, threshold=threshold, mode=mode)
    ref = ref_mass_conserve(z.numpy(), lr.numpy(), S, T, power, threshold, mode)
    assert out.shape == z.shape and (out >= 0).all()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("S,T", [(1, 3), (10, 3), (5, 4)])
def test_totals_conserved_float32(power, S, T):
    z, lr = _case(2, 2, T, 3, 3, S, dtype=torch.float32)
    z = z.abs()  # no dry block (a dry block falls back to zeros, tested below)
    target = T * S * S * lr.double().numpy()
    out = mass_conserve(z, lr, S, T, power=power, mode="block").double()
    np.testing.assert_allclose(ref_block_totals(out.numpy(), S, T), target, rtol=1e-5)
    torch.testing.assert_close(coarsen(out, S, T)[:, 0], lr.double(), rtol=1e-5, atol=0)
    out = mass_conserve(z, lr, S, T, power=power, mode="tile").double()
    np.testing.assert_allclose(out.sum(dim=(1, 2, 3)).numpy(), target.sum(axis=(1, 2)), rtol=1e-5)


def test_threshold_shift_where_nothing_is_clipped():
    """Tile mode, a > 0: if every rescaled value exceeds a, the total drops by a per pixel."""
    S, T, a = 2, 3, 0.04
    g = torch.Generator().manual_seed(3)
    z = 1.0 + torch.rand(2, T, 4, 6, generator=g, dtype=torch.float64)  # in [1, 2]
    lr = 1.0 + torch.rand(2, 2, 3, generator=g, dtype=torch.float64)  # factors ~ 1
    for p in (1.0, 2.0):
        out = mass_conserve(z, lr, S, T, power=p, threshold=a, mode="tile")
        f_then_mc = mass_conserve(z - a, lr, S, T, power=p, threshold=0.0, mode="tile")
        assert float(f_then_mc.min()) > a  # nothing gets clipped by the final r_a
        torch.testing.assert_close(out, f_then_mc - a)
        totals = out.sum(dim=(1, 2, 3)).numpy()
        np.testing.assert_allclose(totals, T * S * S * lr.sum(dim=(1, 2)).numpy() - a * T * 4 * 6,
                                   rtol=1e-12)


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("a", [0.0, 0.04, 0.6])
def test_block_mode_gives_back_the_input_exactly(power, a):
    """Block mode: every (T, S, S) block averages to x for any threshold, exponent and
    with dry predictions (whole blocks below a), checked with a numpy loop."""
    S, T = 3, 2
    z, lr = _case(11, 3, T, 4, 5, S)
    lr[0, 1, 2] = 0.0  # a dry LR pixel
    z[1, :, :3, :3] = -1.0  # a wet LR pixel with a dry prediction: uniform fill
    out = mass_conserve(z, lr, S, T, power=power, threshold=a, mode="block")
    np.testing.assert_allclose(ref_block_totals(out.numpy(), S, T) / (T * S * S), lr.numpy(),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[1, :, :3, :3].numpy(), float(lr[1, 0, 0]))
    # the threshold acts within each rescaled block: pixels of z below a stay dry there
    dry = (z.numpy() <= a) & (np.repeat(np.repeat(ref_block_totals(
        np.maximum(z.numpy() - a, 0), S, T), S, -2), S, -1)[:, None] > 0)
    assert dry.any() and np.all(out.numpy()[dry] == 0)
    np.testing.assert_allclose(out.numpy(), ref_mass_conserve(z, lr, S, T, power, a, "block"),
                               rtol=1e-12)


# --------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("mode", ["tile", "tile_refill", "block"])
def test_all_zero_input_and_gradients(mode):
    S, T = 5, 2
    z = torch.zeros(2, T, 10, 10, dtype=torch.float64, requires_grad=True)
    lr = torch.zeros(2, 2, 2, dtype=torch.float64)
    out = mass_conserve(z, lr, S, T, power=2.0, threshold=0.01, mode=mode)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    # zero prediction with positive LR: tile mode falls back to the ReLUs (output 0, mass
    # not conserved), block mode (and so tile_refill) to the uniform LR value (conserved)
    z2 = torch.full((1, T, 10, 10), -1.0, requires_grad=True)
    out2 = mass_conserve(z2, torch.ones(1, 2, 2), S, T, power=0.5, mode=mode)
    expected = 0.0 if mode == "tile" else 1.0
    assert torch.equal(out2, torch.full_like(out2, expected))
    (out2 * torch.rand_like(out2)).sum().backward()
    assert torch.isfinite(z2.grad).all()


def test_zero_denominator_fallback_is_local():
    """Only the block (or tile) with a zero denominator falls back; others are rescaled."""
    S, T = 2, 2
    z, lr = _case(4, 2, T, 2, 2, S)
    z = z.abs() + 0.1
    z[0, :, :2, :2] = -3.0  # block (0, 0) of tile 0 is dry after r_a
    out = mass_conserve(z, lr, S, T, mode="block")
    assert torch.equal(out[0, :, :2, :2], torch.full((T, 2, 2), float(lr[0, 0, 0]), dtype=out.dtype))
    scaled = mass_conserve(z[:, :, 2:, 2:], lr[:, 1:, 1:], S, T, mode="block")
    torch.testing.assert_close(out[:, :, 2:, 2:], scaled)  # the fill does not leak
    totals = ref_block_totals(out.numpy(), S, T)
    np.testing.assert_allclose(totals, T * S * S * lr.numpy(), rtol=1e-12)
    z[1] = -1.0  # tile 1 entirely dry: tile mode falls back there only
    out = mass_conserve(z, lr, S, T, mode="tile")
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert float(out[0].sum()) == pytest.approx(T * S * S * float(lr[0].sum()), rel=1e-12)


def test_tile_refill_by_hand():
    """A light-rain tile: the tile transform's final shift wipes both frames; tile_refill
    gives each frame its block values (here the whole LR mass, so the block mean is x)."""
    S, T, a = 2, 2, 0.1
    z = torch.full((1, T, 2, 2), -1.0, dtype=torch.float64)
    z[0, 0] = 0.5                                   # F(r_a(z)) = 0.4 on frame 0, 0 on frame 1
    lr = torch.tensor([[[0.01]]], dtype=torch.float64)
    tile = mass_conserve(z, lr, S, T, threshold=a, mode="tile")
    assert torch.equal(tile, torch.zeros_like(tile))  # 0.4 * (0.08 / 1.6) - 0.1 < 0
    out = mass_conserve(z, lr, S, T, threshold=a, mode="tile_refill")
    np.testing.assert_allclose(out[0, 0].numpy(), 0.02, rtol=1e-12)  # 0.4 * 0.08 / 1.6
    np.testing.assert_array_equal(out[0, 1].numpy(), 0.0)           # F = 0 there, block wet
    assert float(coarsen(out, S, T)) == pytest.approx(0.01, rel=1e-12)
    # a tile with rain in one frame after the shift keeps that frame; the dry one is refilled
    z2 = torch.stack([torch.tensor([[2.0, 0.2], [0.2, 0.2]]), torch.full((2, 2), 0.15)])[None].double()
    lr2 = torch.tensor([[[0.2]]], dtype=torch.float64)
    t2 = mass_conserve(z2, lr2, S, T, threshold=a, mode="tile")
    r2 = mass_conserve(z2, lr2, S, T, threshold=a, mode="tile_refill")
    b2 = mass_conserve(z2, lr2, S, T, threshold=a, mode="block")
    assert float(t2[0, 0].max()) > 0 and float(t2[0, 1].max()) == 0.0
    torch.testing.assert_close(r2[0, 0], t2[0, 0])
    torch.testing.assert_close(r2[0, 1], b2[0, 1])
    assert float(r2[0, 1].max()) > 0


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_single_wet_pixel(power):
    S, T = 3, 2
    lr = torch.tensor([[[0.5, 2.0], [0.0, 1.0]]], dtype=torch.float64)
    z = torch.zeros(1, T, 6, 6, dtype=torch.float64)
    z[0, 1, 4, 5] = 0.7  # in LR block (1, 1)
    tile = mass_conserve(z, lr, S, T, power=power, mode="tile")
    assert float(tile[0, 1, 4, 5]) == pytest.approx(T * S * S * 3.5, rel=1e-12)
    assert int((tile > 0).sum()) == 1
    block = mass_conserve(z, lr, S, T, power=power, mode="block")
    assert float(block[0, 1, 4, 5]) == pytest.approx(T * S * S * 1.0, rel=1e-12)
    # the wet block keeps one wet pixel; the other blocks' predictions are dry: the LR
    # value fills them uniformly (zero where the LR pixel is dry)
    assert int((block[..., 3:, 3:] > 0).sum()) == 1
    np.testing.assert_array_equal(block[0, :, :3, :3].numpy(), 0.5)
    np.testing.assert_array_equal(block[0, :, :3, 3:].numpy(), 2.0)
    np.testing.assert_array_equal(block[0, :, 3:, :3].numpy(), 0.0)


@pytest.mark.parametrize("mode", ["tile", "tile_refill", "block"])
def test_nan_propagates_to_its_tile_or_block(mode):
    S, T = 2, 2
    z, lr = _case(5, 2, T, 2, 2, S)
    z[0, 1, 0, 0] = float("nan")
    out = mass_conserve(z, lr, S, T, mode=mode)
    if mode != "block":
        assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
    else:
        assert torch.isnan(out[0, :, :2, :2]).all()
        assert int(torch.isnan(out).sum()) == T * S * S
    ref = ref_mass_conserve(z[1:].numpy(), lr[1:].numpy(), S, T, mode=mode)
    np.testing.assert_allclose(out[1:].numpy(), ref, rtol=1e-12)


def test_mode_none_and_validation():
    z, lr = _case(6, 1, 2, 2, 2, 2)
    torch.testing.assert_close(mass_conserve(z, lr, 2, 2, power=3.0, threshold=0.5, mode=None), z.clamp(min=0))
    with pytest.raises(ValueError):
        mass_conserve(z, lr, 2, 2, mode="pixel")
    with pytest.raises(ValueError):
        mass_conserve(z, lr, 2, 3)  # T mismatch
    with pytest.raises(ValueError):
        mass_conserve(z, lr, 3, 2)  # S mismatch
    with pytest.raises(ValueError):
        mass_conserve(z, lr, 2, 2, power=0.0)


def test_broadcast_over_member_axis():
    """z (B, M, T, H, W) with lr (B, 1, h, w): every member is conserved separately."""
    S, T = 2, 3
    g = torch.Generator().manual_seed(7)
    z = torch.rand(2, 4, T, 4, 4, generator=g, dtype=torch.float64)
    lr = torch.rand(2, 1, 2, 2, generator=g, dtype=torch.float64)
    out = mass_conserve(z, lr, S, T, mode="block")
    assert out.shape == z.shape
    torch.testing.assert_close(coarsen(out, S, T)[:, :, 0], lr.expand(2, 4, 2, 2))


@pytest.mark.parametrize("mode", ["tile", "tile_refill", "block"])
def test_gradcheck(mode):
    g = torch.Generator().manual_seed(8)
    z = (0.2 + torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64)).requires_grad_()
    lr = torch.rand(1, 2, 2, generator=g, dtype=torch.float64).requires_grad_()
    fn = lambda z_, lr_: mass_conserve(z_, lr_, 2, 2, power=2.0, threshold=0.1, mode=mode)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, lr))
