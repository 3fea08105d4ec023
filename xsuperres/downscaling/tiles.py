"""Tile layout and blending: the global tile grid, its blending weights, the seam statistic.

The model runs on square HR tiles of ``tile_size`` pixels (``p = tile_size / S`` LR
pixels) laid out on a grid fixed to the domain origin, so the layout never depends on the
dask chunking (:func:`tile_layout`). Overlapping tiles are averaged with weights constant
over each LR pixel that ramp linearly across the overlap (:func:`blend_weights`).
:func:`seam_statistic` measures how visible the tile borders are in a result.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["default_overlap", "tile_layout", "blend_weights", "seam_statistic", "tiles_for"]


def default_overlap(p: int) -> int:
    """The tile overlap in LR pixels when ``overlap=None``: a quarter of the tile's ``p``
    LR pixels, at least 1."""
    return max(1, p // 4)


def tile_layout(n: int, p: int, overlap: int) -> list[int]:
    """Start indices of the global tile layout along one axis (LR pixels).

    Parameters
    ----------
    n
        Domain length in LR pixels.
    p
        Tile length in LR pixels (``tile_size / S``); shortened to ``n`` on small domains.
    overlap
        Overlap of neighbouring tiles in LR pixels (``0 <= overlap < p``).

    Returns
    -------
    list of int
        ``0, q, 2q, ...`` (``q = p - overlap``) while a tile fits, then one last tile
        ending at ``n``. Depends only on ``(n, p, overlap)``: never on the chunking.
    """
    p = min(p, n)
    if p >= n:
        return [0]
    q = max(1, p - overlap)
    starts = list(range(0, n - p + 1, q))
    if starts[-1] + p < n:
        starts.append(n - p)
    return starts


def blend_weights(p: int, overlap: int) -> np.ndarray:
    """Blending weight of each LR pixel of a tile along one axis.

    ``w[i] = min(1, (i + 1) / (o + 1), (p - i) / (o + 1))`` with ``o = overlap``: a linear
    cross-fade over the overlap (two neighbouring tiles' weights add up to 1 there) and
    strictly positive everywhere, so that tile edges at the domain border stay covered.
    The weights are applied per LR pixel (constant over its ``S x S`` HR pixels and ``T``
    steps), which keeps the per-block mass conservation of each tile.
    """
    i = np.arange(p, dtype=np.float64)
    o = max(0, int(overlap))
    return np.minimum(1.0, np.minimum((i + 1) / (o + 1), (p - i) / (o + 1)))


def seam_statistic(hr: np.ndarray, S: int, tile_size: int, overlap: Optional[int] = None) -> dict[str, float]:
    """Mean absolute HR gradient across tile borders vs across other LR-cell borders.

    Parameters
    ----------
    hr
        Downscaled field ``(..., H, W)`` (mm/h), NaN-free, on the full domain.
    S, tile_size, overlap
        As given to :func:`~xsuperres.downscale` (``overlap=None``: its default).

    Returns
    -------
    dict
        ``border`` (mean ``|dy|, |dx|`` over HR pixel pairs that straddle an edge of a tile
        inside the domain), ``interior`` (same over pairs straddling the other LR-cell
        edges: the fair reference, since a blockwise mass conservation makes LR-cell edges
        steeper than the inside of a cell) and ``ratio = border / interior``. ``ratio`` is
        NaN when the domain holds a single tile.
    """
    a = np.asarray(hr, dtype=np.float64)
    p = tile_size // S
    o = default_overlap(p) if overlap is None else int(overlap)
    border, interior = [], []
    for axis in (-2, -1):
        n_hr = a.shape[axis]
        n = n_hr // S
        pp = min(p, n)
        starts = tile_layout(n, pp, min(o, max(0, pp - 1)))
        edges = {s for s in starts if s > 0} | {s + pp for s in starts if s + pp < n}
        g = np.abs(np.diff(a, axis=axis))
        g = np.moveaxis(g, axis, -1)
        for e in range(1, n):
            col = g[..., e * S - 1]
            (border if e in edges else interior).append(col.ravel())
    b = float(np.mean(np.concatenate(border))) if border else float("nan")
    i = float(np.mean(np.concatenate(interior))) if interior else float("nan")
    return {"border": b, "interior": i, "ratio": b / i if border and interior else float("nan")}


def tiles_for(lo: int, hi: int, starts: list[int], p: int) -> list[int]:
    """Tiles (starts) of the global layout that overlap ``[lo, hi)``."""
    return [s for s in starts if s < hi and s + p > lo]
