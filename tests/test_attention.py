"""Tests of the attention blocks (xsuperres.nn.attention)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xsuperres.nn.attention import (
    CUDA_MAX_GRID,
    CrossAttention,
    NeighborhoodAttention,
    TemporalAttention,
    attention,
    sinusoidal_features,
)


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Give zero-initialised parameters (relative-position bias) random values."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "rel_bias" in name:
                p.normal_()
    return module


# ----------------------------------------------------------------------------- helpers


def test_sinusoidal_features():
    f = sinusoidal_features(torch.tensor([0, 1, 900]), 16)
    assert f.shape == (3, 16)
    assert torch.allclose(f[0, :8], torch.ones(8)) and torch.allclose(f[0, 8:], torch.zeros(8))
    assert not torch.allclose(f[1], f[2])
    with pytest.raises(ValueError):
        sinusoidal_features(torch.tensor([1.0]), 7)


# ----------------------------------------------------------------------------- temporal


def test_temporal_shape_and_frame_order_matters():
    torch.manual_seed(0)
    blk = TemporalAttention(8, heads=4).eval()
    x = torch.randn(2, 5, 8, 3, 4)
    y = blk(x)
    assert y.shape == x.shape
    perm = torch.tensor([4, 2, 0, 3, 1])
    # without position embeddings self-attention would be permutation-equivariant
    assert not torch.allclose(blk(x[:, perm]), y[:, perm], atol=1e-4)


def test_temporal_mixes_frames_but_not_pixels():
    torch.manual_seed(0)
    blk = TemporalAttention(8, heads=2).eval()
    x = torch.randn(1, 4, 8, 5, 6)
    x2 = x.clone()
    x2[0, 0, :, 2, 3] += torch.randn(8)  # earliest frame, one pixel (not a constant: LN)
    d = (blk(x2) - blk(x)).abs().amax(dim=2)[0]  # (L, H, W)
    assert d[3, 2, 3] > 1e-4  # the latest frame at that pixel sees the change
    d[:, 2, 3] = 0
    assert d.max() == 0  # no other pixel changes


@pytest.mark.parametrize("max_batch", [1, 3, 7, 50])
def test_attention_in_batch_slices_equals_one_call(max_batch):
    # the slices CUDA needs (bf16 flash attention failed beyond 65535 sequences x heads on an
    # H100) give what one call gives: each sequence attends on its own
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(23, 2, 5, 4, generator=g) for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v  # d = 4: scale 1/sqrt(4)
    torch.testing.assert_close(attention(q, k, v, max_batch=max_batch), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention(q, k, v), ref, rtol=1e-5, atol=1e-6)
    assert CUDA_MAX_GRID == 65535


def test_temporal_single_frame_is_value_path():
    """With L = 1 the softmax over one key is exactly 1: out = x + proj(v)."""
    torch.manual_seed(0)
    C = 8
    blk = TemporalAttention(C, heads=4).eval()
    x = torch.randn(2, 1, C, 3, 5)
    y = blk(x)
    t = x.permute(0, 3, 4, 1, 2)  # (B, H, W, 1, C)
    h = blk.norm(t) + blk.frame_embedding(1, x.device)
    v = F.linear(h, blk.qkv.weight[2 * C :], blk.qkv.bias[2 * C :])
    expected = (t + blk.proj(v)).permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- neighbourhood


def _reference_neighborhood(blk: NeighborhoodAttention, x: torch.Tensor) -> torch.Tensor:
    """Slow explicit loop: masked softmax over the in-image (2n+1)^2 neighbourhood."""
    N, C, H, W = x.shape
    n, nh, d = blk.radius, blk.heads, blk.head_dim
    q, k, v = blk.qkv(blk.norm(x)).chunk(3, dim=1)
    q, k, v = (t.reshape(N, nh, d, H, W) for t in (q, k, v))
    out = torch.zeros(N, nh, d, H, W)
    K = 2 * n + 1
    for i in range(H):
        for j in range(W):
            scores, vals = [], []
            for dy in range(-n, n + 1):
                for dx in range(-n, n + 1):
                    a, b = i + dy, j + dx
                    if 0 <= a < H and 0 <= b < W:
                        s = (q[..., i, j] * k[..., a, b]).sum(-1) / d**0.5  # (N, nh)
                        if blk.rel_bias is not None:
                            s = s + blk.rel_bias[:, (dy + n) * K + (dx + n)]
                        scores.append(s)
                        vals.append(v[..., a, b])  # (N, nh, d)
            w = torch.stack(scores, -1).softmax(-1)  # (N, nh, k)
            out[..., i, j] = (w[:, :, None, :] * torch.stack(vals, -1)).sum(-1)
    return x + blk.proj(out.reshape(N, C, H, W))


@pytest.mark.parametrize("radius", [1, 2])
def test_neighborhood_matches_reference(radius):
    torch.manual_seed(radius)
    blk = _randomise(NeighborhoodAttention(8, radius, heads=4)).eval()
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), _reference_neighborhood(blk, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("rel_pos_bias", [True, False])
def test_neighborhood_optimised_equals_plain(radius, rel_pos_bias, monkeypatch):
    """The CPU-optimised forward (grouped samples, contiguous shifted copies, unrolled
    in-place dot products) equals the plain implementation up to float rounding, with and
    without autograd, for every grouping of the batch; the grouping changes nothing."""
    from xsuperres.nn import attention

    torch.manual_seed(10 + radius)
    blk = _randomise(NeighborhoodAttention(16, radius, heads=4, rel_pos_bias=rel_pos_bias)).eval()
    x = torch.randn(5, 16, 9, 12)
    with torch.no_grad():
        plain = blk.forward_reference(x)
        outs = []
        for chunk in (16 * 9 * 12, 2 * 16 * 9 * 12, 10**9):  # 1, 2 and all 5 samples per group
            monkeypatch.setattr(attention, "CPU_CHUNK_ELEMENTS", chunk)
            outs.append(blk(x))
    for y in outs:
        torch.testing.assert_close(y, plain, atol=2e-6, rtol=1e-6)
        torch.testing.assert_close(y, outs[0], atol=0, rtol=0)
    # with autograd: the same values and the same gradients
    monkeypatch.setattr(attention, "CPU_CHUNK_ELEMENTS", 2 * 16 * 9 * 12)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = blk(xa), blk.forward_reference(xb)
    torch.testing.assert_close(ya, plain, atol=2e-6, rtol=1e-6)
    (ya.square().sum()).backward()
    (yb.square().sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    for (name, pa) in blk.named_parameters():
        assert pa.grad is not None, name


@pytest.mark.parametrize("radius,H,W", [(3, 5, 5), (3, 10, 10), (1, 4, 7), (2, 3, 9)])
@pytest.mark.parametrize("rel_pos_bias", [True, False])
def test_neighborhood_dense_path_equals_kernels_and_plain(radius, H, W, rel_pos_bias, monkeypatch):
    """Small maps (<= DENSE_MAX_PIXELS) take the dense path (every pixel pair scored, -inf
    outside the neighbourhood): equal in float64 to the kernels' path and to the plain
    implementation, in values and in the gradients of the input and of every parameter
    (the relative-position bias included), borders included."""
    from xsuperres.nn import attention

    assert H * W <= attention.DENSE_MAX_PIXELS  # these shapes take the dense path by default
    torch.manual_seed(radius + H)
    blk = _randomise(NeighborhoodAttention(16, radius, heads=4, rel_pos_bias=rel_pos_bias)).double()
    if rel_pos_bias:
        with torch.no_grad():
            blk.rel_bias.normal_()
    x = torch.randn(3, 16, H, W, dtype=torch.float64)
    weights = torch.randn(3, 16, H, W, dtype=torch.float64)  # a loss weighting every output

    def run(forward):
        xg = x.clone().requires_grad_(True)
        y = forward(xg)
        grads = torch.autograd.grad((y * weights).sum(), [xg, *blk.parameters()])
        return y.detach(), grads

    dense = run(blk)
    monkeypatch.setattr(attention, "DENSE_MAX_PIXELS", 0)
    kernels = run(blk)
    plain = run(blk.forward_reference)
    for other in (kernels, plain):
        torch.testing.assert_close(dense[0], other[0], rtol=0, atol=1e-12)
        for a, b in zip(dense[1], other[1]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the inference path too
        monkeypatch.setattr(attention, "DENSE_MAX_PIXELS", 10**9)
        torch.testing.assert_close(blk(x), plain[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius", [1, 2])
def test_neighborhood_function_gradcheck(radius):
    """The hand-written backward pass against finite differences (float64), with the
    border mask (-inf) in the bias as the module builds it."""
    from xsuperres.nn.neighborhood import NeighborhoodFunction

    torch.manual_seed(radius)
    blk = _randomise(NeighborhoodAttention(4, radius, heads=2)).double()
    N, nh, d, H, W = 2, 2, 2, 4, 5
    n = radius
    q = torch.randn(N, nh, d, H, W, dtype=torch.float64, requires_grad=True)
    k = torch.randn(N, nh, d, H + 2 * n, W + 2 * n, dtype=torch.float64, requires_grad=True)
    v = torch.randn(N, nh, d, H + 2 * n, W + 2 * n, dtype=torch.float64, requires_grad=True)
    bias = blk._bias(H, W, q.detach()).detach().requires_grad_(True)
    assert torch.isinf(bias).any()  # the mask is there
    assert torch.autograd.gradcheck(lambda *a: NeighborhoodFunction.apply(*a, n), (q, k, v, bias),
                                    eps=1e-6, atol=1e-7)


def test_neighborhood_plain_matches_loop_reference():
    torch.manual_seed(3)
    blk = _randomise(NeighborhoodAttention(8, 2, heads=2)).eval()
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(blk.forward_reference(x), _reference_neighborhood(blk, x),
                                   atol=1e-5, rtol=1e-5)


def test_neighborhood_radius_zero_is_value_path():
    torch.manual_seed(0)
    blk = NeighborhoodAttention(8, 0, heads=2).eval()
    x = torch.randn(1, 8, 4, 5)
    v = blk.qkv(blk.norm(x))[:, 16:]
    torch.testing.assert_close(blk(x), x + blk.proj(v), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("p", [(4, 5), (0, 0), (8, 1)])
def test_neighborhood_is_local(radius, p):
    """Perturbing pixel (a, b) changes the output at p iff (a, b) is in p's neighbourhood."""
    torch.manual_seed(0)
    blk = _randomise(NeighborhoodAttention(8, radius, heads=4)).eval()
    H, W = 9, 11
    x = torch.randn(1, 8, H, W)
    # one batch sample per perturbed pixel (samples are independent)
    xs = x.repeat(H * W, 1, 1, 1)
    idx = torch.arange(H * W)
    xs[idx, :, idx // W, idx % W] += 3.0 * torch.randn(H * W, 8)
    with torch.no_grad():
        diff = (blk(xs)[:, :, p[0], p[1]] - blk(x)[:, :, p[0], p[1]]).abs().amax(dim=1).reshape(H, W)
    a, b = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    inside = torch.maximum((a - p[0]).abs(), (b - p[1]).abs()) <= radius
    assert (diff[inside] > 1e-5).all()
    assert (diff[~inside] <= 1e-6).all()


def test_neighborhood_bad_arguments():
    with pytest.raises(ValueError):
        NeighborhoodAttention(8, -1)
    with pytest.raises(ValueError):
        NeighborhoodAttention(6, 1, heads=4)


def test_neighborhood_tiny_images():
    torch.manual_seed(0)
    blk = NeighborhoodAttention(8, 3, heads=4)
    for H, W in [(1, 1), (1, 5), (2, 3)]:
        y = blk(torch.randn(2, 8, H, W))
        assert y.shape == (2, 8, H, W) and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- cross


def test_cross_attention_shapes_and_dependence():
    torch.manual_seed(0)
    blk = CrossAttention(16, 4, heads=4, pool=8).eval()
    x = torch.randn(2, 16, 5, 6)
    ctx = torch.randn(2, 3, 4, 40, 36)
    y = blk(x, ctx)
    assert y.shape == x.shape
    # the context changes the output ...
    ctx2 = ctx.clone()
    ctx2[:, 0, :, :5, :5] += torch.randn(4, 1, 1)
    assert not torch.allclose(blk(x, ctx2), y, atol=1e-5)
    # ... but queries are pointwise: a change of x at one pixel changes only that pixel
    x2 = x.clone()
    x2[0, :, 1, 2] += torch.randn(16)
    d = (blk(x2, ctx) - y).abs().amax(dim=1)
    assert d[0, 1, 2] > 1e-4
    d[0, 1, 2] = 0
    assert d.max() <= 1e-6
    # small contexts (fewer than pool x pool pixels) and single frames work
    assert blk(x, torch.randn(2, 1, 4, 3, 2)).shape == x.shape


def test_cross_attention_pools_keys():
    """A context constant on 2x2 blocks of a 16x16 grid gives the same keys as its 8x8 means."""
    torch.manual_seed(0)
    blk = CrossAttention(8, 4, heads=2, pool=8).eval()
    x = torch.randn(1, 8, 3, 3)
    coarse = torch.randn(1, 2, 4, 8, 8)
    fine = coarse.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(blk(x, fine), blk(x, coarse), atol=1e-6, rtol=1e-5)


def test_cross_attention_batch_mismatch():
    blk = CrossAttention(8, 4, heads=2)
    with pytest.raises(ValueError):
        blk(torch.randn(2, 8, 3, 3), torch.randn(1, 2, 4, 8, 8))


def test_neighborhood_under_compile_is_plain(monkeypatch):
    """While ``torch.compile`` traces (``torch.compiler.is_compiling()``), the CPU kernels,
    whose ``out=`` writes into strided views break the trace, give way to the plain
    implementation: bitwise its output, where the CPU kernels differ by rounding."""
    torch.manual_seed(4)
    blk = _randomise(NeighborhoodAttention(16, 2, heads=4)).eval()
    x = torch.randn(3, 16, 9, 11)
    with torch.no_grad():
        plain = blk.forward_reference(x)
        kernels = blk(x)
        calls = []
        orig = blk.forward_reference
        monkeypatch.setattr(blk, "forward_reference", lambda x: calls.append(1) or orig(x))
        blk(x)
        assert not calls  # eager on a CPU: the kernels
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        traced = blk(x)
    assert calls == [1]
    torch.testing.assert_close(traced, plain, atol=0, rtol=0)
    torch.testing.assert_close(kernels, plain, atol=2e-6, rtol=1e-6)
