"""Tiles of the high-resolution domain and their cross-validation folds.

The preprint cuts its 400 x 400 km domain into a 4 x 4 grid of 100 x 100 km tiles and
uses 4-fold cross-validation in which every fold holds exactly one tile per row and per
column (a Latin square), so that validation tiles are spread over the whole domain and
never overlap training tiles (docs/training.md). This module generalises that layout.

Tile size rule (:func:`choose_tile_size`)
-----------------------------------------
1. The requested size is rounded down to a multiple of ``S`` (an HR tile must be made of
   whole LR pixels); a size below ``S`` is an error.
2. If the HR grid holds at least 2 such tiles along each axis, that size is used.
3. Otherwise (a small domain) the tile side becomes the largest multiple of ``S`` that
   still gives at least 2 tiles along each axis: ``S * floor(min(ny, nx) / (2 S))``.
4. A grid smaller than ``2 S`` pixels along an axis cannot hold a 2 x 2 grid of tiles of at
   least ``S`` pixels (the smallest layout that keeps training and validation tiles
   apart): :class:`ValueError`.

The tiles are laid out from the top-left corner (index 0 of y and x); the rest of the
domain (fewer than one tile at the bottom and right) is cropped.

Fold rule (:func:`latin_square_folds`)
--------------------------------------
Tile ``(i, j)`` (row ``i``, column ``j``) belongs to fold ``(j - i) mod n_folds``: the
cyclic Latin square. On an ``n_folds x n_folds`` grid every fold holds exactly one tile
per row and per column (the preprint's layout for ``n_folds = 4``). On any other grid the
folds are the wrapped diagonals of the same pattern: along every row (column) the
folds repeat with period ``n_folds``, so every fold holds ``floor`` or ``ceil`` of
``n_cols / n_folds`` tiles of each row (``n_rows / n_folds`` of each column) and the
validation tiles stay spread over the whole domain. Folds are disjoint and cover the grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import positive_int

__all__ = ["Tile", "tile_grid", "choose_tile_size", "latin_square_folds"]


class Tile(NamedTuple):
    """One HR tile of the grid.

    Attributes
    ----------
    row, col
        Position in the tile grid (row 0 is at y index 0).
    yslice, xslice
        HR pixel index ranges of the tile (``stop - start == tile_size``).
    """

    row: int
    col: int
    yslice: slice
    xslice: slice


def choose_tile_size(ny: int, nx: int, S: int, tile_size: int = 100) -> int:
    """Tile side (HR pixels) for an ``ny x nx`` HR grid, following the module's rule.

    Parameters
    ----------
    ny, nx
        HR grid size (pixels).
    S
        Spatial factor; the tile side is a multiple of ``S``.
    tile_size
        Requested tile side (HR pixels), 100 in the preprint.

    Returns
    -------
    int
        Tile side ``>= S``, a multiple of ``S``, such that at least 2 tiles fit along
        each axis.

    Raises
    ------
    ValueError
        If ``tile_size < S`` or the grid is smaller than ``2 S`` pixels along an axis.
    """
    S, tile_size = positive_int(S, "S"), positive_int(tile_size, "tile_size")
    ny, nx = int(ny), int(nx)
    if tile_size < S:
        raise ValueError(
            f"tile_size={tile_size} is smaller than S={S}: a tile must hold at least one "
            "LR pixel (S x S HR pixels)"
        )
    size = (tile_size // S) * S
    if ny // size >= 2 and nx // size >= 2:
        return size
    small = S * (min(ny, nx) // (2 * S))
    if small < S:
        raise ValueError(
            f"the HR grid of {ny} x {nx} pixels is too small to train on with S={S}: the "
            f"tiling needs at least a 2 x 2 grid of tiles of at least S x S = {S} x {S} "
            f"pixels (so that training and validation tiles are disjoint), i.e. at least "
            f"{2 * S} x {2 * S} pixels"
        )
    return small


def tile_grid(ny: int, nx: int, tile_size: int) -> list[Tile]:
    """Cut an ``ny x nx`` grid into a grid of square tiles, cropping the rest.

    Parameters
    ----------
    ny, nx
        HR grid size (pixels).
    tile_size
        Tile side (pixels).

    Returns
    -------
    list of Tile
        ``n_rows * n_cols`` tiles in row-major order, ``n_rows = ny // tile_size``,
        ``n_cols = nx // tile_size``; each tile is ``(row, col, yslice, xslice)``.

    Raises
    ------
    ValueError
        If ``tile_size < 1`` or not even one tile fits.
    """
    tile_size = positive_int(tile_size, "tile_size")
    n_rows, n_cols = int(ny) // tile_size, int(nx) // tile_size
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"a grid of {ny} x {nx} pixels holds no tile of {tile_size} x {tile_size}")
    return [
        Tile(i, j, slice(i * tile_size, (i + 1) * tile_size), slice(j * tile_size, (j + 1) * tile_size))
        for i in range(n_rows)
        for j in range(n_cols)
    ]


def latin_square_folds(n_rows: int, n_cols: int, n_folds: int) -> np.ndarray:
    """Fold of every tile of an ``n_rows x n_cols`` grid: ``(col - row) mod n_folds``.

    Parameters
    ----------
    n_rows, n_cols
        Size of the tile grid.
    n_folds
        Number of folds (4 in the preprint).

    Returns
    -------
    numpy.ndarray
        Integer array of shape ``(n_rows, n_cols)`` with values in ``0 .. n_folds - 1``.
        For ``n_rows == n_cols == n_folds`` each fold holds exactly one tile per row and
        per column (a Latin square).

    Raises
    ------
    ValueError
        If a size is not a positive integer.
    """
    n_rows, n_cols, n_folds = int(n_rows), int(n_cols), int(n_folds)
    if min(n_rows, n_cols, n_folds) < 1:
        raise ValueError(
            f"n_rows, n_cols and n_folds must be positive, got {n_rows}, {n_cols}, {n_folds}"
        )
    i = np.arange(n_rows)[:, None]
    j = np.arange(n_cols)[None, :]
    return ((j - i) % n_folds).astype(np.int64)
