"""Reproducible noise for the diffusion sampler: one home for both keyed schemes.

* :func:`item_noise` -- a standard-normal tensor from its own ``torch.Generator`` seeded
  by a hash of a list of integers (``(seed, sample key, member, draw)``): what
  :meth:`xsuperres.SRModel.predict` uses by default, so that a member never depends on the
  batch size, the device or the other samples of a call (:func:`sample_keys` builds the
  per-sample keys).
* :func:`position_noise` -- counter-based noise keyed by *global HR position* (a
  splitmix64 hash of the key and the pixel's indices, then Box-Muller): what
  :func:`xsuperres.downscale` passes to ``predict`` as ``noise_fn``, so that overlapping
  tiles and every dask chunking see the same noise at the same pixel.

numpy and torch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

__all__ = ["item_noise", "position_noise", "sample_keys", "seed_int"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def seed_int(entropy: Sequence[int]) -> int:
    """63-bit seed hashed from a sequence of non-negative integers (numpy SeedSequence)."""
    a, b = np.random.SeedSequence(list(entropy)).generate_state(2, dtype=np.uint32)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def item_noise(entropy: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Standard-normal float32 CPU tensor of ``shape`` from its own generator."""
    g = torch.Generator(device="cpu").manual_seed(seed_int(entropy))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def sample_keys(keys: Optional[ArrayLike], lead: tuple[int, ...], N: int) -> list[list[int]]:
    """Per-sample integer key lists for the noise (default: the flat sample index)."""
    if keys is None:
        return [[i] for i in range(N)]
    k = np.asarray(keys)
    if not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"noise_keys must be integers, got dtype {k.dtype}")
    if k.shape == lead:
        k = k.reshape(N, 1)
    elif k.ndim == len(lead) + 1 and k.shape[:-1] == lead:
        k = k.reshape(N, k.shape[-1])
    else:
        raise ValueError(
            f"noise_keys must have shape {lead} or {lead} + (K,), got {k.shape}"
        )
    if (k < 0).any():
        raise ValueError("noise_keys must be non-negative")
    return [list(map(int, row)) for row in k]


# ---------------------------------------------------------------------------------------
_M64 = (1 << 64) - 1


def _mix_int(z: int) -> int:
    """splitmix64 finaliser on a Python int (64-bit wrap-around)."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix_arr(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (numpy wraps silently)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _key(words) -> int:
    h = 0x9E3779B97F4A7C15
    for w in words:
        h = _mix_int(h ^ _mix_int(int(w) + 0x632BE59BD9B4E019))
    return h


def position_noise(key, T: int, y0: int, x0: int, H: int, W: int) -> np.ndarray:
    """Standard-normal float32 noise ``(T, H, W)`` keyed by global HR position.

    Parameters
    ----------
    key
        Sequence of non-negative integers (seed, member, LR time index, draw, ...).
    T
        HR steps of the block.
    y0, x0
        Global HR row and column of the first pixel.
    H, W
        Size of the patch in HR pixels.

    Returns
    -------
    numpy.ndarray
        ``z[k, i, j]`` depends only on ``(key, k, y0 + i, x0 + j)``: two overlapping
        patches get identical values where they overlap (counter-based: a
        splitmix64 hash of the key and position, then Box-Muller).
    """
    k0 = np.uint64(_key(key))
    kk = np.arange(T, dtype=np.uint64)[:, None, None]
    yy = (np.arange(H, dtype=np.uint64) + np.uint64(y0))[None, :, None]
    xx = (np.arange(W, dtype=np.uint64) + np.uint64(x0))[None, None, :]
    pos = (kk << np.uint64(42)) | (yy << np.uint64(21)) | xx
    h1 = _mix_arr(_mix_arr(pos ^ k0) + np.uint64(0x9E3779B97F4A7C15))
    h2 = _mix_arr(h1 ^ np.uint64(0xD1B54A32D192ED03))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
