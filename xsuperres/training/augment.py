"""Dihedral augmentation: the 8 rotations and reflections of a square training sample.

Precipitation has no preferred orientation at the scales of a tile, so a sample rotated
by a multiple of 90 degrees or mirrored is as real as the original: with ``augment=True``
(:class:`~xsuperres.training.options.TrainOptions`) every training sample of every epoch
is transformed by one of the 8 elements of the dihedral group, drawn from the run's own
seeded generator (a resumed run draws what an uninterrupted one would). Validation
samples are never transformed.

The whole sample turns together: the LR context ``(L, h, w)``, the HR target
``(T, H, W)``, the topography ``(1, H, W)`` and, in the diffusion stage, the frozen mean
``D``. The perfect-model coarsening commutes with these transforms on square tiles
(``coarsen(g(target)) = g(coarsen(target))``), so a transformed sample is still a
consistent (context, target) pair; ``D`` is the mean network's output on the original
sample, turned with it (the conditioning of a rotated real sample, not the network's
output on the rotated context).
"""

from __future__ import annotations

import torch

__all__ = ["DIHEDRAL_KEYS", "dihedral", "dihedral_batch"]

#: the keys of a training batch that are fields over the tile (the last two axes)
DIHEDRAL_KEYS = ("context", "target", "topography", "mean")


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0-7) of the dihedral group on the last two axes of ``x``.

    ``k % 4`` quarter turns (``torch.rot90``, counter-clockwise from axis -2 to -1), then a
    left-right mirror when ``k >= 4``; ``k = 0`` is the identity. Needs square fields when
    ``k`` is odd.
    """
    if not 0 <= int(k) < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    y = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def dihedral_batch(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A copy of ``batch`` with each sample turned by its own random dihedral element.

    Parameters
    ----------
    batch
        A collated training batch: tensors ``(B, ..., n, n)`` under :data:`DIHEDRAL_KEYS`
        (those present), other entries copied unchanged.
    generator
        The CPU generator the elements are drawn from (one draw of ``B`` integers).

    Returns
    -------
    dict
        The new batch (the input tensors are not modified).
    """
    n = next(iter(batch.values())).shape[0]
    ks = torch.randint(0, 8, (n,), generator=generator)
    out = dict(batch)
    for key in DIHEDRAL_KEYS:
        if key not in batch:
            continue
        x = batch[key]
        y = torch.empty_like(x)
        for k in range(8):
            idx = (ks == k).nonzero().flatten()
            if idx.numel():
                y[idx] = dihedral(x[idx], k)
        out[key] = y
    return out
