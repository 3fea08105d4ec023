"""The eight verification metrics of the preprint (appendix 11; docs/metrics.md), and the
ensemble's spread-error ratio, on plain numpy arrays.

Conventions
-----------
* ``pred`` has shape ``(M, F, ny, nx)`` (members, frames, y, x) and ``truth`` has
  shape ``(F, ny, nx)``. A ``pred`` with the same number of dimensions as
  ``truth`` is a one-member ensemble; a 2-D ``truth`` is a single frame (see
  :func:`as_ensemble`).
* Precipitation is in mm h-1; every computation is done in float64 (float32
  input is fine).
* NaN pixels of ``truth`` (e.g. outside radar coverage) are excluded from every
  metric, and the same pixels of every member of ``pred`` are ignored. The
  pixel metrics (MSE, MAE, 99PE, EMD, PITD, CRPS) simply drop them. LSD and SSIM
  need whole frames: there the NaN pixels of ``truth`` are set to 0 in ``truth``
  *and* in every member of ``pred`` (so they agree there), and frames that are
  entirely NaN are skipped. NaN in ``pred`` at a valid ``truth`` pixel is not
  excluded: it makes the metric NaN.
* A metric with no valid pixel at all is NaN.

The implementations are independent of scikit-image and properscoring; the
tests check them against those packages and against scipy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import uniform_filter

__all__ = [
    "EXTRA_METRICS",
    "ExtraMetricInfo",
    "METRICS",
    "MetricInfo",
    "as_ensemble",
    "crps",
    "crps_fair",
    "emd",
    "fair_crps_from_scores",
    "lsd",
    "mae",
    "mse",
    "pe99",
    "percentile_bias",
    "pit_deviation",
    "pit_values",
    "pitd",
    "pitd_floor",
    "radial_spectrum",
    "spectral_log_ratio",
    "spread_error_ratio",
    "spread_error_ratio_from_scores",
    "ssim",
]

#: Added to spectral magnitudes before the log10 in :func:`lsd`.
LSD_EPS = 1e-12
#: Side of the square SSIM window (pixels), scikit-image's default.
SSIM_WIN = 7
#: SSIM stabilising constants (scikit-image / Wang et al. 2004 defaults).
SSIM_K1, SSIM_K2 = 0.01, 0.03


# --------------------------------------------------------------------------- helpers
def as_ensemble(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred`` as ``(M, F, ny, nx)`` and ``truth`` as ``(F, ny, nx)`` float64.

    Parameters
    ----------
    pred : array_like
        ``(M, F, ny, nx)`` ensemble, or ``(F, ny, nx)`` single member (same shape
        as ``truth``). With a 2-D ``truth``: ``(ny, nx)`` or ``(M, ny, nx)``.
    truth : array_like
        ``(F, ny, nx)`` frames or one ``(ny, nx)`` frame, mm h-1.

    Returns
    -------
    pred, truth : numpy.ndarray
        float64 arrays of shapes ``(M, F, ny, nx)`` and ``(F, ny, nx)``.

    Raises
    ------
    ValueError
        If the shapes do not fit these conventions.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if t.ndim not in (2, 3):
        raise ValueError(f"truth must be (F, ny, nx) or (ny, nx), got shape {t.shape}")
    if p.ndim == t.ndim:
        p = p[np.newaxis]
    if t.ndim == 2 and p.ndim == 3:
        t, p = t[np.newaxis], p[:, np.newaxis]
    if p.ndim != 4 or p.shape[1:] != t.shape:
        raise ValueError(
            f"pred shape {np.shape(pred)} does not fit truth shape {np.shape(truth)}: "
            "pred must be (M, F, ny, nx) with truth (F, ny, nx), or have truth's shape"
        )
    return p, t


def _valid(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels: ``(M, N)`` member values and ``(N,)`` truth values."""
    p, t = as_ensemble(pred, truth)
    mask = ~np.isnan(t)
    return p[:, mask], t[mask]


def _frames(pred: ArrayLike, truth: ArrayLike):
    """Yield ``(M * n_f,)`` pooled member values and ``(n_f,)`` truth values per frame.

    Frames without a valid truth pixel are skipped.
    """
    p, t = as_ensemble(pred, truth)
    for f in range(t.shape[0]):
        mask = ~np.isnan(t[f])
        if mask.any():
            yield p[:, f][:, mask].ravel(), t[f][mask]


def _filled(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Whole frames for LSD/SSIM: truth's NaN pixels set to 0 in both, all-NaN frames dropped."""
    p, t = as_ensemble(pred, truth)
    nan = np.isnan(t)
    keep = ~nan.all(axis=(1, 2))
    t = np.where(nan, 0.0, t)[keep]
    p = np.where(nan, 0.0, p)[:, keep]
    return p, t


def _mean_or_nan(a: np.ndarray) -> float:
    return float(np.mean(a)) if a.size else float("nan")


# --------------------------------------------------------------------------- pixel errors
def mse(pred: ArrayLike, truth: ArrayLike) -> float:
    """Mean squared error (mm2 h-2), per member then averaged over members.

    Every member has the same valid pixels, so this is the mean of
    ``(pred - truth)**2`` over members and valid pixels.
    """
    p, t = _valid(pred, truth)
    return _mean_or_nan((p - t) ** 2)


def mae(pred: ArrayLike, truth: ArrayLike) -> float:
    """Mean absolute error (mm h-1), per member then averaged over members."""
    p, t = _valid(pred, truth)
    return _mean_or_nan(np.abs(p - t))


def percentile_bias(pred: ArrayLike, truth: ArrayLike, q: float = 99.0) -> float:
    """Signed percentile error ``qq(pred) - qq(truth)`` (units of the data, e.g. mm h-1).

    Positive when the members' pooled ``q``-th percentile is above the truth's (too
    heavy a tail), negative when below (too weak). Percentiles use numpy's default
    (linear) interpolation over all valid values (NaN in ``truth`` excluded); the
    members of ``pred`` are pooled. :func:`pe99` is ``abs(percentile_bias(pred, truth, 99))``.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q!r} must lie in [0, 100]")
    p, t = _valid(pred, truth)
    if not t.size:
        return float("nan")
    return float(np.percentile(p, q) - np.percentile(t, q))


def pe99(pred: ArrayLike, truth: ArrayLike) -> float:
    """99th-percentile error ``|q99(pred) - q99(truth)|`` (mm h-1).

    Percentiles use numpy's default (linear) interpolation over all valid values;
    the members of ``pred`` are pooled. Its sign is :func:`percentile_bias`.
    """
    return abs(percentile_bias(pred, truth, 99.0))


# --------------------------------------------------------------------------- spectra
def _radius_index(ny: int, nx: int) -> np.ndarray:
    """Integer radius ``round(sqrt(ky**2 + kx**2))`` of every FFT bin, shape ``(ny, nx)``."""
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    return np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.intp)


def radial_spectrum(frame: ArrayLike) -> np.ndarray:
    """Radially averaged 2-D FFT magnitude of a frame.

    Parameters
    ----------
    frame : array_like
        ``(ny, nx)`` field (any units ``u``), or a stack ``(..., ny, nx)``.

    Returns
    -------
    numpy.ndarray
        ``(rmax + 1,)`` (or ``(..., rmax + 1)``) mean of ``|fft2(frame)|`` (units
        ``u``, unnormalised FFT) over the bins of integer radius
        ``r = round(sqrt(kx**2 + ky**2))``, ``r = 0 .. min(ny, nx) // 2``, with
        integer wavenumbers ``fftfreq(n) * n``. Bins beyond ``rmax`` are ignored.
    """
    a = np.asarray(frame, dtype=np.float64)
    ny, nx = a.shape[-2:]
    rmax = min(ny, nx) // 2
    lead = a.shape[:-2]
    mag = np.abs(np.fft.fft2(a.reshape(-1, ny, nx))).reshape(-1, ny * nx)
    r = _radius_index(ny, nx).ravel()
    sel = r <= rmax
    r, mag = r[sel], mag[:, sel]
    ids = (np.arange(mag.shape[0])[:, None] * (rmax + 1) + r).ravel()
    sums = np.bincount(ids, weights=mag.ravel(), minlength=mag.shape[0] * (rmax + 1))
    counts = np.bincount(r, minlength=rmax + 1)
    return (sums.reshape(-1, rmax + 1) / counts).reshape(*lead, rmax + 1)


def spectral_log_ratio(pred: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """Per-radius log10 ratio of the spectra of ``pred`` and ``truth`` (unitless).

    ``d[m, f, k] = log10(radial_spectrum(pred[m, f])[k] + 1e-12)
    - log10(radial_spectrum(truth[f])[k] + 1e-12)``: > 0 where member ``m`` of frame ``f``
    has more power than the truth at radius ``k`` (wavelength ``n / k`` pixels on an
    ``n``-pixel frame). NaN pixels of ``truth`` are set to 0 in both fields; all-NaN
    frames are dropped. :func:`lsd` is the mean over ``m, f`` of the RMS over ``k``.

    Parameters
    ----------
    pred : array_like
        ``(ny, nx)``, ``(n_frames, ny, nx)`` or ``(n_members, n_frames, ny, nx)``.
    truth : array_like
        ``(ny, nx)`` or ``(n_frames, ny, nx)``, same units as ``pred``.

    Returns
    -------
    numpy.ndarray
        ``(n_members, n_kept_frames, min(ny, nx) // 2 + 1)``.
    """
    p, t = _filled(pred, truth)
    if not t.shape[0]:  # no frame with data
        return np.zeros((p.shape[0], 0, min(t.shape[-2:]) // 2 + 1))
    return np.log10(radial_spectrum(p) + LSD_EPS) - np.log10(radial_spectrum(t) + LSD_EPS)[None]


def lsd(pred: ArrayLike, truth: ArrayLike) -> float:
    """Log-spectral distance (unitless).

    For each member and frame: RMSE over radii between
    ``log10(radial_spectrum(pred) + 1e-12)`` and the same for ``truth``; then
    the mean over members and frames. NaN pixels of ``truth`` are set to 0 in
    both fields; all-NaN frames are skipped. Per radius:
    :func:`spectral_log_ratio`.
    """
    d = spectral_log_ratio(pred, truth)
    if not d.shape[1]:
        return float("nan")
    return float(np.mean(np.sqrt(np.mean(d ** 2, axis=-1))))


# --------------------------------------------------------------------------- distributions
def _wasserstein_sorted(x: np.ndarray, y: np.ndarray) -> float:
    """1-D Wasserstein-1 distance of two sorted samples via their quantile functions.

    ``W1 = int_0^1 |Q_x(p) - Q_y(p)| dp``; both quantile functions are step
    functions, constant between the union of the levels ``i/len(x)`` and
    ``j/len(y)``.
    """
    px = np.arange(1, x.size + 1) / x.size
    py = np.arange(1, y.size + 1) / y.size
    levels = np.union1d(px, py)
    widths = np.diff(levels, prepend=0.0)
    ix = np.minimum(np.searchsorted(px, levels, side="left"), x.size - 1)
    iy = np.minimum(np.searchsorted(py, levels, side="left"), y.size - 1)
    return float(np.sum(widths * np.abs(x[ix] - y[iy])))


def emd(pred: ArrayLike, truth: ArrayLike) -> float:
    """Earth mover's (1-D Wasserstein-1) distance between pixel-value distributions (mm h-1).

    Per frame: the distance between the pooled valid pixels of all members and
    the valid truth pixels (``scipy.stats.wasserstein_distance`` of the two
    samples); then the mean over frames.
    """
    d = [_wasserstein_sorted(np.sort(x), np.sort(y)) for x, y in _frames(pred, truth)]
    return _mean_or_nan(np.asarray(d))


def pit_values(pred: ArrayLike, truth: ArrayLike, ties: str = "midrank", seed: int = 0) -> np.ndarray:
    """Probability integral transform of every valid truth pixel (unitless, in [0, 1]).

    Per frame, ``u = (#{X < y} + 0.5 #{X == y}) / |X|`` for each valid truth
    value ``y``, where ``X`` pools the valid pixels of all members of that frame.
    Ties get the *mid-rank* value (half of the tied mass): precipitation has
    many exact zeros, and ``u = F_X(y)`` would put every dry truth pixel at the
    dry fraction of the ensemble. E.g. ``X = [0, 0, 0, 1]``, ``y = 0`` gives
    ``u = 0.375``. A frame whose ``X`` contains NaN gives NaN.

    ``ties="randomized"``: ``u = (#{X < y} + v #{X == y}) / |X|`` with ``v ~ U(0, 1)``
    drawn per value from ``numpy.random.default_rng(seed)`` (the randomized PIT): the tied
    mass is spread instead of stacked at its middle, so a perfect forecast has uniform PIT
    values even with many dry pixels (see :func:`pitd_floor`). Without ties both are equal.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` values, frames concatenated in order.
    """
    if ties not in ("midrank", "randomized"):
        raise ValueError(f"ties must be 'midrank' or 'randomized', got {ties!r}")
    rng = np.random.default_rng(seed) if ties == "randomized" else None
    out = []
    for x, y in _frames(pred, truth):
        xs = np.sort(x)
        lo = np.searchsorted(xs, y, side="left")
        hi = np.searchsorted(xs, y, side="right")
        v = 0.5 if rng is None else rng.random(y.shape)
        u = (lo + v * (hi - lo)) / xs.size
        out.append(np.full_like(u, np.nan, dtype=np.float64) if np.isnan(xs[-1]) else u)
    return np.concatenate(out) if out else np.empty(0)


def pitd(pred: ArrayLike, truth: ArrayLike, ties: str = "midrank", seed: int = 0) -> float:
    """PIT distance (unitless): distance of the PIT histogram from uniformity.

    With the ``N`` values of :func:`pit_values` (mid-rank for ties by default;
    ``ties="randomized"``: the randomized PIT with ``seed``) sorted,
    ``PITD = sqrt(mean((u_(i) - (i - 0.5) / N)**2))``, ``i = 1 .. N``.
    0 for a calibrated ensemble; an under-dispersive ensemble has U-shaped PIT
    and a large PITD. With mid-rank ties even a perfect forecast has a PITD above 0
    where the truth has dry pixels: :func:`pitd_floor`.
    """
    return pit_deviation(pit_values(pred, truth, ties=ties, seed=seed))


def pitd_floor(truth: ArrayLike) -> float:
    """The mid-rank PITD of a perfect forecast: ``pitd(truth[None], truth)`` (unitless).

    Every dry truth pixel of a frame gets the same mid-rank PIT ``d / 2`` (``d``: the
    frame's dry fraction) where a uniform histogram would spread them over ``[0, d]``; for
    one frame with continuous wet values this is ``PITD = d**1.5 / sqrt(12)`` (0.169 at
    70 % dry). It is the perfect forecast's score, not a lower bound for other forecasts
    (whose dry pixels tie differently). Compare a mid-rank PITD with it, or
    use ``pitd(..., ties="randomized")``, whose perfect-forecast value is 0 up to sampling
    noise.

    Examples
    --------
    >>> import numpy as np
    >>> from xsuperres.metrics import pitd_floor
    >>> y = np.r_[np.zeros(7), np.arange(1.0, 4.0)].reshape(1, 2, 5)  # 70 % dry
    >>> round(pitd_floor(y), 4)  # the 7 dry pixels at 0.35 against 0.05 .. 0.65: sqrt(0.28 / 10)
    0.1673
    """
    t = np.asarray(truth, dtype=np.float64)
    return pitd(t[None], t)


def pit_deviation(u: ArrayLike) -> float:
    """PITD of given PIT values: ``sqrt(mean((u_(i) - (i - 0.5) / N)**2))`` (unitless).

    ``u`` sorted ascending, ``N`` values (a NaN gives NaN; NaN for no values). The one
    implementation behind :func:`pitd` and :func:`xsuperres.tune.pit_summary`.
    """
    u = np.sort(np.asarray(u, dtype=np.float64).ravel())
    if not u.size:
        return float("nan")
    ref = (np.arange(1, u.size + 1) - 0.5) / u.size
    return float(np.sqrt(np.mean((u - ref) ** 2)))


def crps(pred: ArrayLike, truth: ArrayLike, fair: bool = False) -> float:
    """Continuous ranked probability score of the ensemble (mm h-1).

    Per valid pixel, ``E|X - y| - 0.5 E|X - X'|`` over the ``M`` members ``X``
    at that pixel (properscoring's ``crps_ensemble``), computed with the members sorted:
    ``E|X - X'| = 2 / M**2 sum_i (2 i - M - 1) x_(i)``; then the mean over
    valid pixels. Equals :func:`mae` for one member.

    Parameters
    ----------
    pred, truth : array_like
        Members ``(M, F, ny, nx)`` and truth ``(F, ny, nx)`` in mm h-1 (see the module's
        conventions).
    fair : bool, default False
        The "fair" CRPS of Ferro (2014): ``E|X - X'|`` averages over the ``M (M - 1)``
        pairs of *distinct* members (denominator ``M (M - 1)`` instead of ``M**2``).
        Its expectation does not depend on ``M`` for members drawn from the same
        distribution, so it compares ensembles of different sizes, and it removes the
        finite-ensemble penalty that the default estimator puts on a well-spread small
        ensemble (which favours under-dispersed ones). Needs at least two members.
        The default is the SPEC's score and the one in every table.

    Raises
    ------
    ValueError
        If ``fair`` and ``pred`` has one member.

    Examples
    --------
    Two members, 0 and 2 mm/h, and a truth of 1 mm/h: ``E|X - y| = 1``,
    ``E|X - X'| = 1`` over all four pairs, so the CRPS is ``1 - 0.5 = 0.5``; the two
    distinct pairs differ by 2, so the fair CRPS is ``1 - 0.5 * 2 = 0``:

    >>> import numpy as np
    >>> from xsuperres.metrics import crps
    >>> crps(np.array([[[0.0]], [[2.0]]]), np.array([[1.0]]))
    0.5
    >>> crps(np.array([[[0.0]], [[2.0]]]), np.array([[1.0]]), fair=True)
    0.0
    """
    p, t = _valid(pred, truth)
    m = p.shape[0]
    if fair and m < 2:
        raise ValueError("the fair CRPS needs at least two members; pred has one "
                         "(use fair=False, which equals the MAE for one member)")
    if not t.size:
        return float("nan")
    xs = np.sort(p, axis=0)
    weights = (2.0 * np.arange(1, m + 1) - m - 1)[:, None]
    half_spread = np.sum(weights * xs, axis=0) / (m * (m - 1) if fair else m**2)
    return float(np.mean(np.mean(np.abs(xs - t), axis=0) - half_spread))


def fair_crps_from_scores(crps_value: float, mae_value: float, n_members: int) -> float:
    """The fair :func:`crps` of an ensemble from its stored default CRPS and :func:`mae` (mm h-1).

    ``CRPS = MAE - 0.5 E|X - X'|`` with ``E|X - X'|`` over all ``M**2`` member pairs; the
    fair score divides the same pair sum by ``M (M - 1)``, so
    ``fair = MAE - (MAE - CRPS) M / (M - 1)``. For tables that stored CRPS and MAE only.
    NaN for one member.

    Examples
    --------
    >>> from xsuperres.metrics import fair_crps_from_scores
    >>> fair_crps_from_scores(0.5, 1.0, 2)  # the two-member example of crps
    0.0
    """
    return float(mae_value - 0.5 * _distinct_pair_difference(crps_value, mae_value, n_members))


def _distinct_pair_difference(crps_value: float, mae_value: float, n_members: int) -> float:
    """Mean ``|X_i - X_j|`` over distinct member pairs from a stored :func:`crps` and
    :func:`mae`: ``2 (MAE - CRPS) M / (M - 1)`` (NaN for one member)."""
    m = int(n_members)
    if m < 2:
        return float("nan")
    return 2.0 * (mae_value - crps_value) * m / (m - 1)


def spread_error_ratio_from_scores(crps_value: float, mae_value: float, n_members: int) -> float:
    """:func:`spread_error_ratio` from an ensemble's stored :func:`crps` and :func:`mae` (unitless).

    With this module's CRPS, ``CRPS = MAE - 0.5 E|X - X'|`` where ``E|X - X'|`` averages
    over all ``M**2`` member pairs (the ``M`` zero pairs ``i = j`` included), so the mean
    absolute difference of two *distinct* members is ``2 (MAE - CRPS) M / (M - 1)``.
    NaN for one member or an MAE of 0.
    """
    if not mae_value > 0:
        return float("nan")
    return float(_distinct_pair_difference(crps_value, mae_value, n_members) / mae_value)


def spread_error_ratio(pred: ArrayLike, truth: ArrayLike) -> float:
    """Spread-error ratio of an ensemble (unitless): mean absolute difference of two distinct
    members over the members' mean absolute error, ``E|X - X'| / E|X - y|``, each averaged
    over valid pixels.

    If the truth were one more member (an exchangeable, i.e. calibrated, ensemble) both
    would be the same mean absolute difference, so the ratio is 1 in expectation; below 1
    the members are too alike (under-dispersed), above 1 they spread more than they miss.
    Unlike a PIT histogram it has no ties to handle at dry pixels (where members and truth
    are all 0 both terms are 0). NaN for one member.

    Examples
    --------
    Members 0 and 2 mm/h, truth 1 mm/h: the members differ by 2 and miss by 1:

    >>> import numpy as np
    >>> from xsuperres.metrics import spread_error_ratio
    >>> spread_error_ratio(np.array([[[0.0]], [[2.0]]]), np.array([[1.0]]))
    2.0
    """
    p, _ = as_ensemble(pred, truth)
    return spread_error_ratio_from_scores(crps(pred, truth), mae(pred, truth), p.shape[0])


# --------------------------------------------------------------------------- structure
def _ssim_maps(p: np.ndarray, t: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM index maps of ``p (..., ny, nx)`` against ``t`` (broadcast), uncropped."""
    size = (1,) * (p.ndim - 2) + (SSIM_WIN, SSIM_WIN)
    t = np.broadcast_to(t, p.shape)
    ux, uy = uniform_filter(p, size), uniform_filter(t, size)
    uxx, uyy = uniform_filter(p * p, size), uniform_filter(t * t, size)
    uxy = uniform_filter(p * t, size)
    n = SSIM_WIN**2
    cov_norm = n / (n - 1.0)  # sample covariance, as skimage's default
    vx, vy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    return num / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def ssim(pred: ArrayLike, truth: ArrayLike, data_range: float | None = None) -> float:
    """Structural similarity index (unitless, higher is better, 1 = identical).

    Per member and frame, scikit-image's ``structural_similarity`` defaults:
    7 x 7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, mean
    of the SSIM map over the interior (3 pixels cropped at each edge); then the
    mean over members and frames. NaN pixels of ``truth`` are set to 0 in both
    fields; all-NaN frames are skipped.

    Parameters
    ----------
    data_range : float, optional
        Dynamic range (mm h-1); default ``max - min`` of the valid truth values.
    """
    if data_range is None:
        _, t_valid = _valid(pred, truth)
        if not t_valid.size:
            return float("nan")
        data_range = float(t_valid.max() - t_valid.min())
    p, t = _filled(pred, truth)
    if not t.size:
        return float("nan")
    if min(t.shape[-2:]) < SSIM_WIN:
        raise ValueError(f"ssim needs frames of at least {SSIM_WIN} x {SSIM_WIN} pixels, got {t.shape[-2:]}")
    pad = (SSIM_WIN - 1) // 2
    maps = _ssim_maps(p, t, float(data_range))[..., pad:-pad, pad:-pad]
    return float(np.mean(maps))


# --------------------------------------------------------------------------- registry
class MetricInfo(NamedTuple):
    """A metric: its function, units, long name and direction."""

    func: Callable[[ArrayLike, ArrayLike], float]
    units: str
    long_name: str
    higher_is_better: bool


#: name -> (function, units, long_name, higher_is_better) for the eight metrics.
METRICS: dict[str, MetricInfo] = {
    "mse": MetricInfo(mse, "mm2 h-2", "mean squared error", False),
    "mae": MetricInfo(mae, "mm h-1", "mean absolute error", False),
    "pe99": MetricInfo(pe99, "mm h-1", "absolute error of the 99th percentile", False),
    "lsd": MetricInfo(lsd, "1", "log-spectral distance", False),
    "emd": MetricInfo(emd, "mm h-1", "earth mover's distance (1-D Wasserstein-1)", False),
    "ssim": MetricInfo(ssim, "1", "structural similarity index", True),
    "pitd": MetricInfo(pitd, "1", "probability integral transform distance (mid-rank PIT)", False),
    "crps": MetricInfo(crps, "mm h-1", "continuous ranked probability score", False),
}


def crps_fair(pred: ArrayLike, truth: ArrayLike) -> float:
    """The fair CRPS (mm h-1): :func:`crps` with ``fair=True`` (at least two members)."""
    return crps(pred, truth, fair=True)


class ExtraMetricInfo(NamedTuple):
    """An ensemble score of :data:`EXTRA_METRICS`: as :class:`MetricInfo`, plus
    ``from_scores(crps, mae, n_members)``, the same value from an ensemble's :func:`crps`
    and :func:`mae` (what :func:`xsuperres.score` uses: no second pass over the data)."""

    func: Callable[[ArrayLike, ArrayLike], float]
    units: str
    long_name: str
    higher_is_better: bool
    from_scores: Callable[[float, float, int], float]


#: name -> ExtraMetricInfo for the ensemble scores that :func:`xsuperres.score` adds on
#: request (``extra=``); both need at least two members. The spread-error ratio is best at
#: 1, which the boolean ``higher_is_better`` cannot say: ``score`` writes
#: ``better="closer to 1"``.
EXTRA_METRICS: dict[str, ExtraMetricInfo] = {
    "crps_fair": ExtraMetricInfo(crps_fair, "mm h-1",
                                 "fair continuous ranked probability score (Ferro 2014)", False,
                                 fair_crps_from_scores),
    "spread_error_ratio": ExtraMetricInfo(spread_error_ratio, "1",
                                          "spread-error ratio E|X - X'| / E|X - y| (1 when calibrated)",
                                          False, spread_error_ratio_from_scores),
}
