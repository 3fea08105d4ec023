"""The diffusion stage around a given conditional mean (``predict(mean=)``,
``downscale(mean="motion")``) and the thread-safe pysteps import.

References: the mean handed to the diffusion network is checked against the given array
(divided by the cap) and ``U_det`` is shown not to run; the per-tile means of
``downscale`` against :func:`xsuperres.temporal.block_in_time` of the whole input's LR
window, cut at the tile found by a numpy search; block conservation against the input.
"""

from __future__ import annotations

import io
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xsuperres as xs
from xsuperres.temporal import block_in_time, motion_in_time, optical_flow, upsample_in_time

pytest.importorskip("pysteps")

S, T, L = 1, 3, 2
CAP = 20.0


def make_model(seed=0, **kw) -> xs.SRModel:
    torch.manual_seed(seed)
    cfg = xs.SRConfig.recipe(S, T, L=L, preset="tiny", tile_size=8, cap=CAP,
                             mass_conservation="block", threshold=0.0, time_step="5min", **kw)
    m = xs.SRModel(cfg, normalization={"cap": CAP, "residual_scale": 0.01},
                   metadata={"name": "motion-mean-test", "grid_spacing_m": [1000.0, 1000.0]})
    return m.eval()


def lr_field(nt=5, ny=12, nx=12, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.gamma(0.6, 1.5, size=(nt, ny, nx)).astype("float32"), dims=("time", "y", "x"),
        coords={"time": pd.date_range("2021-06-01", periods=nt, freq="15min"),
                "y": ("y", np.arange(ny) * 1000.0, {"units": "m"}),
                "x": ("x", np.arange(nx) * 1000.0, {"units": "m"})},
        attrs={"units": "mm h-1"}, name="pr")


def test_block_in_time_is_the_middle_block_of_the_window():
    rng = np.random.default_rng(1)
    w = rng.gamma(0.8, 2.0, size=(2, 3, 6, 7))
    for method in ("persistence", "linear"):
        got = block_in_time(w, T, method)
        assert got.shape == (2, T, 6, 7)
        for i in range(2):
            np.testing.assert_allclose(got[i], upsample_in_time(w[i], T, method)[T:2 * T])
            np.testing.assert_allclose(got[i].mean(axis=0), w[i, 1], rtol=1e-12)  # conserves x[t]
    V = np.zeros((2, 2, 6, 7))  # zero flow: motion == linear
    np.testing.assert_allclose(block_in_time(w[0], T, "motion", velocities=V),
                               block_in_time(w[0], T, "linear"), atol=1e-12)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, h, w\)"):
        block_in_time(w[:, :2], T)


def test_predict_samples_around_the_given_mean():
    m = make_model()
    rng = np.random.default_rng(2)
    lr = rng.gamma(0.6, 1.5, size=(3, L, 8, 8)).astype("float32")
    mean = np.repeat(lr[:, -1:], T, axis=1) * np.array([0.5, 1.0, 1.5], "float32")[None, :, None, None]
    seen = []
    bind = m.denoiser.bind

    def spy(D, *args, **kw):
        seen.append(D.clone())
        return bind(D, *args, **kw)

    def refuse(*args, **kw):
        raise AssertionError("U_det must not run when a mean is given")

    m.denoiser.bind = spy
    m.mean_net.forward = refuse
    before = mean.copy()
    out = m.predict(lr, n_members=2, mean=mean, seed=3)
    np.testing.assert_array_equal(mean, before)  # not modified
    D = torch.cat(seen).numpy()  # (sample, member) items in order
    np.testing.assert_allclose(D, np.repeat(mean, 2, axis=0) / CAP, rtol=1e-6)
    # block mass conservation: every member's block means are the LR block's frame
    np.testing.assert_allclose(out.mean(axis=2), np.repeat(lr[:, None, -1], 2, axis=1), rtol=1e-4, atol=1e-5)
    for bad, msg in ((mean[:, :2], "mean must have shape"), (np.where(mean > 1, np.nan, mean), "mean"),
                     (-mean - 1, "negative")):
        with pytest.raises(ValueError, match=msg):
            m.predict(lr, n_members=1, mean=bad)


@pytest.mark.usefixtures("synchronous_dask")
def test_downscale_motion_mean_per_tile_and_chunk_invariant(monkeypatch):
    m = make_model()
    lr = lr_field()
    calls = []
    predict = xs.SRModel.predict

    def spy(self, x, *args, mean=None, **kw):
        calls.append((np.array(x), None if mean is None else np.array(mean)))
        return predict(self, x, *args, mean=mean, **kw)

    monkeypatch.setattr(xs.SRModel, "predict", spy)
    x = lr.values.astype(np.float64)
    for method in ("linear", "motion"):
        calls.clear()
        out = xs.downscale(lr, m, 2, mean=method, context="drop", batch_size=1).load()
        # context="drop" with one step after each block: blocks 1 .. nt - 2
        assert out.sizes["time"] == (lr.sizes["time"] - L) * T
        assert out.attrs["xsuperres_mean"].startswith(method)
        assert f"mean='{method}'" in out.attrs["history"]
        assert len(calls) == 3 * 4  # 3 blocks x 4 tiles (8 px tiles, overlap 2, 12 px)
        for ctx, mean in calls:
            assert ctx.shape[1] == L  # the model gets its own context, not the step after
            # find the tile and step in the input (a numpy search)
            hits = [(t, y0, x0) for t in range(L - 1, x.shape[0] - 1)
                    for y0 in range(0, 12 - 7) for x0 in range(0, 12 - 7)
                    if np.array_equal(x[t - L + 1:t + 1, y0:y0 + 8, x0:x0 + 8], ctx[0])]
            assert hits, "the tile context is a window of the input"
            t, y0, x0 = hits[0]
            # the reference: the mean of the whole domain (the flow sees all of it), cut
            ref = block_in_time(x[t - 1:t + 2], T, method)[:, y0:y0 + 8, x0:x0 + 8]
            np.testing.assert_allclose(mean[0], ref, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(xs.SRModel, "predict", predict)
    a = xs.downscale(lr, m, 2, seed=4).load()  # mean="auto": motion for S = 1, T > 1
    assert a.attrs["xsuperres_mean"].startswith("motion")
    b = xs.downscale(lr.chunk({"time": 2, "y": 5, "x": 7}), m, 2, mean="motion", seed=4).load()
    np.testing.assert_allclose(a.values, b.values, atol=1e-5)
    back = a.stsr.coarsen_perfect(S, T)
    np.testing.assert_allclose(back.values, np.broadcast_to(lr.values, back.shape), rtol=1e-4, atol=1e-4)
    assert a.sizes["time"] == lr.sizes["time"] * T  # "pad": the last block's next step repeated


def test_mean_refused_where_it_does_not_apply():
    lr = lr_field()
    with pytest.raises(ValueError, match="mean must be one of"):
        xs.downscale(lr, make_model(), 2, mean="optical")
    # context="drop" with exactly L steps: nothing left once the step after is needed
    with pytest.raises(ValueError, match=r"plus the LR step after the block that mean='motion' uses"):
        xs.downscale(lr.isel(time=slice(0, L)), make_model(), 1, context="drop")
    assert xs.downscale(lr.isel(time=slice(0, L)), make_model(), 1, context="drop",
                        mean="network").sizes["time"] == T
    from xsuperres.downscaling.options import check_mean

    with pytest.raises(ValueError, match=r"downscale_mean has no mean='motion'"):
        check_mean("motion", make_model().config, mean_only=True)
    torch.manual_seed(0)
    cfg = xs.SRConfig.recipe(2, 2, L=2, preset="tiny", tile_size=8, cap=CAP, time_step="1h")
    m2 = xs.SRModel(cfg, normalization={"cap": CAP, "residual_scale": 0.01})
    with pytest.raises(ValueError, match=r"needs a temporal model \(S = 1, T > 1\)"):
        xs.downscale(lr.isel(y=slice(0, 8), x=slice(0, 8)), m2, 2, mean="motion", strict=False)
    # "auto" is the network mean for spatial models and for downscale_mean
    from xsuperres.downscaling.options import check_mean

    assert check_mean("auto", m2.config, mean_only=False) == "network"
    assert check_mean("auto", make_model().config, mean_only=True) == "network"
    assert check_mean("auto", make_model().config, mean_only=False) == "motion"
    with pytest.warns(UserWarning, match="time step"):  # strict=False: the cadence differs
        out = xs.downscale(lr.isel(y=slice(0, 8), x=slice(0, 8)), m2, 1, strict=False)
    assert out.attrs["xsuperres_mean"].startswith("network") and "mean=" not in out.attrs["history"]


@pytest.mark.usefixtures("synchronous_dask")
def test_auto_follows_the_mean_the_diffusion_was_trained_around(tmp_path):
    from xsuperres.downscaling.options import check_mean
    from xsuperres.temporal import block_in_time

    m = make_model()
    assert m.diffusion_mean == "network"
    m.metadata["protocol"] = {"diffusion_mean": "linear"}
    assert m.diffusion_mean == "linear"
    m.save(tmp_path / "m")
    loaded = xs.SRModel.load(tmp_path / "m")
    assert loaded.diffusion_mean == "linear"
    assert check_mean("auto", m.config, False, "linear") == "linear"
    assert check_mean("auto", m.config, True, "linear") == "network"      # downscale_mean
    assert check_mean("motion", m.config, False, "linear") == "motion"    # an explicit choice stays
    lr = lr_field()
    auto = xs.downscale(lr, loaded, 2, context="drop")
    assert auto.attrs["xsuperres_mean"].startswith("linear")
    same = xs.downscale(lr, loaded, 2, context="drop", mean="linear")
    np.testing.assert_array_equal(auto.values, same.values)
    # the members' block means are the input's, the linear mean's too (block conservation)
    x = lr.values.astype(np.float64)
    mean1 = block_in_time(x[L - 2:L + 1], T, "linear")
    np.testing.assert_allclose(mean1.mean(axis=0), x[L - 1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(auto.values[:, :T].mean(axis=1), np.broadcast_to(x[L - 1], (2,) + x.shape[1:]),
                               rtol=1e-4, atol=1e-4)


def test_pysteps_calls_from_threads_leave_stdout_alone():
    """The optical flow runs in dask tasks: no thread may leave ``sys.stdout`` redirected."""
    mine = io.StringIO()
    old, sys.stdout = sys.stdout, mine
    try:
        rng = np.random.default_rng(0)
        a = rng.gamma(0.5, 2.0, size=(20, 20))

        def work():
            for _ in range(3):
                optical_flow(a, np.roll(a, 1, axis=1))
                motion_in_time(np.stack([a, a]), 2)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sys.stdout is mine
    finally:
        sys.stdout = old
