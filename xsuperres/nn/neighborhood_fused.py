"""The neighbourhood attention's forward pass as one fused Triton kernel (for GPUs).

On a GPU the plain :meth:`~xsuperres.nn.attention.NeighborhoodAttention.forward_reference`
launches three small kernels per offset (a product, a sum over channels, an add), about
150 for a radius of 3, each reading and writing whole tensors: the profile of the GPU
check (``docs/performance.md``) put 60 % of an H100's time there, memory-bound. Here one
program handles ``BLOCK`` pixels of one sample and head: it loads their queries once,
walks the ``(2n+1)^2`` offsets with an online softmax (as flash attention does over key
blocks), reads each shifted key and value tile straight from the unpadded ``qkv`` map
(neighbouring programs share them through the cache) and writes the output once. No
scores, weights or padded copies are stored.

Forward only (inference): training keeps the plain version, whose backward pass autograd
provides. Enabled by :func:`xsuperres.nn.attention.set_gpu_kernel` (``"triton"``); the
default stays the plain version until the kernel has been timed on a GPU
(``benchmarks/gpu_check.py``, modes ``fused`` and ``fused-bf16``). The tests run the
kernel on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``) against the plain
version.
"""

from __future__ import annotations

import os

import torch

try:  # triton comes with torch's CUDA builds on Linux; optional elsewhere
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

__all__ = ["fused_neighborhood_attention", "triton_available"]


def triton_available() -> bool:
    """Whether Triton can be imported (the kernel also needs a CUDA device, or the
    interpreter: ``TRITON_INTERPRET=1`` set before the import)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _neighborhood_forward(
        qkv_ptr, bias_ptr, out_ptr,
        C, H, W, scale,
        s_n, s_c, s_h, s_w,
        o_n, o_c, o_h, o_w,
        HEADS: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
        RADIUS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        KW: tl.constexpr = 2 * RADIUS + 1
        pid = tl.program_id(0)  # sample * HEADS + head
        sample = pid // HEADS
        head = pid % HEADS
        pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = pix < H * W
        y = pix // W
        x = pix % W
        c = tl.arange(0, D_PAD)
        on_c = c < D
        base = qkv_ptr + sample.to(tl.int64) * s_n
        q_rows = (head * D + c)[:, None] * s_c
        k_rows = (C + head * D + c)[:, None] * s_c
        v_rows = (2 * C + head * D + c)[:, None] * s_c
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
                valid = inside & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
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
        out = acc / tl.where(l_i > 0, l_i, 1.0)[None, :]
        dest = out_ptr + sample.to(tl.int64) * o_n + (head * D + c)[:, None] * o_c + (y * o_h + x * o_w)[None, :]
        tl.store(dest, out.to(out_ptr.dtype.element_ty), mask=on_c[:, None] & inside[None, :])


def _block(d_pad: int) -> int:
    """Pixels per program: 256 for small heads, fewer for wide ones (registers)."""
    return max(16, min(256, 4096 // d_pad))


def fused_neighborhood_attention(
    qkv: torch.Tensor, heads: int, radius: int, rel_bias: torch.Tensor | None = None,
    block: int | None = None,
) -> torch.Tensor:
    """Neighbourhood attention of the projected ``qkv`` map in one kernel.

    The part of :meth:`NeighborhoodAttention.forward_reference` between the ``qkv``
    projection and the output projection: per head, softmax over the in-image offsets of
    ``<q, k> / sqrt(d) + rel_bias``, then the weighted sum of the values.

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
    if triton is None:
        raise RuntimeError("the fused neighbourhood attention needs Triton (`pip install triton`; "
                           "torch's CUDA builds on Linux include it)")
    if qkv.device.type != "cuda" and not os.environ.get("TRITON_INTERPRET"):
        raise ValueError(f"the fused neighbourhood attention runs on a CUDA device, got a tensor on "
                         f"{qkv.device}; on a CPU use NeighborhoodAttention.forward")
    N, C3, H, W = qkv.shape
    if C3 % (3 * heads):
        raise ValueError(f"qkv has {C3} channels, not a multiple of 3 x heads = {3 * heads}")
    C = C3 // 3
    d = C // heads
    K2 = (2 * radius + 1) ** 2
    if rel_bias is not None and tuple(rel_bias.shape) != (heads, K2):
        raise ValueError(f"rel_bias has shape {tuple(rel_bias.shape)}, expected ({heads}, {K2})")
    d_pad = triton.next_power_of_2(d)
    block = block or _block(d_pad)
    out = qkv.new_empty(N, C, H, W)
    bias = rel_bias.contiguous() if rel_bias is not None else qkv  # an unused pointer
    grid = (N * heads, triton.cdiv(H * W, block))
    _neighborhood_forward[grid](
        qkv, bias, out, C, H, W, d**-0.5,
        *qkv.stride(), *out.stride(),
        HEADS=heads, D=d, D_PAD=d_pad, RADIUS=radius, HAS_BIAS=rel_bias is not None, BLOCK=block,
    )
    return out
