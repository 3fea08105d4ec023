"""Attention blocks of the two U-Nets: temporal, neighbourhood (windowed) and cross attention.

All three blocks are pre-norm residual blocks, ``x + Attention(Norm(x))``. The norm is a
LayerNorm over the channel axis *at each pixel* (:class:`ChannelLayerNorm`), never a
GroupNorm/BatchNorm: the output at a pixel then depends only on the pixels the attention
looks at (which is what makes :class:`NeighborhoodAttention` exactly local) and never on the
other samples of a batch.

Blocks
------
:class:`TemporalAttention`
    Multi-head self-attention over the frame axis of ``(B, L, C, H, W)``, independently at
    every pixel (the preprint's temporal attention of ``U_det``). Frames get sinusoidal
    position features (counted backwards from the latest frame, so "the current frame"
    has the same code whatever ``L`` is) mapped by a learned linear layer: frame order
    matters.
:class:`NeighborhoodAttention`
    Sliding-window spatial self-attention: every pixel attends to its own
    ``(2n+1) x (2n+1)`` neighbourhood (not fixed non-overlapping windows). Keys and values
    are zero-padded by ``n`` and the padded positions are masked with ``-inf`` before the
    softmax, so border pixels attend only to real pixels. Implemented with
    ``(2n+1)^2`` shifted slices of the padded keys/values (the same neighbourhoods as
    ``F.unfold``, without materialising the ``(2n+1)^2`` copies): memory
    ``O(H W C + H W (2n+1)^2 heads)``; on a CPU by the kernels of
    :mod:`xsuperres.nn.neighborhood` (with their own backward pass), or for maps of at
    most :data:`DENSE_MAX_PIXELS` pixels as dense attention with the scores outside the
    neighbourhood at ``-inf``; on CUDA, once
    :func:`set_gpu_kernel` chooses ``"triton"``, by the fused kernels of
    :mod:`xsuperres.nn.neighborhood_fused`. A learned
    relative-position bias per head and offset is added to the scores.
:class:`CrossAttention`
    Queries from the diffusion U-Net features, keys/values from the encoded upsampled
    context ``BI(x(L))``.

Where the cross-attention sits, and why
---------------------------------------
The preprint's ``U_dif`` cross-attends "on the whole bicubic interpolation's output
``BI(x(L))``". Done literally at full resolution on a 100 x 100 tile this is
``10^4`` queries x ``L 10^4`` keys = ``L 10^8`` scores per head and per sample, which is
quadratic in the number of pixels. We keep memory *linear* in the pixel count by

* placing cross-attention only at the coarse end of the U-Net: the last encoder stage and
  the bottleneck (``1/8`` resolution, 13 x 13 queries for a 100 x 100 tile), where the
  receptive field is already tile-wide, and
* taking keys/values from the (encoded) context adaptively average-pooled to at most
  ``pool x pool`` cells per frame (default 8 x 8, i.e. at most ``64 L`` keys), each key
  tagged with its frame position and the 2-D position of its cell centre; queries are
  tagged with their pixel-centre position in the same normalised tile coordinates.

Scores then cost ``(H W / 64) x 64 L`` per head. Consequence (accepted): with keys pooled
over the whole tile, the output at a pixel depends on the whole tile's context.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .neighborhood import NeighborhoodFunction, attend

__all__ = [
    "attention",
    "CUDA_MAX_GRID",
    "ChannelLayerNorm",
    "CrossAttention",
    "NeighborhoodAttention",
    "TemporalAttention",
    "set_gpu_kernel",
    "sinusoidal_features",
]

#: How :class:`NeighborhoodAttention` runs on a CUDA device:
#: ``"torch"``, the plain :meth:`~NeighborhoodAttention.forward_reference`, or ``"triton"``,
#: the fused kernel of :mod:`xsuperres.nn.neighborhood_fused`. Set by :func:`set_gpu_kernel`.
_GPU_KERNELS = ("torch", "triton")
_gpu_kernel = "torch"


def set_gpu_kernel(kind: str) -> str:
    """Choose the neighbourhood attention's kernels on CUDA devices.

    Parameters
    ----------
    kind
        ``"torch"`` (the default: the plain version, ``(2n+1)^2`` shifted products and
        sums) or ``"triton"`` (one fused kernel per block, two more for its backward
        pass in training; needs Triton, which torch's CUDA builds on Linux include). CPUs
        and ``torch.compile`` always use the torch versions.

    Returns
    -------
    str
        The previous setting, to restore it.

    Examples
    --------
    >>> from xsuperres.nn.attention import set_gpu_kernel
    >>> previous = set_gpu_kernel("triton")  # doctest: +SKIP
    >>> members = ds.stsr.downscale(model, n_members=3, device="cuda")  # doctest: +SKIP
    >>> set_gpu_kernel(previous)  # doctest: +SKIP
    """
    global _gpu_kernel
    if kind not in _GPU_KERNELS:
        raise ValueError(f"kind must be one of {_GPU_KERNELS}, got {kind!r}")
    if kind == "triton":
        from .neighborhood_fused import triton_available

        if not triton_available():
            raise RuntimeError("set_gpu_kernel('triton') needs Triton: `pip install triton` "
                               "(torch's CUDA builds on Linux include it)")
    previous, _gpu_kernel = _gpu_kernel, kind
    return previous


def _fused_applies(device_type: str) -> bool:
    """Whether :meth:`NeighborhoodAttention.forward` takes the fused kernel on this device."""
    return _gpu_kernel == "triton" and device_type == "cuda"


def sinusoidal_features(pos: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of (possibly non-integer) positions.

    Parameters
    ----------
    pos
        Positions, any shape ``(...)``.
    dim
        Number of features (even).
    max_period
        Longest period of the features.

    Returns
    -------
    torch.Tensor
        Shape ``(..., dim)``: ``[cos(pos w_0), ..., cos(pos w_{dim/2-1}), sin(...)]`` with
        ``w_i = max_period^(-2i/dim)``.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=pos.device) / half)
    args = pos.to(torch.float32)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _grid_features(
    size: tuple[int, int], grid: tuple[int, int], n_freq: int, device: torch.device
) -> torch.Tensor:
    """Fourier features of the cell centres of an adaptive-pooling grid.

    The tile ``size = (H, W)`` is cut into ``grid = (h, w)`` cells exactly as
    ``F.adaptive_avg_pool2d`` does (cell ``i`` spans ``floor(i H / h) .. ceil((i+1) H / h)``);
    with ``grid == size`` the cells are the pixels. Centres are normalised to ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        Shape ``(h * w, 4 * n_freq)``, row-major over the grid.
    """

    def centres(n: int, m: int) -> torch.Tensor:
        i = torch.arange(m, device=device, dtype=torch.float32)
        start = torch.floor(i * n / m)
        end = torch.ceil((i + 1) * n / m)
        return (start + end) / (2 * n)

    cy, cx = centres(size[0], grid[0]), centres(size[1], grid[1])
    freqs = math.pi * 2.0 ** torch.arange(n_freq, device=device, dtype=torch.float32)

    def feats(c: torch.Tensor) -> torch.Tensor:
        a = c[:, None] * freqs
        return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)

    fy, fx = feats(cy), feats(cx)  # (h, 2F), (w, 2F)
    h, w = grid
    return torch.cat([fy[:, None].expand(h, w, -1), fx[None].expand(h, w, -1)], dim=-1).reshape(
        h * w, 4 * n_freq
    )


def _frame_positions(L: int, device: torch.device) -> torch.Tensor:
    """Frame positions counted back from the latest frame: ``(L-1, ..., 1, 0)``."""
    return torch.arange(L - 1, -1, -1, device=device)


#: CUDA's fused attention kernels (flash attention, bf16/fp16) put the batch in a grid
#: dimension of at most 65535 blocks: on an H100, bf16 temporal attention over the 1.9
#: million pixel sequences of 192 tiles of 100 x 100 px failed with "CUDA error: invalid
#: argument" (benchmarks/gpu_check.py, docs/performance.md)
CUDA_MAX_GRID = 65535


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, max_batch: int | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` over ``(N, heads, len, d)``, in slices of the
    batch axis small enough for CUDA's kernels (``N * heads <= 65535``; ``max_batch``
    overrides the slice length). Each sequence is attended to on its own, so the slices
    give what one call gives; on a CPU one call is made."""
    n = q.shape[0]
    if max_batch is None:
        max_batch = max(1, CUDA_MAX_GRID // q.shape[1]) if q.device.type == "cuda" else n
    if n <= max_batch:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[i:i + max_batch], k[i:i + max_batch],
                                                     v[i:i + max_batch]) for i in range(0, n, max_batch)])


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis at every pixel of ``(N, C, H, W)`` (affine).

    Purely pointwise in space and per sample: no spatial or batch statistics.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


#: feature values (samples x channels x pixels) per group of the neighbourhood attention on
#: a CPU: about 0.8 MB of float32, the fastest measured on a 2-core x86_64 VM (groups of
#: 8 tiles of 16 x 40 x 40 and 15 of 32 x 20 x 20; see NeighborhoodAttention.forward)
CPU_CHUNK_ELEMENTS = 200_000

#: Maps of at most this many pixels take :meth:`NeighborhoodAttention._attend_dense` on a
#: CPU (dense attention with the scores outside the neighbourhood at ``-inf``).
DENSE_MAX_PIXELS = 100


def _check_heads(channels: int, heads: int) -> int:
    if heads < 1 or channels % heads:
        raise ValueError(f"channels ({channels}) must be a positive multiple of heads ({heads})")
    return channels // heads


class TemporalAttention(nn.Module):
    """Multi-head self-attention over frames, independently at every pixel.

    ``x + proj(MHA(LN(x) + pe))`` where ``LN`` normalises channels of each (frame, pixel)
    and ``pe`` is a learned projection of sinusoidal features of the frame position (counted
    back from the latest frame). With ``L == 1`` the softmax over a single key is 1, so the
    block reduces exactly to ``x + proj(value(LN(x) + pe_0))``.

    Parameters
    ----------
    channels
        Feature channels ``C`` (multiple of ``heads``).
    heads
        Number of attention heads.
    pe_dim
        Number of sinusoidal frame-position features.
    """

    def __init__(self, channels: int, heads: int = 4, pe_dim: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = _check_heads(channels, heads)
        self.pe_dim = pe_dim
        self.norm = nn.LayerNorm(channels)
        self.frame_embed = nn.Linear(pe_dim, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def frame_embedding(self, L: int, device: torch.device) -> torch.Tensor:
        """Learned frame-position embedding, shape ``(L, C)`` (row ``L-1`` = latest frame)."""
        pe = sinusoidal_features(_frame_positions(L, device), self.pe_dim)
        return self.frame_embed(pe.to(self.frame_embed.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the frame axis.

        Parameters
        ----------
        x
            Shape ``(B, L, C, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, L, C, H, W)``.
        """
        B, L, C, H, W = x.shape
        t = x.permute(0, 3, 4, 1, 2).reshape(B * H * W, L, C)  # one sequence per pixel
        h = self.norm(t) + self.frame_embedding(L, x.device).to(t.dtype)
        q, k, v = (
            self.qkv(h).reshape(B * H * W, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )
        o = attention(q, k, v)  # (BHW, heads, L, d)
        t = t + self.proj(o.transpose(1, 2).reshape(B * H * W, L, C))
        return t.reshape(B, H, W, L, C).permute(0, 3, 4, 1, 2)


class NeighborhoodAttention(nn.Module):
    """Sliding-window spatial self-attention over ``(2n+1) x (2n+1)`` neighbourhoods.

    Each pixel ``p`` attends to the pixels ``q`` with ``|q_y - p_y| <= n`` and
    ``|q_x - p_x| <= n`` that lie inside the image (out-of-image positions get ``-inf``
    scores). The output at ``p`` depends only on the input inside that neighbourhood.

    Parameters
    ----------
    channels
        Feature channels ``C`` (multiple of ``heads``).
    radius
        Neighbourhood radius ``n >= 0`` (``n = 0``: each pixel attends to itself only).
    heads
        Number of attention heads.
    rel_pos_bias
        Add a learned bias per head and relative offset (``heads x (2n+1)^2``, zero init).
    """

    def __init__(self, channels: int, radius: int, heads: int = 4, rel_pos_bias: bool = True) -> None:
        super().__init__()
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.radius = int(radius)
        self.heads = heads
        self.head_dim = _check_heads(channels, heads)
        self.norm = ChannelLayerNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        k = 2 * self.radius + 1
        self.rel_bias = nn.Parameter(torch.zeros(heads, k * k)) if rel_pos_bias else None

    def _offsets(self):
        k = 2 * self.radius + 1
        return [(dy, dx) for dy in range(k) for dx in range(k)]  # row-major, matches rel_bias

    def _bias(self, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        """Score bias ``(1, heads, K, H, W)``: the relative-position bias, ``-inf`` off the image."""
        n = self.radius
        K = 2 * n + 1
        outside = F.pad(torch.zeros(H, W, device=like.device, dtype=like.dtype), (n, n, n, n),
                        value=float("-inf"))
        mask = torch.stack([outside[dy : dy + H, dx : dx + W] for dy, dx in self._offsets()])
        if self.rel_bias is None:
            return mask[None, None].expand(1, self.heads, K * K, H, W)
        return self.rel_bias.to(like.dtype)[None, :, :, None, None] + mask[None, None]

    def _dense_bias(self, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        """Score bias ``(heads, H W, H W)`` of all pixel pairs: the relative-position bias
        where the key lies in the query's neighbourhood, ``-inf`` elsewhere."""
        n = self.radius
        K = 2 * n + 1
        yy, xx = torch.meshgrid(torch.arange(H, device=like.device), torch.arange(W, device=like.device),
                                indexing="ij")
        dy = yy.reshape(1, -1) - yy.reshape(-1, 1) + n  # [query, key]: the key's row offset + n
        dx = xx.reshape(1, -1) - xx.reshape(-1, 1) + n
        near = (dy >= 0) & (dy < K) & (dx >= 0) & (dx < K)
        mask = torch.zeros(near.shape, device=like.device, dtype=like.dtype)
        mask.masked_fill_(~near, float("-inf"))
        if self.rel_bias is None:
            return mask.expand(self.heads, -1, -1)
        offset = (dy.clamp(0, K - 1) * K + dx.clamp(0, K - 1)).reshape(-1)  # row-major, as rel_bias
        return self.rel_bias.to(like.dtype)[:, offset].reshape(self.heads, H * W, H * W) + mask

    def _attend_dense(self, qkv: torch.Tensor) -> torch.Tensor:
        """:meth:`_attend` for a small map, as dense attention of every pixel to every
        pixel with the scores outside the neighbourhood at ``-inf``:
        ``qkv (N, 3C, H, W) -> (N, C, H, W)``.

        For maps of up to :data:`DENSE_MAX_PIXELS` pixels the ``(H W)^2`` scores are
        fewer operations than the ``(2n+1)^2`` passes of the kernels, each of which costs
        more in overhead than in arithmetic there; autograd gives the backward pass."""
        N, C3, H, W = qkv.shape
        nh, d = self.heads, self.head_dim
        q, k, v = (t.reshape(N, nh, d, H * W).transpose(2, 3) for t in qkv.chunk(3, dim=1))
        scores = (q * d**-0.5) @ k.transpose(2, 3) + self._dense_bias(H, W, qkv)  # (N, heads, HW, HW)
        out = scores.softmax(dim=-1) @ v  # (N, heads, HW, d)
        return out.transpose(2, 3).reshape(N, C3 // 3, H, W)

    def _attend(self, qkv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The attention of a few samples: ``qkv (n, 3C, H, W) -> (n, C, H, W)``.

        The arithmetic of :meth:`forward_reference` in the kernels of
        :mod:`xsuperres.nn.neighborhood` (with their own backward pass under autograd).
        """
        N, C3, H, W = qkv.shape
        n, nh, d = self.radius, self.heads, self.head_dim
        q, k, v = qkv.chunk(3, dim=1)
        q = q.reshape(N, nh, d, H, W) * d**-0.5
        pad = (n, n, n, n)
        k = F.pad(k, pad).reshape(N, nh, d, H + 2 * n, W + 2 * n)
        v = F.pad(v, pad).reshape(N, nh, d, H + 2 * n, W + 2 * n)
        if torch.is_grad_enabled():
            out = NeighborhoodFunction.apply(q, k, v, bias, n)
        else:
            out, _ = attend(q, k, v, bias, n)
        return out.reshape(N, C3 // 3, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within each pixel's neighbourhood.

        On a CPU this runs :meth:`_attend_dense` on the whole batch for maps of at most
        :data:`DENSE_MAX_PIXELS` pixels, and otherwise the kernels of
        :mod:`xsuperres.nn.neighborhood` (and their backward pass under autograd), with
        the samples in groups of about :data:`CPU_CHUNK_ELEMENTS` feature values so that
        the ``(2n+1)^2`` passes over the shifted keys and values stay in the processor's
        cache; the result does not depend on the grouping (every sample is computed
        alone). Both equal :meth:`forward_reference` up to float rounding. On other
        devices (GPUs), where the kernels' many small operations would each be a kernel
        launch, and under ``torch.compile`` (whose tracer cannot follow the kernels'
        ``out=`` writes into strided views, and fuses the plain version's operations
        itself), it is
        :meth:`forward_reference`, or :meth:`forward_fused` on a CUDA device once
        :func:`set_gpu_kernel` has chosen ``"triton"``.

        Parameters
        ----------
        x
            Shape ``(N, C, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(N, C, H, W)``.
        """
        if torch.compiler.is_compiling():
            return self.forward_reference(x)
        if x.device.type != "cpu":
            return self.forward_fused(x) if _fused_applies(x.device.type) else self.forward_reference(x)
        N, C, H, W = x.shape
        qkv = self.qkv(self.norm(x))
        if H * W <= DENSE_MAX_PIXELS:
            return x + self.proj(self._attend_dense(qkv))
        bias = self._bias(H, W, qkv)
        step = max(1, CPU_CHUNK_ELEMENTS // max(1, C * H * W))
        if step >= N:
            out = self._attend(qkv, bias)
        else:
            # split, not slicing: its backward is one concatenation, not a zero-filled
            # full-size gradient per group
            out = torch.cat([self._attend(part, bias) for part in qkv.split(step)])
        return x + self.proj(out)

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The block with its attention in one Triton kernel (for GPUs; differentiable).

        See :func:`xsuperres.nn.neighborhood_fused.fused_neighborhood_attention`; equal
        to :meth:`forward_reference` up to float rounding (float32 accumulation).
        """
        from .neighborhood_fused import fused_neighborhood_attention

        qkv = self.qkv(self.norm(x))
        out = fused_neighborhood_attention(qkv, self.heads, self.radius, self.rel_bias)
        return x + self.proj(out)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain implementation (kept as the reference of :meth:`forward`'s tests).

        One pass over the whole batch, scores stacked from ``(2n+1)^2`` shifted slices, a
        masked softmax and an out-of-place weighted sum: :meth:`forward` gives the same
        scores and weights bit for bit and the same output up to float rounding.
        """
        N, C, H, W = x.shape
        n, nh, d = self.radius, self.heads, self.head_dim
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        q = q.reshape(N, nh, d, H, W) * d**-0.5
        pad = (n, n, n, n)
        k = F.pad(k, pad).reshape(N, nh, d, H + 2 * n, W + 2 * n)
        v = F.pad(v, pad).reshape(N, nh, d, H + 2 * n, W + 2 * n)
        inside = F.pad(torch.ones(H, W, dtype=torch.bool, device=x.device), pad)
        offsets = self._offsets()
        scores = torch.stack(
            [(q * k[..., dy : dy + H, dx : dx + W]).sum(2) for dy, dx in offsets], dim=2
        )
        if self.rel_bias is not None:
            scores = scores + self.rel_bias.to(scores.dtype)[None, :, :, None, None]
        valid = torch.stack([inside[dy : dy + H, dx : dx + W] for dy, dx in offsets])  # (K, H, W)
        attn = scores.masked_fill(~valid, float("-inf")).softmax(dim=2)
        out = torch.zeros_like(q)
        for o, (dy, dx) in enumerate(offsets):
            out = out + attn[:, :, o, None] * v[..., dy : dy + H, dx : dx + W]
        return x + self.proj(out.reshape(N, C, H, W))


class CrossAttention(nn.Module):
    """Cross-attention from feature maps onto a pooled multi-frame context.

    Queries: every pixel of ``x`` (channel LayerNorm + learned projection of Fourier features
    of its normalised position). Keys/values: the context maps adaptively average-pooled to
    at most ``pool x pool`` cells per frame (LayerNorm + learned projections of the cell
    centre's Fourier features and of the frame position). See the module docstring for why
    the keys are pooled.

    Parameters
    ----------
    channels
        Query feature channels ``C`` (multiple of ``heads``); output has ``C`` channels.
    context_channels
        Channels ``C_ctx`` of each context frame.
    heads
        Number of attention heads.
    pool
        Maximum pooled grid side per frame (``<= pool^2`` keys per frame).
    pe_dim
        Number of sinusoidal frame-position features.
    n_freq
        Number of Fourier frequencies per spatial axis for the position features.
    """

    def __init__(
        self,
        channels: int,
        context_channels: int,
        heads: int = 4,
        pool: int = 8,
        pe_dim: int = 32,
        n_freq: int = 6,
    ) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.heads = heads
        self.head_dim = _check_heads(channels, heads)
        self.pool = int(pool)
        self.pe_dim = pe_dim
        self.n_freq = n_freq
        self.norm = ChannelLayerNorm(channels)
        self.norm_context = nn.LayerNorm(context_channels)
        self.query_pos = nn.Linear(4 * n_freq, channels)
        self.key_pos = nn.Linear(4 * n_freq, context_channels)
        self.key_frame = nn.Linear(pe_dim, context_channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)

    def encode_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``context``: the part of :meth:`forward` that ``x`` does not touch.

        A diffusion sampler calls the network many times with the same context; computing
        the keys and values once per batch (:meth:`DiffusionUNet.encode_context
        <xsuperres.nn.unet.DiffusionUNet.encode_context>`) gives bitwise the same output.

        Parameters
        ----------
        context
            Context frames, shape ``(N, L, C_ctx, H_c, W_c)``.

        Returns
        -------
        tuple of torch.Tensor
            ``(k, v)``, each ``(N, heads, L h w, head_dim)`` (``h w`` pooled cells per frame).
        """
        N, L, Cc, Hc, Wc = context.shape
        grid = (min(Hc, self.pool), min(Wc, self.pool))
        pooled = F.adaptive_avg_pool2d(context.reshape(N * L, Cc, Hc, Wc), grid)
        return self.pooled_keys(pooled.reshape(N, L, Cc, *grid), (Hc, Wc))

    def pooled_keys(
        self, pooled: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode_context` from the context already pooled to its grid of cells.

        Parameters
        ----------
        pooled
            ``adaptive_avg_pool2d`` of the context frames to ``min(side, pool)`` cells per
            axis, shape ``(N, L, C_ctx, h, w)`` (several blocks can share one pooling).
        size
            ``(H_c, W_c)`` of the context frames before pooling (the cells' positions).

        Returns
        -------
        tuple of torch.Tensor
            ``(k, v)`` as :meth:`encode_context`.
        """
        N, L, Cc, gh, gw = pooled.shape
        grid = (gh, gw)
        if grid != (min(size[0], self.pool), min(size[1], self.pool)):
            raise ValueError(f"pooled grid {grid} does not match pool={self.pool} for frames of {size}")
        Hc, Wc = size
        nh, d = self.heads, self.head_dim
        tokens = pooled.reshape(N, L, Cc, gh * gw).transpose(2, 3)  # (N, L, hw, Cc)
        wdtype = self.kv.weight.dtype
        frame_pe = sinusoidal_features(_frame_positions(L, pooled.device), self.pe_dim)
        frame_pe = self.key_frame(frame_pe.to(wdtype))  # (L, Cc)
        cell_pe = _grid_features((Hc, Wc), grid, self.n_freq, pooled.device)
        cell_pe = self.key_pos(cell_pe.to(wdtype))  # (hw, Cc)
        dtype = tokens.dtype
        tokens = self.norm_context(tokens) + frame_pe[:, None].to(dtype) + cell_pe.to(dtype)
        k, v = self.kv(tokens.reshape(N, -1, Cc)).reshape(N, -1, 2, nh, d).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` onto ``context``.

        Parameters
        ----------
        x
            Query features, shape ``(N, C, H, W)``.
        context
            Context frames covering the same tile, shape ``(N, L, C_ctx, H_c, W_c)``
            (any resolution; typically the full-resolution encoded ``BI(x(L))``).
        kv
            ``encode_context(context)`` computed beforehand (then ``context`` is not used).

        Returns
        -------
        torch.Tensor
            Shape ``(N, C, H, W)``.
        """
        N, C, H, W = x.shape
        if kv is None:
            if context is None:
                raise ValueError("CrossAttention needs the context or its keys/values (kv)")
            kv = self.encode_context(context)
        k, v = kv
        if k.shape[0] != N:
            raise ValueError(f"batch sizes differ: x {N}, context {k.shape[0]}")
        nh, d = self.heads, self.head_dim
        wdtype = self.kv.weight.dtype
        pix_pe = _grid_features((H, W), (H, W), self.n_freq, x.device)
        pix_pe = self.query_pos(pix_pe.to(wdtype))  # (HW, C)
        qin = self.norm(x).flatten(2).transpose(1, 2) + pix_pe.to(x.dtype)  # (N, HW, C)
        q = self.q(qin).reshape(N, H * W, nh, d).transpose(1, 2)
        o = attention(q, k, v)  # (N, heads, HW, d)
        o = self.proj(o.transpose(1, 2).reshape(N, H * W, C))
        return x + o.transpose(1, 2).reshape(N, C, H, W)
