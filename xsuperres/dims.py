"""Find the time, y and x dimensions of an xarray object.

The search order is

1. an explicit mapping passed by the user (``dims={"time": ..., "y": ..., "x": ...}``);
2. CF metadata read by cf-xarray: the ``axis`` attribute (``T``, ``Y``, ``X``) and
   ``standard_name`` (``time``, ``projection_y_coordinate``, ``latitude``,
   ``grid_latitude``, ...) of *dimension* coordinates;
3. common dimension names: ``time``/``t``, ``y``/``lat``/``latitude``/``rlat``,
   ``x``/``lon``/``longitude``/``rlon``.

Two candidates for one role, or none, is a :class:`DimensionError` that names what
was found and how to set the dimension by hand.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import xarray as xr

__all__ = ["DimensionError", "find_dims", "ROLES"]

#: The three roles a precipitation field's dimensions play.
ROLES: tuple[str, ...] = ("time", "y", "x")

_CF_AXIS = {"time": "T", "y": "Y", "x": "X"}

_STANDARD_NAMES = {
    "time": {"time"},
    "y": {"projection_y_coordinate", "latitude", "grid_latitude", "projection_y_angular_coordinate"},
    "x": {"projection_x_coordinate", "longitude", "grid_longitude", "projection_x_angular_coordinate"},
}

_COMMON_NAMES = {
    "time": ("time", "t", "valid_time"),
    "y": ("y", "lat", "latitude", "rlat", "south_north", "yc"),
    "x": ("x", "lon", "longitude", "rlon", "west_east", "xc"),
}


class DimensionError(ValueError):
    """A time, y or x dimension is missing or ambiguous."""


def _from_cf(obj: xr.Dataset | xr.DataArray, role: str) -> list[Hashable]:
    """Dimension names that CF metadata marks as ``role``."""
    found: list[Hashable] = []
    for name in obj.dims:
        if name not in obj.coords:
            continue
        attrs = obj.coords[name].attrs
        if str(attrs.get("axis", "")).upper() == _CF_AXIS[role]:
            found.append(name)
        elif attrs.get("standard_name") in _STANDARD_NAMES[role]:
            found.append(name)
    if not found:
        # cf-xarray also recognises e.g. datetime-typed coordinates as T.
        try:
            axes = obj.cf.axes
        except Exception:  # pragma: no cover - cf-xarray is best effort here
            axes = {}
        found = [n for n in axes.get(_CF_AXIS[role], []) if n in obj.dims]
    return found


def _from_names(obj: xr.Dataset | xr.DataArray, role: str) -> list[Hashable]:
    return [n for n in _COMMON_NAMES[role] if n in obj.dims]


def _describe(obj: xr.Dataset | xr.DataArray) -> str:
    return ", ".join(f"{d!s} ({obj.sizes[d]})" for d in obj.dims) or "none"


def find_dims(
    obj: xr.Dataset | xr.DataArray,
    dims: Mapping[str, Hashable] | None = None,
    roles: Iterable[str] = ROLES,
) -> dict[str, Hashable]:
    """Map the roles ``time``, ``y`` and ``x`` to dimension names of ``obj``.

    Parameters
    ----------
    obj
        The DataArray or Dataset to inspect.
    dims
        Explicit names, e.g. ``{"time": "valid_time", "y": "rlat", "x": "rlon"}``.
        Roles given here are not searched for.
    roles
        The roles needed (a subset of ``("time", "y", "x")``).

    Returns
    -------
    dict
        ``{role: dimension name}`` for each requested role.

    Raises
    ------
    DimensionError
        If a role matches no dimension or more than one.
    """
    dims = dict(dims or {})
    unknown = set(dims) - set(ROLES)
    if unknown:
        raise DimensionError(
            f"dims has unknown role(s) {sorted(unknown)}; the roles are {list(ROLES)}, "
            f"e.g. dims={{'time': 'time', 'y': 'y', 'x': 'x'}}"
        )
    out: dict[str, Hashable] = {}
    for role in roles:
        if role in dims:
            name = dims[role]
            if name not in obj.dims:
                raise DimensionError(
                    f"dims[{role!r}] = {name!r} is not a dimension; the dimensions are {_describe(obj)}"
                )
            out[role] = name
            continue
        candidates = _from_cf(obj, role)
        if not candidates:
            candidates = _from_names(obj, role)
        candidates = [c for c in dict.fromkeys(candidates) if c not in out.values()]
        if len(candidates) == 1:
            out[role] = candidates[0]
        elif not candidates:
            raise DimensionError(
                f"no {role!r} dimension found among {_describe(obj)}; mark its coordinate with "
                f"axis={_CF_AXIS[role]!r} or pass dims={{{role!r}: <name>, ...}}"
            )
        else:
            raise DimensionError(
                f"several dimensions could be {role!r}: {[str(c) for c in candidates]}; "
                f"pass dims={{{role!r}: <name>, ...}} to choose one"
            )
    return out
