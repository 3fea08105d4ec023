"""High-resolution grids and times implied by a low-resolution field.

The inverse geometry of :func:`xsuperres.coarsen_perfect`: each LR cell is split into
``S x S`` HR cells whose centres subdivide it evenly, and each LR step into ``T`` HR
steps starting at the LR step's label (the label of a block is its first HR step).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

__all__ = ["refine_coordinate", "refine_time"]


def _regular_step(values: np.ndarray, name: Hashable) -> float:
    steps = np.diff(values.astype(np.float64))
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise ValueError(
            f"coordinate {name!r} is not evenly spaced (steps from {steps.min()} to {steps.max()}); "
            "the high-resolution grid of an irregular coordinate is not defined"
        )
    return float(steps[0])


def refine_coordinate(values: np.ndarray, S: int, name: Hashable = "x", spacing: float | None = None) -> np.ndarray:
    """Centres of the ``S`` HR cells inside each LR cell of a 1-D coordinate.

    Parameters
    ----------
    values
        LR cell centres (evenly spaced, increasing or decreasing).
    S
        Spatial factor.
    name
        Coordinate name, for error messages.
    spacing
        LR spacing; needed only when ``values`` has a single element.

    Returns
    -------
    numpy.ndarray
        ``len(values) * S`` HR centres, ordered like ``values``; the mean of the
        ``S`` HR centres of a cell is the LR centre.
    """
    values = np.asarray(values, dtype=np.float64)
    if spacing is None:
        if values.size < 2:
            raise ValueError(f"coordinate {name!r} has one value: its spacing is unknown, pass it explicitly")
        spacing = _regular_step(values, name)
    offsets = (np.arange(S) - (S - 1) / 2.0) * (spacing / S)
    return (values[:, None] + offsets[None, :]).reshape(-1)


def refine_time(times: np.ndarray, T: int, hr_step: str | pd.Timedelta | None = None) -> np.ndarray:
    """``T`` HR time labels per LR step, starting at the LR label.

    Parameters
    ----------
    times
        LR time labels (datetime64, evenly spaced).
    T
        Temporal factor.
    hr_step
        HR cadence (e.g. ``"1h"``); by default the LR step divided by ``T``.

    Returns
    -------
    numpy.ndarray
        ``len(times) * T`` datetime64 labels.
    """
    times = np.asarray(times)
    if T == 1 and hr_step is None:
        return times.copy()
    if hr_step is None:
        if times.size < 2:
            raise ValueError("a single time step has no cadence: pass the high-resolution time step explicitly")
        steps = np.diff(times)
        if not np.all(steps == steps[0]):
            raise ValueError("time steps are irregular; the high-resolution time axis is not defined")
        step = pd.Timedelta(steps[0]) / T
    else:
        step = pd.Timedelta(hr_step)
    offsets = np.array([k * step.to_timedelta64() for k in range(T)])
    return (times[:, None] + offsets[None, :]).reshape(-1)
