"""The perfect-model coarsening operator ``A_{S,T}`` (preprint section 3; docs/getting-started.md).

The low-resolution frame is the mean over a block of ``T`` consecutive
high-resolution frames and ``S x S`` high-resolution pixels::

    x[t'][n, m] = 1/(T S^2) sum_{k<T} sum_{i<S} sum_{j<S} y[t'T + k][S n + i, S m + j]

Conventions
-----------
* The LR ``time`` label is the label of the *first* HR step of its block.
* LR ``x``/``y`` coordinates are the means of the HR coordinates of the block,
  i.e. the block centres on a regular grid; 2-D auxiliary coordinates such as
  ``lat``/``lon`` are block-averaged the same way.
* A block that contains any NaN is NaN: there are no partial means over the
  valid part of a block (radar composites have NaN outside their coverage, and
  a mean over a partly covered block would be biased).
* Sums are accumulated in float64; the result keeps a floating input dtype
  (float32 stays float32), integer input becomes float32.
* Entry follows :mod:`xsuperres.validate`: a DataArray is precipitation (rate units,
  decoded values). In a Dataset, floating-point variables are block-averaged, integer
  precipitation rates too; other integer, boolean or non-numeric variables on the
  coarsened dimensions (flags, masks, categories: a mean of them means nothing) are
  dropped, with a warning and a note in ``history``.
* On dask-backed data the result is a lazy dask array; nothing is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import dask.array as dsa
import numpy as np
import xarray as xr

from .cf import append_cell_methods, append_history
from .checks import positive_int
from .dims import find_dims
from .validate import check_decoded, check_time_coordinate, is_precipitation, precipitation_input

__all__ = ["block_mean", "coarsen_perfect", "check_regular_time"]

XarrayObj = TypeVar("XarrayObj", xr.DataArray, xr.Dataset)




def _result_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype("float64")


def _reshape_mean(a: np.ndarray, factors: Mapping[int, int], dtype: np.dtype | None = None) -> np.ndarray:
    """Block mean of a numpy array by reshaping each axis ``n*f`` into ``(n, f)``."""
    shape: list[int] = []
    reduce_axes: list[int] = []
    for axis, size in enumerate(a.shape):
        f = factors.get(axis, 1)
        if f > 1:
            shape.extend([size // f, f])
            reduce_axes.append(len(shape) - 1)
        else:
            shape.append(size)
    out = a.reshape(shape).mean(axis=tuple(reduce_axes), dtype=np.float64)
    return out.astype(dtype or _result_dtype(a.dtype), copy=False)


def block_mean(data: Any, factors: Mapping[int, int]) -> Any:
    """Mean over non-overlapping blocks of a numpy or dask array.

    Parameters
    ----------
    data
        numpy or dask array.
    factors
        ``{axis: block length}``; every listed axis length must be divisible by its
        factor (trim beforehand otherwise).

    Returns
    -------
    array
        Same kind of array (dask stays lazy), each listed axis shrunk by its factor.
        A block containing NaN is NaN.
    """
    factors = {int(ax) % data.ndim: int(f) for ax, f in factors.items() if int(f) > 1}
    for ax, f in factors.items():
        if data.shape[ax] % f:
            raise ValueError(f"axis {ax} of length {data.shape[ax]} is not divisible by {f}")
    if not factors:
        return data.astype(_result_dtype(data.dtype), copy=False)
    dtype = _result_dtype(data.dtype)
    if isinstance(data, dsa.Array):
        # dask aligns chunks to multiples of the factors, then reduces each chunk.
        return dsa.coarsen(_reshape_mean_axes, data, factors, dtype=dtype)
    return _reshape_mean(np.asarray(data), factors, dtype)


def _reshape_mean_axes(a: np.ndarray, axis: tuple[int, ...] | None = None, dtype: np.dtype = np.float64) -> np.ndarray:
    """``dask.array.coarsen`` reduction: ``a`` already has the block axes split out."""
    return a.mean(axis=axis, dtype=np.float64).astype(dtype, copy=False)


def check_regular_time(times: Any, name: Hashable = "time") -> None:
    """Raise ``ValueError`` if the 1-D coordinate ``times`` is not equally spaced."""
    values = np.asarray(times)
    if values.size < 3:
        return
    steps = np.diff(values)
    if np.issubdtype(steps.dtype, np.timedelta64):
        steps = steps.astype("timedelta64[ns]").astype(np.int64)
    if np.all(steps == steps[0]):
        return
    bad = int(np.flatnonzero(steps != steps[0])[0])
    raise ValueError(
        f"time steps of {name!r} are irregular: step {bad} ({values[bad]} -> {values[bad + 1]}) "
        f"differs from the first step ({values[0]} -> {values[1]}); resample or fill the gaps "
        "(e.g. ds.resample(time=...) or ds.reindex(time=...)) before coarsening in time"
    )


def _trimmed_sizes(
    obj: xr.Dataset | xr.DataArray, factors: Mapping[Hashable, int], time_dim: Hashable, boundary: str
) -> dict:
    """Check divisibility; return ``{dim: slice}`` that trims the remainder (if allowed)."""
    if boundary not in ("exact", "trim"):
        raise ValueError(f"boundary must be 'exact' or 'trim', got {boundary!r}")
    slices = {}
    for dim, f in factors.items():
        size = obj.sizes[dim]
        label = f"T={f}" if dim == time_dim else f"S={f}"
        if size < f:
            raise ValueError(f"dimension {dim!r} has size {size}, smaller than the factor {label}")
        rest = size % f
        if rest and boundary == "exact":
            raise ValueError(
                f"dimension {dim!r} has size {size}, which is not divisible by the factor {label}; "
                f"crop it to a multiple of {f} or pass boundary='trim' to drop the last {rest} element(s)"
            )
        if rest:
            slices[dim] = slice(0, size - rest)
    return slices


def _coarsen_variable(var: xr.Variable, factors: Mapping[Hashable, int], time_dim: Hashable | None) -> xr.Variable:
    """Block-mean a variable over the dims it has (numeric), or subsample it otherwise."""
    here = {d: f for d, f in factors.items() if d in var.dims and f > 1}
    if not here:
        return var
    if not (np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.bool_)):
        return var.isel({d: slice(None, None, f) for d, f in here.items()})
    axes = {var.get_axis_num(d): f for d, f in here.items()}
    return xr.Variable(var.dims, block_mean(var.data, axes), attrs=var.attrs, encoding={})


def _coarsen_bounds(var: xr.Variable, factors: Mapping[Hashable, int]) -> xr.Variable:
    """Bounds of a block: lower bound of its first cell, upper bound of its last."""
    dim = var.dims[0]
    f = factors.get(dim, 1)
    if f == 1:
        return var
    lower = var.isel({dim: slice(None, None, f)}).data[..., 0]
    upper = var.isel({dim: slice(f - 1, None, f)}).data[..., -1]
    data = np.stack([np.asarray(lower), np.asarray(upper)], axis=-1)
    return xr.Variable(var.dims, data, attrs=var.attrs)


def _coarsen_coord(name: Hashable, var: xr.Variable, factors, time_dim) -> xr.Variable:
    if time_dim is not None and time_dim in var.dims:
        # Time-like coordinates take the label of the first HR step of each block;
        # other dims of the same coordinate are block-averaged if numeric.
        f = factors.get(time_dim, 1)
        var = var.isel({time_dim: slice(None, None, f)})
        rest = {d: v for d, v in factors.items() if d != time_dim}
        return _coarsen_variable(var, rest, None)
    return _coarsen_variable(var, factors, time_dim)


def _cell_methods(factors: Mapping[Hashable, int], time_dim, dims_present) -> list[str]:
    methods = []
    if time_dim is not None and time_dim in dims_present and factors.get(time_dim, 1) > 1:
        methods.append(f"{time_dim}: mean")
    spatial = [d for d in factors if d != time_dim and d in dims_present]
    if spatial and max(factors[d] for d in spatial) > 1:
        methods.append("area: mean")
    return methods


def _grid_mapping_names(obj: xr.Dataset | xr.DataArray) -> set[Hashable]:
    """Names of grid-mapping variables referenced by attrs or (after decoding) encoding."""
    variables = obj.variables.values() if isinstance(obj, xr.Dataset) else [obj.variable]
    names = set()
    for var in variables:
        for source in (var.attrs, var.encoding):
            if isinstance(source.get("grid_mapping"), str):
                names.add(source["grid_mapping"].split(":")[0].strip())
    return names


def _clean_grid_mapping(obj: XarrayObj) -> XarrayObj:
    """Drop a stale ``GeoTransform`` so that rioxarray recomputes it from x/y."""
    for name in _grid_mapping_names(obj):
        if name in obj.coords and "GeoTransform" in obj.coords[name].attrs:
            coord = obj.coords[name].variable.copy(deep=False)
            coord.attrs = {k: v for k, v in coord.attrs.items() if k != "GeoTransform"}
            obj = obj.assign_coords({name: coord})
    return obj


def coarsen_perfect(
    obj: XarrayObj,
    S: int,
    T: int,
    *,
    dims: Mapping[str, Hashable] | None = None,
    boundary: str = "exact",
) -> XarrayObj:
    """Apply the perfect-model coarsening ``A_{S,T}`` to a DataArray or Dataset.

    Parameters
    ----------
    obj
        High-resolution field(s) with a time dimension and two spatial dimensions
        (found as in :func:`xsuperres.find_dims`). numpy- or dask-backed.
    S
        Spatial factor: each LR pixel is the mean of ``S x S`` HR pixels.
    T
        Temporal factor: each LR step is the mean of ``T`` consecutive HR steps.
    dims
        Explicit dimension names, e.g. ``{"time": "t", "y": "rlat", "x": "rlon"}``.
    boundary
        ``"exact"`` (default) raises if a size is not divisible by its factor;
        ``"trim"`` drops the remainder at the end of that dimension.

    Returns
    -------
    DataArray or Dataset
        Same type as ``obj``. Data variables with time and both spatial dims are
        coarsened in space and time; variables with the spatial dims but no time
        (e.g. topography) in space only; variables with none of these dims are kept.
        Integer, boolean or non-numeric Dataset variables on the coarsened dims that
        are not precipitation rates (e.g. an int8 mask) are dropped, with a
        ``UserWarning`` and a ``history`` note naming them.
        Attributes are kept; ``cell_methods`` gains ``time: mean`` (T > 1) and
        ``area: mean`` (S > 1); ``history`` gains a line. Units are unchanged
        (a mean of rates is a rate).

    Raises
    ------
    ValueError
        If S or T is not a positive integer, a size is not divisible (with
        ``boundary="exact"``), the time steps are irregular (T > 1) or the time
        coordinate holds strings; a DataArray without precipitation-rate ``units``;
        raw packed values (opened with ``mask_and_scale=False``) in any variable.
    xsuperres.DimensionError
        If the time, y or x dimension cannot be found.

    Examples
    --------
    Block means of 2 x 2 pixels:

    >>> import numpy as np, xarray as xr
    >>> import xsuperres
    >>> hr = xr.DataArray(np.arange(16.0).reshape(1, 4, 4), dims=("time", "y", "x"),
    ...                   attrs={"units": "mm h-1"})
    >>> xsuperres.coarsen_perfect(hr, 2, 1).values
    array([[[ 2.5,  4.5],
            [10.5, 12.5]]])
    """
    S = positive_int(S, "S")
    T = positive_int(T, "T")
    found = find_dims(obj, dims)
    time_dim, ydim, xdim = found["time"], found["y"], found["x"]
    factors: dict[Hashable, int] = {time_dim: T, ydim: S, xdim: S}

    if isinstance(obj, xr.DataArray):
        obj = precipitation_input(obj, convert=False)
    elif not isinstance(obj, xr.Dataset):
        raise TypeError(f"coarsen_perfect needs an xarray DataArray or Dataset, got {type(obj).__name__}")
    trim = _trimmed_sizes(obj, factors, time_dim, boundary)
    if trim:
        obj = obj.isel(trim)
    if time_dim in obj.coords:
        check_time_coordinate(obj.coords[time_dim].values, time_dim, "coarsen_perfect", need_cadence=False)
        if T > 1:
            check_regular_time(obj.coords[time_dim].values, time_dim)

    call = f"coarsen_perfect(S={S}, T={T}): perfect-model block mean over {T} time step(s) and {S}x{S} pixels"
    if isinstance(obj, xr.DataArray):
        out = _coarsen_dataarray(obj, factors, time_dim, call)
    else:
        out = _coarsen_dataset(obj, factors, time_dim, call)
    return _clean_grid_mapping(out)


def _coords_of(obj: xr.Dataset | xr.DataArray, factors, time_dim) -> dict[Hashable, xr.Variable]:
    coords = {}
    bounds = {obj.coords[c].attrs.get("bounds") for c in obj.coords} - {None}
    for name, coord in obj.coords.items():
        if name in bounds:
            coords[name] = _coarsen_bounds(coord.variable, factors)
        else:
            coords[name] = _coarsen_coord(name, coord.variable, factors, time_dim)
    return coords


def _coarsen_dataarray(da: xr.DataArray, factors, time_dim, call: str) -> xr.DataArray:
    var = _coarsen_variable(da.variable, factors, time_dim)
    attrs = append_cell_methods(da.attrs, _cell_methods(factors, time_dim, da.dims))
    attrs = append_history(attrs, call)
    coords = _coords_of(da, factors, time_dim)
    out = xr.DataArray(var.copy(data=var.data), coords=coords, dims=var.dims, name=da.name, attrs=attrs)
    out.encoding = {k: v for k, v in da.encoding.items() if k in ("grid_mapping", "coordinates")}
    return out


def _coarsen_dataset(ds: xr.Dataset, factors, time_dim, call: str) -> xr.Dataset:
    bounds = {ds[v].attrs.get("bounds") for v in ds.variables} - {None}
    data_vars = {}
    dropped = []
    for name, da in ds.data_vars.items():
        if name in bounds:
            data_vars[name] = _coarsen_bounds(da.variable, factors)
            continue
        if any(factors.get(d, 1) > 1 for d in da.dims):
            check_decoded(da, f"variable {name!r}")
            if not np.issubdtype(da.dtype, np.floating):
                if is_precipitation(da) and np.issubdtype(da.dtype, np.number):
                    da = precipitation_input(da, f"variable {name!r}", convert=False)
                else:
                    dropped.append(name)
                    continue
        var = _coarsen_variable(da.variable, factors, time_dim)
        if var is not da.variable:
            attrs = append_cell_methods(var.attrs, _cell_methods(factors, time_dim, da.dims))
            var = var.copy(data=var.data)
            var.attrs = attrs
        data_vars[name] = var
    if dropped:
        listed = ", ".join(f"{n!s} ({ds[n].dtype})" for n in dropped)
        call += (f"; dropped {listed}: not floating-point and not a precipitation rate, so a "
                 "block mean is meaningless")
        warnings.warn(f"coarsen_perfect: dropped the variable(s) {listed}: integer, boolean or "
                      "non-numeric fields (flags, masks, categories) have no meaningful block "
                      "mean; convert them to float first (ds[name].astype('float32')) if a "
                      "mean is what you want", UserWarning, stacklevel=3)
    out = xr.Dataset(data_vars, coords=_coords_of(ds, factors, time_dim), attrs=append_history(ds.attrs, call))
    for name in out.data_vars:
        out[name].encoding = {k: v for k, v in ds[name].encoding.items() if k in ("grid_mapping", "coordinates")}
    return out
