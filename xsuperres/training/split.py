"""Training/validation split: tiles, Latin-square folds and an optional held-out period.

Spatial split (always)
    Every event is cut into the same-size tile grid (:mod:`xsuperres.training.tiles`);
    the tiles of fold ``fold`` are validation tiles, the others training tiles. Training
    and validation tiles are disjoint, so no validation pixel is ever a training pixel.

Time split (optional, ``valid=slice(t0, t1)``)
    On top of the spatial split, a period (inclusive HR time labels, as in
    ``DataArray.sel(time=slice(t0, t1))``) is held out:

    * validation samples are those of the validation tiles whose *target* block lies
      entirely in the period (their context may start before it);
    * training samples (training tiles) exclude the period entirely: neither their
      target block nor any block of their context has an HR frame in the period (so no
      context crosses into it).

Event split (optional, ``valid_events=(...)``): leave events out
    Instead of the tile folds, whole events are held out: every tile of the named events
    validates, every tile of the other events trains (the fold settings are then not
    used). This is the event-level hold-out that tells how a model does on a day it never
    saw (leave-one-event-out: one event per run). It cannot be combined with ``valid``.

Blocks are whole groups of ``T`` HR frames from the start of each event; trailing frames
that do not fill a block are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .inputs import PreparedData
from .samples import make_samples
from .tiles import Tile, choose_tile_size, latin_square_folds, tile_grid

__all__ = ["Split", "split_samples", "period_mask", "held_out_events"]

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Where the samples come from.

    Attributes
    ----------
    tile_size
        Tile side used (HR pixels).
    tiles
        Per event, the list of tiles.
    folds
        Per event, the fold of each tile ``(n_rows, n_cols)``.
    train_tiles, valid_tiles
        Per event, indices (into ``tiles``) of training and validation tiles.
    train_blocks
        Per event, boolean ``(n_blocks,)``: blocks usable by training samples (all
        ``True`` without a time split).
    valid_blocks
        Per event, boolean ``(n_blocks,)``: blocks allowed as validation targets.
    train_records, valid_records
        Sample records (:data:`~xsuperres.training.samples.RECORD_DTYPE`).
    n_nan_train, n_nan_valid
        Samples skipped because of NaN.
    valid_period
        The held-out period ``(t0, t1)`` as strings, or None.
    valid_events
        Names of the held-out events (event split), or None (tile folds).
    """

    tile_size: int
    tiles: list[list[Tile]]
    folds: list[np.ndarray]
    train_tiles: list[list[int]]
    valid_tiles: list[list[int]]
    train_blocks: list[np.ndarray]
    valid_blocks: list[np.ndarray]
    train_records: np.ndarray
    valid_records: np.ndarray
    n_nan_train: int
    n_nan_valid: int
    valid_period: tuple[str | None, str | None] | None = None
    valid_events: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for the model's metadata."""
        return {
            "tile_size": self.tile_size,
            "events": [
                {
                    "tile_grid": list(f.shape),
                    "folds": f.tolist(),
                    "train_tiles": [[tiles[k].row, tiles[k].col] for k in tr],
                    "valid_tiles": [[tiles[k].row, tiles[k].col] for k in va],
                }
                for tiles, f, tr, va in zip(self.tiles, self.folds, self.train_tiles, self.valid_tiles)
            ],
            "n_train": int(self.train_records.size),
            "n_valid": int(self.valid_records.size),
            "n_nan_skipped": {"train": self.n_nan_train, "valid": self.n_nan_valid},
            "valid_period": None if self.valid_period is None else list(self.valid_period),
            "valid_events": None if self.valid_events is None else list(self.valid_events),
        }


def held_out_events(data: PreparedData, valid_events: Sequence[int | str] | None) -> set[int] | None:
    """Indices of the events named by ``valid_events`` (indices or event names).

    Parameters
    ----------
    data
        The prepared events (their ``name``: the DataArray's name, or ``event<i>``).
    valid_events
        Event indices (``0 .. n - 1``) or names; ``None``: no event split.

    Returns
    -------
    set of int or None

    Raises
    ------
    ValueError
        An empty list, an unknown name or index (the message lists the events), or all
        events held out (none would train).
    """
    if valid_events is None:
        return None
    if isinstance(valid_events, (str, int, np.integer)):
        valid_events = [valid_events]
    names = [e.name for e in data.events]
    held: set[int] = set()
    for v in valid_events:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(names):
                raise ValueError(f"valid_events: event index {v} is not in 0 .. {len(names) - 1} "
                                 f"(events: {names})")
            held.add(int(v))
        elif isinstance(v, str) and v in names:
            held.add(names.index(v))
        else:
            raise ValueError(f"valid_events: no event {v!r}; the events are {names} (by name or "
                             "0-based index)")
    if not held:
        raise ValueError("valid_events is empty: name at least one event to hold out, or pass None")
    if len(held) == len(names):
        raise ValueError(f"valid_events holds out every event ({names}): at least one must train")
    return held


def _as_time(value: Any) -> np.datetime64 | None:
    if value is None:
        return None
    return np.datetime64(pd.Timestamp(value).to_datetime64(), "ns")


def period_mask(times: np.ndarray | None, period: slice | None) -> np.ndarray | None:
    """Whether each HR time label lies in ``period`` (inclusive bounds, ``None`` = open).

    Parameters
    ----------
    times
        HR time labels (``datetime64``) or ``None``.
    period
        ``slice(t0, t1)`` of anything :class:`pandas.Timestamp` understands, or ``None``.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask ``(time,)``, or ``None`` if ``period`` is ``None``.

    Raises
    ------
    ValueError
        If a period is given but the data have no datetime time labels, or the slice
        has a step.
    """
    if period is None:
        return None
    if not isinstance(period, slice) or period.step is not None:
        raise ValueError(f"valid must be a slice(start, stop) of times or None, got {period!r}")
    if times is None:
        raise ValueError("valid=slice(...) needs a datetime time coordinate on the data")
    t0, t1 = _as_time(period.start), _as_time(period.stop)
    t = np.asarray(times).astype("datetime64[ns]")
    mask = np.ones(t.shape, bool)
    if t0 is not None:
        mask &= t >= t0
    if t1 is not None:
        mask &= t <= t1
    return mask


def split_samples(
    data: PreparedData,
    S: int,
    T: int,
    L: int,
    *,
    tile_size: int = 100,
    fold: int = 0,
    n_folds: int = 4,
    valid: slice | None = None,
    first_block: int | None = None,
    valid_events: Sequence[int | str] | None = None,
    lookahead: int = 0,
) -> Split:
    """Tile every event, assign folds and build the training and validation records.

    Parameters
    ----------
    data
        Prepared events (:func:`~xsuperres.training.inputs.prepare_events`).
    S, T, L
        Spatial factor, temporal factor, context length.
    tile_size
        Requested tile side (HR pixels); see
        :func:`~xsuperres.training.tiles.choose_tile_size` (computed on the smallest
        event so that all tiles have one size).
    fold
        Validation fold, ``0 .. n_folds - 1``.
    n_folds
        Number of folds.
    valid
        Optional held-out period ``slice(t0, t1)`` (see the module notes).
    first_block
        If given, no target block before this LR index is used (in every event). Lets
        runs with different ``L`` share one sample set (``first_block = max(L) - 1``).
    valid_events
        Events held out whole for validation, by index or name
        (:func:`held_out_events`); ``fold`` and ``n_folds`` are then not used.
    lookahead
        LR blocks after the target in every context (``config.lookahead``).

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        Bad fold, a grid too small to tile, an empty training or validation set, unknown
        or all events in ``valid_events``, ``valid_events`` with ``valid``.
    """
    held = held_out_events(data, valid_events)
    if held is not None and valid is not None:
        raise ValueError("valid_events (events held out whole) and valid (a held-out period) "
                         "cannot be combined: pass one of them")
    n_folds = int(n_folds)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2 (one fold validates, the others train), got {n_folds}")
    if not 0 <= int(fold) < n_folds:
        raise ValueError(f"fold must lie in 0 .. {n_folds - 1}, got {fold}")
    ny = min(e.hr.shape[1] for e in data.events)
    nx = min(e.hr.shape[2] for e in data.events)
    size = choose_tile_size(ny, nx, S, tile_size)
    if size != tile_size:
        log.info("tile size %d -> %d HR pixels (domain %d x %d, S=%d)", tile_size, size, ny, nx, S)

    tiles_all, folds_all, tr_all, va_all, tb_all, vb_all = [], [], [], [], [], []
    train_recs, valid_recs = [], []
    n_nan_tr = n_nan_va = 0
    for e, ev in enumerate(data.events):
        tiles = tile_grid(ev.hr.shape[1], ev.hr.shape[2], size)
        n_rows, n_cols = tiles[-1].row + 1, tiles[-1].col + 1
        folds = latin_square_folds(n_rows, n_cols, n_folds)
        if held is None:
            va = [k for k, t in enumerate(tiles) if folds[t.row, t.col] == fold]
            tr = [k for k, t in enumerate(tiles) if folds[t.row, t.col] != fold]
        else:  # the event is held out whole, or trains whole
            va = list(range(len(tiles))) if e in held else []
            tr = [] if e in held else list(range(len(tiles)))
        nb = ev.hr.shape[0] // T
        if nb * T != ev.hr.shape[0]:
            log.info("%s: the last %d HR frame(s) do not fill a block of T=%d and are dropped",
                     ev.name, ev.hr.shape[0] - nb * T, T)
        in_period = period_mask(ev.times, valid)
        if in_period is None:
            train_blocks = np.ones(nb, bool)
            valid_blocks = np.ones(nb, bool)
        else:
            blocks = in_period[: nb * T].reshape(nb, T)
            train_blocks = ~blocks.any(axis=1)
            valid_blocks = blocks.all(axis=1)
        if first_block is not None:
            early = np.arange(nb) < int(first_block)
            target_tr = train_blocks & ~early
            valid_blocks = valid_blocks & ~early
        else:
            target_tr = train_blocks
        rec, n = make_samples(ev.hr, S, T, L, tiles, event=e, tile_ids=tr,
                              target_blocks=target_tr, context_blocks=train_blocks,
                              lookahead=lookahead)
        train_recs.append(rec)
        n_nan_tr += n
        rec, n = make_samples(ev.hr, S, T, L, tiles, event=e, tile_ids=va, target_blocks=valid_blocks,
                              lookahead=lookahead)
        valid_recs.append(rec)
        n_nan_va += n
        tiles_all.append(tiles)
        folds_all.append(folds)
        tr_all.append(tr)
        va_all.append(va)
        tb_all.append(train_blocks)
        vb_all.append(valid_blocks)

    split = Split(
        size, tiles_all, folds_all, tr_all, va_all, tb_all, vb_all,
        np.concatenate(train_recs), np.concatenate(valid_recs), n_nan_tr, n_nan_va,
        None if valid is None else (None if valid.start is None else str(valid.start),
                                    None if valid.stop is None else str(valid.stop)),
        None if held is None else tuple(data.events[e].name for e in sorted(held)),
    )
    if n_nan_tr or n_nan_va:
        log.info("skipped %d training and %d validation samples whose target or context "
                 "contains NaN", n_nan_tr, n_nan_va)
    if not split.train_records.size:
        raise ValueError(
            f"no training samples (S={S}, T={T}, L={L}, tile size {size}, "
            f"{'held-out events ' + repr(split.valid_events) if held is not None else f'fold {fold}/{n_folds}'}"
            f"{', valid=' + repr(valid) if valid is not None else ''}; {n_nan_tr} skipped for "
            "NaN): provide more time steps or a smaller L, or check the NaN coverage"
        )
    if not split.valid_records.size:
        raise ValueError(
            f"no validation samples ("
            f"{'events ' + repr(split.valid_events) if held is not None else f'fold {fold}/{n_folds}'}"
            f"{', valid=' + repr(valid) if valid is not None else ''}; {n_nan_va} skipped "
            "for NaN): choose another fold or period"
        )
    return split
