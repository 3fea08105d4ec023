"""Tests of the two U-Nets (xsuperres.nn.unet)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xsuperres.nn.attention import TemporalAttention
from xsuperres.nn.unet import (
    PRESETS,
    DeterministicUNet,
    DiffusionUNet,
    UNetPreset,
    get_preset,
    n_parameters,
)

# (S, T, L) pairs of the preprint and a few more; the U-Nets only see the HR size, here a
# multiple of S.
CASES = [(1, 3, 4, 36), (10, 1, 10, 50), (10, 3, 5, 50), (25, 6, 2, 50), (2, 2, 6, 36), (5, 4, 3, 50)]


def _det_inputs(B: int, L: int, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(B, L, H, W), torch.rand(B, 1, H, W)


def _dif_inputs(B: int, L: int, T: int, H: int, W: int, j: int = 500) -> dict:
    ctx = torch.rand(B, L, H, W)
    return dict(
        r_noisy=torch.randn(B, T, H, W),
        mean=torch.rand(B, T, H, W),
        lr_up=ctx[:, -1:].clone(),
        context=ctx,
        j=torch.full((B,), j),
    )


# ----------------------------------------------------------------------------- presets


def test_presets():
    assert get_preset("tiny") is PRESETS["tiny"]
    p = UNetPreset(base_channels=8, channel_mults=(1, 2, 2, 4))
    assert get_preset(p) is p and p.factor == 8 and p.channels == (8, 16, 16, 32)
    with pytest.raises(ValueError):
        get_preset("huge")
    with pytest.raises(ValueError):
        UNetPreset(base_channels=8, radii=(3, 3, 1, 1))
    with pytest.raises(ValueError):
        UNetPreset(base_channels=6)  # not a multiple of 4 heads
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.base_channels = 4  # type: ignore[misc]


def test_parameter_counts():
    torch.manual_seed(0)
    for L, T in [(10, 6), (2, 1)]:
        for att in (True, False):
            for cls in (DeterministicUNet, DiffusionUNet):
                assert n_parameters(cls(L, T, "tiny", attention=att)) < 1_000_000
    for cls in (DeterministicUNet, DiffusionUNet):
        assert n_parameters(cls(5, 3, "tiny", attention=False)) < n_parameters(cls(5, 3, "tiny"))


def test_small_preset_is_between():
    """"small": a few million parameters per U-Net, more than tiny, far less than standard."""
    for cls in (DeterministicUNet, DiffusionUNet):
        n = n_parameters(cls(5, 3, "small"))
        assert 2_000_000 < n < 4_000_000
        assert n > 3 * n_parameters(cls(5, 3, "tiny"))
    assert PRESETS["small"].channels == (32, 64, 96, 128)


def test_standard_preset_is_large():
    torch.manual_seed(0)
    for cls in (DeterministicUNet, DiffusionUNet):
        n = n_parameters(cls(5, 3, "standard"))
        assert 10_000_000 < n < 60_000_000


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("S,T,L,H", CASES)
def test_shapes(S, T, L, H):
    torch.manual_seed(0)
    det, dif = DeterministicUNet(L, T), DiffusionUNet(L, T)
    with torch.no_grad():
        ctx, topo = _det_inputs(2, L, H, H)
        assert det(ctx, topo).shape == (2, T, H, H)
        assert dif(**_dif_inputs(2, L, T, H, H)).shape == (2, T, H, H)


@pytest.mark.parametrize("H,W", [(1, 1), (8, 8), (12, 20), (7, 13), (3, 1)])
@pytest.mark.parametrize("attention", [True, False])
def test_any_size(H, W, attention):
    torch.manual_seed(0)
    L, T = 3, 2
    det, dif = DeterministicUNet(L, T, attention=attention), DiffusionUNet(L, T, attention=attention)
    with torch.no_grad():
        y = det(*_det_inputs(2, L, H, W))
        v = dif(**_dif_inputs(2, L, T, H, W))
    assert y.shape == v.shape == (2, T, H, W)
    assert torch.isfinite(y).all() and torch.isfinite(v).all()


def test_full_tile():
    torch.manual_seed(0)
    L, T = 5, 3
    with torch.no_grad():
        assert DeterministicUNet(L, T)(*_det_inputs(1, L, 100, 100)).shape == (1, T, 100, 100)
        assert DiffusionUNet(L, T)(**_dif_inputs(1, L, T, 100, 100)).shape == (1, T, 100, 100)


def test_bad_shapes():
    det, dif = DeterministicUNet(3, 2), DiffusionUNet(3, 2)
    with pytest.raises(ValueError):
        det(*_det_inputs(1, 4, 8, 8))
    with pytest.raises(ValueError):
        det(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 9))
    kw = _dif_inputs(1, 3, 2, 8, 8)
    with pytest.raises(ValueError):
        dif(**{**kw, "context": torch.rand(1, 2, 8, 8)})
    with pytest.raises(ValueError):
        dif(**{**kw, "j": torch.tensor([1, 2])})


# ----------------------------------------------------------------------------- behaviour


def test_deterministic_uses_early_frames_and_topography():
    torch.manual_seed(0)
    L, T, H = 4, 3, 16
    det = DeterministicUNet(L, T).eval()
    ctx, topo = _det_inputs(1, L, H, H)
    with torch.no_grad():
        y = det(ctx, topo)
        ctx2 = ctx.clone()
        ctx2[:, 0, 4:8, 4:8] += 1.0  # earliest frame only
        assert (det(ctx2, topo) - y).abs().max() > 1e-4
        assert (det(ctx, topo + torch.rand_like(topo)) - y).abs().max() > 1e-4


def test_single_frame_context():
    """L = 1: the temporal attention is the value path (softmax over one key is 1)."""
    torch.manual_seed(0)
    det, dif = DeterministicUNet(1, 3), DiffusionUNet(1, 3)
    with torch.no_grad():
        assert det(*_det_inputs(2, 1, 12, 12)).shape == (2, 3, 12, 12)
        assert dif(**_dif_inputs(2, 1, 3, 12, 12)).shape == (2, 3, 12, 12)
    ta = next(m for m in det.modules() if isinstance(m, TemporalAttention))
    C = ta.qkv.in_features
    x = torch.randn(2, 1, C, 3, 4)
    t = x.permute(0, 3, 4, 1, 2)
    v = torch.nn.functional.linear(ta.norm(t) + ta.frame_embedding(1, x.device), ta.qkv.weight[2 * C :], ta.qkv.bias[2 * C :])
    torch.testing.assert_close(ta(x), (t + ta.proj(v)).permute(0, 3, 4, 1, 2), atol=1e-6, rtol=1e-5)


def test_batch_independence():
    torch.manual_seed(0)
    L, T, H, W = 3, 2, 12, 10
    det, dif = DeterministicUNet(L, T).eval(), DiffusionUNet(L, T).eval()
    ctx, topo = _det_inputs(3, L, H, W)
    kw = _dif_inputs(3, L, T, H, W)
    kw["j"] = torch.tensor([10, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(det(ctx, topo)[:1], det(ctx[:1], topo[:1]), atol=1e-5, rtol=1e-5)
        alone = dif(**{k: v[:1] for k, v in kw.items()})
        torch.testing.assert_close(dif(**kw)[:1], alone, atol=1e-5, rtol=1e-5)


def test_diffusion_inputs_matter():
    torch.manual_seed(0)
    L, T, H = 3, 2, 16
    dif = DiffusionUNet(L, T).eval()
    kw = _dif_inputs(1, L, T, H, H)
    with torch.no_grad():
        v = dif(**kw)
        assert (dif(**{**kw, "j": torch.tensor([1])}) - dif(**{**kw, "j": torch.tensor([900])})).abs().max() > 1e-4
        torch.testing.assert_close(dif(**{**kw, "j": 500}), v)  # scalar j broadcasts
        for name in ("r_noisy", "mean", "lr_up"):
            assert (dif(**{**kw, name: kw[name] + torch.rand_like(kw[name])}) - v).abs().max() > 1e-4, name
        ctx2 = kw["context"].clone()
        ctx2[:, 0] += torch.rand(H, H)  # earliest context frame, through cross-attention
        assert (dif(**{**kw, "context": ctx2}) - v).abs().max() > 1e-4


def test_ablation_ignores_context():
    torch.manual_seed(0)
    L, T, H = 3, 2, 16
    dif = DiffusionUNet(L, T, attention=False).eval()
    kw = _dif_inputs(1, L, T, H, H)
    with torch.no_grad():
        torch.testing.assert_close(dif(**kw), dif(**{**kw, "context": torch.rand(1, L, H, H)}), rtol=0, atol=0)


def test_encoded_context_gives_the_same_velocity():
    """encode_context once + forward(encoded=...) is bitwise the plain forward, for every
    step; a mismatched encoding is refused; without attention there is nothing to encode."""
    torch.manual_seed(1)
    L, T, H = 3, 2, 16
    dif = DiffusionUNet(L, T).eval()
    kw = _dif_inputs(2, L, T, H, H)
    with torch.no_grad():
        enc = dif.encode_context(kw["context"])
        for j in (1, 400, 1000):
            plain = dif(**{**kw, "j": j})
            cached = dif(**{**kw, "j": j, "context": None}, encoded=enc)
            torch.testing.assert_close(cached, plain, atol=0, rtol=0)
        other = dif.encode_context(kw["context"][:1])
        with pytest.raises(ValueError, match="encoded context is for shape"):
            dif(**{**kw, "context": None}, encoded=other)
        with pytest.raises(ValueError, match="needs the context"):
            dif(**{**kw, "context": None})
    assert DiffusionUNet(L, T, attention=False).encode_context(kw["context"]) is None


@pytest.mark.parametrize("H, W", [(40, 40), (48, 24), (8, 8), (44, 40), (5, 7), (120, 120)])
def test_pooled_context_equals_encoder_then_adaptive_pool(H, W):
    """ContextEncoder.pooled (the last convolution moved after the pooling when the grid
    divides the frame) equals the plain order, conv - GN - SiLU - conv then
    adaptive_avg_pool2d, in values and in the gradients of the input and of every weight
    (float64: to 1e-10), including the borders (zero padding) and grids that do not
    divide the frame (44 x 40 -> 8 x 8: the plain order is used)."""
    from xsuperres.nn.unet import ContextEncoder

    torch.manual_seed(3)
    enc = ContextEncoder(16).double()
    x = torch.rand(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    grid = (min(H, 8), min(W, 8))
    got = enc.pooled(x, 8)
    want = torch.nn.functional.adaptive_avg_pool2d(enc(x).reshape(6, 16, H, W), grid).reshape(2, 3, 16, *grid)
    assert got.shape == want.shape == (2, 3, 16, *grid)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    weights = torch.rand_like(want)  # a loss that weights every cell differently
    g_got = torch.autograd.grad((got * weights).sum(), [x, *enc.parameters()])
    g_want = torch.autograd.grad((want * weights).sum(), [x, *enc.parameters()])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_cell_windows_by_hand():
    """The 0/1 window matrices of ContextEncoder.pooled: 10 elements, 2 cells of 5, shifted
    by -1 / 0 / +1 element, zero outside the axis (written out by hand)."""
    from xsuperres.nn.unet import _cell_windows

    m = _cell_windows(10, 2, torch.zeros(1, dtype=torch.float64))
    assert m.shape == (10, 6) and m.dtype == torch.float64
    cols = [[0, 1, 2, 3], [4, 5, 6, 7, 8],  # shift -1: cells 0 and 1 (element -1 is padding)
            [0, 1, 2, 3, 4], [5, 6, 7, 8, 9],  # no shift
            [1, 2, 3, 4, 5], [6, 7, 8, 9]]  # shift +1 (element 10 is padding)
    want = torch.zeros(10, 6, dtype=torch.float64)
    for j, rows in enumerate(cols):
        want[rows, j] = 1
    torch.testing.assert_close(m, want, rtol=0, atol=0)
    x = torch.arange(10.0, dtype=torch.float64)
    assert (x @ m).tolist() == [6.0, 30.0, 10.0, 35.0, 15.0, 30.0]


def test_pooled_keys_check_the_grid():
    from xsuperres.nn.attention import CrossAttention

    ca = CrossAttention(16, 8, 4, pool=4)
    with pytest.raises(ValueError, match="does not match pool=4"):
        ca.pooled_keys(torch.rand(1, 2, 8, 8, 8), (16, 16))


def test_seeded_construction_is_deterministic():
    L, T = 2, 2
    ctx, topo = _det_inputs(1, L, 8, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        with torch.no_grad():
            outs.append(DeterministicUNet(L, T)(ctx, topo))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_all_parameters_get_gradients():
    torch.manual_seed(0)
    L, T, H = 2, 2, 16
    det, dif = DeterministicUNet(L, T), DiffusionUNet(L, T)
    ctx, topo = _det_inputs(2, L, H, H)
    det(ctx, topo).square().mean().backward()
    dif(**_dif_inputs(2, L, T, H, H)).square().mean().backward()
    for model in (det, dif):
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_float64():
    torch.manual_seed(0)
    det, dif = DeterministicUNet(3, 2).double(), DiffusionUNet(3, 2).double()
    ctx = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        y = det(ctx, ctx[:, :1])
        v = dif(torch.randn_like(y), y, ctx[:, -1:], ctx, 5)
    assert y.dtype == v.dtype == torch.float64
