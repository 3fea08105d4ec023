"""Argument validators: one home for each rule on plain Python/numpy values.

Every module validates integers, seeds, finite numbers and finite arrays through these
functions, so that ``S=2.0``, ``n_members=True`` or ``eta=nan`` get the same answer and
the same message everywhere. The module imports only the standard library and numpy, so
that the pure-PyTorch layer :mod:`xsuperres.nn` can use it too. (The rules on xarray
inputs -- units, packing, time axes -- live in :mod:`xsuperres.validate`.)
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

__all__ = ["integer", "positive_int", "seed", "finite_float", "positive_float", "non_negative_float",
           "finite_array", "TOPOGRAPHY_FIX"]

#: How to fix a topography with NaN (used by every topography check).
TOPOGRAPHY_FIX = "fill the sea and other gaps with 0 m, e.g. topo.fillna(0)"


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int``, if it is an integer (not a bool, not a float) ``>= minimum``.

    Parameters
    ----------
    value
        Python or numpy integer.
    name
        Argument name, for the message.
    minimum
        Smallest accepted value (``None``: no bound).

    Raises
    ------
    ValueError
        ``"NAME must be a positive integer, got ..."`` (``minimum=1``), ``"... a
        non-negative integer ..."`` (``minimum=0``), or ``"... an integer >= m ..."``.
    """
    what = ("a positive integer" if minimum == 1 else "a non-negative integer" if minimum == 0
            else "an integer" if minimum is None else f"an integer >= {minimum}")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(v)


def positive_int(value: Any, name: str) -> int:
    """``integer(value, name, minimum=1)``: factors, sizes, counts, steps."""
    return integer(value, name, 1)


def seed(value: Any, name: str = "seed") -> int:
    """A random seed: a non-negative integer."""
    return integer(value, name, 0)


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite ``float`` (bools refused).

    Raises
    ------
    ValueError
        ``"NAME must be a real number, got ..."`` or ``"NAME must be finite, got nan"``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def positive_float(value: Any, name: str, unit: str = "") -> float:
    """``value`` as a finite ``float > 0``: scales, factors, exponents, caps.

    ``unit`` is appended to the bound in the message (e.g. ``" (mm/h)"``).

    Raises
    ------
    ValueError
        As :func:`finite_float`, or ``"NAME must be a finite number > 0, got ..."``.
    """
    v = finite_float(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be a finite number > 0{unit}, got {value!r}")
    return v


def non_negative_float(value: Any, name: str, unit: str = "") -> float:
    """``value`` as a finite ``float >= 0``: thresholds, learning rates, exponents.

    Raises
    ------
    ValueError
        As :func:`finite_float`, or ``"NAME must be a finite number >= 0, got ..."``.
    """
    v = finite_float(value, name)
    if v < 0:
        raise ValueError(f"{name} must be a finite number >= 0{unit}, got {value!r}")
    return v


def finite_array(a: Any, name: str, fix: str = "") -> np.ndarray:
    """``a`` as a numpy array, if it holds no NaN or infinite value.

    Parameters
    ----------
    a
        Array-like (a torch tensor is converted with ``numpy()``).
    name
        What it is, for the message (e.g. ``"the topography"``).
    fix
        How to fix it, appended to the message (e.g. ``"fill the sea with 0 m"``).

    Raises
    ------
    ValueError
        ``"NAME contains N NaN or infinite value(s)"`` and ``fix``.
    """
    arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    if np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.integer):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s)"
                             + (f"; {fix}" if fix else ""))
    return arr
