"""The numpy metrics against independent references (scipy, scikit-image, properscoring, loops)."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance
from skimage.metrics import structural_similarity

from xsuperres import metrics
from xsuperres.metrics import (
    METRICS,
    as_ensemble,
    crps,
    fair_crps_from_scores,
    emd,
    lsd,
    spectral_log_ratio,
    mae,
    mse,
    pe99,
    percentile_bias,
    pit_values,
    pitd,
    pitd_floor,
    radial_spectrum,
    spread_error_ratio,
    spread_error_ratio_from_scores,
    ssim,
)

RTOL = 1e-6


def rain(rng: np.random.Generator, shape: tuple[int, ...], dry: float = 0.5) -> np.ndarray:
    """Gamma-distributed rain rates (mm h-1) with a fraction ``dry`` of exact zeros, float32."""
    a = rng.gamma(0.7, 2.0, shape)
    a[rng.random(shape) < dry] = 0.0
    return a.astype(np.float32)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rain(rng, (3, 4, 24, 20)), rain(rng, (4, 24, 20))


# --------------------------------------------------------------------------- references
def lsd_loop(pred: np.ndarray, truth: np.ndarray) -> float:
    """LSD with an explicit loop over radii and boolean ring masks."""
    ny, nx = truth.shape[-2:]
    ky, kx = np.meshgrid(np.fft.fftfreq(ny) * ny, np.fft.fftfreq(nx) * nx, indexing="ij")
    radius = np.round(np.sqrt(kx**2 + ky**2))

    def spectrum(frame: np.ndarray) -> np.ndarray:
        mag = np.abs(np.fft.fft2(frame.astype(np.float64)))
        return np.array([mag[radius == r].mean() for r in range(min(ny, nx) // 2 + 1)])

    out = []
    for m in range(pred.shape[0]):
        for f in range(truth.shape[0]):
            d = np.log10(spectrum(pred[m, f]) + 1e-12) - np.log10(spectrum(truth[f]) + 1e-12)
            out.append(np.sqrt(np.mean(d**2)))
    return float(np.mean(out))


def pit_loop(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mid-rank PIT by explicit counting over every (truth pixel, member pixel) pair."""
    u = []
    for f in range(truth.shape[0]):
        pool = [float(v) for v in pred[:, f].ravel()]
        for y in truth[f].ravel():
            below = sum(1 for x in pool if x < y)
            tied = sum(1 for x in pool if x == y)
            u.append((below + 0.5 * tied) / len(pool))
    return np.array(u)


def pitd_loop(pred: np.ndarray, truth: np.ndarray) -> float:
    u = np.sort(pit_loop(pred, truth))
    n = u.size
    return float(np.sqrt(sum((u[i - 1] - (i - 0.5) / n) ** 2 for i in range(1, n + 1)) / n))


# --------------------------------------------------------------------------- vs references
def test_mse_mae_pe99_reference(data):
    pred, truth = data
    p, t = pred.astype(np.float64), truth.astype(np.float64)
    assert mse(pred, truth) == pytest.approx(np.mean([np.mean((p[m] - t) ** 2) for m in range(3)]), rel=RTOL)
    assert mae(pred, truth) == pytest.approx(np.mean([np.mean(np.abs(p[m] - t)) for m in range(3)]), rel=RTOL)
    expected = abs(np.percentile(p.ravel(), 99) - np.percentile(t.ravel(), 99))
    assert pe99(pred, truth) == pytest.approx(expected, rel=RTOL)


def test_percentile_bias_sign_and_hand_case(data):
    pred, truth = data
    p, t = pred.astype(np.float64), truth.astype(np.float64)
    expected = np.percentile(p.ravel(), 90) - np.percentile(t.ravel(), 90)
    assert percentile_bias(pred, truth, 90) == pytest.approx(expected, rel=RTOL)
    assert abs(percentile_bias(pred, truth)) == pytest.approx(pe99(pred, truth), rel=RTOL)
    # hand case: truth 0..100 (q99 = 99); two members, the truth and twice the truth,
    # pooled: the 99th percentile of [0..100, 0, 2, .., 200] by linear interpolation
    t1 = np.arange(101.0).reshape(1, 101)  # one frame of one row
    members = np.stack([t1, 2 * t1])
    pooled = np.sort(members.ravel())
    rank = 0.99 * (pooled.size - 1)
    lo = int(rank)
    q99 = pooled[lo] + (rank - lo) * (pooled[lo + 1] - pooled[lo])
    assert percentile_bias(members, t1) == pytest.approx(q99 - 99.0)
    assert percentile_bias(members, t1) > 0  # too heavy a tail reads positive
    assert percentile_bias(members[:1] * 0.5, t1) == pytest.approx(49.5 - 99.0)  # too weak: negative
    with pytest.raises(ValueError, match="q=101"):
        percentile_bias(members, t1, 101)


def test_lsd_reference(data):
    pred, truth = data
    assert lsd(pred, truth) == pytest.approx(lsd_loop(pred, truth), rel=RTOL)


def test_spectral_log_ratio_per_radius(data):
    """Scaling a field by c moves every radius by log10(c); a frame with power only at one
    wavenumber departs there and nowhere else; the RMS over radii is the LSD."""
    pred, truth = data
    d = spectral_log_ratio(2.0 * truth, truth)
    assert d.shape == (1, 4, 11)
    np.testing.assert_allclose(d, np.log10(2.0), atol=1e-9)
    ny, nx = truth.shape[-2:]
    yy = np.arange(ny)[:, None] * np.ones(nx)
    flat = np.ones((ny, nx))
    wave = flat + 0.5 * np.cos(2 * np.pi * 3 * yy / ny)  # power at (ky, kx) = (+-3, 0): radius 3
    d = spectral_log_ratio(wave, flat)[0, 0]
    # only radius 3 departs; elsewhere both spectra are FFT round-off (1e-15) beside the 1e-12 offset
    assert d[3] > 5 and np.all(np.abs(np.delete(d, 3)) < 0.01)
    full = spectral_log_ratio(pred, truth)
    assert float(np.mean(np.sqrt(np.mean(full ** 2, axis=-1)))) == pytest.approx(lsd_loop(pred, truth), rel=RTOL)
    nan_truth = truth.copy()
    nan_truth[1] = np.nan
    assert spectral_log_ratio(pred, nan_truth).shape == (3, 3, 11)  # the all-NaN frame dropped


def test_emd_reference(data):
    pred, truth = data
    expected = np.mean([wasserstein_distance(pred[:, f].ravel(), truth[f].ravel()) for f in range(4)])
    assert emd(pred, truth) == pytest.approx(expected, rel=RTOL)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 50, width=32), min_size=1, max_size=30),
    st.lists(st.floats(0, 50, width=32), min_size=1, max_size=30),
)
def test_wasserstein_any_sizes(x, y):
    """The quantile-function integral equals scipy for unequal sample sizes and ties."""
    got = metrics._wasserstein_sorted(np.sort(x), np.sort(y))
    assert got == pytest.approx(wasserstein_distance(x, y), rel=1e-9, abs=1e-9)


def test_ssim_reference(data):
    pred, truth = data
    p, t = pred.astype(np.float64), truth.astype(np.float64)
    rng_ = float(t.max() - t.min())
    expected = np.mean(
        [structural_similarity(p[m, f], t[f], data_range=rng_) for m in range(3) for f in range(4)]
    )
    assert ssim(pred, truth) == pytest.approx(expected, abs=1e-4)
    # an explicit data_range is used as given
    expected = np.mean([structural_similarity(p[m, f], t[f], data_range=5.0) for m in range(3) for f in range(4)])
    assert ssim(pred, truth, data_range=5.0) == pytest.approx(expected, abs=1e-4)


def test_pitd_reference():
    rng = np.random.default_rng(1)
    pred, truth = rain(rng, (3, 2, 8, 7)), rain(rng, (2, 8, 7))
    np.testing.assert_allclose(pit_values(pred, truth), pit_loop(pred, truth), rtol=RTOL)
    assert pitd(pred, truth) == pytest.approx(pitd_loop(pred, truth), rel=RTOL)


def test_crps_reference(data):
    pred, truth = data
    expected = properscoring.crps_ensemble(truth.astype(np.float64), pred.astype(np.float64), axis=0).mean()
    assert crps(pred, truth) == pytest.approx(expected, rel=RTOL)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_crps_any_member_count(m, seed):
    rng = np.random.default_rng(seed)
    pred, truth = rain(rng, (m, 2, 5, 4)), rain(rng, (2, 5, 4))
    expected = properscoring.crps_ensemble(truth.astype(np.float64), pred.astype(np.float64), axis=0).mean()
    assert crps(pred, truth) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 7), st.integers(0, 2**32 - 1))
def test_spread_error_ratio_loop(m, seed):
    # against a plain loop over member pairs, NaN truth pixels dropped
    rng = np.random.default_rng(seed)
    pred = rain(rng, (m, 2, 5, 4)).astype(np.float64)
    truth = rain(rng, (2, 5, 4)).astype(np.float64)
    truth[0, 1, 2] = np.nan
    ok = ~np.isnan(truth)
    spread = np.mean([np.abs(pred[i] - pred[j])[ok].mean() for i in range(m) for j in range(m) if i != j])
    error = np.mean([np.abs(pred[i] - truth)[ok].mean() for i in range(m)])
    expected = spread / error if error > 0 else np.nan
    assert spread_error_ratio(pred, truth) == pytest.approx(expected, rel=1e-9, nan_ok=True)


def test_spread_error_ratio_calibrated_and_not():
    # the truth drawn like the members: ratio 1 up to sampling noise (about 1 % here)
    rng = np.random.default_rng(1)
    x = rng.gamma(0.5, 2.0, size=(11, 4, 40, 40))
    assert spread_error_ratio(x[1:], x[0]) == pytest.approx(1.0, abs=0.03)
    # members at half their spread around the same centre: under-dispersed (about 0.5)
    centre = np.median(x[1:], axis=0)
    assert spread_error_ratio(centre + 0.5 * (x[1:] - centre), x[0]) < 0.7
    # hand case: members 0 and 2 differ by 2, each misses 1 by 1
    assert spread_error_ratio(np.array([[[0.0]], [[2.0]]]), np.array([[1.0]])) == 2.0
    assert np.isnan(spread_error_ratio(np.ones((1, 1, 2, 2)), np.zeros((1, 2, 2))))
    assert np.isnan(spread_error_ratio_from_scores(0.1, 0.0, 5))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 7), st.integers(0, 2**32 - 1))
def test_fair_crps_loop(m, seed):
    # against a plain loop: E|X - y| over members minus half the mean |X_i - X_j| over
    # the m (m - 1) distinct pairs, per valid pixel, then the mean over valid pixels
    rng = np.random.default_rng(seed)
    pred = rain(rng, (m, 2, 5, 4)).astype(np.float64)
    truth = rain(rng, (2, 5, 4)).astype(np.float64)
    truth[1, 0, 3] = np.nan
    ok = ~np.isnan(truth)
    error = np.mean([np.abs(pred[i] - truth) for i in range(m)], axis=0)
    spread = np.sum([np.abs(pred[i] - pred[j]) for i in range(m) for j in range(m) if i != j],
                    axis=0) / (m * (m - 1))
    expected = np.mean((error - 0.5 * spread)[ok])
    assert crps(pred, truth, fair=True) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # and from the stored default CRPS and MAE
    assert fair_crps_from_scores(crps(pred, truth), mae(pred, truth), m) == pytest.approx(
        expected, rel=1e-9, abs=1e-12)


def test_fair_crps_does_not_depend_on_member_count():
    # members and truth from one distribution: the fair score's expectation is the same
    # for 2 and 20 members, the default one's is larger for 2 by E|X - X'| / (2 M)
    rng = np.random.default_rng(3)
    x = rng.gamma(0.5, 2.0, size=(21, 4, 60, 60))
    fair2, fair20 = crps(x[1:3], x[0], fair=True), crps(x[1:], x[0], fair=True)
    assert fair2 == pytest.approx(fair20, rel=0.02)
    assert crps(x[1:3], x[0]) > 1.1 * crps(x[1:], x[0])
    # hand case of the docstring, and one member refused (NaN from stored scores)
    assert crps(np.array([[[0.0]], [[2.0]]]), np.array([[1.0]]), fair=True) == 0.0
    with pytest.raises(ValueError, match="at least two members"):
        crps(x[:1], x[0], fair=True)
    assert np.isnan(fair_crps_from_scores(0.3, 0.3, 1))


# --------------------------------------------------------------------------- hand cases
def test_one_member_crps_is_mae(data):
    pred, truth = data
    assert crps(pred[0], truth) == pytest.approx(mae(pred[0], truth), rel=1e-12)
    assert crps(pred[:1], truth) == pytest.approx(mae(pred[:1], truth), rel=1e-12)


def test_identical_prediction(data):
    _, truth = data
    for f in (mse, mae, pe99, lsd, emd, crps):
        assert f(truth, truth) == pytest.approx(0.0, abs=1e-12), f.__name__
    assert ssim(truth, truth) == pytest.approx(1.0, abs=1e-12)
    ens = np.stack([truth] * 5)
    assert crps(ens, truth) == pytest.approx(0.0, abs=1e-12)
    assert ssim(ens, truth) == pytest.approx(1.0, abs=1e-12)


def test_crps_hand_value():
    # members 0, 1, 3 against y = 2: E|X-y| = (2+1+1)/3, E|X-X'| = 2*(1+3+2)/9
    pred = np.array([0.0, 1.0, 3.0]).reshape(3, 1, 1, 1)
    assert crps(pred, np.full((1, 1, 1), 2.0)) == pytest.approx(4 / 3 - 6 / 9, rel=1e-12)


def test_pit_mid_rank_ties():
    x = np.array([0.0, 0.0, 0.0, 1.0]).reshape(4, 1, 1, 1)
    truth = np.array([0.0, 1.0, 0.5, -1.0, 2.0]).reshape(1, 1, 5)
    pred = np.broadcast_to(x, (4, 1, 1, 5))
    # X pools all 20 member pixels: 15 zeros and 5 ones
    np.testing.assert_allclose(pit_values(pred, truth), [7.5 / 20, 17.5 / 20, 0.75, 0.0, 1.0])
    # the brief's example: X = [0, 0, 0, 1], y = 0
    assert pit_values(x, np.zeros((1, 1, 1)))[0] == 0.375
    # pitd of that single value: |0.375 - 0.5|
    assert pitd(x, np.zeros((1, 1, 1))) == pytest.approx(0.125)


def test_randomized_pit_spreads_ties_and_equals_mid_rank_without_them():
    x = np.array([0.0, 0.0, 0.0, 1.0]).reshape(4, 1, 1, 1)
    truth = np.zeros((1, 1, 50))
    pred = np.broadcast_to(x, (4, 1, 1, 50))
    u = pit_values(pred, truth, ties="randomized", seed=3)
    # 15 of the 20 pooled values tie with y = 0: u uniform on [0, 15 / 20]
    assert u.min() >= 0 and u.max() <= 0.75 and np.unique(u).size == 50
    np.testing.assert_array_equal(u, pit_values(pred, truth, ties="randomized", seed=3))
    assert not np.array_equal(u, pit_values(pred, truth, ties="randomized", seed=4))
    rng = np.random.default_rng(9)
    t, m = rng.gamma(0.7, 2.0, (2, 6, 5)), rng.gamma(0.7, 2.0, (3, 2, 6, 5))  # no ties
    np.testing.assert_array_equal(pit_values(m, t, ties="randomized"), pit_values(m, t))
    with pytest.raises(ValueError, match="ties must be"):
        pit_values(m, t, ties="random")


def test_mid_rank_pitd_floor_of_a_perfect_forecast():
    # hand-computed: 7 dry pixels at u = 0.35 against (i - 0.5) / 10, the 3 wet exact
    y = np.r_[np.zeros(7), np.arange(1.0, 4.0)].reshape(1, 2, 5)
    dev = 0.35 - (np.arange(1, 8) - 0.5) / 10
    assert pitd_floor(y) == pytest.approx(np.sqrt(np.sum(dev ** 2) / 10), rel=1e-12)
    # large frame: the continuous limit d**1.5 / sqrt(12); the randomized PIT is ~ 0
    rng = np.random.default_rng(10)
    big = np.where(rng.random((1, 200, 200)) < 0.7, 0.0, rng.gamma(1.0, 2.0, (1, 200, 200)))
    d = float((big == 0).mean())
    assert pitd_floor(big) == pytest.approx(d ** 1.5 / np.sqrt(12), rel=2e-3)
    assert pitd(big[None], big) == pitd_floor(big)
    assert pitd(big[None], big, ties="randomized") < 0.01


def test_pitd_calibrated_ensemble_is_small():
    rng = np.random.default_rng(7)
    truth = rng.gamma(0.7, 2.0, (4, 24, 20))
    members = rng.gamma(0.7, 2.0, (20, 4, 24, 20))
    assert pitd(members, truth) < 0.03


def test_pitd_underdispersive_ensemble_is_large():
    rng = np.random.default_rng(8)
    truth = rng.gamma(0.7, 2.0, (4, 24, 20))
    tight = truth.mean() + 1e-3 * rng.standard_normal((20, 4, 24, 20))
    assert pitd(tight, truth) > 0.2
    scaled = 0.3 * rng.gamma(0.7, 2.0, (20, 4, 24, 20))  # too little spread and too dry
    assert pitd(scaled, truth) > 0.2


def test_radial_spectrum():
    frame = np.full((6, 9), 2.0)
    spec = radial_spectrum(frame)
    assert spec.shape == (4,)
    np.testing.assert_allclose(spec, [2.0 * 54, 0, 0, 0], atol=1e-9)
    stack = np.random.default_rng(0).random((2, 3, 6, 9))
    np.testing.assert_allclose(radial_spectrum(stack)[1, 2], radial_spectrum(stack[1, 2]))


# --------------------------------------------------------------------------- NaN and dtypes
def _nan_truth(truth: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    t = truth.astype(np.float64).copy()
    t[np.random.default_rng(seed).random(t.shape) < 0.2] = np.nan
    return t, ~np.isnan(t)


def test_nan_pixels_are_removed(data):
    pred, truth = data
    t, valid = _nan_truth(truth)
    pool_p = pred[:, valid].reshape(3, 1, 1, -1)
    pool_t = t[valid].reshape(1, 1, -1)
    for f in (mse, mae, pe99, crps):
        assert f(pred, t) == pytest.approx(f(pool_p, pool_t), rel=1e-12), f.__name__
    frames = [(pred[:, i][:, valid[i]].reshape(3, 1, 1, -1), t[i][valid[i]].reshape(1, 1, -1)) for i in range(4)]
    assert emd(pred, t) == pytest.approx(np.mean([emd(p, y) for p, y in frames]), rel=1e-12)
    np.testing.assert_array_equal(pit_values(pred, t), np.concatenate([pit_values(p, y) for p, y in frames]))
    assert mse(pred, t) == pytest.approx(np.mean((pred[:, valid] - t[valid]) ** 2), rel=1e-12)


def test_nan_frames_filled_and_skipped(data):
    pred, truth = data
    t, valid = _nan_truth(truth)
    t[2] = np.nan
    keep = [0, 1, 3]
    zt = np.where(valid, t, 0.0)[keep]
    zp = np.where(valid, pred, 0.0)[:, keep]
    assert lsd(pred, t) == pytest.approx(lsd_loop(zp, zt), rel=RTOL)
    rng_ = np.nanmax(t) - np.nanmin(t)
    assert ssim(pred, t) == pytest.approx(ssim(zp, zt, data_range=rng_), rel=1e-12)
    assert emd(pred, t) == pytest.approx(emd(pred[:, keep], t[keep]), rel=1e-12)


def test_all_nan_is_nan(data):
    pred, _ = data
    t = np.full(pred.shape[1:], np.nan)
    for name, info in METRICS.items():
        assert np.isnan(info.func(pred, t)), name


def test_float32_computed_in_float64(data):
    pred, truth = data
    for name, info in METRICS.items():
        assert info.func(pred, truth) == info.func(pred.astype(np.float64), truth.astype(np.float64)), name


# --------------------------------------------------------------------------- shapes, registry
def test_as_ensemble_shapes():
    t2 = np.zeros((5, 6))
    assert as_ensemble(t2, t2)[0].shape == (1, 1, 5, 6)
    assert as_ensemble(np.zeros((3, 5, 6)), t2)[0].shape == (3, 1, 5, 6)
    assert as_ensemble(np.zeros((2, 5, 6)), np.zeros((2, 5, 6)))[0].shape == (1, 2, 5, 6)
    with pytest.raises(ValueError, match="does not fit"):
        as_ensemble(np.zeros((3, 2, 5, 7)), np.zeros((2, 5, 6)))


def test_ssim_small_frame_raises():
    with pytest.raises(ValueError, match="7 x 7"):
        ssim(np.ones((1, 5, 5)), np.ones((1, 5, 5)))


def test_metrics_registry():
    assert list(METRICS) == ["mse", "mae", "pe99", "lsd", "emd", "ssim", "pitd", "crps"]
    units = {k: v.units for k, v in METRICS.items()}
    assert units == {"mse": "mm2 h-2", "mae": "mm h-1", "pe99": "mm h-1", "lsd": "1",
                     "emd": "mm h-1", "ssim": "1", "pitd": "1", "crps": "mm h-1"}
    assert [k for k, v in METRICS.items() if v.higher_is_better] == ["ssim"]
    func, unit, long_name, higher = METRICS["crps"]
    assert func is crps and isinstance(long_name, str) and higher is False


def test_extra_metrics_from_scores_equal_their_functions():
    """score() derives the extra ensemble scores from CRPS and MAE; the direct functions agree."""
    from xsuperres.metrics import EXTRA_METRICS

    rng = np.random.default_rng(5)
    pred = rng.gamma(0.7, 2.0, (4, 3, 9, 8))
    truth = rng.gamma(0.7, 2.0, (3, 9, 8))
    truth[0, :2] = np.nan
    c, m = crps(pred, truth), mae(pred, truth)
    for name, info in EXTRA_METRICS.items():
        assert info.from_scores(c, m, 4) == pytest.approx(info.func(pred, truth), rel=1e-12), name
