"""Score a (possibly ensemble) prediction against the truth: the xarray face of :mod:`.metrics`.

:func:`score` returns an :class:`xarray.Dataset` with the eight metrics of the
preprint (appendix 11: ``mse, mae, pe99, lsd, emd, ssim, pitd, crps``); see
:mod:`xsuperres.metrics` for their definitions. Scoring computes: dask-backed
inputs are loaded into memory (as float64).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import warnings

import numpy as np
import xarray as xr

from .dims import DimensionError, find_dims
from .metrics import EXTRA_METRICS, METRICS
from .units import TARGET_UNITS
from .validate import is_precipitation, precipitation_input

__all__ = ["score"]

_DESCRIPTIONS = {
    "mse": "per member, then averaged over members",
    "mae": "per member, then averaged over members",
    "pe99": "|q99(pred) - q99(truth)|, members pooled, numpy linear percentiles",
    "lsd": "RMSE of log10 radially averaged FFT magnitudes, per member and frame, then averaged",
    "emd": "1-D Wasserstein-1 distance of pixel values (members pooled) per frame, averaged over frames",
    "ssim": "7x7 uniform window, K1=0.01, K2=0.03, data_range = truth max - min; per member and frame, averaged",
    "pitd": "RMS distance of sorted mid-rank PIT values from uniform quantiles (i - 0.5)/N",
    "crps": "ensemble CRPS E|X-y| - 0.5 E|X-X'| per pixel, averaged over pixels (equals mae for one member)",
    "crps_fair": "fair CRPS E|X-y| - 0.5 E|X-X'| with E|X-X'| over the M (M - 1) distinct member pairs",
    "spread_error_ratio": "mean |X_i - X_j| of distinct members over the members' mean |X - y|; "
                          "below 1: under-dispersed, above 1: over-dispersed",
}
#: ``better`` attribute of metrics for which neither higher nor lower is better
_BETTER = {"spread_error_ratio": "closer to 1"}

_NAN_NOTE = (
    "NaN pixels of truth are excluded from every metric (and the same pixels of every member); "
    "so are pixels where any member of pred is NaN and truth is not (counted in "
    "n_excluded_pred_nan, with a warning); lsd and ssim set excluded pixels to 0 in both "
    "fields and skip all-NaN frames"
)
_PIT_NOTE = "pitd uses mid-rank PIT for ties: u = (#{X < y} + 0.5 #{X == y}) / |X|"

Pair = tuple[str | None, xr.DataArray, xr.DataArray]


# --------------------------------------------------------------------------- variables
def _has_yx(da: xr.DataArray, dims: Mapping | None) -> bool:
    try:
        find_dims(da, dims, roles=("y", "x"))
    except DimensionError:
        return False
    return True


def _spatial_vars(ds: xr.Dataset, dims: Mapping | None) -> list[Hashable]:
    return [v for v in ds.data_vars if _has_yx(ds[v], dims)]


def _units_text(da: xr.DataArray) -> str:
    u = da.attrs.get("units")
    return f"units {u!r}" if u is not None else "no units"


def _warn_skipped(skipped: Mapping[Hashable, str]) -> None:
    if skipped:
        listed = ", ".join(f"{n!s} ({why})" for n, why in skipped.items())
        warnings.warn(f"score: skipped variable(s) that are not precipitation rates: {listed}",
                      UserWarning, stacklevel=4)


def _pick(ds: xr.Dataset, da: xr.DataArray, dims: Mapping | None, role: str) -> xr.DataArray:
    """The variable of ``ds`` that pairs with the DataArray ``da``."""
    names = _spatial_vars(ds, dims)
    if da.name in names:
        return ds[da.name]
    rates = [n for n in names if is_precipitation(ds[n])]
    if len(rates) == 1:
        _warn_skipped({n: _units_text(ds[n]) for n in names if n not in rates})
        return ds[rates[0]]
    if len(names) == 1:
        return ds[names[0]]
    raise ValueError(
        f"cannot tell which variable of the {role} Dataset to score: it has (y, x) variables "
        f"{[str(n) for n in names]} ({len(rates)} with precipitation-rate units) and the other "
        f"input is a DataArray named {da.name!r}; pass a DataArray or name them alike"
    )


def _pairs(pred: xr.DataArray | xr.Dataset, truth: xr.DataArray | xr.Dataset, dims: Mapping | None) -> list[Pair]:
    """``(name, pred, truth)`` for each variable to score; name is None for a single one.

    Two Datasets: the (y, x) variables they share whose units (in both) are
    precipitation rates; the others are skipped with a warning that names them.
    """
    if isinstance(pred, xr.Dataset) and isinstance(truth, xr.Dataset):
        common = [v for v in _spatial_vars(pred, dims) if v in truth.data_vars and _has_yx(truth[v], dims)]
        if not common:
            raise ValueError(
                "pred and truth Datasets have no variable with (y, x) dimensions in common: "
                f"pred has {list(map(str, pred.data_vars))}, truth has {list(map(str, truth.data_vars))}"
            )
        names = [v for v in common if is_precipitation(pred[v]) and is_precipitation(truth[v])]
        skipped = {v: f"pred {_units_text(pred[v])}, truth {_units_text(truth[v])}"
                   for v in common if v not in names}
        if not names:
            raise ValueError(
                "pred and truth Datasets have no precipitation variable to score: the shared (y, x) "
                f"variables are {', '.join(f'{v!s} ({why})' for v, why in skipped.items())}; "
                "precipitation needs rate units, e.g. ds[name].attrs['units'] = 'mm h-1'"
            )
        _warn_skipped(skipped)
        if len(names) == 1:
            return [(None, pred[names[0]], truth[names[0]])]
        return [(str(v), pred[v], truth[v]) for v in names]
    if isinstance(pred, xr.Dataset):
        pred = _pick(pred, truth, dims, "pred")
    elif isinstance(truth, xr.Dataset):
        truth = _pick(truth, pred, dims, "truth")
    return [(None, pred, truth)]


# --------------------------------------------------------------------------- checks
def _check_grids(pred: xr.DataArray, truth: xr.DataArray, member_dim: Hashable) -> None:
    """Raise a ``ValueError`` naming the first dimension on which the grids differ."""
    if member_dim in truth.dims:
        raise ValueError(f"truth has the member dimension {member_dim!r}; only pred may have members")
    extra = (set(pred.dims) - {member_dim}) ^ set(truth.dims)
    if extra:
        raise ValueError(
            f"pred and truth do not have the same dimensions (besides {member_dim!r}): "
            f"pred {list(map(str, pred.dims))}, truth {list(map(str, truth.dims))}; "
            f"differing: {sorted(map(str, extra))}"
        )
    for d in truth.dims:
        if pred.sizes[d] != truth.sizes[d]:
            raise ValueError(f"dimension {d!r} has size {pred.sizes[d]} in pred but {truth.sizes[d]} in truth")
        if d in pred.indexes and d in truth.indexes and not pred.indexes[d].equals(truth.indexes[d]):
            raise ValueError(
                f"the coordinates of dimension {d!r} differ between pred and truth; "
                "scoring needs the same grid (interpolate or reindex first)"
            )
    try:
        xr.align(pred, truth, join="exact")
    except ValueError as err:  # pragma: no cover - the checks above should catch it
        raise ValueError(f"pred and truth are not on the same grid: {err}") from err


def _kept_dims(truth: xr.DataArray, dim: str | Sequence[str] | None, spatial: Sequence[Hashable],
               member_dim: Hashable, dims: Mapping | None) -> list[Hashable]:
    """Dimensions of ``truth`` to keep out of the reduction (``time`` may be a role)."""
    names = [] if dim is None else [dim] if isinstance(dim, str) else list(dim)
    kept: list[Hashable] = []
    for name in names:
        if name not in truth.dims and name == "time":
            name = find_dims(truth, dims, roles=("time",))["time"]
        if name == member_dim:
            raise ValueError(f"cannot keep the member dimension {member_dim!r}; score each member separately")
        if name in spatial:
            raise ValueError(f"cannot keep the spatial dimension {name!r}: metrics need whole (y, x) frames")
        if name not in truth.dims:
            raise ValueError(f"dim {name!r} is not a dimension of truth; they are {list(map(str, truth.dims))}")
        kept.append(name)
    return kept


# --------------------------------------------------------------------------- scoring
def _as_blocks(pred: xr.DataArray, truth: xr.DataArray, kept: list[Hashable], spatial: list[Hashable],
               member_dim: Hashable) -> tuple[np.ndarray, np.ndarray]:
    """pred as ``(M, *kept, F, ny, nx)`` and truth as ``(*kept, F, ny, nx)`` float64 arrays."""
    frames = [d for d in truth.dims if d not in kept and d not in spatial]
    order = [*kept, *frames, *spatial]
    if member_dim not in pred.dims:
        pred = pred.expand_dims({member_dim: 1})
    t = np.asarray(truth.transpose(*order).values, dtype=np.float64)
    p = np.asarray(pred.transpose(member_dim, *order).values, dtype=np.float64)
    kshape = t.shape[: len(kept)]
    t = t.reshape(*kshape, -1, *t.shape[-2:])
    return p.reshape(p.shape[0], *t.shape), t


def _exclude_pred_nan(p: np.ndarray, t: np.ndarray, label: str) -> tuple[np.ndarray, int]:
    """Set truth to NaN where a member of ``p`` is NaN and ``t`` is not; return the count."""
    holes = np.isnan(p).any(axis=0) & ~np.isnan(t)
    n = int(holes.sum())
    if n:
        n_valid = int((~np.isnan(t)).sum())
        t = np.where(holes, np.nan, t)
        warnings.warn(
            f"score: {label} is NaN at {n} pixel(s) where truth is valid ({100 * n / n_valid:.3g}% "
            "of the valid truth pixels); they are excluded from every metric (recorded in the "
            "attribute n_excluded_pred_nan). Fill or mask them if that is not what you want",
            UserWarning, stacklevel=4)
    return t, n


def _extra_metrics(extra: str | Sequence[str]) -> dict[str, Any]:
    """The :data:`~xsuperres.metrics.EXTRA_METRICS` named by ``extra`` (checked)."""
    names = [extra] if isinstance(extra, str) else list(extra)
    unknown = [n for n in names if n not in EXTRA_METRICS]
    if unknown:
        raise ValueError(f"score: unknown extra metric(s) {unknown}; choose from {sorted(EXTRA_METRICS)}")
    return {n: EXTRA_METRICS[n] for n in dict.fromkeys(names)}


def _score_array(pred: xr.DataArray, truth: xr.DataArray, dim: str | Sequence[str] | None,
                 member_dim: Hashable, dims: Mapping | None, name: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> tuple[dict[str, xr.DataArray], int, int]:
    """The eight metrics (and ``extra``) of one variable, its number of members and of
    excluded pixels."""
    suffix = f" variable {name!r}" if name is not None else (
        f" {pred.name!r}" if pred.name is not None else "")
    pred = precipitation_input(pred, f"pred{suffix}")
    truth = precipitation_input(truth, f"truth{suffix}")
    _check_grids(pred, truth, member_dim)
    yx = find_dims(truth, dims, roles=("y", "x"))
    spatial = [yx["y"], yx["x"]]
    kept = _kept_dims(truth, dim, spatial, member_dim, dims)
    p, t = _as_blocks(pred, truth, kept, spatial, member_dim)
    t, n_excluded = _exclude_pred_nan(p, t, f"pred{suffix}")
    extra = extra or {}
    if extra and p.shape[0] < 2:
        raise ValueError(f"score: extra metric(s) {list(extra)} need an ensemble, but pred{suffix} has "
                         f"one member (no {member_dim!r} dimension of size >= 2); "
                         "drop extra= or pass more members")
    kshape = t.shape[: len(kept)]
    values = {m: np.empty(kshape) for m in (*METRICS, *extra)}
    for idx in np.ndindex(kshape):
        for m, info in METRICS.items():
            values[m][idx] = info.func(p[(slice(None), *idx)], t[idx])
        for m, info in extra.items():  # from the CRPS and MAE just computed
            values[m][idx] = info.from_scores(values["crps"][idx], values["mae"][idx], p.shape[0])
    coords = {k: c for k, c in truth.coords.items() if set(c.dims) <= set(kept)}
    out = {m: xr.DataArray(v, dims=kept, coords=coords, attrs=_attrs(m)) for m, v in values.items()}
    return out, p.shape[0], n_excluded


def _attrs(name: str) -> dict[str, Any]:
    info = METRICS[name] if name in METRICS else EXTRA_METRICS[name]
    return {
        "long_name": info.long_name,
        "units": info.units,
        "better": _BETTER.get(name, "higher" if info.higher_is_better else "lower"),
        "description": _DESCRIPTIONS[name],
    }


def score(
    pred: xr.DataArray | xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    dim: str | Sequence[str] | None = None,
    *,
    member_dim: str = "member",
    dims: Mapping[str, Hashable] | None = None,
    extra: str | Sequence[str] = (),
) -> xr.Dataset:
    """Score a prediction (optionally an ensemble) against the truth.

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Predicted precipitation with a rate ``units`` attribute (``"mm h-1"``,
        ``"mm/d"``, ``"kg m-2 s-1"``, ...; converted to mm h-1). Missing units are an
        error, as everywhere in xsuperres (:mod:`xsuperres.validate`). An optional
        ``member_dim`` dimension holds ensemble members; without it ``pred`` is a
        one-member ensemble. Pixels where a member is NaN and the truth is valid are
        excluded from every metric, with a ``UserWarning`` giving their number (also
        in the ``n_excluded_pred_nan`` attribute).
    truth : xarray.DataArray or xarray.Dataset
        Target precipitation on the same grid, with rate units: the same dimensions as
        ``pred`` (except ``member_dim``) with identical coordinates. NaN pixels (e.g.
        outside radar coverage) are excluded, see :mod:`xsuperres.metrics`.
    dim : str or sequence of str, optional
        Dimension(s) to keep *out* of the reduction, e.g. ``"time"`` for one score
        per time step (``"time"`` is also found by role through
        :func:`~xsuperres.find_dims`). By default everything is reduced: all
        dimensions other than ``member_dim``, y and x are flattened to frames.
    member_dim : str, default "member"
        Name of the ensemble member dimension of ``pred``.
    dims : mapping, optional
        Explicit ``{"time": ..., "y": ..., "x": ...}`` names (see
        :func:`~xsuperres.find_dims`).
    extra : str or sequence of str, optional
        Ensemble scores to add after the eight (:data:`xsuperres.metrics.EXTRA_METRICS`;
        ``pred`` needs at least two members): ``"crps_fair"``, the fair CRPS of Ferro
        (2014) (mm h-1; an unbiased estimate of the CRPS of the distribution the members
        are drawn from, so ensembles of different sizes can be compared), and ``"spread_error_ratio"``
        (unitless; 1 for a calibrated ensemble, below 1 under-dispersed).

    Returns
    -------
    xarray.Dataset
        Variables ``mse, mae, pe99, lsd, emd, ssim, pitd, crps`` (then those of
        ``extra``) with dimensions ``dim`` (scalars by default), each with ``units``,
        ``long_name``, ``better`` (``"higher"``, ``"lower"``, or ``"closer to 1"`` for
        the spread-error ratio) and ``description`` attributes.
        For Dataset inputs the precipitation variables (rate units) with (y, x)
        dimensions present in both are scored, and the others are skipped with a
        ``UserWarning`` that names them; with more than one the output variables are named
        ``<var>_<metric>``. A Dataset against a DataArray scores the variable
        with the DataArray's name, or the only (y, x) precipitation variable.
        Attributes: ``n_members``, ``missing_values``, ``n_excluded_pred_nan`` and
        ``pit_ties``.

    Raises
    ------
    ValueError
        If the grids differ (the message names the dimension), a ``dim`` is not
        a dimension, Dataset variables cannot be paired, units are missing or not a
        precipitation rate, values are raw packed integers, or ``extra`` names an
        unknown metric or is asked of a one-member prediction.

    Notes
    -----
    Scoring computes: dask-backed inputs are loaded into memory. The default
    SSIM ``data_range`` is ``max - min`` of the valid truth values of each
    scored block (each element of ``dim``).

    Examples
    --------
    A two-member ensemble, 1 mm/h above and below the truth: each pixel's CRPS is
    ``E|X - y| - 0.5 E|X - X'| = 1 - 0.5 = 0.5``; the ensemble mean is exact, but the MAE
    pools the members' errors:

    >>> import numpy as np, xarray as xr
    >>> import xsuperres
    >>> truth = xr.DataArray(2 + np.arange(64.0).reshape(1, 8, 8) / 64, dims=("time", "y", "x"),
    ...                      attrs={"units": "mm h-1"})
    >>> ens = xr.concat([truth + 1, truth - 1], "member").assign_attrs(units="mm h-1")
    >>> s = xsuperres.score(ens, truth)
    >>> float(s.crps), float(s.mae), s.crps.attrs["units"]
    (0.5, 1.0, 'mm h-1')

    The two members differ by 2 mm/h and miss by 1 mm/h: the fair CRPS counts only the
    distinct pairs (``1 - 0.5 * 2 = 0``), and the spread-error ratio is ``2 / 1``:

    >>> s = xsuperres.score(ens, truth, extra=["crps_fair", "spread_error_ratio"])
    >>> float(s.crps_fair), float(s.spread_error_ratio), s.spread_error_ratio.attrs["better"]
    (0.0, 2.0, 'closer to 1')
    """
    extra_metrics = _extra_metrics(extra)
    pairs = _pairs(pred, truth, dims)
    data: dict[str, xr.DataArray] = {}
    n_members, n_excluded = 1, 0
    for name, p, t in pairs:
        metrics, n_members, n_nan = _score_array(p, t, dim, member_dim, dims, name, extra_metrics)
        n_excluded += n_nan
        data.update({(m if name is None else f"{name}_{m}"): v for m, v in metrics.items()})
    attrs = {"n_members": n_members, "units_basis": TARGET_UNITS, "missing_values": _NAN_NOTE,
             "n_excluded_pred_nan": n_excluded, "pit_ties": _PIT_NOTE}
    return xr.Dataset(data, attrs=attrs)
