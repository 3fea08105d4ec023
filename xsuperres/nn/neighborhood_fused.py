"""The neighbourhood attention in fused Triton kernels (for GPUs), forward and backward.

On a GPU the plain :meth:`~xsuperres.nn.attention.NeighborhoodAttention.forward_reference`
launches three small kernels per offset (a product, a sum over channels, an add), about
150 for a radius of 3, each reading and writing whole tensors: the profile of the GPU
check (``docs/performance.md``) put 60 % of an H100's time there, memory-bound. Here one
program handles ``BLOCK`` pixels of one sample and head: it loads their queries once,
walks the ``(2n+1)^2`` offsets with an online softmax (as flash attention does over key
blocks), reads each shifted key and value tile straight from the unpadded ``qkv`` map
(neighbouring programs share them through the cache) and writes the output once. No
scores, weights or padded copies are stored.

For training, :class:`FusedNeighborhoodFunction` adds the backward pass in two more
kernels (the weights recomputed from the saved log-sum-exp, as flash attention does).
Enabled by :func:`xsuperres.nn.attention.set_gpu_kernel` (``"triton"``); the default stays
the plain version until the kernels have been timed on a GPU (``benchmarks/gpu_check.py``,
modes ``fused`` and ``fused-bf16``). The tests run the kernels on the CPU in Triton's
interpreter (``TRITON_INTERPRET=1``) against the plain version and its autograd version.
"""

from __future__ import annotations

import os

import torch

try:  # triton comes with torch's CUDA builds on Linux; optional elsewhere
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

__all__ = ["FusedNeighborhoodFunction", "fused_neighborhood_attention", "triton_available"]


def triton_available() -> bool:
    """Whether Triton can be imported (the kernel also needs a CUDA device, or the
    interpreter: ``TRITON_INTERPRET=1`` set before the import)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _program_pixels(H, W, HEADS: tl.constexpr, BLOCK: tl.constexpr):
        """This program's ``(pid, sample, head, pix, inside, y, x)``: axis 0 numbers the
        (sample, head) pairs, axis 1 the blocks of ``BLOCK`` pixels."""
        pid = tl.program_id(0)
        pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        return pid, pid // HEADS, pid % HEADS, pix, pix < H * W, pix // W, pix % W

    @triton.jit
    def _head_rows(C, head, stride, D: tl.constexpr, D_PAD: tl.constexpr):
        """``(on_c, q_rows, k_rows, v_rows)``: the head's channel lanes and the offsets of
        its query, key and value channels in a ``qkv`` map (channel stride ``stride``)."""
        c = tl.arange(0, D_PAD)
        ch = head * D + c
        return c < D, ch[:, None] * stride, (C + ch)[:, None] * stride, (2 * C + ch)[:, None] * stride

    @triton.jit
    def _in_image(y, x, H, W, inside):
        return inside & (y >= 0) & (y < H) & (x >= 0) & (x < W)

    @triton.jit
    def _weight_and_grad(q, k, g, v, lse, dm, valid, bias_ptr, bias_at, HAS_BIAS: tl.constexpr):
        """``(p, ds)`` of one offset: the weight ``exp(score - lse)`` and the score's gradient
        ``p (<g, v> - dm)`` (``q`` scaled; zero off the image)."""
        s = tl.sum(q * k, axis=0)
        if HAS_BIAS:
            s += tl.load(bias_ptr + bias_at).to(tl.float32)
        p = tl.where(valid, tl.exp(s - lse), 0.0)
        return p, p * (tl.sum(g * v, axis=0) - dm)

    @triton.jit
    def _neighborhood_forward(
        qkv_ptr, bias_ptr, out_ptr, lse_ptr,
        C, H, W, scale,
        s_n, s_c, s_h, s_w,
        o_n, o_c, o_h, o_w,
        HEADS: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, RADIUS: tl.constexpr,
        HAS_BIAS: tl.constexpr, SAVE_LSE: tl.constexpr, BLOCK: tl.constexpr,
    ):
        KW: tl.constexpr = 2 * RADIUS + 1
        pid, sample, head, pix, inside, y, x = _program_pixels(H, W, HEADS, BLOCK)
        on_c, q_rows, k_rows, v_rows = _head_rows(C, head, s_c, D, D_PAD)
        base = qkv_ptr + sample.to(tl.int64) * s_n
        here = y * s_h + x * s_w
        q = tl.load(base + q_rows + here[None, :], mask=on_c[:, None] & inside[None, :], other=0.0)
        q = q.to(tl.float32) * scale
        m_i = tl.full([BLOCK], -1.0e30, tl.float32)  # running maximum of the scores
        l_i = tl.zeros([BLOCK], tl.float32)  # running sum of exp(score - m_i)
        acc = tl.zeros([D_PAD, BLOCK], tl.float32)
        for dy in tl.static_range(KW):
            for dx in tl.static_range(KW):
                yy = y + (dy - RADIUS)
                xx = x + (dx - RADIUS)
                valid = _in_image(yy, xx, H, W, inside)
                there = (yy * s_h + xx * s_w)[None, :]
                mask = on_c[:, None] & valid[None, :]
                k = tl.load(base + k_rows + there, mask=mask, other=0.0).to(tl.float32)
                s = tl.sum(q * k, axis=0)
                if HAS_BIAS:
                    s += tl.load(bias_ptr + head * KW * KW + dy * KW + dx).to(tl.float32)
                s = tl.where(valid, s, float("-inf"))
                m_new = tl.maximum(m_i, s)
                alpha = tl.exp(m_i - m_new)
                p = tl.exp(s - m_new)
                l_i = l_i * alpha + p
                v = tl.load(base + v_rows + there, mask=mask, other=0.0).to(tl.float32)
                acc = acc * alpha[None, :] + p[None, :] * v
                m_i = m_new
        l_safe = tl.where(l_i > 0, l_i, 1.0)
        out = acc / l_safe[None, :]
        out_rows = (head * D + tl.arange(0, D_PAD))[:, None] * o_c
        dest = out_ptr + sample.to(tl.int64) * o_n + out_rows + (y * o_h + x * o_w)[None, :]
        tl.store(dest, out.to(out_ptr.dtype.element_ty), mask=on_c[:, None] & inside[None, :])
        if SAVE_LSE:  # log of the softmax's denominator, for the backward pass
            tl.store(lse_ptr + pid.to(tl.int64) * H * W + pix, m_i + tl.log(l_safe), mask=inside)

    # The backward kernels take contiguous tensors: qkv and its gradient (N, 3C, H, W),
    # the output's gradient (N, C, H, W), lse and dm (N * HEADS, H * W). Both recompute
    # the weights p = exp(score - lse); ds = p (<dout_i, v_j> - dm_i) is the score's
    # gradient, with dm_i = <dout_i, out_i>.

    @triton.jit
    def _neighborhood_backward_queries(
        qkv_ptr, bias_ptr, dout_ptr, lse_ptr, dm_ptr, dqkv_ptr, dbias_ptr,
        C, H, W, scale,
        HEADS: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, RADIUS: tl.constexpr,
        HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        """dq of a block of query pixels, and its part of the bias gradient."""
        KW: tl.constexpr = 2 * RADIUS + 1
        HW = H * W
        pid, sample, head, pix, inside, y, x = _program_pixels(H, W, HEADS, BLOCK)
        on_c, q_rows, k_rows, v_rows = _head_rows(C, head, HW, D, D_PAD)
        base = qkv_ptr + sample.to(tl.int64) * 3 * C * HW
        here = on_c[:, None] & inside[None, :]
        q = tl.load(base + q_rows + pix[None, :], mask=here, other=0.0).to(tl.float32) * scale
        g = tl.load(dout_ptr + sample.to(tl.int64) * C * HW + q_rows + pix[None, :], mask=here,
                    other=0.0).to(tl.float32)
        row = pid.to(tl.int64) * HW
        lse = tl.load(lse_ptr + row + pix, mask=inside, other=0.0)
        dm = tl.load(dm_ptr + row + pix, mask=inside, other=0.0)
        dq = tl.zeros([D_PAD, BLOCK], tl.float32)
        part = dbias_ptr + (pid.to(tl.int64) * tl.num_programs(1) + tl.program_id(1)) * KW * KW
        for dy in tl.static_range(KW):
            for dx in tl.static_range(KW):
                yy = y + (dy - RADIUS)
                xx = x + (dx - RADIUS)
                valid = _in_image(yy, xx, H, W, inside)
                there = (yy * W + xx)[None, :]
                mask = on_c[:, None] & valid[None, :]
                k = tl.load(base + k_rows + there, mask=mask, other=0.0).to(tl.float32)
                v = tl.load(base + v_rows + there, mask=mask, other=0.0).to(tl.float32)
                p, ds = _weight_and_grad(q, k, g, v, lse, dm, valid, bias_ptr, head * KW * KW + dy * KW + dx,
                                         HAS_BIAS)
                dq += ds[None, :] * k
                if HAS_BIAS:
                    tl.store(part + dy * KW + dx, tl.sum(ds, axis=0))
        dest = dqkv_ptr + sample.to(tl.int64) * 3 * C * HW + q_rows + pix[None, :]
        tl.store(dest, (dq * scale).to(dqkv_ptr.dtype.element_ty), mask=here)

    @triton.jit
    def _neighborhood_backward_keys(
        qkv_ptr, bias_ptr, dout_ptr, lse_ptr, dm_ptr, dqkv_ptr,
        C, H, W, scale,
        HEADS: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, RADIUS: tl.constexpr,
        HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        """dk and dv of a block of key pixels j, gathered from the queries i = j - offset
        that see them (no atomic adds)."""
        KW: tl.constexpr = 2 * RADIUS + 1
        HW = H * W
        pid, sample, head, pix, inside, y, x = _program_pixels(H, W, HEADS, BLOCK)
        on_c, q_rows, k_rows, v_rows = _head_rows(C, head, HW, D, D_PAD)
        base = qkv_ptr + sample.to(tl.int64) * 3 * C * HW
        gbase = dout_ptr + sample.to(tl.int64) * C * HW
        here = on_c[:, None] & inside[None, :]
        k = tl.load(base + k_rows + pix[None, :], mask=here, other=0.0).to(tl.float32)
        v = tl.load(base + v_rows + pix[None, :], mask=here, other=0.0).to(tl.float32)
        row = pid.to(tl.int64) * HW
        dk = tl.zeros([D_PAD, BLOCK], tl.float32)
        dv = tl.zeros([D_PAD, BLOCK], tl.float32)
        for dy in tl.static_range(KW):
            for dx in tl.static_range(KW):
                yy = y - (dy - RADIUS)
                xx = x - (dx - RADIUS)
                valid = _in_image(yy, xx, H, W, inside)
                there = yy * W + xx
                mask = on_c[:, None] & valid[None, :]
                q = tl.load(base + q_rows + there[None, :], mask=mask, other=0.0).to(tl.float32) * scale
                g = tl.load(gbase + q_rows + there[None, :], mask=mask, other=0.0).to(tl.float32)
                lse = tl.load(lse_ptr + row + there, mask=valid, other=0.0)
                dm = tl.load(dm_ptr + row + there, mask=valid, other=0.0)
                p, ds = _weight_and_grad(q, k, g, v, lse, dm, valid, bias_ptr, head * KW * KW + dy * KW + dx,
                                         HAS_BIAS)
                dk += ds[None, :] * q
                dv += p[None, :] * g
        dest = dqkv_ptr + sample.to(tl.int64) * 3 * C * HW + pix[None, :]
        tl.store(dest + k_rows, dk.to(dqkv_ptr.dtype.element_ty), mask=here)
        tl.store(dest + v_rows, dv.to(dqkv_ptr.dtype.element_ty), mask=here)


def _block(d_pad: int) -> int:
    """Pixels per program: 256 for small heads, fewer for wide ones (registers)."""
    return max(16, min(256, 4096 // d_pad))


def _check(qkv: torch.Tensor, heads: int, radius: int, rel_bias: torch.Tensor | None) -> None:
    """Validate the arguments (clear errors before a kernel sees them)."""
    if triton is None:
        raise RuntimeError("the fused neighbourhood attention needs Triton (`pip install triton`; "
                           "torch's CUDA builds on Linux include it)")
    if qkv.device.type != "cuda" and not os.environ.get("TRITON_INTERPRET"):
        raise ValueError(f"the fused neighbourhood attention runs on a CUDA device, got a tensor on "
                         f"{qkv.device}; on a CPU use NeighborhoodAttention.forward")
    if qkv.ndim != 4 or qkv.shape[1] % (3 * heads):
        raise ValueError(f"qkv must be (N, 3C, H, W) with 3C a multiple of 3 x heads = {3 * heads}, "
                         f"got shape {tuple(qkv.shape)}")
    K2 = (2 * radius + 1) ** 2
    if rel_bias is not None and tuple(rel_bias.shape) != (heads, K2):
        raise ValueError(f"rel_bias has shape {tuple(rel_bias.shape)}, expected ({heads}, {K2})")


def _launch_forward(qkv, heads, radius, rel_bias, block, save_lse):
    """The forward kernel: ``(out, lse or None)``."""
    N, C3, H, W = qkv.shape
    C, d = C3 // 3, C3 // 3 // heads
    d_pad = triton.next_power_of_2(d)
    block = block or _block(d_pad)
    out = qkv.new_empty(N, C, H, W)
    lse = torch.empty(N * heads, H * W, device=qkv.device, dtype=torch.float32) if save_lse else out
    bias = rel_bias.contiguous() if rel_bias is not None else out  # an unused pointer
    grid = (N * heads, triton.cdiv(H * W, block))
    _neighborhood_forward[grid](
        qkv, bias, out, lse, C, H, W, d**-0.5,
        *qkv.stride(), *out.stride(),
        HEADS=heads, D=d, D_PAD=d_pad, RADIUS=radius, HAS_BIAS=rel_bias is not None,
        SAVE_LSE=save_lse, BLOCK=block,
    )
    return out, (lse if save_lse else None)


class FusedNeighborhoodFunction(torch.autograd.Function):
    """:func:`fused_neighborhood_attention` with its backward pass in two more kernels.

    ``apply(qkv, rel_bias, heads, radius, block) -> out``. The forward pass also keeps the
    log of each pixel's softmax denominator; the backward pass recomputes the weights from
    it (as flash attention does): one kernel per block of query pixels gives ``dq`` and
    the bias gradient, one per block of key pixels gathers ``dk`` and ``dv`` from the
    queries that see them, so no two programs write the same value.
    """

    @staticmethod
    def forward(ctx, qkv, rel_bias, heads, radius, block):  # noqa: D102 - see the class docstring
        qkv = qkv.contiguous()
        out, lse = _launch_forward(qkv, heads, radius, rel_bias, block, save_lse=True)
        ctx.save_for_backward(qkv, rel_bias, out, lse)
        ctx.heads, ctx.radius, ctx.block = heads, radius, block
        return out

    @staticmethod
    def backward(ctx, dout):  # noqa: D102
        qkv, rel_bias, out, lse = ctx.saved_tensors
        heads, radius = ctx.heads, ctx.radius
        N, C3, H, W = qkv.shape
        C, d = C3 // 3, C3 // 3 // heads
        dout = dout.contiguous()
        dm = (dout.float() * out.float()).reshape(N * heads, d, H * W).sum(1)
        d_pad = triton.next_power_of_2(d)
        block = ctx.block or _block(d_pad)
        grid = (N * heads, triton.cdiv(H * W, block))
        K2 = (2 * radius + 1) ** 2
        dqkv = torch.empty_like(qkv)
        has_bias = rel_bias is not None
        parts = torch.zeros(grid[0] * grid[1], K2, device=qkv.device, dtype=torch.float32)
        bias = rel_bias.contiguous() if has_bias else parts  # an unused pointer
        meta = dict(HEADS=heads, D=d, D_PAD=d_pad, RADIUS=radius, HAS_BIAS=has_bias, BLOCK=block)
        _neighborhood_backward_queries[grid](qkv, bias, dout, lse, dm, dqkv, parts, C, H, W, d**-0.5, **meta)
        _neighborhood_backward_keys[grid](qkv, bias, dout, lse, dm, dqkv, C, H, W, d**-0.5, **meta)
        dbias = None
        if has_bias and ctx.needs_input_grad[1]:
            dbias = parts.reshape(N, heads, grid[1], K2).sum((0, 2)).to(rel_bias.dtype)
        return dqkv, dbias, None, None, None


def fused_neighborhood_attention(
    qkv: torch.Tensor, heads: int, radius: int, rel_bias: torch.Tensor | None = None,
    block: int | None = None,
) -> torch.Tensor:
    """Neighbourhood attention of the projected ``qkv`` map in one kernel.

    The part of :meth:`NeighborhoodAttention.forward_reference` between the ``qkv``
    projection and the output projection: per head, softmax over the in-image offsets of
    ``<q, k> / sqrt(d) + rel_bias``, then the weighted sum of the values. Differentiable
    (:class:`FusedNeighborhoodFunction`) when gradients are enabled and ``qkv`` or
    ``rel_bias`` needs one.

    Parameters
    ----------
    qkv
        ``(N, 3C, H, W)``: queries, keys and values stacked on the channel axis (the
        output of the block's ``qkv`` convolution), any strides; float32, float16 or
        bfloat16 (accumulated in float32).
    heads
        Number of heads (``C = heads * d``).
    radius
        Neighbourhood radius ``n``: ``(2n+1)^2`` offsets.
    rel_bias
        ``(heads, (2n+1)^2)`` score bias per head and offset (row-major), or None.
    block
        Pixels per program (a power of two); by default from the head width.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)``, the dtype of ``qkv``.
    """
    _check(qkv, heads, radius, rel_bias)
    needs_grad = qkv.requires_grad or (rel_bias is not None and rel_bias.requires_grad)
    if torch.is_grad_enabled() and needs_grad:
        return FusedNeighborhoodFunction.apply(qkv, rel_bias, heads, radius, block)
    return _launch_forward(qkv, heads, radius, rel_bias, block, save_lse=False)[0]
