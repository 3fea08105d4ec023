"""The dask graph of one variable and the computation of one output chunk.

* :func:`time_halo` stacks the LR input into the context array
  ``ctx[t, l] = x[t - L + 1 + l]`` (``L`` shifted lazy slices chunked like the output), so
  every output chunk sees the ``L - 1`` preceding LR steps whatever the chunking.
* :func:`ensemble_graph` gives every output chunk the tiles of the global layout
  (:mod:`~xsuperres.downscaling.tiles`) that overlap it, its LR spatial halo and a
  :class:`ChunkPlan`, as one ``dask.array.blockwise`` layer per spatial chunk (task names
  ``xsuperres-downscale-<token>``).
* :func:`_downscale_block` (the task) runs the tiles of one chunk through the model of
  the worker process (:func:`~xsuperres.downscaling.workers.get_model`) in batches of
  samples (:func:`~xsuperres.downscaling.batching.samples_per_call`), with noise keyed by
  global position (:func:`xsuperres.noise.position_noise`), blends them and crops to the
  chunk, with torch's threads set by :func:`~xsuperres.downscaling.threads.task_threads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import dask.array as dsa
import numpy as np
from dask.base import tokenize

from ..checks import TOPOGRAPHY_FIX, finite_array
from ..noise import position_noise
from ..temporal import block_in_time
from .batching import samples_per_call
from .options import MEMBERS_PER_CHUNK
from .allocator import tune_allocator
from .threads import dask_threads, task_threads
from .tiles import blend_weights, tile_layout, tiles_for
from .workers import ModelHandle, get_model

__all__ = ["RunSettings", "ChunkPlan", "time_halo", "ensemble_graph"]


@dataclass(frozen=True)
class RunSettings:
    """What every output chunk of one variable shares: model, sampler, noise key.

    Plain values only: part of every :class:`ChunkPlan`, so tokenized into the task names
    (deterministically: dask tokenizes a dataclass field by field) and pickled to the
    workers.

    Attributes
    ----------
    handle, device
        Where and on what the workers load the model (:func:`get_model`).
    S, T
        The model's spatial and temporal factors.
    seed, key
        The noise seed and the variable's noise key (the index along the extra
        dimensions of the input, 0 without).
    sampler, steps, eta
        As given to :func:`xsuperres.downscale`.
    batch_size
        ``(sample, member)`` items per network call as given to
        :func:`xsuperres.downscale` (rounded down to whole samples, at least one), or None
        (automatic): :func:`~xsuperres.downscaling.batching.samples_per_call`.
    check_negative
        Refuse negative input values in the task (dask input: they were not checked on
        the call).
    mean_only
        The deterministic stage only (:func:`xsuperres.downscale_mean`): one "member",
        the conditional mean ``D`` of every tile (sampler, steps, eta and seed unused).
    mass_conservation
        The resolved output mode (``"tile"``, ``"block"`` or None) passed to
        :meth:`SRModel.predict` / :meth:`SRModel.predict_mean`.
    """

    handle: ModelHandle
    device: str
    S: int
    T: int
    seed: int
    key: int
    sampler: str
    steps: Optional[int]
    eta: float
    batch_size: Optional[int]
    check_negative: bool
    mean_only: bool = False
    mass_conservation: Optional[str] = "tile"


@dataclass(frozen=True)
class ChunkPlan:
    """One output chunk's ranges, tiles and blending weights (LR pixels, global indices).

    Attributes
    ----------
    run
        The variable's :class:`RunSettings`.
    yrange, xrange
        The chunk's LR rows ``[a, b)`` and columns ``[c, d)``.
    origin
        ``(ra, rc)``: the global LR row and column of the first pixel of the chunk's
        spatial halo (the union of its tiles).
    ty, tx
        Starts of the tiles of the global layout that overlap the chunk, along y and x.
    py, px
        Tile sides along y and x (the tile size, shortened on small domains).
    wy, wx
        Blending weights of the LR pixels of a tile along y and x (:func:`blend_weights`),
        as tuples of floats (exact float64 values) so that the plan is hashable and
        tokenizes by value.
    """

    run: RunSettings
    yrange: tuple[int, int]
    xrange: tuple[int, int]
    origin: tuple[int, int]
    ty: tuple[int, ...]
    tx: tuple[int, ...]
    py: int
    px: int
    wy: tuple[float, ...]
    wx: tuple[float, ...]


# ---------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------
def time_halo(X: dsa.Array, L: int, context: str,
              lookahead: int = 0) -> tuple[dsa.Array, dsa.Array, int]:
    """The context array of the LR input and the global LR step of each output block.

    Parameters
    ----------
    X
        LR input ``(n, ny, nx)`` float32 mm/h, dask.
    L
        Context length of the model (frames up to and including the block).
    context
        ``"pad"``: the first ``L - 1`` blocks see the first frame repeated (and the last
        ``lookahead`` blocks the last frame); ``"drop"``: they are left out.
    lookahead
        LR steps after the block in the context (``config.lookahead``).

    Returns
    -------
    ctx
        ``(n_out, L + lookahead, ny, nx)`` with ``ctx[t, l] = x[t0 + t - L + 1 + l]``
        (chronological), chunked in time like the output (``X``'s chunks, less the dropped
        steps), one chunk along the context axis.
    tidx
        ``(n_out,)`` int64: the global LR step of each output block, chunked like ``ctx``.
    t0
        The first output block's LR step (``0`` for ``"pad"``, ``L - 1`` for ``"drop"``).
    """
    K = int(lookahead)
    n = X.shape[0]
    if context == "pad":
        Xp = dsa.concatenate([X[:1]] * (L - 1) + [X] + [X[-1:]] * K, axis=0) if L + K > 1 else X
        n_out, t0 = n, 0
        tchunks = X.chunks[0]
    else:
        Xp = X
        n_out, t0 = n - L + 1 - K, L - 1
        tchunks = X[L - 1:n - K].chunks[0]
    ctx = dsa.stack([Xp[l:l + n_out].rechunk({0: tchunks}) for l in range(L + K)], axis=1)
    tidx = dsa.arange(t0, t0 + n_out, chunks=(tchunks,), dtype=np.int64)
    return ctx, tidx, t0


def mean_in_time(ctx: dsa.Array, L: int, T: int, method: str) -> dsa.Array:
    """The conditional mean of ``downscale(..., mean=method)`` for every output block.

    Parameters
    ----------
    ctx
        From :func:`time_halo` with at least one LR step after the block:
        ``(n_out, L + K, ny, nx)``, ``K >= 1``, chronological.
    L
        The model's context length (frame ``L - 1`` is the block's own).
    T
        HR steps per LR step.
    method
        A time method of :mod:`xsuperres.temporal` (``"motion"``, ``"linear"``,
        ``"persistence"``).

    Returns
    -------
    dask.array.Array
        ``(n_out, T, ny, nx)`` float32 mm/h (S = 1: the LR grid is the HR grid):
        :func:`~xsuperres.temporal.block_in_time` of ``x[t-1], x[t], x[t+1]`` (``x[t]``
        twice for ``L = 1``; NaN as 0), computed on the **whole domain** per LR step (one
        task per time chunk): the optical flow sees all of it, and no spatial chunking or
        tiling changes the field.
    """
    window = ctx[:, [max(L - 2, 0), L - 1, L]].rechunk({1: 3, 2: -1, 3: -1})
    return window.map_blocks(_block_means, T, method, dtype=np.float32,
                             chunks=(window.chunks[0], (T,), window.chunks[2], window.chunks[3]),
                             name="xsuperres-mean-" + tokenize(window, T, method))


def _block_means(window: np.ndarray, T: int, method: str) -> np.ndarray:
    """``(nt, 3, ny, nx)`` LR windows -> ``(nt, T, ny, nx)`` float32 (NaN as 0)."""
    w = np.nan_to_num(np.asarray(window, dtype=np.float64), nan=0.0)
    return block_in_time(w, T, method).astype(np.float32)


def ensemble_graph(ctx: dsa.Array, tidx: dsa.Array, ychunks: tuple[int, ...], xchunks: tuple[int, ...],
                   topo: Optional[dsa.Array], run: RunSettings, n_members: int, p: int,
                   overlap: int, mean: Optional[dsa.Array] = None) -> dsa.Array:
    """The lazy HR ensemble of one variable, one blockwise layer per spatial chunk.

    Parameters
    ----------
    ctx, tidx
        From :func:`time_halo`; ``ctx`` is ``(n_out, L, ny, nx)``.
    ychunks, xchunks
        The LR input's spatial chunks: the output's, times ``S``.
    topo
        HR elevation ``(ny S, nx S)`` in m, or None.
    run
        The variable's :class:`RunSettings`.
    n_members
        Ensemble size; the member axis is chunked by ``MEMBERS_PER_CHUNK``.
    p, overlap
        Tile side and overlap in LR pixels (both shortened on domains smaller than a tile).
    mean
        ``(n_out, T, ny S, nx S)`` conditional mean in mm/h (:func:`mean_in_time`) used
        instead of ``U_det``'s, or None.

    Returns
    -------
    dask.array.Array
        ``(n_members, n_out T, ny S, nx S)`` float32 mm/h.
    """
    S, T = run.S, run.T
    L, ny, nx = ctx.shape[1], ctx.shape[2], ctx.shape[3]
    tchunks = tidx.chunks[0]
    members = dsa.arange(n_members, chunks=min(n_members, MEMBERS_PER_CHUNK), dtype=np.int64)
    py, px = min(p, ny), min(p, nx)
    oy, ox = min(overlap, max(0, py - 1)), min(overlap, max(0, px - 1))
    sy, sx = tile_layout(ny, py, oy), tile_layout(nx, px, ox)
    wy, wx = tuple(blend_weights(py, oy).tolist()), tuple(blend_weights(px, ox).tolist())
    ybounds = np.cumsum((0,) + tuple(ychunks))
    xbounds = np.cumsum((0,) + tuple(xchunks))

    rows = []
    for a, b in zip(ybounds[:-1], ybounds[1:]):
        a, b = int(a), int(b)
        ty = tiles_for(a, b, sy, py)
        ra, rb = min(ty), max(ty) + py
        row = []
        for cc, d in zip(xbounds[:-1], xbounds[1:]):
            cc, d = int(cc), int(d)
            tx = tiles_for(cc, d, sx, px)
            rc, rd = min(tx), max(tx) + px
            plan = ChunkPlan(run=run, yrange=(a, b), xrange=(cc, d), origin=(ra, rc),
                             ty=tuple(ty), tx=tuple(tx), py=py, px=px, wy=wy, wx=wx)
            sub = ctx[:, :, ra:rb, rc:rd].rechunk({0: tchunks, 1: L, 2: rb - ra, 3: rd - rc})
            args: list[Any] = [members, "m", sub, "tlyx", tidx, "t"]
            topo_part = mean_part = None
            if topo is not None:
                topo_part = topo[ra * S:rb * S, rc * S:rd * S].rechunk(-1)
            if mean is not None:
                mean_part = mean[:, :, ra * S:rb * S, rc * S:rd * S].rechunk(
                    {0: tchunks, 1: T, 2: (rb - ra) * S, 3: (rd - rc) * S})
            args += [topo_part, None if topo_part is None else "YX",
                     mean_part, None if mean_part is None else "tkYX"]
            # every input is in the token (the topography too): two graphs that differ in
            # any input must never share task names, or dask.compute(a, b) would mix them
            name = "xsuperres-downscale-" + tokenize(members, sub, tidx, plan, topo_part, mean_part)
            row.append(dsa.blockwise(
                _downscale_block, "mtyx", *args,
                adjust_chunks={"t": lambda k: k * T, "y": ((b - a) * S,), "x": ((d - cc) * S,)},
                dtype=np.float32, concatenate=True, meta=np.empty((0, 0, 0, 0), np.float32),
                name=name, plan=plan))
        rows.append(row)
    return dsa.concatenate([dsa.concatenate(r, axis=3) for r in rows], axis=2)


# ---------------------------------------------------------------------------------------
# the per-chunk computation (runs in the workers)
# ---------------------------------------------------------------------------------------
def _sample_tiles(model, x: np.ndarray, topo: Optional[np.ndarray], keys: list[tuple[int, int, int]],
                  members: np.ndarray, run: RunSettings, mean: Optional[np.ndarray] = None) -> np.ndarray:
    """Ensemble for ``x (n, L, p, p)`` mm/h -> ``(n, len(members), T, pS, pS)`` mm/h
    (``run.mean_only``: the deterministic mean as the one member).

    One network call per stage: the deterministic net on the ``n`` samples, the diffusion
    net on their ``n len(members)`` items. ``topo`` is ``(n, pS, pS)`` in m or None.
    ``keys[i] = (t, Y0, X0)``: global LR time index and HR position of sample ``i``;
    ``members``: the global member numbers of this output chunk. The noise of every member
    is drawn from them (:func:`position_noise`) through :meth:`SRModel.predict`'s
    ``noise_fn``.
    """
    if run.mean_only:
        return model.predict_mean(x, topography=topo, device=model.device, batch_size=x.shape[0],
                                  mass_conservation=run.mass_conservation)[:, None]
    T = model.config.T
    H, W = x.shape[-2] * model.config.S, x.shape[-1] * model.config.S

    def noise_fn(i: int, m: int, k: int) -> np.ndarray:
        t, y0, x0 = keys[i]
        return position_noise((run.seed, run.key, int(members[m]), t, k), T, y0, x0, H, W)

    return model.predict(x, topography=topo, n_members=len(members), sampler=run.sampler,
                         steps=run.steps, eta=run.eta, device=model.device,
                         batch_size=x.shape[0] * len(members), noise_fn=noise_fn,
                         mass_conservation=run.mass_conservation, mean=mean)


def _downscale_block(members: np.ndarray, ctx: np.ndarray, tidx: np.ndarray,
                     topo: Optional[np.ndarray] = None, mean: Optional[np.ndarray] = None, *,
                     plan: ChunkPlan) -> np.ndarray:
    """One output chunk: ``ctx (nt, L, ry, rx)`` LR context with its spatial halo and the
    global numbers of its ``members`` -> ``(len(members), nt T, (b - a) S, (d - c) S)``
    float32 mm/h. ``topo``: the HR elevation of the halo; ``mean``: the given conditional
    mean ``(nt, T, ry S, rx S)`` of the halo (:func:`mean_in_time`); each or None.

    Runs with torch's intra-op threads set by :func:`~.threads.task_threads` (at most the
    cores divided by the dask tasks running at once; the caller's setting is restored
    afterwards), in a process whose C allocator suits the networks' temporaries
    (:func:`~.allocator.tune_allocator`: once, in ``dask.distributed`` workers).
    """
    tune_allocator()
    with task_threads():
        return _compute_block(members, ctx, tidx, topo, plan, mean)


def _compute_block(members: np.ndarray, ctx: np.ndarray, tidx: np.ndarray,
                   topo: Optional[np.ndarray], plan: ChunkPlan,
                   mean: Optional[np.ndarray] = None) -> np.ndarray:
    """The body of :func:`_downscale_block`: tiles in batches, blended, cropped."""
    run = plan.run
    model = get_model(run.handle, run.device)
    members = np.asarray(members, dtype=np.int64)
    S, T, M = run.S, run.T, len(members)
    ra, rc = plan.origin
    (a, b), (c, d) = plan.yrange, plan.xrange
    py, px = plan.py, plan.px
    ctx = np.asarray(ctx, dtype=np.float32)
    nt = ctx.shape[0]
    if np.isinf(ctx).any():
        raise ValueError("xsuperres.downscale: the input contains infinite values")
    if run.check_negative and (ctx < 0).any():
        raise ValueError(
            "xsuperres.downscale: the input contains negative precipitation rates "
            f"(minimum {float(np.nanmin(ctx)):g} mm h-1); clip round-off with .clip(min=0)"
        )
    # the block's own frame (x[t]: frame L - 1 of the chronological context)
    nan_last = np.isnan(ctx[:, model.config.L - 1, a - ra:b - ra, c - rc:d - rc])
    x = np.nan_to_num(ctx, nan=0.0)
    topo_n = None  # in m; SRModel.predict scales it with the model's training range
    if topo is not None:
        topo_n = finite_array(np.asarray(topo, dtype=np.float64), "topography", TOPOGRAPHY_FIX)

    hy, hx = (b - a) * S, (d - c) * S
    acc = np.zeros((M, nt, T, hy, hx), dtype=np.float32)
    wsum = np.zeros((b - a, d - c), dtype=np.float64)
    wy, wx = np.asarray(plan.wy, dtype=np.float64), np.asarray(plan.wx, dtype=np.float64)
    tiles = [(ty, tx) for ty in plan.ty for tx in plan.tx]
    # where each tile lands in the chunk (LR pixels) and its weights there
    placed = []
    for ty, tx in tiles:
        y0, y1 = max(ty, a), min(ty + py, b)
        x0, x1 = max(tx, c), min(tx + px, d)
        w2 = np.outer(wy[y0 - ty:y1 - ty], wx[x0 - tx:x1 - tx])
        wsum[y0 - a:y1 - a, x0 - c:x1 - c] += w2
        whr = np.repeat(np.repeat(w2, S, axis=0), S, axis=1).astype(np.float32)
        placed.append(((y0, y1, x0, x1), whr))

    # the samples (tile, LR step) of the chunk, ``group`` per network call
    samples = [(k, i) for k in range(len(tiles)) for i in range(nt)]
    group = samples_per_call(run.batch_size, model.config, py * S, px * S, M, len(samples),
                             model.device, dask_threads())
    for g0 in range(0, len(samples), group):
        sub = samples[g0:g0 + group]
        xb = np.stack([x[i, :, tiles[k][0] - ra:tiles[k][0] - ra + py,
                         tiles[k][1] - rc:tiles[k][1] - rc + px] for k, i in sub])
        tb = None
        if topo_n is not None:
            tb = np.stack([topo_n[(tiles[k][0] - ra) * S:(tiles[k][0] - ra + py) * S,
                                  (tiles[k][1] - rc) * S:(tiles[k][1] - rc + px) * S] for k, _ in sub])
        mb = None
        if mean is not None:
            mb = np.stack([mean[i, :, (tiles[k][0] - ra) * S:(tiles[k][0] - ra + py) * S,
                                (tiles[k][1] - rc) * S:(tiles[k][1] - rc + px) * S] for k, i in sub])
        keys = [(int(tidx[i]), tiles[k][0] * S, tiles[k][1] * S) for k, i in sub]
        y = _sample_tiles(model, xb, tb, keys, members, run, mb)  # (g, M, T, pyS, pxS)
        for j, (k, i) in enumerate(sub):
            (y0, y1, x0, x1), whr = placed[k]
            ty, tx = tiles[k]
            part = y[j, :, :, (y0 - ty) * S:(y1 - ty) * S, (x0 - tx) * S:(x1 - tx) * S]
            acc[:, i, :, (y0 - a) * S:(y1 - a) * S, (x0 - c) * S:(x1 - c) * S] += whr * part
    whr_sum = np.repeat(np.repeat(wsum, S, axis=0), S, axis=1).astype(np.float32)
    acc /= whr_sum
    if nan_last.any():
        mask = np.repeat(np.repeat(nan_last, S, axis=1), S, axis=2)  # (nt, hy, hx)
        acc[:, mask[:, None].repeat(T, axis=1)] = np.nan
    return acc.reshape(M, nt * T, hy, hx)
