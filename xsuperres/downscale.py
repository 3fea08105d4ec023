"""Lazy, chunked, chunk-invariant ensemble downscaling of xarray precipitation fields.

:func:`downscale` runs an :class:`~xsuperres.model.SRModel` over a whole period and domain
and returns a dask-backed ``xarray`` object on the high-resolution (HR) grid with a
``member`` dimension. Nothing is computed until the result is computed or written.

How the work is cut (see ``docs/downscale.md`` for the full story)
------------------------------------------------------------------
* **Time halo.** Output block ``t`` needs the ``L`` LR frames ``x[t-L+1] .. x[t]``. The
  LR input is stacked into a context array ``ctx[t, l] = x[t - L + 1 + l]`` (``L``
  shifted lazy slices), chunked like the output, so every output chunk sees the ``L - 1``
  preceding LR steps whatever the chunking. The first ``L - 1`` blocks have no full
  context: ``context="pad"`` repeats the first frame, ``context="drop"`` leaves them out.
* **Global tiles.** The model runs on square HR tiles of ``tile_size`` pixels
  (``p = tile_size / S`` LR pixels), laid out on a grid fixed to the domain origin:
  starts ``0, q, 2q, ...`` with stride ``q = p - overlap`` LR pixels, the last tile moved
  back to end at the domain edge. The layout never depends on the chunking. Each output
  chunk computes the tiles that overlap it (from an LR spatial halo sliced out of the
  context array) and crops; the diffusion net's cross-attention sees the whole tile, so
  this is what makes results chunk-invariant in space.
* **Blending.** Overlapping tiles are averaged with weights that are constant over each
  LR pixel and ramp linearly across the overlap (``min(1, (i + 1)/(o + 1),
  (p - i)/(o + 1))`` for LR pixel ``i`` of a tile): a cross-fade, so no seams. Because
  the weights are constant over each ``S x S x T`` block and, with
  ``mass_conservation="block"``, every tile conserves every block, the blend conserves
  every block too.
* **Noise.** The diffusion noise of member ``m`` at HR pixel ``(Y, X)`` (global indices)
  and HR step ``k`` of LR step ``t`` (global index) is a counter-based hash of
  ``(seed, m, t, draw, k, Y, X)`` turned into a normal variate (Box-Muller). Overlapping
  tiles therefore see the same noise where they overlap, and a member never depends on
  the chunking, the batch size, the device or the scheduler.
* **Model.** Tasks carry a small picklable :class:`ModelHandle` (the path of a saved
  model and a hash), never the model. Each worker process loads the model once (module
  cache keyed by hash and device); an in-memory model is saved once to a temporary
  model directory (``$XSUPERRES_MODEL_DIR`` or the system temporary folder) so that
  worker processes can load it. Tiles go to the device in batches.
* **Missing values.** NaN in the LR context is replaced by 0 for the network; output
  blocks whose own LR value is NaN are NaN.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import shutil
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .cf import append_history
from .checks import TOPOGRAPHY_FIX, finite_array, finite_float, positive_int
from .checks import seed as check_seed
from .coarsen import _clean_grid_mapping, check_regular_time
from .dims import find_dims
from .interpolate import hr_template_coords
from .noise import position_noise
from .units import TARGET_UNITS
from .validate import check_time_coordinate, is_precipitation, label_of, precipitation_input
from ._version import __version__

__all__ = ["downscale", "tile_layout", "blend_weights", "seam_statistic", "ModelHandle", "position_noise"]  # position_noise: from .noise

ModelLike = Union["SRModel", str, os.PathLike]  # noqa: F821

_CONTEXT_MODES = ("pad", "drop")
#: members per output chunk: members are independent, so the member axis is chunked and a
#: chunk's memory does not grow with ``n_members``; a function of ``n_members`` only, so
#: every chunking of the input sends the same (sample, members) batches to the networks
MEMBERS_PER_CHUNK = 16
#: the largest ``n_members`` accepted (the output of a larger ensemble is refused with the
#: memory it would need)
MAX_MEMBERS = 10_000
_UNSAFE_ATTRS = ("_FillValue", "missing_value", "scale_factor", "add_offset", "valid_range",
                 "valid_min", "valid_max", "actual_range")


# ---------------------------------------------------------------------------------------
# tiles and blending
# ---------------------------------------------------------------------------------------
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
        As given to :func:`downscale` (``overlap=None``: its default).

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
    o = max(1, p // 4) if overlap is None else int(overlap)
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


def _tiles_for(lo: int, hi: int, starts: list[int], p: int) -> list[int]:
    """Tiles (starts) of the global layout that overlap ``[lo, hi)``."""
    return [s for s in starts if s < hi and s + p > lo]


# ---------------------------------------------------------------------------------------
# model resolution and the per-process model cache
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelHandle:
    """What a task carries instead of the model: a saved-model directory and its hash.

    Attributes
    ----------
    path
        Directory written by :meth:`SRModel.save` (readable by every worker).
    token
        SHA-256 of its ``config.json`` (which holds the weights' SHA-256): the cache key.
    """

    path: str
    token: str


_LOCK = threading.RLock()
#: models of this process by token (the caller's own objects, not kept alive here)
_LOCAL: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
#: models ready to run, by (token, device); a few at most
_CACHE: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_CACHE_SIZE = 4
#: number of models loaded from disk by this process (tests check "once per worker")
_LOAD_COUNT = 0
#: where a model loaded from a path came from: model -> ModelHandle
_SOURCE: "weakref.WeakKeyDictionary[Any, ModelHandle]" = weakref.WeakKeyDictionary()


def _config_token(directory: Path) -> str:
    return hashlib.sha256((directory / "config.json").read_bytes()).hexdigest()


def _model_root() -> Path:
    root = os.environ.get("XSUPERRES_MODEL_DIR")
    if root:
        return Path(root)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"xsuperres-models-{uid}"


def _resolve_model(model: Any):
    """An :class:`SRModel` from a model, a saved-model directory or a registry name.

    Registry names are resolved by ``xsuperres.pretrained.load_model`` when that module
    exists (it is the hook for the pretrained-weights registry).
    """
    from .model import SRModel

    if isinstance(model, SRModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.exists():
            d = p.parent if p.is_file() else p
            m = SRModel.load(d, device="cpu")
            handle = ModelHandle(str(d.resolve()), _config_token(d))
            _SOURCE[m] = handle
            return m
        if isinstance(model, str):
            try:
                from .pretrained import load_model  # type: ignore[import-not-found]
            except ImportError:
                raise ValueError(
                    f"model {model!r} is not an existing model directory (written by "
                    "SRModel.save) and this version of xsuperres has no pretrained-model "
                    "registry to look the name up in"
                ) from None
            try:
                loaded = load_model(model)
            except KeyError as err:  # an unknown name (UnknownModelError)
                raise ValueError(
                    f"model {model!r} is not an existing model directory (written by "
                    f"SRModel.save) nor a known pretrained model: {err.args[0] if err.args else err}"
                ) from None
            return _resolve_model(loaded)
        raise ValueError(f"model directory {os.fspath(model)!r} does not exist")
    raise TypeError(
        "model must be an SRModel, a directory written by SRModel.save, or a registry "
        f"name; got {type(model).__name__}"
    )


def _handle_for(model) -> ModelHandle:
    """A handle workers can load ``model`` from; registers the object for this process."""
    handle = _SOURCE.get(model)
    if handle is None:
        root = _model_root()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".saving-"))
        try:
            model.save(tmp)
            token = _config_token(tmp)
            final = root / token
            if not (final / "config.json").is_file():
                try:
                    os.replace(tmp, final)
                except OSError:  # another process won the race
                    pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        handle = ModelHandle(str(final), token)
    with _LOCK:
        _LOCAL[handle.token] = model
    return handle


def _get_model(handle: ModelHandle, device: str):
    """The model of ``handle`` on ``device``: loaded at most once per process."""
    global _LOAD_COUNT
    from .model import SRModel, _resolve_device

    dev = _resolve_device(device)
    key = (handle.token, str(dev))
    with _LOCK:
        m = _CACHE.get(key)
        if m is not None:
            _CACHE.move_to_end(key)
            return m
        local = _LOCAL.get(handle.token)
        if local is not None and not local.training and local.device == dev:
            m = local
        elif local is not None:
            m = copy.deepcopy(local).to(dev).eval()
        else:
            if not (Path(handle.path) / "config.json").is_file():
                raise FileNotFoundError(
                    f"xsuperres.downscale: model directory {handle.path!r} is not readable "
                    "on this worker; save the model to storage shared by all workers "
                    "(SRModel.save) and pass that path as `model`"
                )
            m = SRModel.load(handle.path, device=dev)
            _LOAD_COUNT += 1
        _CACHE[key] = m
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return m


# ---------------------------------------------------------------------------------------
# the per-chunk computation
# ---------------------------------------------------------------------------------------
def _sample_tiles(model, x: np.ndarray, topo: Optional[np.ndarray], keys: list[tuple[int, int, int]],
                  members: np.ndarray, plan: Mapping[str, Any]) -> np.ndarray:
    """Ensemble for ``x (n, L, p, p)`` mm/h -> ``(n, len(members), T, pS, pS)`` mm/h.

    ``topo`` is ``(n, pS, pS)`` in m or None. ``keys[i] = (t, Y0, X0)``: global LR time
    index and HR position of sample ``i``; ``members``: the global member numbers of this
    output chunk. The noise of every member is drawn from them (:func:`position_noise`)
    through :meth:`SRModel.predict`'s ``noise_fn``.
    """
    T = model.config.T
    H, W = x.shape[-2] * model.config.S, x.shape[-1] * model.config.S

    def noise_fn(i: int, m: int, k: int) -> np.ndarray:
        t, y0, x0 = keys[i]
        return position_noise((plan["seed"], plan["key"], int(members[m]), t, k), T, y0, x0, H, W)

    return model.predict(x, topography=topo, n_members=len(members), sampler=plan["sampler"],
                         steps=plan["steps"], eta=plan["eta"], device=model.device,
                         batch_size=_batch_items(plan, model.device, len(members)), noise_fn=noise_fn)


def _batch_items(plan: Mapping[str, Any], dev, n_members: int) -> int:
    """``(sample, member)`` items per diffusion call.

    Default on CPU: the ``n_members`` members of one sample in the output chunk (and one
    sample per mean-net call), so every call has the same composition whatever the
    chunking: results are bitwise chunk-invariant. On a GPU (or with an explicit
    ``batch_size``) samples are batched together, which changes results at
    float-rounding level only.
    """
    if plan["batch_size"] is not None:
        return int(plan["batch_size"])
    return 64 if dev.type == "cuda" else int(n_members)


def _downscale_block(members: np.ndarray, ctx: np.ndarray, tidx: np.ndarray,
                     topo: Optional[np.ndarray] = None, *, plan: Mapping[str, Any]) -> np.ndarray:
    """One output chunk: ``ctx (nt, L, ry, rx)`` LR context with its spatial halo and the
    global numbers of its ``members`` -> ``(len(members), nt T, (b - a) S, (d - c) S)``
    float32 mm/h.
    """
    model = _get_model(plan["handle"], plan["device"])
    members = np.asarray(members, dtype=np.int64)
    S, T, M = plan["S"], plan["T"], len(members)
    ra, rc = plan["ra"], plan["rc"]
    (a, b), (c, d) = plan["yrange"], plan["xrange"]
    py, px = plan["py"], plan["px"]
    ctx = np.asarray(ctx, dtype=np.float32)
    nt = ctx.shape[0]
    if np.isinf(ctx).any():
        raise ValueError("xsuperres.downscale: the input contains infinite values")
    if plan["check_negative"] and (ctx < 0).any():
        raise ValueError(
            "xsuperres.downscale: the input contains negative precipitation rates "
            f"(minimum {float(np.nanmin(ctx)):g} mm h-1); clip round-off with .clip(min=0)"
        )
    nan_last = np.isnan(ctx[:, -1, a - ra:b - ra, c - rc:d - rc])
    x = np.nan_to_num(ctx, nan=0.0)
    topo_n = None  # in m; SRModel.predict scales it with the model's training range
    if topo is not None:
        topo_n = finite_array(np.asarray(topo, dtype=np.float64), "topography", TOPOGRAPHY_FIX)

    hy, hx = (b - a) * S, (d - c) * S
    acc = np.zeros((M, nt, T, hy, hx), dtype=np.float32)
    wsum = np.zeros((b - a, d - c), dtype=np.float64)
    wy, wx = plan["wy"], plan["wx"]
    tiles = [(ty, tx) for ty in plan["ty"] for tx in plan["tx"]]
    # where each tile lands in the chunk (LR pixels) and its weights there
    placed = []
    for ty, tx in tiles:
        y0, y1 = max(ty, a), min(ty + py, b)
        x0, x1 = max(tx, c), min(tx + px, d)
        w2 = np.outer(wy[y0 - ty:y1 - ty], wx[x0 - tx:x1 - tx])
        wsum[y0 - a:y1 - a, x0 - c:x1 - c] += w2
        whr = np.repeat(np.repeat(w2, S, axis=0), S, axis=1).astype(np.float32)
        placed.append(((y0, y1, x0, x1), whr))

    samples = [(k, i) for k in range(len(tiles)) for i in range(nt)]
    bs = _batch_items(plan, model.device, M)
    group = 1 if bs == M and plan["batch_size"] is None else max(1, bs // M) * 4  # samples per call
    for g0 in range(0, len(samples), group):
        sub = samples[g0:g0 + group]
        xb = np.stack([x[i, :, tiles[k][0] - ra:tiles[k][0] - ra + py,
                         tiles[k][1] - rc:tiles[k][1] - rc + px] for k, i in sub])
        tb = None
        if topo_n is not None:
            tb = np.stack([topo_n[(tiles[k][0] - ra) * S:(tiles[k][0] - ra + py) * S,
                                  (tiles[k][1] - rc) * S:(tiles[k][1] - rc + px) * S] for k, _ in sub])
        keys = [(int(tidx[i]), tiles[k][0] * S, tiles[k][1] * S) for k, i in sub]
        y = _sample_tiles(model, xb, tb, keys, members, plan)  # (g, M, T, pyS, pxS)
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


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def _fmt_step(td: pd.Timedelta) -> str:
    s = td.total_seconds()
    if s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s % 60 == 0:
        return f"{int(s // 60)}min"
    return f"{s:g}s"


def _lr_step(times: np.ndarray) -> Optional[pd.Timedelta]:
    if times.size < 2:
        return None
    step = times[1] - times[0]
    try:
        return pd.Timedelta(step)
    except (TypeError, ValueError):
        return None  # numeric time axis: no cadence


def _check_cadence(times: Optional[np.ndarray], model, strict: bool, label: str) -> Optional[pd.Timedelta]:
    """Compare the LR cadence with the model's HR ``time_step`` x T; return the HR step."""
    c = model.config
    hr = c.time_step or model.metadata.get("time_step")
    hr_step = pd.Timedelta(hr) if hr else None
    lr = None if times is None else _lr_step(times)
    if hr_step is not None and lr is None:
        why = ("has no time coordinate" if times is None else
               "has a single time step" if np.asarray(times).size < 2 else
               "has a time coordinate without a usable step")
        warnings.warn(
            f"{label} {why}, so its cadence cannot be checked against the model's: assuming "
            f"LR steps of {_fmt_step(hr_step * c.T)} (the model's HR step {_fmt_step(hr_step)} "
            f"x T={c.T}). Give the input a datetime time coordinate to have it checked",
            UserWarning, stacklevel=4)
    if lr is None or hr_step is None:
        return hr_step
    expected = hr_step * c.T
    if lr != expected:
        msg = (f"{label}: the input's time step is {_fmt_step(lr)}, but the model was trained "
               f"on HR steps of {_fmt_step(hr_step)} with T={c.T}, i.e. LR steps of "
               f"{_fmt_step(expected)}; resample the input to {_fmt_step(expected)} or pass "
               "strict=False to downscale anyway")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + " (strict=False: going on; the output steps are the input step / T)",
                      UserWarning, stacklevel=4)
        return None
    return hr_step


_M_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0,
            "km": 1e3, "kilometre": 1e3, "kilometer": 1e3, "kilometres": 1e3, "kilometers": 1e3}


def _model_spacing(model) -> Optional[tuple[tuple[float, float], str]]:
    """The model's HR grid spacing ``((dy, dx), units)`` from its metadata, if recorded."""
    md = model.metadata or {}
    gm = md.get("grid_spacing_m")
    if gm:
        gm = list(gm) if isinstance(gm, (list, tuple)) else [gm, gm]
        return (float(gm[0]), float(gm[-1])), "m"
    for src in (md.get("grid_spacing"), (md.get("data") or {}).get("grid_spacing")):
        if isinstance(src, Mapping) and "x" in src and "y" in src:
            return (float(src["y"]), float(src["x"])), str(src.get("units", "unknown"))
    return None


def _check_spacing(da: xr.DataArray, ydim: Hashable, xdim: Hashable, model, strict: bool, label: str) -> None:
    ref = _model_spacing(model)
    if ref is None:
        return
    (ry, rx), runits = ref
    S = model.config.S

    def skipped(why: str) -> None:
        warnings.warn(
            f"{label}: {why}, so its grid spacing cannot be checked against the model's: "
            f"assuming LR cells of ({ry * S:g}, {rx * S:g}) {runits} (the model's HR cells of "
            f"({ry:g}, {rx:g}) {runits} x S={S}). Give the input 1-D {ydim!r}/{xdim!r} "
            "coordinates with units to have it checked", UserWarning, stacklevel=5)

    got = []
    for dim in (ydim, xdim):
        if dim not in da.coords:
            return skipped(f"dimension {dim!r} has no coordinate values")
        if da.coords[dim].ndim != 1 or da.sizes[dim] < 2:
            return skipped(f"coordinate {dim!r} has fewer than 2 values")
        v = np.asarray(da.coords[dim].values)
        if not np.issubdtype(v.dtype, np.number):
            return skipped(f"coordinate {dim!r} is not numeric")
        step = float(np.median(np.abs(np.diff(v.astype(np.float64))))) / S
        u = str(da.coords[dim].attrs.get("units", "unknown")).strip()
        if runits == "m" and u in _M_UNITS:
            step, u = step * _M_UNITS[u], "m"
        elif u != runits:
            return skipped(f"coordinate {dim!r} has units {u!r}, not comparable with the model's "
                           f"{runits!r}")
        got.append(step)
    gy, gx = got
    if not (math.isclose(gy, ry, rel_tol=1e-2) and math.isclose(gx, rx, rel_tol=1e-2)):
        msg = (f"{label}: the input's grid spacing ({gy * S:g}, {gx * S:g}) {runits} implies HR "
               f"cells of ({gy:g}, {gx:g}) {runits} with S={S}, but the model was trained on HR "
               f"cells of ({ry:g}, {rx:g}) {runits}; regrid the input or pass strict=False")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=4)


def _hr_time(values: np.ndarray, T: int, hr_step: Optional[pd.Timedelta]) -> np.ndarray:
    """``T`` HR labels per LR label (datetime64, cftime or numeric), starting at the label."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.datetime64):
        if values.size >= 2:
            step = (values[1] - values[0]) / T
        elif hr_step is not None:
            step = hr_step.to_timedelta64()
        elif T == 1:
            return values.copy()
        else:
            raise ValueError("a single LR time step has no cadence and the model records none: "
                             "the HR time labels are undefined")
        offsets = np.array([k * step for k in range(T)])
        return (values[:, None] + offsets[None, :]).reshape(-1)
    if T == 1:
        return values.copy()
    if values.size >= 2:
        step = values[1] - values[0]
    elif hr_step is not None and values.dtype == object:
        step = hr_step.to_pytimedelta() * T
    else:
        raise ValueError("a single LR time step has no cadence: the HR time labels are undefined")
    out = np.empty((values.size, T), dtype=object if values.dtype == object else np.float64)
    for k in range(T):
        out[:, k] = values + step * k / T
    return out.reshape(-1)


# ---------------------------------------------------------------------------------------
# the public function
# ---------------------------------------------------------------------------------------
def downscale(
    obj: xr.DataArray | xr.Dataset,
    model: ModelLike,
    n_members: int = 3,
    *,
    topography: Optional[xr.DataArray] = None,
    sampler: str = "ddim",
    steps: Optional[int] = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: Optional[int] = None,
    context: str = "pad",
    strict: bool = True,
    dims: Optional[Mapping[str, Hashable]] = None,
    eta: float = 0.0,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
) -> xr.DataArray | xr.Dataset:
    """Downscale LR precipitation to an HR ensemble, lazily (dask) and chunk-invariantly.

    Parameters
    ----------
    obj
        LR precipitation with a time and two spatial dimensions (found as in
        :func:`xsuperres.find_dims`), numpy- or dask-backed; a rate or water mass flux
        (converted to mm h-1 from its ``units``). A Dataset has every precipitation
        variable (one with the three dimensions and rate units) downscaled; variables
        with none of the three dimensions are kept, others are dropped with a warning.
        Time must be evenly spaced; NaN marks missing data.
    model
        An :class:`~xsuperres.SRModel`, a directory written by ``SRModel.save``, or the
        name of a pretrained model (when ``xsuperres.pretrained`` exists).
    n_members
        Ensemble size, at most ``MAX_MEMBERS`` (10,000). Members are independent: the
        output is chunked along ``member`` (``MEMBERS_PER_CHUNK`` = 16 per chunk), so a
        chunk's memory does not grow with the ensemble.
    topography
        Elevation in m on the HR grid: a DataArray with the input's y and x dimensions
        of sizes ``(ny S, nx S)`` (coordinates, if any, must match the HR grid). ``None``:
        a flat field (zeros after scaling), with a warning when the model was trained
        with topography (see ``xsuperres.topography`` for GLO-90 / file helpers).
    sampler, steps, eta
        Diffusion sampler (``"ddim"``, ``"dpmpp_2m"``, ``"ancestral"``), its number of
        steps (``None``: the sampler's default) and DDIM's ``eta`` (a finite number).
    seed
        Non-negative integer; with the same seed the members are identical whatever the
        chunking, scheduler, batch size or device (to float rounding).
    device
        ``"auto"`` (each worker uses its GPU when it has one), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``; anything else is refused on the call.
    batch_size
        ``(tile, member)`` items per diffusion-network call (default 16 on CPU, 64 on GPU).
    context
        ``"pad"`` (default): the first ``L - 1`` LR steps are downscaled with their
        missing context padded by repeating the first frame (recorded in the
        attributes); ``"drop"``: they are left out of the output.
    strict
        ``True``: a cadence or grid spacing that disagrees with the model's training
        metadata is an error; ``False``: a warning.
    dims
        Explicit ``{"time": ..., "y": ..., "x": ...}`` names.
    tile_size
        HR tile side (a multiple of S); default the model's ``config.tile_size``.
    overlap
        Tile overlap in LR pixels; default ``tile_size / S // 4`` (at least 1 when the
        tile has more than one LR pixel).

    Returns
    -------
    DataArray or Dataset
        float32, mm h-1, dask-backed, dims ``("member", *input dims)`` (``member``
        labelled ``0 .. n_members - 1``) on the HR grid: ``S`` sub-cells per LR cell
        (centres), ``T`` steps per LR step starting at its label; 2-D lat/lon
        interpolated; grid mapping carried over. NaN where the LR input is NaN.
        Attributes: ``units``, ``standard_name`` (the input's, ``lwe_precipitation_rate``
        if it had none), ``cell_methods``, ``history`` and ``xsuperres_*`` entries
        (model name and version, S, T, L, sampler, steps, eta, tile_size, overlap, seed,
        context); the ``history`` line names the same settings.

    Warns
    -----
    UserWarning
        When the input has no (usable) time or x/y coordinates, so that its cadence or
        grid spacing cannot be checked against the model's: the warning says what was
        assumed.

    Raises
    ------
    ValueError
        Bad arguments (non-finite ``eta``, unknown ``device``, ``n_members`` above
        ``MAX_MEMBERS``), input refused by :mod:`xsuperres.validate` (raw packed values,
        missing or non-rate units, a time coordinate that is not datetime-like), negative
        values (at compute time for dask input), irregular time, a cadence or grid spacing
        that disagrees with the model (``strict=True``), a topography of the wrong shape.
    """
    m = _resolve_model(model)
    c = m.config
    M = positive_int(n_members, "n_members")
    if M > MAX_MEMBERS:
        raise ValueError(
            f"n_members={M} is more than xsuperres downscales in one call ({MAX_MEMBERS}); its "
            f"output would need {_output_bytes(obj, c, M, dims) / 1e9:.3g} GB (float32). Ask "
            f"for at most {MAX_MEMBERS} members, or call downscale several times with "
            "different seeds and concatenate along 'member'")
    seed = check_seed(seed)
    eta = finite_float(eta, "eta")
    if context not in _CONTEXT_MODES:
        raise ValueError(f"context must be 'pad' or 'drop', got {context!r}")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if not isinstance(device, str):
        device = str(device)
    from .model import _resolve_device

    _resolve_device(device)  # refuses an unknown device now, not in a worker
    m.check_sampler(sampler, steps, eta)
    m.cap  # noqa: B018  (raises early when the model has no normalization cap)
    n_steps = c.J if sampler == "ancestral" else (steps if steps is not None else
                                                  (50 if sampler == "ddim" else 20))
    tile = c.tile_size if tile_size is None else positive_int(tile_size, "tile_size")
    if tile % c.S:
        raise ValueError(f"tile_size must be a multiple of S={c.S}, got {tile}")
    p = tile // c.S
    o = max(1, p // 4) if overlap is None else int(overlap)
    if p > 1 and not 0 <= o < p:
        raise ValueError(f"overlap must be in [0, {p - 1}] LR pixels (tile of {p}), got {overlap!r}")
    if p == 1:
        o = 0
    if topography is None:
        if m.normalization.get("topo_min") is not None:
            warnings.warn(
                "downscale: topography=None, so the model sees a flat (zero) topography, "
                "although it was trained with one; pass the HR elevation (m), e.g. "
                "xsuperres.topography.glo90(...) or xsuperres.topography.from_file(...)",
                UserWarning, stacklevel=3)
    elif m.normalization.get("topo_min") is None:
        raise ValueError("this model was trained without topography (no topo_min/topo_max in "
                         "its normalization): pass topography=None")

    handle = _handle_for(m)
    opts = dict(model=m, handle=handle, M=M, seed=int(seed), sampler=sampler, steps=steps,
                n_steps=n_steps, eta=float(eta), device=device, batch_size=batch_size,
                context=context, strict=strict, p=p, overlap=o, topography=topography)

    if isinstance(obj, xr.DataArray):
        return _downscale_dataarray(obj, find_dims(obj, dims), opts)
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"downscale needs an xarray DataArray or Dataset, got {type(obj).__name__}")
    found = find_dims(obj, dims)
    need = {found["time"], found["y"], found["x"]}
    out_vars, skipped, reasons = {}, [], []
    for name, var in obj.data_vars.items():
        if not need <= set(var.dims):
            continue
        if not is_precipitation(var):
            skipped.append(name)
            units = var.attrs.get("units")
            reasons.append(f"{name!s} has " + (f"units {units!r}" if units is not None else "no units"))
            continue
        out_vars[name] = _downscale_dataarray(var, found, opts)
    if not out_vars:
        raise ValueError("downscale: the Dataset has no precipitation variable (with dimensions "
                         f"{sorted(map(str, need))} and rate units)" +
                         (": " + "; ".join(reasons) if reasons else ""))
    if skipped:
        warnings.warn(f"downscale: variables {[str(s) for s in skipped]} are not precipitation "
                      "rates and are left out of the output", UserWarning, stacklevel=2)
    keep = {n: v for n, v in obj.data_vars.items() if not set(v.dims) & need}
    out = xr.Dataset({**out_vars, **keep})
    out.attrs = append_history(obj.attrs, _call_text(c, opts))
    for name, da in out_vars.items():
        out[name].attrs = da.attrs
        out[name].encoding = da.encoding
    return out


def _call_text(c, opts) -> str:
    return (f"downscale(S={c.S}, T={c.T}, L={c.L}, n_members={opts['M']}, sampler={opts['sampler']!r}, "
            f"steps={opts['n_steps']}, eta={opts['eta']:g}, seed={opts['seed']}, "
            f"context={opts['context']!r}, tile_size={opts['p'] * c.S}, overlap={opts['overlap']})")


def _output_bytes(obj, c, M: int, dims) -> float:
    """float32 bytes of the whole output of ``M`` members (for the refusal message)."""
    try:
        found = find_dims(obj, dims)
        n = obj.sizes[found["time"]] * obj.sizes[found["y"]] * obj.sizes[found["x"]]
    except Exception:  # noqa: BLE001 - only for a message
        return float("nan")
    nvars = 1 if isinstance(obj, xr.DataArray) else max(1, len(obj.data_vars))
    return 4.0 * M * n * c.T * c.S * c.S * nvars


def _downscale_dataarray(da: xr.DataArray, found: Mapping[str, Hashable], opts: Mapping[str, Any]) -> xr.DataArray:
    tdim, ydim, xdim = found["time"], found["y"], found["x"]
    extra = [d for d in da.dims if d not in (tdim, ydim, xdim)]
    if "member" in da.dims:
        raise ValueError("the input already has a 'member' dimension; rename it first")
    if extra:
        # downscale each extra index separately, with its own noise key
        stacked = da.stack(__extra__=extra)
        pieces = [
            _downscale_core(stacked.isel(__extra__=i).drop_vars(["__extra__", *extra], errors="ignore"),
                            found, opts, key=i)
            for i in range(stacked.sizes["__extra__"])
        ]
        out = xr.concat(pieces, dim="__extra__", coords="minimal", compat="override", join="override")
        mindex = xr.Coordinates.from_pandas_multiindex(stacked.indexes["__extra__"], "__extra__")
        out = out.drop_vars(["__extra__"], errors="ignore").assign_coords(mindex).unstack("__extra__")
        return out.transpose("member", *da.dims)
    return _downscale_core(da, found, opts, key=0)


def _downscale_core(da: xr.DataArray, found: Mapping[str, Hashable], opts: Mapping[str, Any], key: int) -> xr.DataArray:
    model, M = opts["model"], opts["M"]
    c = model.config
    S, T, L = c.S, c.T, c.L
    tdim, ydim, xdim = found["time"], found["y"], found["x"]
    label = label_of(da)
    n, ny, nx = da.sizes[tdim], da.sizes[ydim], da.sizes[xdim]
    if min(n, ny, nx) < 1:
        raise ValueError(f"{label} is empty: sizes {dict(da.sizes)}")

    # decoded values, units (lazy), float dtype, datetime and regular time, cadence, spacing
    conv = precipitation_input(da, label)
    times = np.asarray(da.coords[tdim].values) if tdim in da.coords else None
    if times is not None:
        check_time_coordinate(times, tdim, label)
        check_regular_time(times, tdim)
        if times.size >= 2 and np.issubdtype(np.asarray(times).dtype, np.datetime64) \
                and not times[1] > times[0]:
            raise ValueError(f"{label}: time must be increasing")
    hr_step = _check_cadence(times, model, opts["strict"], label)
    _check_spacing(da, ydim, xdim, model, opts["strict"], label)
    if opts["context"] == "drop" and n < L:
        raise ValueError(f"{label} has {n} LR steps, fewer than the context length L={L} "
                         "(context='drop' keeps none); use context='pad'")

    conv = conv.transpose(tdim, ydim, xdim)
    if conv.chunks is None:
        # numpy input: check now (cheap), then chunk in time so that one chunk's HR output
        # stays near 128 MB
        vals = conv.values
        if np.nanmin(vals, initial=np.inf) < 0:
            raise ValueError(f"{label} has negative values (minimum {float(np.nanmin(vals)):g} "
                             "mm h-1); precipitation must be >= 0")
        per_step = 4 * min(M, MEMBERS_PER_CHUNK) * T * S * S * ny * nx
        conv = conv.chunk({tdim: int(max(1, min(n, 128e6 // per_step)))})
        check_negative = False
    else:
        check_negative = True
    X = conv.data.astype(np.float32)

    # time halo: ctx[t, l] = x[t - L + 1 + l]
    if opts["context"] == "pad":
        Xp = dsa.concatenate([X[:1]] * (L - 1) + [X], axis=0) if L > 1 else X
        n_out, t0 = n, 0
        tchunks = X.chunks[0]
    else:
        Xp = X
        n_out, t0 = n - L + 1, L - 1
        tchunks = X[L - 1:].chunks[0]
    ctx = dsa.stack([Xp[l:l + n_out].rechunk({0: tchunks}) for l in range(L)], axis=1)
    tidx = dsa.arange(t0, t0 + n_out, chunks=(tchunks,), dtype=np.int64)
    members = dsa.arange(M, chunks=min(M, MEMBERS_PER_CHUNK), dtype=np.int64)

    # topography
    topo = None
    topo_range = (model.normalization.get("topo_min"), model.normalization.get("topo_max"))
    if opts["topography"] is not None:
        topo = _topography_array(opts["topography"], ydim, xdim, ny * S, nx * S, da, found, S)

    # global tiles and the spatial pairs of chunks
    py, px = min(opts["p"], ny), min(opts["p"], nx)
    o = opts["overlap"]
    oy, ox = min(o, max(0, py - 1)), min(o, max(0, px - 1))
    sy, sx = tile_layout(ny, py, oy), tile_layout(nx, px, ox)
    wy, wx = blend_weights(py, oy), blend_weights(px, ox)
    ybounds = np.cumsum((0,) + X.chunks[1])
    xbounds = np.cumsum((0,) + X.chunks[2])
    base = dict(handle=opts["handle"], device=opts["device"], S=S, T=T, M=M, seed=opts["seed"],
                key=int(key), sampler=opts["sampler"], steps=opts["steps"], eta=opts["eta"],
                batch_size=opts["batch_size"], py=py, px=px, wy=wy, wx=wx,
                check_negative=check_negative, topo_min=topo_range[0], topo_max=topo_range[1])
    from dask.base import tokenize

    rows = []
    for a, b in zip(ybounds[:-1], ybounds[1:]):
        a, b = int(a), int(b)
        ty = _tiles_for(a, b, sy, py)
        ra, rb = min(ty), max(ty) + py
        row = []
        for cc, d in zip(xbounds[:-1], xbounds[1:]):
            cc, d = int(cc), int(d)
            tx = _tiles_for(cc, d, sx, px)
            rc, rd = min(tx), max(tx) + px
            plan = dict(base, ra=ra, rc=rc, yrange=(a, b), xrange=(cc, d), ty=ty, tx=tx)
            sub = ctx[:, :, ra:rb, rc:rd].rechunk({0: tchunks, 1: L, 2: rb - ra, 3: rd - rc})
            args: list[Any] = [members, "m", sub, "tlyx", tidx, "t"]
            if topo is not None:
                args += [topo[ra * S:rb * S, rc * S:rd * S].rechunk(-1), "YX"]
            name = "xsuperres-downscale-" + tokenize(members, sub, tidx, plan, topo is not None)
            row.append(dsa.blockwise(
                _downscale_block, "mtyx", *args,
                adjust_chunks={"t": lambda k: k * T, "y": ((b - a) * S,), "x": ((d - cc) * S,)},
                dtype=np.float32, concatenate=True, meta=np.empty((0, 0, 0, 0), np.float32),
                name=name, plan=plan))
        rows.append(row)
    data = dsa.concatenate([dsa.concatenate(r, axis=3) for r in rows], axis=2)

    # coordinates and attributes
    lr_grid = da.isel({tdim: slice(t0, None)}) if t0 else da
    coords = hr_template_coords(lr_grid.drop_vars([tdim], errors="ignore"), S, T, found)
    if times is not None:
        tvar = lr_grid.coords[tdim].variable
        coords[tdim] = xr.Variable(tdim, _hr_time(tvar.values, T, hr_step), attrs=tvar.attrs)
    coords["member"] = xr.Variable("member", np.arange(M), attrs={"long_name": "ensemble member"})
    out = xr.DataArray(data, dims=("member", tdim, ydim, xdim), coords=coords, name=da.name)
    out = out.transpose("member", *da.dims)
    out.attrs = _attrs(conv.attrs, model, opts, c)
    out.encoding = {k: v for k, v in da.encoding.items() if k in ("grid_mapping", "coordinates")}
    return _clean_grid_mapping(out)


def _topography_array(topo, ydim, xdim, H, W, da, found, S):
    if not isinstance(topo, xr.DataArray):
        topo = xr.DataArray(np.asarray(topo), dims=(ydim, xdim))
    if set(topo.dims) != {ydim, xdim}:
        raise ValueError(f"topography must have the dimensions ({ydim!r}, {xdim!r}) of the input, "
                         f"got {topo.dims}")
    topo = topo.transpose(ydim, xdim)
    if topo.shape != (H, W):
        raise ValueError(f"topography must be on the HR grid: shape ({H}, {W}) = LR shape x S={S}, "
                         f"got {topo.shape}")
    for dim in (ydim, xdim):
        if dim in topo.coords and dim in da.coords and da.sizes[dim] >= 2:
            from .grid import refine_coordinate

            hr = refine_coordinate(np.asarray(da.coords[dim].values), S, dim)
            got = np.asarray(topo.coords[dim].values, dtype=np.float64)
            tol = 1e-3 * abs(hr[1] - hr[0]) if hr.size > 1 else 1e-9
            if not np.allclose(got, hr, rtol=0, atol=tol):
                raise ValueError(f"topography coordinate {dim!r} does not match the HR grid "
                                 f"(first values {got[:3]} vs {hr[:3]}); interpolate it onto the "
                                 "HR grid first (e.g. xsuperres.topography helpers)")
    if topo.chunks is None:
        finite_array(topo.values, "topography", TOPOGRAPHY_FIX)
    data = topo.data
    return data if isinstance(data, dsa.Array) else dsa.from_array(np.asarray(data, np.float32), chunks=-1)


def _attrs(src: Mapping[str, Any], model, opts, c) -> dict[str, Any]:
    attrs = {k: v for k, v in src.items() if k not in _UNSAFE_ATTRS}
    attrs["units"] = TARGET_UNITS
    attrs.setdefault("standard_name", "lwe_precipitation_rate")
    attrs["cell_methods"] = str(src.get("cell_methods") or "time: mean")
    attrs = append_history(attrs, _call_text(c, opts))
    md = model.metadata or {}
    name = md.get("name") or Path(opts["handle"].path).name
    attrs.update({
        "xsuperres_model": str(name),
        "xsuperres_model_version": str(md.get("version") or md.get("trained_at") or __version__),
        "xsuperres_model_sha256": opts["handle"].token,
        "xsuperres_S": c.S,
        "xsuperres_T": c.T,
        "xsuperres_L": c.L,
        "xsuperres_sampler": opts["sampler"],
        "xsuperres_steps": int(opts["n_steps"]),
        "xsuperres_eta": float(opts["eta"]),
        "xsuperres_tile_size": int(opts["p"] * c.S),
        "xsuperres_overlap": int(opts["overlap"]),
        "xsuperres_seed": opts["seed"],
        "xsuperres_n_members": opts["M"],
        "xsuperres_context": (
            f"pad: the first {c.L - 1} LR step(s) were downscaled with their missing context "
            "padded by repeating the first LR frame" if opts["context"] == "pad" else
            f"drop: the first {c.L - 1} LR step(s) (without a full context) are not in the output"),
        "xsuperres_version": __version__,
    })
    return attrs


# ---------------------------------------------------------------------------------------
# command line (``xsuperres downscale``; the parser lives in :mod:`xsuperres.cli`)
# ---------------------------------------------------------------------------------------
def _parse_chunks(items: Optional[list[str]]) -> dict[str, int]:
    chunks: dict[str, int] = {}
    for item in items or []:
        for part in str(item).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"--chunks takes DIM=N (e.g. time=24), got {part!r}")
            try:
                chunks[name.strip()] = int(value)
            except ValueError:
                raise ValueError(f"--chunks: {value!r} is not an integer (in {part!r})") from None
    return chunks


def _open_topography(path: str) -> xr.DataArray:
    if path.lower().endswith((".tif", ".tiff")):
        import rioxarray  # noqa: F401  (registers the engine)

        da = xr.open_dataarray(path, engine="rasterio").squeeze(drop=True)
        return da.rename({k: v for k, v in {"band_data": "elevation"}.items() if k == da.name})
    ds = xr.open_dataset(path, decode_coords="all")
    names = [v for v in ds.data_vars if ds[v].ndim == 2]
    if len(names) != 1:
        raise ValueError(f"{path}: expected one 2-D elevation variable, found {names}")
    return ds[names[0]]


def run_cli(args) -> int:
    """``xsuperres downscale INPUT OUTPUT --model M ...`` (see ``xsuperres downscale -h``)."""
    import time as _time

    start = _time.perf_counter()
    chunks = _parse_chunks(args.chunks)
    ds = xr.open_dataset(args.input, engine="netcdf4", decode_coords="all")   # the package's engine
    if not chunks:
        chunks = {"time": 24} if "time" in ds.dims else {}
    missing = [d for d in chunks if d not in ds.dims]
    if missing:
        raise ValueError(f"--chunks names {missing}, not dimensions of {args.input} "
                         f"({', '.join(map(str, ds.dims))})")
    ds = ds.chunk(chunks)
    if args.var is not None:
        if args.var not in ds:
            raise ValueError(f"{args.input}: no variable {args.var!r}; variables are {list(ds.data_vars)}")
        keep = [args.var] + [v for v in ds.data_vars if ds[v].ndim == 0]
        ds = ds[keep]
    topo = _open_topography(args.topography) if args.topography else None
    out = downscale(ds, args.model, args.members, topography=topo, sampler=args.sampler,
                    steps=args.steps, seed=args.seed, device=args.device, context=args.context,
                    strict=not args.no_strict)
    target = str(args.output)
    if target.endswith(".nc"):
        job = out.to_netcdf(target, engine="netcdf4", compute=False)
    else:
        job = out.to_zarr(target, mode="w", compute=False)
    if args.no_progress:
        job.compute()
    else:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            job.compute()
    sizes = ", ".join(f"{d}={n}" for d, n in out.sizes.items())
    print(f"wrote {target}: {sizes} ({_time.perf_counter() - start:.1f} s)")
    return 0
