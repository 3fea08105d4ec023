"""The settings of one ``downscale`` call: checked once, carried as a :class:`DownscaleOptions`.

:func:`build_options` checks every argument of :func:`xsuperres.downscale` that does not
depend on the input's values (ensemble size, seed, sampler, device, tiles, topography
presence), resolves the model and returns the frozen :class:`DownscaleOptions` that the
rest of the call reads. The ensemble limits :data:`MAX_MEMBERS` and
:data:`MEMBERS_PER_CHUNK` live here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import xarray as xr

from ..checks import finite_float, positive_int
from ..config import inference_mass_conservation
from ..checks import seed as check_seed
from .._pysteps import import_pysteps
from ..dims import find_dims
from .tiles import default_overlap
from .workers import ModelHandle, handle_for, resolve_model

if TYPE_CHECKING:
    from ..model import SRModel

__all__ = ["MAX_MEMBERS", "MEMBERS_PER_CHUNK", "DownscaleOptions", "build_options", "ModelLike",
           "default_tile_size"]

ModelLike = Union["SRModel", str, os.PathLike]

CONTEXT_MODES = ("pad", "drop")
#: ``downscale(..., mean=)``: ``"auto"``, ``"network"`` (``U_det``) or a time method of
#: :mod:`xsuperres.temporal` applied to the LR steps around each block
MEAN_METHODS = ("auto", "network", "persistence", "linear", "motion")
#: members per output chunk: members are independent, so the member axis is chunked and a
#: chunk's memory does not grow with ``n_members``; a function of ``n_members`` only, so
#: every chunking of the input sends the same (sample, members) batches to the networks
MEMBERS_PER_CHUNK = 16
#: the largest ``n_members`` accepted (the output of a larger ensemble is refused with the
#: memory it would need)
MAX_MEMBERS = 10_000


@dataclass(frozen=True, eq=False)
class DownscaleOptions:
    """The checked settings of one :func:`xsuperres.downscale` call.

    Built once by :func:`build_options`; never sent to the workers (tasks get a
    :class:`~xsuperres.downscaling.graph.ChunkPlan`).

    Attributes
    ----------
    model
        The resolved :class:`~xsuperres.SRModel` (config, normalization, metadata).
    handle
        Where workers load the model from (:class:`ModelHandle`).
    n_members
        Ensemble size (``1 .. MAX_MEMBERS``).
    seed
        Non-negative noise seed.
    sampler, steps, eta
        As passed to :meth:`SRModel.predict` (``steps=None``: the sampler's default).
    n_steps
        The number of steps recorded in the attributes and history: ``steps``, or the
        sampler's default (the network calls of a run) when ``steps`` is None.
    device
        Device name for the workers (checked, not resolved: ``"auto"`` stays ``"auto"``).
    batch_size
        ``(sample, member)`` items per network call (rounded down to whole samples, at
        least one), or None (automatic, :mod:`~xsuperres.downscaling.batching`).
    context
        ``"pad"`` or ``"drop"``.
    strict
        Cadence / spacing mismatches are errors (True) or warnings (False).
    p
        Tile side in LR pixels (``tile_size / S``).
    overlap
        Tile overlap in LR pixels (``0 <= overlap < p``; 0 when ``p == 1``).
    topography
        HR elevation (m) as given, or None (flat).
    mean_only
        :func:`xsuperres.downscale_mean`: the deterministic stage only (``n_members`` is
        1 and the sampler settings are not used).
    mass_conservation
        The resolved output mode (:func:`~xsuperres.config.inference_mass_conservation`):
        ``"tile"``, ``"block"`` or None.
    mean
        The resolved conditional mean of the diffusion stage (:func:`check_mean`):
        ``"network"`` (``U_det``) or a time method (S = 1 models with T > 1 only).
    """

    model: Any
    handle: ModelHandle
    n_members: int
    seed: int
    sampler: str
    steps: Optional[int]
    n_steps: int
    eta: float
    device: str
    batch_size: Optional[int]
    context: str
    strict: bool
    p: int
    overlap: int
    topography: Any = None
    mean_only: bool = False
    mass_conservation: Optional[str] = "tile"
    mean: str = "network"

    @property
    def lookahead(self) -> int:
        """LR steps after each block that the tasks need: the model's lookahead, or 1 for a
        ``"linear"`` / ``"motion"`` mean (they interpolate towards the next step)."""
        need = 1 if self.mean in ("linear", "motion") else 0
        return max(int(self.model.config.lookahead), need)


def check_mean(mean: str, config: Any, mean_only: bool, trained_around: str = "network") -> str:
    """The conditional mean ``downscale`` uses with a model of this ``config``.

    ``"auto"``: the temporal peer the model's diffusion stage was trained around
    (``trained_around``, :attr:`~xsuperres.model.SRModel.diffusion_mean`) when it is one;
    else ``"motion"`` for temporal models (S = 1, T > 1; measured on left-out events,
    docs/results.md), ``"network"`` otherwise; always ``"network"`` for
    ``downscale_mean``. Other
    values are checked: a ValueError where they do not apply, an ImportError naming the
    ``peers`` extra when ``"motion"`` needs pysteps and it is missing (on the call, not
    in a dask task).
    """
    if mean not in MEAN_METHODS:
        raise ValueError(f"mean must be one of {MEAN_METHODS}, got {mean!r}")
    if mean == "auto":
        if mean_only or not (config.S == 1 and config.T > 1):
            mean = "network"
        else:
            mean = trained_around if trained_around != "network" else "motion"
    if mean == "network":
        return mean
    if mean_only:
        raise ValueError(f"downscale_mean has no mean={mean!r}: that mean is "
                         f"xsuperres.interpolate(..., time_method={mean!r})")
    if config.S != 1 or config.T < 2:
        raise ValueError(
            f"mean={mean!r} interpolates the LR steps in time only, so it needs a temporal "
            f"model (S = 1, T > 1); this one has (S, T) = ({config.S}, {config.T}): use "
            "mean='network'")
    if mean == "motion":
        import_pysteps("motion", "mean='motion' (the default mean='auto' of temporal models, "
                       "S = 1 and T > 1; pass mean='network' to do without)")
    return mean


def default_tile_size(config: Any) -> int:
    """The HR tile side used when ``tile_size=None``: the model's training tile.

    Measured against larger inference tiles (2, 3 and 5 times the training tile, and the
    whole domain; docs/performance.md, "Tile size"), last on a day the model never saw
    (a leave-one-event-out fold of the ``radar-s10-t3`` recipe, KNMI 2010-08-26 left
    out, ``benchmarks/tile_size.py``): larger tiles are 1.3-1.8 x faster, but the
    3-member CRPS worsens systematically, by 0.6 % at twice the training tile, 2-3 % at
    three times and 4.5 % with the whole 200 x 200 px domain as one tile, and the PITD
    from 0.011 to 0.015-0.024 (the same sign for both seeds; the networks, whose group
    normalization and pooled cross-attention see the whole tile, were trained on this
    tile). The first weights lost more (1-5 %, 7-12 %). Pass ``tile_size`` (and
    ``overlap``) to trade quality for speed.
    """
    return int(config.tile_size)


def output_bytes(obj, c, M: int, dims) -> float:
    """float32 bytes of the whole output of ``M`` members (for the refusal message)."""
    try:
        found = find_dims(obj, dims)
        n = obj.sizes[found["time"]] * obj.sizes[found["y"]] * obj.sizes[found["x"]]
    except Exception:  # noqa: BLE001 - only for a message
        return float("nan")
    nvars = 1 if isinstance(obj, xr.DataArray) else max(1, len(obj.data_vars))
    return 4.0 * M * n * c.T * c.S * c.S * nvars


def build_options(
    obj: Any,
    model: ModelLike,
    n_members: int,
    *,
    topography: Any,
    sampler: str,
    steps: Optional[int],
    seed: int,
    device: str,
    batch_size: Optional[int],
    context: str,
    strict: bool,
    dims: Optional[Mapping[str, Hashable]],
    eta: float,
    tile_size: Optional[int],
    overlap: Optional[int],
    mean_only: bool = False,
    mass_conservation: Optional[str] = "auto",
    mean: str = "auto",
) -> DownscaleOptions:
    """Check the arguments of :func:`xsuperres.downscale` and resolve the model.

    Called by ``downscale`` only (its warning names ``downscale``'s caller's caller).
    ``obj`` and ``dims`` serve the message of an oversized ensemble only. See
    ``downscale`` for the parameters and the errors.
    """
    m = resolve_model(model)
    c = m.config
    mode = inference_mass_conservation(c, mass_conservation)
    mean = check_mean(mean, c, mean_only, m.diffusion_mean)
    M = positive_int(n_members, "n_members")
    if M > MAX_MEMBERS:
        raise ValueError(
            f"n_members={M} is more than xsuperres downscales in one call ({MAX_MEMBERS}); its "
            f"output would need {output_bytes(obj, c, M, dims) / 1e9:.3g} GB (float32). Ask "
            f"for at most {MAX_MEMBERS} members, or call downscale several times with "
            "different seeds and concatenate along 'member'")
    seed = check_seed(seed)
    eta = finite_float(eta, "eta")
    if context not in CONTEXT_MODES:
        raise ValueError(f"context must be 'pad' or 'drop', got {context!r}")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if not isinstance(device, str):
        device = str(device)
    from ..model import _resolve_device

    _resolve_device(device)  # refuses an unknown device now, not in a worker
    calls = m.check_sampler(sampler, steps, eta)  # network calls per run
    m.cap  # noqa: B018  (raises early when the model has no normalization cap)
    # steps=None: the sampler's default, i.e. its calls per run. Given steps are recorded
    # as given, so that the history line reruns the same sampler (a few-step sampler may
    # make one call fewer than asked for: duplicate timesteps are dropped)
    n_steps = calls if steps is None else steps
    tile = default_tile_size(c) if tile_size is None else positive_int(tile_size, "tile_size")
    if tile % c.S:
        raise ValueError(f"tile_size must be a multiple of S={c.S}, got {tile}")
    p = tile // c.S
    o = default_overlap(p) if overlap is None else int(overlap)
    if p > 1 and not 0 <= o < p:
        raise ValueError(f"overlap must be in [0, {p - 1}] LR pixels (tile of {p}), got {overlap!r}")
    if p == 1:
        o = 0
    if topography is None:
        if m.normalization.get("topo_min") is not None:
            warnings.warn(
                f"{'downscale_mean' if mean_only else 'downscale'}: topography=None, so the "
                "model sees a flat (zero) topography, "
                "although it was trained with one; pass the HR elevation (m), e.g. "
                "xsuperres.topography.glo90(...) or xsuperres.topography.from_file(...)",
                UserWarning, stacklevel=4)
    elif m.normalization.get("topo_min") is None:
        raise ValueError("this model was trained without topography (no topo_min/topo_max in "
                         "its normalization): pass topography=None")

    return DownscaleOptions(
        model=m, handle=handle_for(m), n_members=M, seed=int(seed), sampler=sampler, steps=steps,
        n_steps=n_steps, eta=float(eta), device=device, batch_size=batch_size, context=context,
        strict=strict, p=p, overlap=o, topography=topography, mean_only=bool(mean_only),
        mass_conservation=mode, mean=mean)
