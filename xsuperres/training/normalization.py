"""Fitting the normalization of precipitation and topography on the training data.

Precipitation (preprint section 4): the cap is the 99.5th percentile of a gamma
distribution fitted to the training data; values above the cap are clipped and the rates
are min-max scaled by the cap, ``x -> clip(x, 0, cap) / cap``. Here the gamma is fitted
(``scipy.stats.gamma.fit`` with ``floc=0``, maximum likelihood) to the *wet* values
(``> 0.1 mm/h``) of the training tiles: precipitation is zero-inflated, and a gamma has no
point mass at zero. At most 200 000 wet values are used (a seeded random subset) to keep
the fit fast.

Topography is min-max scaled to ``[0, 1]`` with the minimum and maximum over the training
tiles; without topography the input channel is all zeros.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

__all__ = ["CapFit", "fit_cap", "topography_range", "WET_THRESHOLD", "CAP_QUANTILE"]

log = logging.getLogger(__name__)

#: Wet/dry threshold (mm/h) for the gamma fit.
WET_THRESHOLD = 0.1
#: Quantile of the fitted gamma used as cap.
CAP_QUANTILE = 0.995


@dataclass(frozen=True)
class CapFit:
    """Result of :func:`fit_cap`.

    Attributes
    ----------
    cap
        Precipitation cap (mm/h).
    method
        ``"gamma"`` (fitted) or ``"max"`` (fallback: too few wet values; the cap is the
        largest training value, or 1 mm/h for all-dry data).
    shape, scale
        Gamma shape (unitless) and scale (mm/h); NaN for the fallback.
    n_wet
        Number of wet values available.
    n_used
        Number of wet values used in the fit (subsample).
    wet_threshold, quantile
        The settings used.
    """

    cap: float
    method: str
    shape: float
    scale: float
    n_wet: int
    n_used: int
    wet_threshold: float
    quantile: float

    def to_dict(self) -> dict:
        """JSON-friendly dict of all fields."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def fit_cap(
    values: np.ndarray,
    *,
    wet_threshold: float = WET_THRESHOLD,
    quantile: float = CAP_QUANTILE,
    max_values: int = 200_000,
    seed: int = 0,
    min_values: int = 50,
) -> CapFit:
    """Fit a gamma distribution to the wet values and return its ``quantile`` as cap.

    Parameters
    ----------
    values
        Training precipitation rates (mm/h), any shape; NaN is ignored.
    wet_threshold
        Only values ``> wet_threshold`` (mm/h) enter the fit.
    quantile
        Quantile of the fitted gamma that becomes the cap (0.995 in the preprint).
    max_values
        Largest number of wet values used; more are subsampled without replacement
        with ``numpy.random.default_rng(seed)``.
    seed
        Seed of the subsample.
    min_values
        With fewer wet values than this the gamma is not fitted: the cap falls back to
        the largest value (1 mm/h if there is none > 0), with a warning.

    Returns
    -------
    CapFit
    """
    raw = np.asarray(values).ravel()
    # compare in the data's own float type: a float32 0.1 mm/h (a common quantisation step
    # of radar products) is slightly above the float64 0.1 and would count as wet
    thr = raw.dtype.type(wet_threshold) if np.issubdtype(raw.dtype, np.floating) else wet_threshold
    v = raw.astype(np.float64)
    wet = v[np.isfinite(v) & (raw > thr)]
    n_wet = int(wet.size)
    if n_wet < min_values:
        finite = v[np.isfinite(v)]
        top = float(finite.max()) if finite.size else 0.0
        cap = top if top > 0 else 1.0
        log.warning("only %d wet values (> %g mm/h) in the training data: no gamma fit, "
                    "cap = %g mm/h (largest value)", n_wet, wet_threshold, cap)
        return CapFit(cap, "max", float("nan"), float("nan"), n_wet, 0, float(wet_threshold), float(quantile))
    if n_wet > max_values:
        rng = np.random.default_rng(seed)
        wet = rng.choice(wet, size=int(max_values), replace=False)
    shape, _, scale = scipy.stats.gamma.fit(wet, floc=0)
    cap = float(scipy.stats.gamma.ppf(quantile, shape, loc=0, scale=scale))
    return CapFit(cap, "gamma", float(shape), float(scale), n_wet, int(wet.size), float(wet_threshold),
                  float(quantile))


def topography_range(fields: list[np.ndarray]) -> tuple[float, float]:
    """Minimum and maximum (m) over the given topography fields (the training tiles).

    Parameters
    ----------
    fields
        Topography arrays (m), any shapes; NaN is ignored.

    Returns
    -------
    (float, float)
        ``(topo_min, topo_max)``; ``(0.0, 1.0)`` if ``fields`` is empty. If the range
        is zero (flat terrain) ``topo_max = topo_min + 1`` so that the scaling is finite.
    """
    finite = [f[np.isfinite(f)] for f in fields if f is not None]
    finite = [f for f in finite if f.size]
    if not finite:
        return 0.0, 1.0
    lo = float(min(f.min() for f in finite))
    hi = float(max(f.max() for f in finite))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi
