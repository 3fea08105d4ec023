"""The public function :func:`downscale`: DataArray and Dataset in, lazy HR ensemble out.

:func:`downscale` checks its arguments once (:func:`~xsuperres.downscaling.options.build_options`),
maps a Dataset onto its precipitation variables and a DataArray with extra dimensions onto
its indices (each with its own noise key), applies the input rules to each variable, builds
its dask graph (:mod:`~xsuperres.downscaling.graph`) and labels the result: HR coordinates,
attributes and the ``history`` line.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import xarray as xr

from ..cf import append_history
from ..coarsen import _clean_grid_mapping, check_regular_time
from ..dims import find_dims
from ..interpolate import hr_template_coords
from ..units import TARGET_UNITS
from ..validate import check_time_coordinate, is_precipitation, label_of, precipitation_input
from .._version import __version__
from ..nn.samplers import DEFAULT_SAMPLER
from .checks import check_cadence, check_spacing, hr_time, topography_array
from .graph import RunSettings, ensemble_graph, mean_in_time, time_halo
from .options import MEMBERS_PER_CHUNK, DownscaleOptions, ModelLike, build_options

__all__ = ["downscale", "downscale_mean"]

#: the ``xsuperres_mean`` attribute of an ensemble, per ``mean=`` setting
MEAN_TEXT = {
    "network": "network: U_det (the deterministic U-Net)",
    "persistence": "persistence: every HR step of a block repeats its LR step",
    "linear": "linear: linear interpolation in time between x[t-1], x[t] and x[t+1], per block "
              "(uses the LR step after the block)",
    "motion": "motion: motion-compensated interpolation in time of x[t-1], x[t] and x[t+1] "
              "(pysteps Proesmans optical flow on the whole domain per LR step; uses the LR step after the block)",
}

_UNSAFE_ATTRS = ("_FillValue", "missing_value", "scale_factor", "add_offset", "valid_range",
                 "valid_min", "valid_max", "actual_range")


def downscale(
    obj: xr.DataArray | xr.Dataset,
    model: ModelLike,
    n_members: int = 3,
    *,
    topography: Optional[xr.DataArray] = None,
    sampler: str = DEFAULT_SAMPLER,
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
    mass_conservation: Optional[str] = "auto",
    mean: str = "auto",
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
        name of a pretrained model (:func:`xsuperres.list_models`).
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
        Diffusion sampler (``"dpmpp_2m"``, the default, ``"ddim"``, ``"ancestral"``), its
        number of steps (``None``: the sampler's default) and the stochasticity ``eta`` of
        ``"ddim"`` and ``"dpmpp_2m"`` (a finite number >= 0; 0, the default, is
        deterministic given the initial noise).
    seed
        Non-negative integer; with the same seed the members are identical whatever the
        chunking, scheduler, batch size or device (to float rounding).
    device
        ``"auto"`` (each worker uses its GPU when it has one), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``; anything else is refused on the call.
    batch_size
        ``(sample, member)`` items per network call, a sample being one tile at one LR
        step: rounded down to whole samples (at least one), each with all the members of
        its member chunk. ``None`` (default): as many samples as fit in a quarter of the
        free memory (CPU RAM or GPU memory, shared by the dask tasks that run at once), at
        most 64 items (:mod:`xsuperres.downscaling.batching`); members then differ from
        the unbatched ones, and between chunkings, at float-rounding level only.
        ``batch_size=1``: one sample per call whatever the chunking, so results are
        **bitwise** chunk-invariant (and equal to earlier versions' default).
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
        HR tile side (a multiple of S); default the model's ``config.tile_size``, the
        training tile (:func:`~xsuperres.downscaling.options.default_tile_size`: larger
        tiles are faster on small domains but measurably worse, docs/performance.md).
    overlap
        Tile overlap in LR pixels; default ``tile_size / S // 4`` (at least 1 when the
        tile has more than one LR pixel).
    mass_conservation
        ``"auto"`` (default): ``"block"`` for ``S = 1`` models and for tile-trained models
        whose training tile spans more than 2 LR pixels, ``"tile_refill"`` for other
        tile-trained models, else the training mode
        (:func:`~xsuperres.config.inference_mass_conservation`); ``"block"``: every member's ``T x S x S`` block means equal the input
        exactly (``coarsen_perfect(out, S, T)`` gives the input back; the tile blending
        keeps it); ``"tile"``: the preprint's per-tile rescaling; ``"tile_refill"``:
        ``"tile"`` with the frames it leaves all dry given their ``"block"`` values;
        ``None``: none.
    mean
        The conditional mean around which the diffusion stage samples the members.
        ``"auto"`` (default): ``"motion"`` for temporal models (S = 1, T > 1),
        ``"network"`` for all others. ``"network"``: ``U_det``'s, the preprint's method.
        For temporal models also ``"motion"``: the motion-compensated interpolation in
        time of the LR steps ``x[t-1], x[t], x[t+1]`` (pysteps' Proesmans optical flow on
        the whole domain per LR step, :func:`xsuperres.temporal.block_in_time`; needs the
        ``peers`` extra), or ``"linear"`` / ``"persistence"``. ``"motion"`` and
        ``"linear"`` **use the LR step after each block** (padded by repeating the last
        step with ``context="pad"``, dropped with ``"drop"``). On the four left-out days
        of the (1, 3) leave-one-event-out folds, ``"motion"`` gave a CRPS 8-32 % lower
        than the network mean and 5-11 % lower than motion-compensated interpolation
        alone (docs/results.md).

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
    opts = build_options(obj, model, n_members, topography=topography, sampler=sampler,
                         steps=steps, seed=seed, device=device, batch_size=batch_size,
                         context=context, strict=strict, dims=dims, eta=eta,
                         tile_size=tile_size, overlap=overlap,
                         mass_conservation=mass_conservation, mean=mean)
    return _downscale_object(obj, dims, opts)


def downscale_mean(
    obj: xr.DataArray | xr.Dataset,
    model: ModelLike,
    *,
    topography: Optional[xr.DataArray] = None,
    device: str = "auto",
    batch_size: Optional[int] = None,
    context: str = "pad",
    strict: bool = True,
    dims: Optional[Mapping[str, Hashable]] = None,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    mass_conservation: Optional[str] = "auto",
) -> xr.DataArray | xr.Dataset:
    """The deterministic stage alone: the conditional mean ``D``, lazily, on the HR grid.

    The preprint's "deterministic" model (``U_det`` with mass conservation, no
    diffusion) through the same tiles, blending, halo, chunking and checks as
    :func:`downscale`: one smooth field, no tile seams, no members. Use it as the
    ensemble's best single estimate or to compare with it (e.g. the demo's "deterministic
    mean" panel); it is **not** the mean of the ensemble members, which also carries the
    diffusion residuals' mean.

    Parameters
    ----------
    obj, model, topography, device, context, strict, dims, tile_size, overlap, mass_conservation
        As for :func:`downscale`.
    batch_size
        Samples (tile x LR step) per network call; ``None``: automatic, as for
        :func:`downscale` with one member.

    Returns
    -------
    DataArray or Dataset
        float32, mm h-1, dask-backed, dims of the input on the HR grid (no ``member``);
        attributes as for :func:`downscale` without the sampler settings, with
        ``xsuperres_stage = "deterministic"``.

    Raises
    ------
    ValueError
        As for :func:`downscale`.
    """
    opts = build_options(obj, model, 1, topography=topography, sampler=DEFAULT_SAMPLER,
                         steps=None, seed=0, device=device, batch_size=batch_size,
                         context=context, strict=strict, dims=dims, eta=0.0,
                         tile_size=tile_size, overlap=overlap, mean_only=True,
                         mass_conservation=mass_conservation)
    return _downscale_object(obj, dims, opts)


def _downscale_object(obj: xr.DataArray | xr.Dataset, dims: Optional[Mapping[str, Hashable]],
                      opts: DownscaleOptions) -> xr.DataArray | xr.Dataset:
    """:func:`downscale` / :func:`downscale_mean` after the argument checks."""
    if isinstance(obj, xr.DataArray):
        return _downscale_dataarray(obj, find_dims(obj, dims), opts)
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"downscale needs an xarray DataArray or Dataset, got {type(obj).__name__}")
    # the Dataset: every precipitation variable with the three dimensions (kept inline, so
    # that the warnings' stacklevels name the same frames as for a DataArray)
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
        raise ValueError(f"{_name(opts)}: the Dataset has no precipitation variable (with dimensions "
                         f"{sorted(map(str, need))} and rate units)" +
                         (": " + "; ".join(reasons) if reasons else ""))
    if skipped:
        warnings.warn(f"{_name(opts)}: variables {[str(s) for s in skipped]} are not precipitation "
                      "rates and are left out of the output", UserWarning, stacklevel=3)
    keep = {n: v for n, v in obj.data_vars.items() if not set(v.dims) & need}
    partial = [str(n) for n, v in obj.data_vars.items()
               if set(v.dims) & need and not need <= set(v.dims)]
    if partial:  # e.g. a 2-D topography on the LR grid: it has no HR counterpart here
        warnings.warn(f"{_name(opts)}: variables {partial} have some but not all of the dimensions "
                      f"{sorted(map(str, need))} and are left out of the output (a topography is "
                      "passed as topography=..., on the HR grid)", UserWarning, stacklevel=3)
    out = xr.Dataset({**out_vars, **keep})
    out.attrs = append_history(obj.attrs, _call_text(opts))
    for name, da in out_vars.items():
        out[name].attrs = da.attrs
        out[name].encoding = da.encoding
    return out


def _downscale_dataarray(da: xr.DataArray, found: Mapping[str, Hashable], opts: DownscaleOptions) -> xr.DataArray:
    """One variable; with extra dimensions, each of their indices with its own noise key."""
    tdim, ydim, xdim = found["time"], found["y"], found["x"]
    extra = [d for d in da.dims if d not in (tdim, ydim, xdim)]
    if "member" in da.dims:
        raise ValueError("the input already has a 'member' dimension; rename it first")
    if extra:
        # downscale each extra index separately, with its own noise key
        stacked = da.stack(__extra__=extra)
        pieces = [
            _downscale_variable(stacked.isel(__extra__=i).drop_vars(["__extra__", *extra], errors="ignore"),
                                found, opts, key=i)
            for i in range(stacked.sizes["__extra__"])
        ]
        out = xr.concat(pieces, dim="__extra__", coords="minimal", compat="override", join="override")
        mindex = xr.Coordinates.from_pandas_multiindex(stacked.indexes["__extra__"], "__extra__")
        out = out.drop_vars(["__extra__"], errors="ignore").assign_coords(mindex).unstack("__extra__")
        return out.transpose(*(() if opts.mean_only else ("member",)), *da.dims)
    return _downscale_variable(da, found, opts, key=0)


def _downscale_variable(da: xr.DataArray, found: Mapping[str, Hashable], opts: DownscaleOptions,
                        key: int) -> xr.DataArray:
    """The lazy HR ensemble of one ``(time, y, x)`` variable.

    Parameters
    ----------
    da
        LR precipitation with exactly the dimensions ``found["time"], found["y"],
        found["x"]`` (in any order), numpy- or dask-backed.
    found
        The names of the time, y and x dimensions (:func:`xsuperres.find_dims`).
    opts
        The call's checked settings.
    key
        Noise key of the variable (the index along the input's extra dimensions, 0
        without): different keys give independent members.

    Returns
    -------
    xarray.DataArray
        ``("member", *da.dims)``, float32 mm/h, dask-backed, on the HR grid, with the HR
        coordinates, attributes (:func:`_attrs`) and the ``grid_mapping`` /
        ``coordinates`` encoding of ``da``.

    Raises
    ------
    ValueError
        Empty input, input refused by the shared input rules
        (:func:`xsuperres.validate.precipitation_input`, datetime-like, increasing and
        regular time), a cadence or spacing mismatch with ``strict``, ``context="drop"``
        with fewer than ``L`` steps, negative values of a numpy input, a topography not
        on the HR grid.

    Notes
    -----
    The checks are called from here directly: their warnings' ``stacklevel`` counts on
    it. A numpy input is checked for negative values now and chunked in time so that one
    output chunk stays near 128 MB; a dask input is checked in the tasks.
    """
    model, M = opts.model, opts.n_members
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
    hr_step = check_cadence(times, model, opts.strict, label)
    check_spacing(da, ydim, xdim, model, opts.strict, label)
    K = opts.lookahead  # the model's, or 1 for a mean interpolated towards the next step
    if opts.context == "drop" and n < L + K:
        if K > c.lookahead:
            after = (f" plus the LR step after the block that mean={opts.mean!r} uses (the "
                     "default mean='auto' of temporal models; mean='network' does without it)")
        else:
            after = f" plus the lookahead {K}" if K else ""
        raise ValueError(f"{label} has {n} LR steps, fewer than the context length L={L}"
                         + after + " (context='drop' keeps none); use context='pad'")

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

    # the graph: time halo, topography, tiles per output chunk
    ctx, tidx, t0 = time_halo(X, L, opts.context, K)
    topo = None
    if opts.topography is not None:
        topo = topography_array(opts.topography, ydim, xdim, ny * S, nx * S, da, S)
    run = RunSettings(handle=opts.handle, device=opts.device, S=S, T=T, seed=opts.seed,
                      key=int(key), sampler=opts.sampler, steps=opts.steps, eta=opts.eta,
                      batch_size=opts.batch_size, check_negative=check_negative,
                      mean_only=opts.mean_only, mass_conservation=opts.mass_conservation)
    mean = None
    if opts.mean != "network":
        # the mean from the whole domain per LR step; the networks get their own context
        mean = mean_in_time(ctx, L, T, opts.mean)
        ctx = ctx[:, :c.n_context]
    data = ensemble_graph(ctx, tidx, X.chunks[1], X.chunks[2], topo, run, M, opts.p, opts.overlap,
                          mean)

    # coordinates and attributes
    n_out = ctx.shape[0]
    lr_grid = da.isel({tdim: slice(t0, t0 + n_out)}) if (t0 or n_out != n) else da
    coords = hr_template_coords(lr_grid.drop_vars([tdim], errors="ignore"), S, T, found)
    if times is not None:
        tvar = lr_grid.coords[tdim].variable
        coords[tdim] = xr.Variable(tdim, hr_time(tvar.values, T, hr_step), attrs=tvar.attrs)
    coords["member"] = xr.Variable("member", np.arange(M), attrs={"long_name": "ensemble member"})
    out = xr.DataArray(data, dims=("member", tdim, ydim, xdim), coords=coords, name=da.name)
    out = out.transpose("member", *da.dims)
    if opts.mean_only:
        out = out.isel(member=0, drop=True)
    out.attrs = _attrs(conv.attrs, opts)
    out.encoding = {k: v for k, v in da.encoding.items() if k in ("grid_mapping", "coordinates")}
    return _clean_grid_mapping(out)


def _name(opts: DownscaleOptions) -> str:
    """The public function of a call, for messages."""
    return "downscale_mean" if opts.mean_only else "downscale"


def _call_text(opts: DownscaleOptions) -> str:
    """The ``history`` line of a call: every setting that determines the output."""
    c = opts.model.config
    if opts.mean_only:
        return (f"downscale_mean(S={c.S}, T={c.T}, L={c.L}, context={opts.context!r}, "
                f"tile_size={opts.p * c.S}, overlap={opts.overlap}, "
                f"mass_conservation={opts.mass_conservation!r})")
    return (f"downscale(S={c.S}, T={c.T}, L={c.L}, n_members={opts.n_members}, sampler={opts.sampler!r}, "
            f"steps={opts.n_steps}, eta={opts.eta:g}, seed={opts.seed}, "
            f"context={opts.context!r}, tile_size={opts.p * c.S}, overlap={opts.overlap}, "
            f"mass_conservation={opts.mass_conservation!r}"
            + (f", mean={opts.mean!r})" if opts.mean != "network" else ")"))


def _context_text(context: str, L: int, K: int) -> str:
    """The ``xsuperres_context`` attribute: which blocks had their context padded or dropped."""
    if context == "pad":
        text = (f"pad: the first {L - 1} LR step(s) were downscaled with their missing context "
                "padded by repeating the first LR frame")
        if K:
            text += f"; the last {K} with their missing lookahead padded by repeating the last"
        return text
    text = f"drop: the first {L - 1} LR step(s) (without a full context)"
    if K:
        text += f" and the last {K} (without their lookahead)"
    return text + " are not in the output"


def _attrs(src: Mapping[str, Any], opts: DownscaleOptions) -> dict[str, Any]:
    """Output attributes: the input's (less packing/range ones), units, history, xsuperres_*."""
    model = opts.model
    c = model.config
    attrs = {k: v for k, v in src.items() if k not in _UNSAFE_ATTRS}
    attrs["units"] = TARGET_UNITS
    attrs.setdefault("standard_name", "lwe_precipitation_rate")
    attrs["cell_methods"] = str(src.get("cell_methods") or "time: mean")
    attrs = append_history(attrs, _call_text(opts))
    md = model.metadata or {}
    name = md.get("name") or Path(opts.handle.path).name
    ensemble = not opts.mean_only
    sampler = {"xsuperres_sampler": opts.sampler, "xsuperres_steps": int(opts.n_steps),
               "xsuperres_eta": float(opts.eta)} if ensemble else {}
    members = {"xsuperres_seed": opts.seed, "xsuperres_n_members": opts.n_members} if ensemble else {}
    attrs.update({
        "xsuperres_model": str(name),
        "xsuperres_model_version": str(md.get("version") or md.get("trained_at") or __version__),
        "xsuperres_model_sha256": opts.handle.token,
        "xsuperres_S": c.S,
        "xsuperres_T": c.T,
        "xsuperres_L": c.L,
        "xsuperres_lookahead": c.lookahead,
        **sampler,
        "xsuperres_tile_size": int(opts.p * c.S),
        "xsuperres_overlap": int(opts.overlap),
        "xsuperres_mass_conservation": str(opts.mass_conservation),
        **members,
        "xsuperres_context": _context_text(opts.context, c.L, opts.lookahead),
        "xsuperres_version": __version__,
        "xsuperres_stage": "ensemble" if ensemble else "deterministic",
    })
    if ensemble:
        attrs["xsuperres_mean"] = MEAN_TEXT[opts.mean]
    if not ensemble:
        attrs["long_name"] = ("deterministic mean (U_det with mass conservation) of "
                              + str(src.get("long_name") or "precipitation"))
    return attrs
