"""The arithmetic of :class:`~xsuperres.nn.attention.NeighborhoodAttention`, arranged for a CPU.

Every pixel ``p`` attends to the ``K^2 = (2n+1)^2`` pixels ``p + (dy - n, dx - n)``. With
the keys and values zero-padded by ``n`` on each side, offset ``o = dy K + dx`` is the
slice ``[dy : dy + H, dx : dx + W]`` of the padded maps. Three kernels do all the work:

:func:`shifted_dots`
    ``out[:, :, o] = <a, b shifted by o>`` over the channel axis: the scores
    (``a = q``, ``b = k``) and, in the backward pass, the gradient of the weights
    (``a = dout``, ``b = v``).
:func:`shifted_sum`
    ``sum_o w[:, :, o] * (b shifted by o)``: the output (``w = attn``, ``b = v``) and the
    gradient of ``q`` (``w = dscores``, ``b = k``).
:func:`shifted_scatter`
    The adjoint of :func:`shifted_sum` in ``b``: the gradients of the padded ``v`` and
    ``k``.

Why not the obvious ``torch.stack([(q * k[..., dy:dy+H, dx:dx+W]).sum(2) ...])`` (kept as
:meth:`~xsuperres.nn.attention.NeighborhoodAttention.forward_reference`): on a CPU the
profile of both U-Nets was dominated by it; a reduction over the short channel axis in
the middle of the tensor and the strided slices were the hot spots, and autograd's
backward of ``K^2`` slices allocates a zero-filled padded tensor per slice. Here each
padded map is copied once per column offset ``dx`` so that the ``K`` row offsets are
contiguous slices (for the dot products, all ``K`` of them at once through one strided
view), the dot products over ``head_dim`` channels are unrolled multiply-adds written in
place, and :class:`NeighborhoodFunction` gives the backward pass
in the same three kernels. The results equal the plain version up to float rounding
(``tests/test_attention.py``).

All tensors are ``(N, heads, d, H, W)`` (queries, outputs) or ``(N, heads, d, H + 2n,
W + 2n)`` (padded keys/values); weights are ``(N, heads, K^2, H, W)``.
"""

from __future__ import annotations

import torch

__all__ = ["NeighborhoodFunction", "shifted_dots", "shifted_scatter", "shifted_sum"]


def shifted_dots(a: torch.Tensor, b: torch.Tensor, n: int, out: torch.Tensor) -> torch.Tensor:
    """``out[:, :, dy K + dx] = sum_c a[:, :, c] * b[:, :, c, dy : dy + H, dx : dx + W]``.

    Parameters
    ----------
    a
        ``(N, heads, d, H, W)``.
    b
        Padded, ``(N, heads, d, H + 2n, W + 2n)``.
    n
        Radius.
    out
        ``(N, heads, K^2, H, W)``, written in place and returned.
    """
    N, nh, d, H, W = a.shape
    K = 2 * n + 1
    for dx in range(K):
        bx = b[..., dx : dx + W].contiguous()  # (N, heads, d, H + 2n, W)
        s = bx.stride()
        # all K row offsets at once: rows[..., dy, y, x] = bx[..., dy + y, x] (a view)
        rows = bx.as_strided((N, nh, d, K, H, W), (s[0], s[1], s[2], s[3], s[3], s[4]))
        o = out[:, :, dx::K]  # (N, heads, K, H, W): offsets dy K + dx
        torch.mul(a[:, :, 0, None], rows[:, :, 0], out=o)
        for c in range(1, d):
            o.addcmul_(a[:, :, c, None], rows[:, :, c])
    return out


def shifted_sum(w: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """``sum_o w[:, :, o] * b[:, :, :, dy : dy + H, dx : dx + W]`` with ``o = dy K + dx``.

    Parameters
    ----------
    w
        ``(N, heads, K^2, H, W)``.
    b
        Padded, ``(N, heads, d, H + 2n, W + 2n)``.
    n
        Radius.

    Returns
    -------
    torch.Tensor
        ``(N, heads, d, H, W)``.
    """
    H, W = w.shape[-2:]
    K = 2 * n + 1
    out = None
    for dx in range(K):
        bx = b[..., dx : dx + W].contiguous()
        for dy in range(K):
            a = w[:, :, dy * K + dx, None]
            bs = bx[..., dy : dy + H, :]
            out = a * bs if out is None else out.addcmul_(a, bs)
    return out


def shifted_scatter(w: torch.Tensor, g: torch.Tensor, n: int) -> torch.Tensor:
    """The adjoint of :func:`shifted_sum` in ``b``: ``res[..., shift o] += w[:, :, o] * g``.

    Parameters
    ----------
    w
        ``(N, heads, K^2, H, W)``.
    g
        ``(N, heads, d, H, W)``.
    n
        Radius.

    Returns
    -------
    torch.Tensor
        Padded, ``(N, heads, d, H + 2n, W + 2n)``.
    """
    N, nh, d, H, W = g.shape
    K = 2 * n + 1
    res = g.new_zeros(N, nh, d, H + 2 * n, W + 2 * n)
    for dx in range(K):
        acc = g.new_zeros(N, nh, d, H + 2 * n, W)
        for dy in range(K):
            acc[..., dy : dy + H, :].addcmul_(w[:, :, dy * K + dx, None], g)
        res[..., dx : dx + W] += acc
    return res


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
           n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked neighbourhood attention without autograd: ``(output, weights)``.

    ``q`` is already scaled by ``head_dim^-1/2``; ``k``, ``v`` are padded by ``n``;
    ``bias`` ``(1 or N, heads, K^2, H, W)`` holds the relative-position bias and ``-inf``
    for offsets outside the image.
    """
    N, nh, d, H, W = q.shape
    K = 2 * n + 1
    scores = shifted_dots(q, k, n, q.new_empty(N, nh, K * K, H, W))
    attn = scores.add_(bias).softmax(dim=2)
    return shifted_sum(attn, v, n), attn


class NeighborhoodFunction(torch.autograd.Function):
    """:func:`attend` with a hand-written backward pass in the same kernels.

    ``apply(q, k, v, bias, n) -> output``; gradients for ``q``, ``k``, ``v`` (padded) and
    ``bias`` (summed over the batch when ``bias`` has batch size 1). Checked against
    autograd of the plain implementation and with ``torch.autograd.gradcheck`` in float64.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, n):  # noqa: D102 - see the class docstring
        out, attn = attend(q, k, v, bias, n)
        ctx.save_for_backward(q, k, v, attn)
        ctx.n = n
        ctx.bias_batch = bias.shape[0]
        return out

    @staticmethod
    def backward(ctx, dout):  # noqa: D102
        q, k, v, attn = ctx.saved_tensors
        n = ctx.n
        N, nh, d, H, W = q.shape
        K = 2 * n + 1
        dout = dout.contiguous()
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        dv = shifted_scatter(attn, dout, n) if need_v else None
        d_attn = shifted_dots(dout, v, n, q.new_empty(N, nh, K * K, H, W))
        dscores = attn * (d_attn - (attn * d_attn).sum(2, keepdim=True))  # softmax backward
        dq = shifted_sum(dscores, k, n) if need_q else None
        dk = shifted_scatter(dscores, q, n) if need_k else None
        dbias = None
        if need_bias:
            dbias = dscores.sum(0, keepdim=True) if ctx.bias_batch == 1 else dscores
        return dq, dk, dv, dbias, None
