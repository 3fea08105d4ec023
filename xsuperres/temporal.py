"""Temporal peers of the model: persistence, linear and motion-compensated interpolation.

Plain numpy functions on an LR sequence ``x`` of shape ``(n, h, w)`` (mm/h, each frame the
mean over a block of ``T`` HR steps, as made by :func:`xsuperres.coarsen_perfect`) that
return ``(n T, h, w)`` HR steps on the same grid. They are the standard ways radar frames
are interpolated in time, and the references every ``(S, T > 1)`` model is scored against
(:func:`xsuperres.interpolate` with ``time_method=...`` puts them on xarray objects).

``"persistence"``
    Every HR step of block ``t`` repeats ``x[t]`` (the nearest-neighbour baseline in time).
``"linear"``
    ``x[t]`` is taken as the value at the block's centre and the HR steps are linearly
    interpolated between consecutive centres: the first half of a block between
    ``x[t-1]`` and ``x[t]``, the second half between ``x[t]`` and ``x[t+1]``. **It needs
    the following LR step** (and the previous one): the first and last blocks of the
    sequence hold their value flat on their open side.
``"motion"``
    Motion-compensated interpolation: the optical flow ``V`` between consecutive LR frames
    (pysteps' Proesmans method by default, or Lucas-Kanade with ``flow="LK"``, which needs
    OpenCV) on ``log1p(x)``; an HR step a fraction ``f`` of the way from ``x[t]`` to
    ``x[t+1]`` is ``(1 - f) adv(x[t], f V) + f adv(x[t+1], -(1 - f) V)``, where
    ``adv(u, d)(p) = u(p - d)`` is a semi-Lagrangian (backward, bilinear) advection by the
    displacement ``d`` in pixels. Needs the following LR step like ``"linear"``.

Linear and motion-compensated steps are rescaled within each block, pixel by pixel, so that
the ``T`` HR steps of block ``t`` average to ``x[t]`` exactly (:func:`conserve_in_time`):
like the model's block mass conservation, the peers reproduce the coarse input. NaN pixels
of an LR frame are NaN in its ``T`` HR steps.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._pysteps import import_pysteps
from .checks import positive_int

__all__ = ["TIME_METHODS", "check_time_method", "upsample_in_time", "block_in_time", "persistence_in_time",
           "linear_in_time", "motion_in_time", "conserve_in_time", "optical_flow", "advect"]

#: frames smaller than this (pixels, either side) are edge-padded for the optical flow
MIN_FLOW_SIZE = 64

#: the ``time_method`` names of :func:`upsample_in_time` (and :func:`xsuperres.interpolate`)
TIME_METHODS = ("persistence", "linear", "motion")


def check_time_method(method: str) -> str:
    """``method`` if it is one of :data:`TIME_METHODS`; a ``ValueError`` naming them otherwise."""
    if method not in TIME_METHODS:
        raise ValueError(f"time_method must be one of {TIME_METHODS}, got {method!r}")
    return method


def _check_sequence(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"the LR sequence must have shape (time, y, x), got {x.shape}")
    return x


def _offsets(T: int) -> np.ndarray:
    """Position of the ``T`` HR step centres of a block, in LR steps from its centre."""
    return (np.arange(T) + 0.5) / T - 0.5


def conserve_in_time(hr: np.ndarray, x: np.ndarray, T: int) -> np.ndarray:
    """Rescale the ``T`` HR steps of each block, pixel by pixel, to average to ``x``.

    Parameters
    ----------
    hr
        ``(n T, h, w)`` non-negative HR steps.
    x
        ``(n, h, w)`` LR block means.
    T
        HR steps per LR step.

    Returns
    -------
    numpy.ndarray
        ``(n T, h, w)`` float64. Where the ``T`` steps of a pixel are all zero while
        ``x > 0``, the pixel takes ``x`` at every step (persistence).
    """
    T = positive_int(T, "T")
    n, h, w = x.shape
    blocks = np.clip(hr, 0, None).reshape(n, T, h, w)
    mean = blocks.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(mean > 0, blocks * (x[:, None] / mean), x[:, None])
    return out.reshape(n * T, h, w)


def persistence_in_time(x: np.ndarray, T: int) -> np.ndarray:
    """Every HR step of block ``t`` is ``x[t]``: ``(n, h, w) -> (n T, h, w)``."""
    return np.repeat(_check_sequence(x), positive_int(T, "T"), axis=0)


def linear_in_time(x: np.ndarray, T: int) -> np.ndarray:
    """Linear interpolation between block centres, rescaled to conserve every block.

    Uses ``x[t-1]`` and ``x[t+1]`` for block ``t`` (the first and last blocks are held flat
    on their open side). ``(n, h, w) -> (n T, h, w)``.

    Examples
    --------
    One pixel, three 15-min means 0, 3 and 6 mm/h, T = 3: the middle block ramps through
    its mean; the first stays dry (its mean is 0); the last is held flat after its centre
    and rescaled to keep its mean of 6:

    >>> import numpy as np
    >>> from xsuperres.temporal import linear_in_time
    >>> linear_in_time(np.array([0.0, 3.0, 6.0])[:, None, None], 3).ravel().round(2)
    array([0.  , 0.  , 0.  , 2.  , 3.  , 4.  , 5.29, 6.35, 6.35])
    """
    x = _check_sequence(x)
    T = positive_int(T, "T")
    prev = np.concatenate([x[:1], x[:-1]])
    nxt = np.concatenate([x[1:], x[-1:]])
    f = _offsets(T)[None, :, None, None]
    hr = np.where(f < 0, x[:, None] + f * (x[:, None] - prev[:, None]),
                  x[:, None] + f * (nxt[:, None] - x[:, None]))
    return conserve_in_time(hr.reshape(-1, *x.shape[1:]), x, T)


def advect(field: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Semi-Lagrangian (backward) advection: ``out(p) = field(p - d(p))``, bilinear.

    Parameters
    ----------
    field
        ``(h, w)``.
    displacement
        ``(2, h, w)``: x (column) and y (row) displacement in pixels (pysteps' order).

    Returns
    -------
    numpy.ndarray
        ``(h, w)``; departure points outside the grid take the nearest edge value.
    """
    from scipy.ndimage import map_coordinates

    h, w = field.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    coords = np.stack([rows - displacement[1], cols - displacement[0]])
    return map_coordinates(field, coords, order=1, mode="nearest")


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "proesmans") -> np.ndarray:
    """Optical flow from frame ``a`` to frame ``b`` (mm/h), in pixels per LR step.

    Computed by ``pysteps.motion.get_method(method)`` on ``log1p`` of the two frames (NaN
    as 0). ``method``: ``"proesmans"`` (default; numpy only) or ``"LK"`` (Lucas-Kanade,
    needs ``opencv-python-headless``). Frames smaller than :data:`MIN_FLOW_SIZE` pixels
    are edge-padded first. Returns ``(2, h, w)`` (x, y); zero where both frames are dry.
    """
    motion = import_pysteps("motion", "motion-compensated interpolation")
    pair = np.log1p(np.nan_to_num(np.stack([a, b]), nan=0.0).clip(min=0))
    h, w = pair.shape[1:]
    if not pair.any():
        return np.zeros((2, h, w))
    # pysteps' Proesmans corrupts memory on frames smaller than its 6-level pyramid (< 32
    # pixels): small frames are edge-padded to MIN_FLOW_SIZE and the flow cropped back
    py, px = max(0, MIN_FLOW_SIZE - h), max(0, MIN_FLOW_SIZE - w)
    if py or px:
        pair = np.pad(pair, ((0, 0), (py // 2, py - py // 2), (px // 2, px - px // 2)), mode="edge")
    fn = motion.get_method(method)
    # no stdout redirection here: it is process-wide and not thread-safe (two dask tasks
    # redirecting at once can leave sys.stdout pointing at a discarded buffer)
    V = fn(pair) if method.lower() == "proesmans" else fn(pair, verbose=False)
    V = np.asarray(V, dtype=np.float64)[:2, py // 2:py // 2 + h, px // 2:px // 2 + w]
    return np.nan_to_num(V)


def motion_in_time(x: np.ndarray, T: int, flow: str = "proesmans",
                   velocities: Optional[np.ndarray] = None) -> np.ndarray:
    """Motion-compensated interpolation in time, rescaled to conserve every block.

    Parameters
    ----------
    x
        ``(n, h, w)`` LR block means (mm/h); NaN allowed (treated as 0 for the flow and the
        advection, NaN again in the output).
    T
        HR steps per LR step.
    flow
        Optical-flow method of :func:`optical_flow`.
    velocities
        Optional precomputed ``(n - 1, 2, h, w)`` flow from ``x[t]`` to ``x[t+1]`` (pixels
        per LR step); computed with ``flow`` otherwise.

    Returns
    -------
    numpy.ndarray
        ``(n T, h, w)`` float64.
    """
    x = _check_sequence(x)
    T = positive_int(T, "T")
    n, h, w = x.shape
    nan = np.isnan(x)
    xf = np.where(nan, 0.0, x)
    if velocities is None:
        velocities = np.stack([optical_flow(xf[t], xf[t + 1], flow) for t in range(n - 1)]) \
            if n > 1 else np.zeros((0, 2, h, w))
    V = np.asarray(velocities, dtype=np.float64)
    if V.shape != (max(n - 1, 0), 2, h, w):
        raise ValueError(f"velocities must have shape {(n - 1, 2, h, w)}, got {V.shape}")

    def between(t: int, f: float) -> np.ndarray:
        """A fraction ``f`` of the way from ``x[t]`` to ``x[t+1]``."""
        return ((1 - f) * advect(xf[t], f * V[t]) + f * advect(xf[t + 1], -(1 - f) * V[t]))

    hr = np.empty((n, T, h, w))
    for t in range(n):
        for j, f in enumerate(_offsets(T)):
            if f >= 0:
                hr[t, j] = between(t, f) if t + 1 < n else xf[t]
            else:
                hr[t, j] = between(t - 1, 1 + f) if t > 0 else xf[t]
    out = conserve_in_time(hr.reshape(n * T, h, w), xf, T)
    if nan.any():
        out[np.repeat(nan, T, axis=0)] = np.nan
    return out


def upsample_in_time(x: np.ndarray, T: int, method: str = "persistence", **kwargs) -> np.ndarray:
    """``(n, h, w) -> (n T, h, w)`` with one of :data:`TIME_METHODS`.

    ``kwargs`` go to :func:`motion_in_time` (``flow``, ``velocities``). NaN pixels give NaN
    in their ``T`` HR steps.
    """
    if check_time_method(method) == "motion":
        return motion_in_time(x, T, **kwargs)
    x = _check_sequence(x)
    if method == "persistence":
        return persistence_in_time(x, T)
    nan = np.isnan(x)
    out = linear_in_time(np.where(nan, 0.0, x), T)
    if nan.any():
        out[np.repeat(nan, positive_int(T, "T"), axis=0)] = np.nan
    return out


def block_in_time(window: np.ndarray, T: int, method: str = "motion", **kwargs) -> np.ndarray:
    """The ``T`` HR steps of the middle block of the LR window ``x[t-1], x[t], x[t+1]``.

    ``window``: ``(..., 3, h, w)`` mm/h (leading axes are independent windows, e.g. the
    tiles of a downscaling chunk); returns ``(..., T, h, w)`` float64, the block ``t``
    part of :func:`upsample_in_time` on the window (``T`` steps averaging to ``x[t]``).
    This is the conditional mean that :func:`xsuperres.downscale` hands to the diffusion
    stage with ``mean="motion"`` (or ``"linear"``, ``"persistence"``). ``kwargs`` go to
    :func:`motion_in_time`.

    Examples
    --------
    >>> import numpy as np
    >>> from xsuperres.temporal import block_in_time
    >>> block_in_time(np.array([0.0, 3.0, 6.0])[:, None, None], 3, "linear").ravel()
    array([2., 3., 4.])
    """
    w = np.asarray(window, dtype=np.float64)
    if w.ndim < 3 or w.shape[-3] != 3:
        raise ValueError(f"window must have shape (..., 3, h, w) (x[t-1], x[t], x[t+1]), got {w.shape}")
    T = positive_int(T, "T")
    lead, (h, wd) = w.shape[:-3], w.shape[-2:]
    flat = w.reshape(-1, 3, h, wd)
    out = np.stack([upsample_in_time(f, T, method, **kwargs)[T:2 * T] for f in flat]) \
        if flat.shape[0] else np.empty((0, T, h, wd))
    return out.reshape(lead + (T, h, wd))
