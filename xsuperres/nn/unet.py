"""The two U-Nets of the preprint: ``U_det`` (deterministic mean) and ``U_dif`` (residual diffusion).

Backbone (shared by both)
-------------------------
* 4 encoder stages at resolutions ``1, 1/2, 1/4, 1/8`` with ``base_channels * channel_mults``
  channels, each ``num_res_blocks`` conv residual blocks (GroupNorm, SiLU, 3x3 convs) followed
  by the stage's attention, then a stride-2 conv between stages: **3 downsamplings**. The
  bottleneck (residual block, attention, residual block) works at the 4th stage's resolution
  ``1/8``. Why not a 4th downsampling to ``1/16``: a 100 x 100 tile would need 12 pixels of
  padding to reach 112 and the bottleneck would be 7 x 7; with ``1/8`` it needs 4 pixels
  (104) and the bottleneck is 13 x 13, which also keeps the ``n = 1`` windows meaningful.
* Decoder: nearest-neighbour x2 upsampling + 3x3 conv, concatenation with the stage's skip
  features, residual blocks; no attention (the preprint adds attention to the encoder).
* Spatial attention radii ``n = (3, 3, 1, 1, 1)`` for the 4 stages and the bottleneck
  (:class:`~xsuperres.nn.attention.NeighborhoodAttention`), 4 heads.
* Any ``H, W >= 1``: inputs are replicate-padded (split evenly on both sides) to a multiple
  of ``8`` and the output is cropped back. GroupNorm statistics include the padded pixels.
* Only per-sample normalisations (GroupNorm, LayerNorm): the output of a sample never depends
  on the other samples of a batch (needed for chunk-invariant inference).
* The output convolution has PyTorch's default (non-zero) initialisation.

``U_det`` (:class:`DeterministicUNet`)
    The encoder keeps an explicit frame axis: each of the ``L`` frames is its own
    2-channel image ``(BI(x[l]), topography)``, convolved with shared weights as
    ``(B L, C, H, W)``; every stage and the bottleneck add
    :class:`~xsuperres.nn.attention.TemporalAttention` (over the ``L`` frames at each pixel,
    on ``(B, L, C, H, W)``) and NeighborhoodAttention. Skip and bottleneck features are
    collapsed over frames by :class:`FrameCollapse` (latest frame's features + 1x1 conv of a
    learned weighted mean over frames), so the decoder works on ``(B, C, H, W)``.
``U_dif`` (:class:`DiffusionUNet`)
    Input ``concat(r_j, D, BI(x[t]))`` (``2T + 1`` channels) and a learned ``embed_dim``-d
    embedding of the diffusion step ``j`` (sinusoidal features + MLP) that modulates every
    residual block (FiLM scale/shift after the second GroupNorm). NeighborhoodAttention in every
    stage and the bottleneck; :class:`~xsuperres.nn.attention.CrossAttention` onto the
    encoded context ``BI(x(L))`` in the last encoder stage and the bottleneck only (see
    :mod:`xsuperres.nn.attention` for why).

``attention=False`` gives the preprint's "without attention" ablation: the same backbone with
every attention block replaced by the identity (for ``U_dif`` the context encoder is dropped
too, and ``context`` is ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, NeighborhoodAttention, TemporalAttention, sinusoidal_features

__all__ = [
    "PRESETS",
    "DeterministicUNet",
    "DiffusionUNet",
    "FrameCollapse",
    "ContextEncoder",
    "ContextKeys",
    "ResBlock",
    "StepEmbedding",
    "UNetPreset",
    "get_preset",
    "n_parameters",
]


@dataclass(frozen=True)
class UNetPreset:
    """Size of a U-Net.

    Parameters
    ----------
    base_channels
        Channels of the first stage.
    channel_mults
        Channel multiplier of each encoder stage (4 in the preprint); the bottleneck uses the
        last stage's channels. Total downsampling factor is ``2 ** (len(channel_mults) - 1)``.
    heads
        Attention heads (temporal, neighbourhood and cross attention).
    radii
        Neighbourhood radius ``n`` per encoder stage, then the bottleneck
        (``len(channel_mults) + 1`` values).
    num_res_blocks
        Residual blocks per encoder and decoder stage.
    cross_pool
        Maximum side of the pooled context grid per frame for cross-attention.
    """

    base_channels: int
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    heads: int = 4
    radii: tuple[int, ...] = (3, 3, 1, 1, 1)
    num_res_blocks: int = 1
    cross_pool: int = 8

    def __post_init__(self) -> None:
        if len(self.radii) != len(self.channel_mults) + 1:
            raise ValueError("radii needs one value per encoder stage plus one for the bottleneck")
        for c in self.channels:
            if c % self.heads:
                raise ValueError(f"stage channels {c} not a multiple of heads {self.heads}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each encoder stage."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def factor(self) -> int:
        """Total spatial downsampling factor (inputs are padded to a multiple of it)."""
        return 2 ** (len(self.channel_mults) - 1)


PRESETS: dict[str, UNetPreset] = {
    # CPU tests and demos: < 1 M parameters per U-Net.
    "tiny": UNetPreset(base_channels=16, channel_mults=(1, 2, 3, 4), num_res_blocks=1),
    # Twice the channels of "tiny" (about 2.9 M parameters per U-Net; a training step
    # takes about 2x tiny's on a CPU, docs/model.md): the next step up for CPU training.
    "small": UNetPreset(base_channels=32, channel_mults=(1, 2, 3, 4), num_res_blocks=1),
    # The preprint's scale (U-Net of Ronneberger et al.: 64 ... 512 channels, two 3x3
    # convs = one residual block per level): for a GPU.
    "standard": UNetPreset(base_channels=64, channel_mults=(1, 2, 4, 8), num_res_blocks=1),
}


def get_preset(preset: str | UNetPreset) -> UNetPreset:
    """Return ``preset`` itself or the entry of :data:`PRESETS` it names."""
    if isinstance(preset, UNetPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}") from None


def n_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (fewer if ``channels < 4``)."""
    g = math.gcd(channels, 32)
    while g > 1 and channels // g < 4:
        g //= 2
    return nn.GroupNorm(g, channels)


def _pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Replicate-pad the last two axes of ``(N, C, H, W)`` to multiples of ``m``.

    Returns the padded tensor and the ``(left, right, top, bottom)`` padding.
    """
    H, W = x.shape[-2:]
    ph, pw = -H % m, -W % m
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        x = F.pad(x, pad, mode="replicate")
    return x, pad


def _crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    H, W = x.shape[-2:]
    return x[..., top : H - bottom, left : W - right]


class ResBlock(nn.Module):
    """Residual block ``GN-SiLU-Conv3-GN-[FiLM]-SiLU-Conv3`` plus a (1x1 conv) shortcut.

    Parameters
    ----------
    in_channels, out_channels
        Input and output channels.
    embed_dim
        If given, ``forward`` takes an embedding ``(N, embed_dim)`` that sets a per-channel
        scale and shift after the second GroupNorm (FiLM).
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int | None = None) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * out_channels) if embed_dim else None
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, C_in, H, W)`` [, ``(N, embed_dim)``] ``-> (N, C_out, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            if emb is None:
                raise ValueError("this block needs an embedding")
            scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class FrameCollapse(nn.Module):
    """Collapse the frame axis: latest frame + 1x1 conv of a learned weighted frame mean.

    ``out = x[:, -1] + conv1x1(sum_l w_l x[:, l])`` with ``w = softmax(a)`` (``a`` learned,
    initialised to the plain mean).

    Parameters
    ----------
    channels
        Feature channels ``C``.
    L
        Number of frames.
    """

    def __init__(self, channels: int, L: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(L))
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, C, H, W) -> (B, C, H, W)``."""
        w = self.logits.softmax(0).to(x.dtype)
        return x[:, -1] + self.mix(torch.einsum("l,blchw->bchw", w, x))


class _Upsample(nn.Sequential):
    """Nearest x2 upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1))


def _downsample(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


class _Decoder(nn.Module):
    """Decoder shared by both U-Nets: from the bottleneck to ``out_channels`` at full resolution."""

    def __init__(
        self, p: UNetPreset, out_channels: int, embed_dim: int | None = None
    ) -> None:
        super().__init__()
        chans = p.channels
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        c_prev = chans[-1]
        for k in reversed(range(len(chans))):
            blocks = [ResBlock(c_prev + chans[k], chans[k], embed_dim)]
            blocks += [ResBlock(chans[k], chans[k], embed_dim) for _ in range(p.num_res_blocks - 1)]
            self.levels.append(nn.ModuleList(blocks))
            self.ups.append(_Upsample(chans[k]) if k > 0 else nn.Identity())
            c_prev = chans[k]
        self.out = nn.Sequential(_group_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], out_channels, 3, padding=1))

    def forward(
        self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``h``: bottleneck ``(B, C_last, h, w)``; ``skips``: per stage, shallow first."""
        for blocks, up, skip in zip(self.levels, self.ups, reversed(skips)):
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = block(h, emb)
            h = up(h)
        return self.out(h)


class DeterministicUNet(nn.Module):
    """``U_det``: ``L`` upsampled LR frames + topography -> ``T`` HR frames (the mean).

    Parameters
    ----------
    L
        Context length (number of LR frames).
    T
        Temporal factor (number of output frames).
    preset
        Name in :data:`PRESETS` or a :class:`UNetPreset`.
    attention
        ``False`` replaces temporal and neighbourhood attention by the identity (ablation).
    """

    def __init__(self, L: int, T: int, preset: str | UNetPreset = "tiny", attention: bool = True) -> None:
        super().__init__()
        if L < 1 or T < 1:
            raise ValueError(f"L and T must be >= 1, got L={L}, T={T}")
        p = get_preset(preset)
        self.L, self.T, self.preset, self.attention = L, T, p, attention
        chans = p.channels
        self.stem = nn.Conv2d(2, chans[0], 3, padding=1)

        def attn(c: int, n: int) -> tuple[nn.Module, nn.Module]:
            if not attention:
                return nn.Identity(), nn.Identity()
            return TemporalAttention(c, p.heads), NeighborhoodAttention(c, n, p.heads)

        self.enc_blocks = nn.ModuleList()
        self.enc_temporal = nn.ModuleList()
        self.enc_spatial = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.collapses = nn.ModuleList()
        c_prev = chans[0]
        for k, c in enumerate(chans):
            blocks = [ResBlock(c_prev, c)] + [ResBlock(c, c) for _ in range(p.num_res_blocks - 1)]
            self.enc_blocks.append(nn.ModuleList(blocks))
            ta, na = attn(c, p.radii[k])
            self.enc_temporal.append(ta)
            self.enc_spatial.append(na)
            self.collapses.append(FrameCollapse(c, L))
            self.downs.append(_downsample(c) if k < len(chans) - 1 else nn.Identity())
            c_prev = c
        self.mid1 = ResBlock(c_prev, c_prev)
        self.mid_temporal, self.mid_spatial = attn(c_prev, p.radii[-1])
        self.mid2 = ResBlock(c_prev, c_prev)
        self.mid_collapse = FrameCollapse(c_prev, L)
        self.decoder = _Decoder(p, T)

    def _attend(self, h: torch.Tensor, temporal: nn.Module, spatial: nn.Module, B: int) -> torch.Tensor:
        """Temporal then spatial attention on frame-flattened features ``(B L, C, H, W)``."""
        h = temporal(h.reshape(B, self.L, *h.shape[1:])).flatten(0, 1)
        return spatial(h)

    def forward(self, context: torch.Tensor, topography: torch.Tensor) -> torch.Tensor:
        """Predict the mean HR block.

        Parameters
        ----------
        context
            Upsampled LR context ``BI(x(L))``, shape ``(B, L, H, W)``, oldest frame first.
        topography
            Scaled topography on the HR grid, shape ``(B, 1, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, T, H, W)``.
        """
        B, L, H, W = context.shape
        if L != self.L:
            raise ValueError(f"expected {self.L} context frames, got {L}")
        if topography.shape != (B, 1, H, W):
            raise ValueError(f"topography must have shape {(B, 1, H, W)}, got {tuple(topography.shape)}")
        frames = torch.stack([context, topography.expand(B, L, H, W)], dim=2)  # (B, L, 2, H, W)
        h, pad = _pad_to_multiple(frames.flatten(0, 1), self.preset.factor)
        h = self.stem(h)  # (B L, C0, H', W')
        skips = []
        for blocks, ta, na, collapse, down in zip(
            self.enc_blocks, self.enc_temporal, self.enc_spatial, self.collapses, self.downs
        ):
            for block in blocks:
                h = block(h)
            h = self._attend(h, ta, na, B)
            skips.append(collapse(h.reshape(B, L, *h.shape[1:])))
            h = down(h)
        h = self.mid1(h)
        h = self._attend(h, self.mid_temporal, self.mid_spatial, B)
        h = self.mid2(h)
        h = self.mid_collapse(h.reshape(B, L, *h.shape[1:]))
        return _crop(self.decoder(h, skips), pad)


class StepEmbedding(nn.Module):
    """Learned embedding of the diffusion step ``j``: sinusoidal features + 2-layer MLP.

    ``(N,) -> (N, embed_dim)``.
    """

    def __init__(self, embed_dim: int = 128) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, j: torch.Tensor) -> torch.Tensor:
        """``j``: step indices ``(N,)`` (integers ``1..J``; floats accepted)."""
        return self.mlp(sinusoidal_features(j, self.embed_dim).to(self.mlp[0].weight.dtype))


class ContextEncoder(nn.Module):
    """Shared per-frame conv encoder of ``BI(x(L))`` for cross-attention keys/values.

    ``(B, L, H, W) -> (B, L, C, H, W)``: Conv3 - GN - SiLU - Conv3 on each frame.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            _group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """``(B, L, H, W) -> (B, L, C, H, W)``."""
        B, L, H, W = context.shape
        return self.net(context.reshape(B * L, 1, H, W)).reshape(B, L, -1, H, W)

    def pooled(self, context: torch.Tensor, pool: int) -> torch.Tensor:
        """``adaptive_avg_pool2d(forward(context), grid)``, ``grid = min(side, pool)`` per axis.

        What the cross-attention blocks use of the encoded context. When the grid divides
        the frame (a 40 px tile pooled to 8 x 8 cells of 5 x 5 px), the last convolution
        is applied after the pooling instead of before: it is linear, so the mean over a
        cell of a 3 x 3 convolution is the convolution's weights applied to the cell sums
        of its input shifted by -1, 0 and +1 pixel (zero padding as in the convolution).
        Those shifted cell sums are two small matrix products with 0/1 window matrices
        (:func:`_cell_windows`), one per axis, whose gradients are two more. The
        full-resolution convolution of ``L`` frames and its gradient (a third of a
        ``U_dif`` training step on a CPU) become these products and a small
        contraction; equal to the plain order to float rounding (tests). Otherwise the
        plain order is used.

        Returns
        -------
        torch.Tensor
            ``(B, L, C, gh, gw)``.
        """
        B, L, H, W = context.shape
        gh, gw = min(H, pool), min(W, pool)
        conv1, norm, act, conv2 = self.net
        if H % gh or W % gw:
            enc = self.net(context.reshape(B * L, 1, H, W))
            return F.adaptive_avg_pool2d(enc, (gh, gw)).reshape(B, L, -1, gh, gw)
        h = act(norm(conv1(context.reshape(B * L, 1, H, W))))  # (N, C, H, W)
        sums = _cell_windows(H, gh, h).t() @ (h @ _cell_windows(W, gw, h))  # (N, C, 3 gh, 3 gw)
        sums = sums.reshape(B * L, -1, 3, gh, 3, gw)  # [n, c, y shift, cell y, x shift, cell x]
        out = torch.einsum("ncjyix,ocji->noyx", sums, conv2.weight) / float((H // gh) * (W // gw))
        out = out + conv2.bias[None, :, None, None]
        return out.reshape(B, L, -1, gh, gw)


def _cell_windows(n: int, cells: int, like: torch.Tensor) -> torch.Tensor:
    """``(n, 3 cells)`` 0/1 matrix: column ``s cells + c`` marks cell ``c`` of ``cells`` equal
    cells of an axis of length ``n``, shifted by ``s - 1`` elements (``s = 0, 1, 2``: the
    3-tap kernel's indices). Outside the axis counts as 0, the convolution's zero padding.
    ``x @ _cell_windows(...)`` gives the shifted cell sums of ``x``'s last axis."""
    k = n // cells
    pos = torch.arange(n, device=like.device)[:, None, None]  # (n, 1, 1)
    shift = torch.arange(3, device=like.device)[:, None] - 1  # (3, 1)
    start = torch.arange(cells, device=like.device) * k + shift  # (3, cells): first element
    return ((pos >= start) & (pos < start + k)).reshape(n, 3 * cells).to(like.dtype)


@dataclass(frozen=True)
class ContextKeys:
    """Cross-attention keys and values of one batch's context (:meth:`DiffusionUNet.encode_context`).

    Attributes
    ----------
    shape
        ``(B, L, H, W)`` of the context they were computed from.
    stages
        Per encoder stage with cross-attention (key: stage index as a string), ``(k, v)``.
    mid
        ``(k, v)`` of the bottleneck's cross-attention.
    """

    shape: tuple[int, int, int, int]
    stages: dict[str, tuple[torch.Tensor, torch.Tensor]]
    mid: tuple[torch.Tensor, torch.Tensor]


class DiffusionUNet(nn.Module):
    """``U_dif``: predicts the velocity ``v`` of the noised residual.

    Parameters
    ----------
    L
        Context length (frames of ``BI(x(L))`` for cross-attention).
    T
        Temporal factor (frames of the residual).
    preset
        Name in :data:`PRESETS` or a :class:`UNetPreset`.
    attention
        ``False`` removes neighbourhood and cross attention (ablation; ``context`` ignored).
    embed_dim
        Size of the learned embedding of ``j`` (128 in the preprint).
    """

    def __init__(
        self,
        L: int,
        T: int,
        preset: str | UNetPreset = "tiny",
        attention: bool = True,
        embed_dim: int = 128,
    ) -> None:
        super().__init__()
        if L < 1 or T < 1:
            raise ValueError(f"L and T must be >= 1, got L={L}, T={T}")
        p = get_preset(preset)
        self.L, self.T, self.preset, self.attention = L, T, p, attention
        chans = p.channels
        n_stages = len(chans)
        self.step_embed = StepEmbedding(embed_dim)
        self.stem = nn.Conv2d(2 * T + 1, chans[0], 3, padding=1)
        ctx_c = chans[0]
        self.context_encoder = ContextEncoder(ctx_c) if attention else None

        def spatial(c: int, n: int) -> nn.Module:
            return NeighborhoodAttention(c, n, p.heads) if attention else nn.Identity()

        def cross(c: int) -> nn.Module | None:
            return CrossAttention(c, ctx_c, p.heads, pool=p.cross_pool) if attention else None

        self.enc_blocks = nn.ModuleList()
        self.enc_spatial = nn.ModuleList()
        self.enc_cross = nn.ModuleDict()
        self.downs = nn.ModuleList()
        c_prev = chans[0]
        for k, c in enumerate(chans):
            blocks = [ResBlock(c_prev, c, embed_dim)]
            blocks += [ResBlock(c, c, embed_dim) for _ in range(p.num_res_blocks - 1)]
            self.enc_blocks.append(nn.ModuleList(blocks))
            self.enc_spatial.append(spatial(c, p.radii[k]))
            if attention and k == n_stages - 1:  # cross-attention at the coarsest stage only
                self.enc_cross[str(k)] = cross(c)
            self.downs.append(_downsample(c) if k < n_stages - 1 else nn.Identity())
            c_prev = c
        self.mid1 = ResBlock(c_prev, c_prev, embed_dim)
        self.mid_spatial = spatial(c_prev, p.radii[-1])
        self.mid_cross = cross(c_prev)
        self.mid2 = ResBlock(c_prev, c_prev, embed_dim)
        self.decoder = _Decoder(p, T, embed_dim)

    def encode_context(self, context: torch.Tensor) -> ContextKeys | None:
        """The keys and values that the cross-attention blocks take from ``context``.

        They depend on ``BI(x(L))`` only, not on the noised residual or the step, so a
        sampler computes them once per batch and passes them to every call of
        :meth:`forward` (``encoded=``): bitwise the same output as passing ``context``.

        Parameters
        ----------
        context
            ``BI(x(L))``, shape ``(B, L, H, W)``, oldest frame first.

        Returns
        -------
        ContextKeys or None
            ``None`` for ``attention=False`` (no cross-attention).
        """
        if self.context_encoder is None:
            return None
        B, L, H, W = context.shape
        if L != self.L:
            raise ValueError(f"context must have {self.L} frames, got {L}")
        c, _ = _pad_to_multiple(context, self.preset.factor)
        size = tuple(c.shape[-2:])
        # one pooling for all cross-attention blocks (they share the preset's cross_pool)
        pooled = self.context_encoder.pooled(c, self.preset.cross_pool)  # (B, L, C0, h, w)
        enc = {k: blk.pooled_keys(pooled, size) for k, blk in self.enc_cross.items()}
        return ContextKeys(shape=(B, L, H, W), stages=enc, mid=self.mid_cross.pooled_keys(pooled, size))

    def forward(
        self,
        r_noisy: torch.Tensor,
        mean: torch.Tensor,
        lr_up: torch.Tensor,
        context: torch.Tensor | None,
        j: torch.Tensor | int,
        *,
        encoded: ContextKeys | None = None,
    ) -> torch.Tensor:
        """Predict the velocity.

        Parameters
        ----------
        r_noisy
            Noised residual ``r_j``, shape ``(B, T, H, W)``.
        mean
            Deterministic mean ``D``, shape ``(B, T, H, W)``.
        lr_up
            ``BI(x[t])``, shape ``(B, 1, H, W)``.
        context
            ``BI(x(L))``, shape ``(B, L, H, W)``, oldest frame first (ignored when
            ``attention=False``, and may be ``None`` when ``encoded`` is given).
        j
            Diffusion steps ``1..J``, shape ``(B,)`` (a scalar is broadcast).
        encoded
            :meth:`encode_context` of the context, computed once for many calls.

        Returns
        -------
        torch.Tensor
            ``v_hat``, shape ``(B, T, H, W)``.
        """
        B, T, H, W = r_noisy.shape
        if T != self.T or mean.shape != r_noisy.shape:
            raise ValueError(f"r_noisy and mean must have shape (B, {self.T}, H, W)")
        if lr_up.shape != (B, 1, H, W):
            raise ValueError(f"lr_up must have shape {(B, 1, H, W)}, got {tuple(lr_up.shape)}")
        want = (B, self.L, H, W)
        if context is not None and context.shape != want:
            raise ValueError(f"context must have shape {want}, got {tuple(context.shape)}")
        if encoded is None and self.context_encoder is not None:
            if context is None:
                raise ValueError("DiffusionUNet needs the context (or encoded=encode_context(context))")
            encoded = self.encode_context(context)
        if encoded is not None and encoded.shape != want:
            raise ValueError(f"encoded context is for shape {encoded.shape}, the input needs {want}")
        j = torch.as_tensor(j, device=r_noisy.device)
        j = j.expand(B) if j.ndim == 0 else j
        if j.shape != (B,):
            raise ValueError(f"j must have shape ({B},), got {tuple(j.shape)}")
        emb = self.step_embed(j).to(r_noisy.dtype)

        x, pad = _pad_to_multiple(torch.cat([r_noisy, mean, lr_up], dim=1), self.preset.factor)
        h = self.stem(x)
        skips = []
        for k, (blocks, na, down) in enumerate(zip(self.enc_blocks, self.enc_spatial, self.downs)):
            for block in blocks:
                h = block(h, emb)
            h = na(h)
            if str(k) in self.enc_cross:
                h = self.enc_cross[str(k)](h, kv=encoded.stages[str(k)])
            skips.append(h)
            h = down(h)
        h = self.mid1(h, emb)
        h = self.mid_spatial(h)
        if self.mid_cross is not None:
            h = self.mid_cross(h, kv=encoded.mid)
        h = self.mid2(h, emb)
        return _crop(self.decoder(h, skips, emb), pad)
