"""Scoring on held-out samples, shared by the training and evaluation scripts.

Not part of the package. ``validation_arrays`` turns the validation records of a
:class:`~xsuperres.training.data.TrainingData` into raw (uncapped, mm/h) LR contexts and
HR truths; ``rainfarm_members`` gives RainFARM's members for the same samples (the whole
LR frame of the event downscaled, then the tile cut out: a spectral method needs a
field, not a 4 x 4 tile); ``temporal_peer`` gives the persistence / linear /
motion-compensated interpolation in time of the same samples (the whole LR sequence of the
event interpolated, then the tile cut out); ``scores`` pools the frames of all samples into the metrics of
:mod:`xsuperres.metrics`; ``table`` formats the results.
"""

from __future__ import annotations

import numpy as np

import xsuperres.metrics as xm
from xsuperres.training.samples import coarsen_numpy

METRICS = ("crps", "pitd", "pe99", "lsd", "mae")


def coarse(hr: np.ndarray, S: int, T: int) -> np.ndarray:
    """Perfect coarsening of ``hr (time, y, x)`` after trimming every axis to a multiple."""
    nt, ny, nx = hr.shape[0] // T * T, hr.shape[1] // S * S, hr.shape[2] // S * S
    return coarsen_numpy(hr[:nt, :ny, :nx], S, T)


def lr_fields(td) -> list[np.ndarray]:
    """Raw (uncapped, mm/h) perfect coarsening of every event, ``(blocks, h, w)`` each."""
    return [coarse(ev.hr, td.config.S, td.config.T) for ev in td.data.events]


def validation_arrays(td):
    """Raw LR contexts ``(N, L + lookahead, h, w)`` (chronological, as ``predict`` takes
    them), HR truths ``(N, T, H, W)`` and sample labels."""
    S, T, L, K = td.config.S, td.config.T, td.config.L, td.config.lookahead
    lr_raw = lr_fields(td)
    ctx, truth, where = [], [], []
    for e, k, t in td.valid.records:
        e, k, t = int(e), int(k), int(t)
        tile = td.split.tiles[e][k]
        ys = slice(tile.yslice.start // S, tile.yslice.stop // S)
        xs = slice(tile.xslice.start // S, tile.xslice.stop // S)
        ctx.append(lr_raw[e][t - L + 1: t + 1 + K, ys, xs])
        truth.append(td.data.events[e].hr[t * T:(t + 1) * T, tile.yslice, tile.xslice])
        where.append((td.data.events[e].name, tile.row, tile.col, t))
    return np.stack(ctx).astype(np.float32), np.stack(truth).astype(np.float32), where


def rainfarm_members(td, members: int, seed: int, records=None) -> np.ndarray:
    """RainFARM members of the validation samples, ``(N, members, T, H, W)`` in mm/h.

    Member ``m`` of LR step ``t`` of event ``e`` downscales the event's whole LR frame
    ``t`` (seed :func:`xsuperres.peers.member_seed`, as ``xsuperres.rainfarm``), the tile
    is cut out of it and repeated over the block's ``T`` HR frames (RainFARM is applied
    per LR frame). ``records``: a subset of ``td.valid.records`` (default all).
    """
    from xsuperres.peers import member_seed, rainfarm_frame

    S, T = td.config.S, td.config.T
    lr_raw = lr_fields(td)
    cache: dict[tuple[int, int, int], np.ndarray] = {}
    out = []
    for e, k, t in (td.valid.records if records is None else records):
        e, k, t = int(e), int(k), int(t)
        tile = td.split.tiles[e][k]
        ens = []
        for m in range(members):
            key = (e, t, m)
            if key not in cache:
                cache[key] = rainfarm_frame(lr_raw[e][t], S, member_seed(seed, m, t))
            ens.append(np.repeat(cache[key][None, tile.yslice, tile.xslice], T, axis=0))
        out.append(np.stack(ens))
    return np.stack(out)


def temporal_peer(td, method: str, records=None) -> np.ndarray:
    """Temporal peer ``method`` (:data:`xsuperres.temporal.TIME_METHODS`) of the validation
    samples, ``(N, 1, T, H, W)`` in mm/h.

    The event's whole raw LR sequence is interpolated in time on the LR grid
    (:func:`xsuperres.temporal.upsample_in_time`: ``"linear"`` and ``"motion"`` use the
    previous and the following LR step), upsampled by nearest neighbour in space (every
    block keeps its LR mean), and the sample's tile and block are cut out.
    """
    from xsuperres.temporal import upsample_in_time

    S, T = td.config.S, td.config.T
    lr_raw = lr_fields(td)
    cache: dict[int, np.ndarray] = {}
    out = []
    for e, k, t in (td.valid.records if records is None else records):
        e, k, t = int(e), int(k), int(t)
        if e not in cache:
            cache[e] = upsample_in_time(lr_raw[e], T, method).astype(np.float32)
        tile = td.split.tiles[e][k]
        ys = slice(tile.yslice.start // S, tile.yslice.stop // S)
        xs = slice(tile.xslice.start // S, tile.xslice.stop // S)
        block = cache[e][t * T:(t + 1) * T, ys, xs]
        out.append(np.repeat(np.repeat(block, S, axis=-2), S, axis=-1)[None])
    return np.stack(out)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """pred ``(N, M, T, H, W)``, truth ``(N, T, H, W)``: frames of all samples pooled."""
    N, M, T, H, W = pred.shape
    p = pred.transpose(1, 0, 2, 3, 4).reshape(M, N * T, H, W)
    t = truth.reshape(N * T, H, W)
    out = {m: float(getattr(xm, m)(p, t)) for m in METRICS}
    # PIT histogram shape: share of the outer deciles (0.2 if calibrated)
    u = xm.pit_values(p, t)
    out["pit_outer_fraction"] = float(np.mean((u < 0.1) | (u > 0.9)))
    # the sign of pe99: > 0 members' tail too heavy, < 0 too weak (mm/h)
    out["q99_bias"] = float(xm.percentile_bias(p, t, 99.0))
    # the randomized PIT (ties spread: 0 for a perfect forecast) and the mid-rank PITD a
    # perfect forecast gets on this truth (xsuperres.metrics.pitd_floor)
    out["pitd_randomized"] = float(xm.pitd(p, t, ties="randomized"))
    out["pitd_floor"] = float(xm.pitd_floor(t))
    if M > 1:  # members' mutual MAE over their MAE: 1 if calibrated, < 1 too alike
        out["spread_error"] = xm.spread_error_ratio_from_scores(out["crps"], out["mae"], M)
        # the fair CRPS (pairs of distinct members: no finite-ensemble penalty)
        out["crps_fair"] = xm.fair_crps_from_scores(out["crps"], out["mae"], M)
    return out


def table(results: dict[str, dict[str, float]], cols=METRICS, width: int = 10) -> str:
    """A fixed-width text table, one row per method (``-`` where a row lacks a column)."""
    name_w = max(len(n) for n in results) + 2
    lines = [f"{'method':<{name_w}}" + "".join(f"{c:>{width}}" for c in cols)]
    for name, r in results.items():
        lines.append(f"{name:<{name_w}}" + "".join(
            f"{r[c]:>{width}.4f}" if c in r else f"{'-':>{width}}" for c in cols))
    return "\n".join(lines)


def wettest_box(hr, S: int, T: int, L: int, box: int):
    """``(time slice, y slice, x slice)`` of the HR data around the wettest LR block.

    The block (LR step ``t >= L - 1``, so that it has its whole context) with the largest
    ``box x box`` HR-pixel total; the time slice covers its ``L`` context blocks.
    """
    lr = coarse(np.nan_to_num(hr.values), S, T)  # (n, h, w)
    box = min(box, lr.shape[1] * S, lr.shape[2] * S) // S * S
    k = box // S
    n, h, w = lr.shape
    best, arg = -1.0, None
    csum = np.pad(lr, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    for t in range(L - 1, n):
        tot = csum[t, k:, k:] - csum[t, :-k, k:] - csum[t, k:, :-k] + csum[t, :-k, :-k]
        i, j = np.unravel_index(np.argmax(tot), tot.shape)
        if tot[i, j] > best:
            best, arg = float(tot[i, j]), (t, i, j)
    t, i, j = arg
    return (slice((t - L + 1) * T, (t + 1) * T), slice(i * S, i * S + box), slice(j * S, j * S + box))


def heldout_figure(model, hr, path, *, box: int = 120, seed: int = 0, title: str | None = None,
                   rainfarm: bool = True) -> dict:
    """Truth, bicubic, RainFARM and two members of ``model`` for the wettest block of ``hr``.

    ``hr`` (time, y, x, mm/h) is a held-out event; the box of ``box`` HR pixels around its
    wettest LR block is coarsened (perfect coarsening), downscaled through the public
    xarray API (``stsr.downscale``, ``interpolate``, ``rainfarm``: the tiles and blending
    a user gets) and the block's ``T`` HR frames are drawn, one row each. The members are
    those of the network mean (``mean="network"``, the scripts' "full model" row: the
    window ends with the block, so there is no step after it for a motion mean). Returns
    what was drawn (time labels, box).
    """
    import xsuperres as xs
    from xsuperres.plot import plot_panels

    c = model.config
    ts, ys, xsl = wettest_box(hr, c.S, c.T, c.L, box)
    truth = hr.isel(time=ts, y=ys, x=xsl)
    lr = truth.stsr.coarsen_perfect(c.S, c.T)
    ens = lr.stsr.downscale(model, n_members=2, seed=seed, context="drop", device="cpu",
                            mean="network").compute()
    fields = {"truth": truth.isel(time=slice(-c.T, None)),
              "bicubic": xs.interpolate(lr, c.S, c.T, "bicubic").isel(time=slice(-c.T, None))}
    if rainfarm:
        try:
            # on the whole event's LR frames (a spectral method needs the field), then the box
            ny, nx = hr.sizes["y"] // c.S * c.S, hr.sizes["x"] // c.S * c.S
            whole = hr.isel(time=ts, y=slice(0, ny), x=slice(0, nx)).fillna(0.0)
            farm = xs.rainfarm(whole.stsr.coarsen_perfect(c.S, c.T).isel(time=slice(-2, None)), c.S,
                               c.T, n_members=1, seed=seed)
            fields["RainFARM (whole field)"] = farm.isel(member=0, time=slice(-c.T, None), y=ys,
                                                         x=xsl).compute()
        except ImportError:
            pass
    fields["member 1"] = ens.isel(member=0)
    fields["member 2"] = ens.isel(member=1)
    times = truth.time.values[-c.T:]
    plot_panels(fields, times=times, path=path, title=title)
    return {"times": [str(t)[:16] for t in times], "box_y": [int(ys.start), int(ys.stop)],
            "box_x": [int(xsl.start), int(xsl.stop)]}
