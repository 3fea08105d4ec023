"""The figures of xsuperres.plot: drawn, saved, and showing the right numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import xsuperres  # noqa: E402,F401  (registers .stsr)
from xsuperres.plot import mean_spectrum  # noqa: E402


def field(nt=3, n=16, members=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = ((members,) if members else ()) + (nt, n, n)
    dims = (("member",) if members else ()) + ("time", "y", "x")
    coords = {"time": pd.date_range("2020-01-01", periods=nt, freq="5min"),
              "y": 1000.0 * np.arange(n)[::-1], "x": 1000.0 * np.arange(n)}
    da = xr.DataArray(rng.gamma(0.5, 2.0, shape).astype(np.float32), dims=dims, coords=coords,
                      attrs={"units": "mm h-1"}, name="precip")
    da.x.attrs["units"] = "m"
    return da


def test_plot_members_panels_and_png(tmp_path):
    truth, ens, mean = field(), field(members=4, seed=1), field(seed=2)
    path = tmp_path / "members.png"
    fig = ens.stsr.plot_members(truth, mean=mean, n_members=2, path=path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["truth", "deterministic mean", "member 0", "member 1"]
    assert len(fig.axes) == 3 * 4 + 1  # 3 times x 4 columns + the colour bar
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no 'member' dimension"):
        truth.stsr.plot_members(truth)


def test_plot_pit_bars_are_the_pit_histogram(tmp_path):
    from xsuperres.metrics import pit_deviation, pit_values

    truth, ens = field(), field(members=5, seed=3)
    ax = ens.stsr.plot_pit(truth, bins=5, path=tmp_path / "pit.png")
    heights = [p.get_height() for p in ax.patches]
    u = pit_values(ens.values, truth.values)
    ref, _ = np.histogram(u, bins=5, range=(0, 1), density=True)
    np.testing.assert_allclose(heights, ref)
    assert f"PITD {pit_deviation(u):.3f}" in ax.get_title()
    assert (tmp_path / "pit.png").stat().st_size > 3000


def test_spectra_find_a_wave_and_use_km(tmp_path):
    n = 32
    yy, xx = np.mgrid[0:n, 0:n]
    wave = xr.DataArray((1 + np.cos(2 * np.pi * 4 * xx / n))[None].astype(np.float64),
                        dims=("time", "y", "x"),
                        coords={"x": ("x", 2000.0 * np.arange(n), {"units": "m"}), "y": np.arange(n)})
    spec = mean_spectrum(wave)
    assert spec.shape == (n // 2 + 1,) and int(np.argmax(spec[1:])) + 1 == 4
    # |FFT| of a unit cosine is N^2 / 2 at kx = +-4, the ring r = 4 averages it with zeros
    ring = sum(1 for ky in range(-n // 2, n // 2) for kx in range(-n // 2, n // 2)
               if round(np.hypot(ky, kx)) == 4)
    assert spec[4] == pytest.approx(2 * (n * n / 2) / ring)
    truth, ens = field(n=32), field(n=32, members=3, seed=4)
    smooth = truth.rolling(x=5, center=True, min_periods=1).mean().rolling(y=5, center=True, min_periods=1).mean()
    ax = ens.stsr.plot_spectra(truth=truth, others={"smoothed": smooth}, path=tmp_path / "spec.png")
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["truth", "members", "smoothed"]
    assert ax.get_xlabel() == "wavelength (km)"
    curves = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    np.testing.assert_allclose(curves["truth"], mean_spectrum(truth)[1:] ** 2)
    assert curves["smoothed"][-1] < 0.2 * curves["truth"][-1]  # smoothing removes short waves
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata()[0], 32 * 1.0)  # k = 1: 32 km
