"""Training samples: which (event, tile, block) triples exist, and the torch Dataset.

A sample is identified by an event, an HR tile and a *target block* ``t`` (LR time index;
HR frames ``t T .. t T + T - 1``):

* ``context``: the ``L`` LR frames ``x[t - L + 1], ..., x[t]`` (oldest first) of the tile,
  ``(L, h, w)`` with ``h = H / S``, ``w = W / S``: no information from blocks after ``t``
  (with ``lookahead = K > 0``: the ``L + K`` frames up to ``x[t + K]``, in the networks'
  order of :func:`xsuperres.model.inputs.network_order`, ``x[t]`` last);
* ``target``: the ``T`` HR frames of block ``t``, ``(T, H, W)``;
* ``topography``: the tile's topography on the HR grid, ``(1, H, W)``.

The first ``L - 1`` blocks (and the last ``K``) of an event have no full context and give
no sample. A sample
whose target or context contains NaN (e.g. outside radar coverage) is skipped and counted.
The LR frames are the perfect-model coarsening of the HR data
(:func:`xsuperres.coarsen_perfect`); since tiles are made of whole LR pixels, coarsening
the whole domain and cutting tiles gives the same values as coarsening each tile.

Upsampling of the context to the HR grid (``BI``) is not done here but on the fly in the
training step (:func:`xsuperres.nn.interp.upsample`), so a sample stays small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..coarsen import block_mean
from ..model.inputs import network_order
from .tiles import Tile

__all__ = ["RECORD_DTYPE", "block_has_nan", "coarsen_numpy", "make_samples", "SampleDataset",
           "GivenMeanDataset"]

#: Fields of a sample record: event index, tile index (into the event's tile list),
#: target block (LR time index).
RECORD_DTYPE = np.dtype([("event", np.int32), ("tile", np.int32), ("block", np.int64)])


def coarsen_numpy(hr: np.ndarray, S: int, T: int) -> np.ndarray:
    """Perfect-model coarsening of a numpy array ``(time, y, x)`` (remainders dropped).

    Parameters
    ----------
    hr
        HR field ``(time, y, x)``; NaN propagates to the whole block.
    S, T
        Spatial and temporal factors.

    Returns
    -------
    numpy.ndarray
        ``(time // T, y // S, x // S)``, dtype of ``hr`` (float).
    """
    a = np.asarray(hr)
    nt, ny, nx = a.shape
    a = a[: nt - nt % T, : ny - ny % S, : nx - nx % S]
    return np.asarray(block_mean(a, {0: T, 1: S, 2: S}))


def block_has_nan(hr: np.ndarray, tile: Tile, T: int) -> np.ndarray:
    """Whether each whole block of ``T`` HR frames of a tile contains NaN.

    Because tiles are made of whole LR pixels and the coarsening propagates NaN, this is
    also whether the tile's LR frame of that block is NaN somewhere.

    Parameters
    ----------
    hr
        HR field ``(time, y, x)``.
    tile
        The tile.
    T
        Temporal factor.

    Returns
    -------
    numpy.ndarray
        Boolean ``(time // T,)``.
    """
    nb = hr.shape[0] // T
    tgt = hr[: nb * T, tile.yslice, tile.xslice]
    return np.isnan(tgt.reshape(nb, -1)).any(axis=1)


def make_samples(
    hr: np.ndarray,
    S: int,
    T: int,
    L: int,
    tiles: Sequence[Tile],
    *,
    event: int = 0,
    tile_ids: Sequence[int] | None = None,
    target_blocks: np.ndarray | None = None,
    context_blocks: np.ndarray | None = None,
    lookahead: int = 0,
) -> tuple[np.ndarray, int]:
    """Index records of all valid samples of one event.

    Parameters
    ----------
    hr
        HR precipitation ``(time, y, x)`` (any units; only NaN matters here). Frames after
        the last whole block of ``T`` are ignored.
    S, T, L
        Spatial factor, temporal factor and context length (LR blocks).
    tiles
        The event's tiles (:func:`~xsuperres.training.tiles.tile_grid`); their bounds must
        be multiples of ``S``.
    event
        Event index written into the records.
    tile_ids
        Indices (into ``tiles``) of the tiles to sample; default all.
    target_blocks
        Optional boolean mask ``(n_blocks,)``: blocks allowed as target.
    context_blocks
        Optional boolean mask ``(n_blocks,)``: blocks allowed anywhere in the context
        (including the target block itself). Used to keep a sample's whole time window
        out of a held-out period.
    lookahead
        LR blocks after the target that the context also holds (``K >= 0``).

    Returns
    -------
    records : numpy.ndarray
        Structured array with dtype :data:`RECORD_DTYPE`, ordered by tile then block.
    n_nan : int
        Number of otherwise eligible samples skipped because their target or context
        contains NaN.
    """
    S, T, L, K = int(S), int(T), int(L), int(lookahead)
    if L < 1 or K < 0:
        raise ValueError(f"L must be >= 1 and lookahead >= 0, got L={L}, lookahead={K}")
    W = L + K  # window t-L+1 .. t+K
    nb = hr.shape[0] // T
    ok_target = np.ones(nb, bool) if target_blocks is None else np.asarray(target_blocks, bool)[:nb]
    ok_context = np.ones(nb, bool) if context_blocks is None else np.asarray(context_blocks, bool)[:nb]
    if ok_target.shape != (nb,) or ok_context.shape != (nb,):
        raise ValueError(f"target_blocks and context_blocks must have {nb} entries")
    blocks = np.arange(nb)
    # window t-L+1 .. t+K entirely inside the event and allowed
    window_ok = np.zeros(nb, bool)
    if nb >= W:
        csum = np.concatenate([[0], np.cumsum(ok_context.astype(np.int64))])
        full = csum[W:] - csum[:-W] == W  # windows starting at 0 .. nb-W
        window_ok[L - 1:nb - K] = full
    eligible = ok_target & window_ok
    records = []
    n_nan = 0
    ids = range(len(tiles)) if tile_ids is None else tile_ids
    for k in ids:
        tile = tiles[k]
        if tile.yslice.start % S or tile.yslice.stop % S or tile.xslice.start % S or tile.xslice.stop % S:
            raise ValueError(f"tile {tile} is not aligned with LR pixels of S={S}")
        tgt_nan = block_has_nan(hr, tile, T)  # = LR frame of the block has NaN
        ctx_nan = np.zeros(nb, bool)
        if nb >= W:
            csum = np.concatenate([[0], np.cumsum(tgt_nan.astype(np.int64))])
            ctx_nan[L - 1:nb - K] = (csum[W:] - csum[:-W]) > 0
        bad = tgt_nan | ctx_nan
        n_nan += int((eligible & bad).sum())
        keep = blocks[eligible & ~bad]
        rec = np.empty(keep.size, RECORD_DTYPE)
        rec["event"], rec["tile"], rec["block"] = event, k, keep
        records.append(rec)
    out = np.concatenate(records) if records else np.empty(0, RECORD_DTYPE)
    return out, n_nan


class SampleDataset(torch.utils.data.Dataset):
    """Normalized training samples as float32 tensors.

    Parameters
    ----------
    hr
        Per event, normalized HR precipitation ``(time, y, x)`` (unitless, ``[0, 1]``).
    lr
        Per event, normalized LR precipitation ``(time // T, y // S, x // S)``.
    topography
        Per event, normalized topography ``(y, x)`` in ``[0, 1]`` (zeros without
        topography).
    tiles
        Per event, its tile list.
    records
        Sample records (:data:`RECORD_DTYPE`).
    S, T, L
        Spatial factor, temporal factor and context length.
    lookahead
        LR blocks after the target in the context (``config.lookahead``).

    Notes
    -----
    ``dataset[i]`` is a dict of tensors: ``context`` ``(L + lookahead, h, w)`` (in
    :func:`~xsuperres.model.inputs.network_order`, the target block's frame last), ``target``
    ``(T, H, W)``, ``topography`` ``(1, H, W)``. Arrays are shared, not copied.
    """

    def __init__(
        self,
        hr: Sequence[np.ndarray],
        lr: Sequence[np.ndarray],
        topography: Sequence[np.ndarray],
        tiles: Sequence[Sequence[Tile]],
        records: np.ndarray,
        S: int,
        T: int,
        L: int,
        lookahead: int = 0,
    ) -> None:
        self.hr, self.lr, self.topography, self.tiles = list(hr), list(lr), list(topography), list(tiles)
        self.records = np.asarray(records, RECORD_DTYPE)
        self.S, self.T, self.L, self.lookahead = int(S), int(T), int(L), int(lookahead)

    def __len__(self) -> int:
        return int(self.records.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, k, t = (int(v) for v in self.records[i])
        tile = self.tiles[e][k]
        S, T, L = self.S, self.T, self.L
        ys = slice(tile.yslice.start // S, tile.yslice.stop // S)
        xs = slice(tile.xslice.start // S, tile.xslice.stop // S)
        context = network_order(self.lr[e][t - L + 1: t + 1 + self.lookahead, ys, xs], L, axis=0)
        target = self.hr[e][t * T: (t + 1) * T, tile.yslice, tile.xslice]
        topo = self.topography[e][tile.yslice, tile.xslice][None]
        return {
            "context": torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "topography": torch.from_numpy(np.ascontiguousarray(topo, dtype=np.float32)),
        }


class GivenMeanDataset(torch.utils.data.Dataset):
    """A :class:`SampleDataset` whose items also carry a given conditional mean.

    Parameters
    ----------
    ds
        The samples.
    means
        Per event, the mean on the HR grid ``(time, y, x)`` in normalized units (e.g.
        :func:`~xsuperres.training.data.time_means`).

    Notes
    -----
    ``dataset[i]`` is ``ds[i]`` plus ``mean`` ``(T, H, W)``: the sample's target block of the
    mean, cut like the target.
    """

    def __init__(self, ds: SampleDataset, means: Sequence[np.ndarray]) -> None:
        if len(means) != len(ds.hr) or any(m.shape != h.shape for m, h in zip(means, ds.hr)):
            raise ValueError("means must hold one array per event, shaped like the event's HR data")
        self.ds, self.means = ds, list(means)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.ds[i]
        e, k, t = (int(v) for v in self.ds.records[i])
        tile, T = self.ds.tiles[e][k], self.ds.T
        mean = self.means[e][t * T: (t + 1) * T, tile.yslice, tile.xslice]
        item["mean"] = torch.from_numpy(np.ascontiguousarray(mean, dtype=np.float32))
        return item
