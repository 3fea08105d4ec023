"""Tests of the training package (issue 4): folds, samples, units, normalization, the loop.

The end-to-end runs use tiny crops of the embedded samples (16 x 16 HR tiles, a handful
of samples, the ``tiny`` preset) so that the whole file runs in well under a minute on
two CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import xarray as xr

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.model import SRModel, denormalize_precip, normalize_precip
from xsuperres.training import (
    TrainOptions,
    build_training_data,
    choose_tile_size,
    fit_cap,
    latin_square_folds,
    make_samples,
    tile_grid,
    train,
)
from xsuperres.training import cli as cli_mod
from xsuperres.training import loop as loop_mod
from xsuperres.training.loop import fit
from xsuperres.training.options import DEFAULT, combine
from xsuperres.training.inputs import prepare_events
from xsuperres.training.split import split_samples


# --------------------------------------------------------------------------- helpers
def ramp(nt=8, ny=8, nx=8, units="mm h-1", name="rain", start="2020-01-01", freq="1h"):
    """hr[t, y, x] = 1 + 100 t + 10 y + x (every value identifies its pixel and frame)."""
    t, y, x = np.meshgrid(np.arange(nt), np.arange(ny), np.arange(nx), indexing="ij")
    vals = (1.0 + 100.0 * t + 10.0 * y + x).astype(np.float64)
    return xr.DataArray(
        vals, dims=("time", "y", "x"), name=name,
        coords={"time": pd.date_range(start, periods=nt, freq=freq),
                "y": np.arange(ny) * 1000.0, "x": np.arange(nx) * 1000.0},
        attrs={"units": units})


def block_mean(a, S, T):
    """Independent perfect coarsening of (time, y, x) by numpy reshapes."""
    nt, ny, nx = a.shape
    return a[: nt // T * T].reshape(nt // T, T, ny // S, S, nx // S, S).mean(axis=(1, 3, 5))


@pytest.fixture(scope="module")
def knmi_small():
    """A wet 32 x 32 km, 16-frame crop of the embedded KNMI sample (5-min, mm/h)."""
    da = xs.open_sample("knmi")["precip"].isel(time=slice(0, 16), y=slice(0, 32), x=slice(0, 32))
    return da.load()


@pytest.fixture(scope="module")
def radolan_small():
    """A 32 x 32 km, 12-hour crop of the embedded RADOLAN sample and its topography."""
    ds = xs.open_sample("radolan").isel(time=slice(0, 12), y=slice(96, 128), x=slice(96, 128))
    return ds["precip"].load(), ds["topography"].load()




def tiny_config(S=4, T=2, L=2, tile=16, **kw):
    return SRConfig.recipe(S, T, L=L, tile_size=tile, preset="tiny", **kw)


# --------------------------------------------------------------------------- folds and tiles
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_latin_square_one_tile_per_row_and_column(n):
    folds = latin_square_folds(n, n, n)
    assert folds.shape == (n, n)
    for f in range(n):
        mask = folds == f
        np.testing.assert_array_equal(mask.sum(axis=0), np.ones(n))  # one per column
        np.testing.assert_array_equal(mask.sum(axis=1), np.ones(n))  # one per row


def test_latin_square_4x4_is_the_cyclic_square():
    expected = np.array([[0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1], [1, 2, 3, 0]])
    np.testing.assert_array_equal(latin_square_folds(4, 4, 4), expected)


def test_folds_on_a_non_square_grid_are_balanced():
    folds = latin_square_folds(3, 10, 4)
    assert set(np.unique(folds)) == {0, 1, 2, 3}
    for f in range(4):
        per_row = (folds == f).sum(axis=1)
        assert per_row.min() >= 10 // 4 and per_row.max() <= -(-10 // 4)
        per_col = (folds == f).sum(axis=0)
        assert per_col.max() <= 1  # 3 rows < 4 folds: at most once per column


def test_tile_grid_and_size_rule():
    tiles = tile_grid(50, 35, 16)
    assert len(tiles) == 3 * 2
    assert tiles[-1].row == 2 and tiles[-1].col == 1
    assert tiles[3].yslice == slice(16, 32) and tiles[3].xslice == slice(16, 32)
    assert choose_tile_size(400, 400, 10, 100) == 100
    assert choose_tile_size(160, 160, 10, 100) == 80  # 10 * floor(160 / 20)
    assert choose_tile_size(60, 300, 4, 100) == 28  # 4 * floor(60 / 8)
    with pytest.raises(ValueError, match="too small"):
        choose_tile_size(15, 100, 10, 100)


def test_split_train_and_valid_tiles_are_disjoint():
    data = prepare_events(ramp(nt=12, ny=64, nx=64))
    split = split_samples(data, 4, 2, 2, tile_size=16, fold=1, n_folds=4)
    tiles = split.tiles[0]
    folds = split.folds[0]
    assert folds.shape == (4, 4)
    train_px = np.zeros((64, 64), int)
    valid_px = np.zeros((64, 64), int)
    for k in split.train_tiles[0]:
        train_px[tiles[k].yslice, tiles[k].xslice] += 1
    for k in split.valid_tiles[0]:
        valid_px[tiles[k].yslice, tiles[k].xslice] += 1
        assert folds[tiles[k].row, tiles[k].col] == 1
    assert not np.any((train_px > 0) & (valid_px > 0))
    assert train_px.max() == 1 and valid_px.max() == 1
    assert (train_px + valid_px).sum() == 64 * 64
    # the validation tiles: one per row and per column
    rows = sorted(tiles[k].row for k in split.valid_tiles[0])
    cols = sorted(tiles[k].col for k in split.valid_tiles[0])
    assert rows == [0, 1, 2, 3] and cols == [0, 1, 2, 3]
    # records point to the right tiles
    assert set(split.train_records["tile"]) == set(split.train_tiles[0])
    assert set(split.valid_records["tile"]) == set(split.valid_tiles[0])


# --------------------------------------------------------------------------- samples
def test_samples_against_a_hand_built_case():
    S, T, L, cap = 2, 2, 2, 1000.0
    da = ramp(nt=9, ny=8, nx=8)  # 4 whole blocks; frame 8 is dropped
    td = build_training_data(da, S, T, config=tiny_config(S, T, L, tile=4, cap=cap), fold=0, n_folds=2)
    hr = da.values
    lr = block_mean(hr, S, T)  # independent coarsening
    assert lr.shape == (4, 4, 4)
    tiles = td.split.tiles[0]
    # 2 x 2 tiles, fold 0 = the diagonal (0, 0), (1, 1); targets are blocks L-1 .. 3
    assert sorted((tiles[k].row, tiles[k].col) for k in td.split.valid_tiles[0]) == [(0, 0), (1, 1)]
    for ds in (td.train, td.valid):
        assert len(ds) == 2 * 3
        assert sorted(set(ds.records["block"].tolist())) == [1, 2, 3]
        for i in range(len(ds)):
            _, k, t = (int(v) for v in ds.records[i])
            tile = tiles[k]
            item = ds[i]
            assert item["context"].shape == (L, 4 // S, 4 // S)
            assert item["target"].shape == (T, 4, 4)
            assert item["topography"].shape == (1, 4, 4)
            # target: the T HR frames of block t
            np.testing.assert_allclose(item["target"].numpy(), hr[t * T:(t + 1) * T, tile.yslice, tile.xslice] / cap,
                                       rtol=1e-6)
            # context: LR blocks t-L+1 .. t, oldest first
            ys = slice(tile.yslice.start // S, tile.yslice.stop // S)
            xs_ = slice(tile.xslice.start // S, tile.xslice.stop // S)
            np.testing.assert_allclose(item["context"].numpy(), lr[t - L + 1:t + 1, ys, xs_] / cap, rtol=1e-6)
            # no future information: the newest context frame is the coarsened target block
            np.testing.assert_allclose(item["context"][-1].numpy(),
                                       block_mean(item["target"].numpy(), S, T)[0], rtol=1e-6)
            # ... and every context value is older than or in block t (ramp encodes the time)
            assert float(item["context"].max()) * cap < 100.0 * (t + 1) * T
            np.testing.assert_array_equal(item["topography"].numpy(), 0.0)


def test_nan_samples_are_skipped_and_counted():
    da = ramp(nt=8, ny=8, nx=8)
    da[5, 0, 0] = np.nan  # block 2 of tile (0, 0), a validation tile of fold 0
    data = prepare_events(da)
    split = split_samples(data, 2, 2, 2, tile_size=4, fold=0, n_folds=2)
    # tile (0, 0) loses target block 2 and block 3 (whose context holds block 2)
    assert split.n_nan_valid == 2 and split.n_nan_train == 0
    k00 = next(k for k, t in enumerate(split.tiles[0]) if (t.row, t.col) == (0, 0))
    blocks = split.valid_records["block"][split.valid_records["tile"] == k00]
    assert blocks.tolist() == [1]
    assert len(split.valid_records) == 3 + 1


def test_make_samples_masks():
    hr = np.ones((12, 4, 4))
    tiles = tile_grid(4, 4, 4)
    rec, n = make_samples(hr, 2, 2, 3, tiles, target_blocks=np.array([1, 1, 1, 0, 1, 1], bool),
                          context_blocks=np.array([1, 1, 1, 1, 0, 1], bool))
    # targets need blocks t-2..t allowed as context and t allowed as target
    # t=2: window 0..2 allowed, target allowed; t=3: target masked; t=4, 5: window holds 4
    assert rec["block"].tolist() == [2] and n == 0


def test_time_split_keeps_periods_apart():
    da = ramp(nt=16, ny=8, nx=8)  # 8 blocks of T=2
    t = da.time.values
    td = build_training_data(da, 2, 2, config=tiny_config(2, 2, 2, tile=4, cap=1e4), fold=0, n_folds=2,
                             valid=slice(t[10], t[15]))  # blocks 5, 6, 7
    tr, va = td.train.records, td.valid.records
    assert sorted(set(va["block"].tolist())) == [5, 6, 7]
    # training samples: neither the target nor any context block touches blocks 5..7
    assert sorted(set(tr["block"].tolist())) == [1, 2, 3, 4]
    assert (tr["block"] - (td.config.L - 1) >= 0).all() and (tr["block"] < 5).all()
    assert set(tr["tile"].tolist()).isdisjoint(va["tile"].tolist())
    with pytest.raises(ValueError, match="no validation samples"):
        build_training_data(da, 2, 2, config=tiny_config(2, 2, 2, tile=4, cap=1e4), fold=0, n_folds=2,
                            valid=slice("2030-01-01", None))


def test_event_split_holds_whole_events_out():
    """valid_events: every tile of the held-out events validates, every tile of the other
    events trains; by index or by name; refusals name the events."""
    a = ramp(nt=12, ny=8, nx=8, name="a")
    b = ramp(nt=12, ny=8, nx=8, name="b", start="2021-01-01") * 0.5
    c = ramp(nt=12, ny=8, nx=8, name="c", start="2022-01-01") * 2
    cfg = tiny_config(2, 2, 2, tile=4, cap=1e4)
    td = build_training_data([a, b, c], 2, 2, config=cfg, valid_events=["b"])
    tr, va = td.train.records, td.valid.records
    assert set(va["event"].tolist()) == {1} and set(tr["event"].tolist()) == {0, 2}
    # every tile of the held-out event, every tile of the training events, every block >= L-1
    n_tiles, n_blocks = 4, 12 // 2 - (td.config.L - 1)
    assert va.size == n_tiles * n_blocks and tr.size == 2 * n_tiles * n_blocks
    assert td.split.describe()["valid_events"] == ["b"]
    same = build_training_data([a, b, c], 2, 2, config=cfg, valid_events=(1,))
    np.testing.assert_array_equal(same.valid.records, va)
    two = build_training_data([a, b, c], 2, 2, config=cfg, valid_events=[0, "c"])
    assert set(two.valid.records["event"].tolist()) == {0, 2}
    assert set(two.train.records["event"].tolist()) == {1}
    with pytest.raises(ValueError, match=r"no event 'x'.*\['a', 'b', 'c'\]"):
        build_training_data([a, b, c], 2, 2, config=cfg, valid_events=["x"])
    with pytest.raises(ValueError, match="every event"):
        build_training_data([a, b, c], 2, 2, config=cfg, valid_events=[0, 1, 2])
    with pytest.raises(ValueError, match="cannot be combined"):
        build_training_data([a, b, c], 2, 2, config=cfg, valid_events=[0],
                            valid=slice(a.time.values[2], None))
    with pytest.raises(ValueError, match="valid_events"):
        xs.TrainOptions(valid_events=[1.5])
    assert xs.TrainOptions(valid_events="b").valid_events == ("b",)


def test_train_with_a_held_out_event_records_it():
    a = ramp(nt=12, ny=8, nx=8, name="a")
    b = ramp(nt=12, ny=8, nx=8, name="b", start="2021-01-01") * 0.5
    model = train([a, b], 2, 2, config=tiny_config(2, 2, 2, tile=4, cap=1e4), epochs=1,
                  valid_events=["a"], progress=False, stage="mean")
    md = model.metadata
    assert md["protocol"]["valid_events"] == ["a"]
    assert md["data"]["split"]["valid_events"] == ["a"]
    assert md["n_samples"]["valid"] == 4 * (6 - 1) and md["n_samples"]["train"] == 4 * (6 - 1)


def test_dihedral_elements_against_numpy():
    """The 8 elements: numpy's rot90 / fliplr as the reference, all distinct on an
    asymmetric field, a group (closed under composition), and the perfect coarsening
    commutes with them on square tiles."""
    from xsuperres.training.augment import dihedral

    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 6, 6)).astype(np.float32)
    outs = []
    for k in range(8):
        ref = np.rot90(x, k % 4, axes=(-2, -1))
        ref = np.flip(ref, -1) if k >= 4 else ref
        got = dihedral(torch.from_numpy(x), k).numpy()
        np.testing.assert_array_equal(got, ref)
        outs.append(got.tobytes())
    assert len(set(outs)) == 8
    for a in range(8):
        for b in range(8):
            ab = dihedral(dihedral(torch.from_numpy(x), b), a).numpy().tobytes()
            assert ab in outs
    for k in range(8):
        coarse_then = dihedral(torch.from_numpy(block_mean(x[0], 3, 1)), k).numpy()
        then_coarse = block_mean(dihedral(torch.from_numpy(x[0]), k).numpy(), 3, 1)
        np.testing.assert_allclose(coarse_then, then_coarse, rtol=1e-6)
    with pytest.raises(ValueError, match="0..7"):
        dihedral(torch.from_numpy(x), 8)


def test_dihedral_batch_turns_each_sample_as_a_whole():
    from xsuperres.training.augment import dihedral, dihedral_batch

    rng = np.random.default_rng(1)
    batch = {"context": torch.from_numpy(rng.random((16, 2, 2, 2)).astype(np.float32)),
             "target": torch.from_numpy(rng.random((16, 1, 4, 4)).astype(np.float32)),
             "topography": torch.from_numpy(rng.random((16, 1, 4, 4)).astype(np.float32))}
    before = {k: v.clone() for k, v in batch.items()}
    out = dihedral_batch(batch, torch.Generator().manual_seed(3))
    again = dihedral_batch(batch, torch.Generator().manual_seed(3))
    ks = torch.randint(0, 8, (16,), generator=torch.Generator().manual_seed(3))
    assert len(set(ks.tolist())) > 1
    for i, k in enumerate(ks.tolist()):
        for key in batch:
            torch.testing.assert_close(out[key][i], dihedral(batch[key][i], k), rtol=0, atol=0)
            torch.testing.assert_close(again[key][i], out[key][i], rtol=0, atol=0)
    for key in batch:  # the input is not modified
        torch.testing.assert_close(batch[key], before[key], rtol=0, atol=0)


def test_train_with_augmentation_runs_and_records_it():
    da = ramp(nt=12, ny=8, nx=8)
    kw = dict(config=tiny_config(2, 2, 2, tile=4, cap=1e4), epochs=1, progress=False)
    plain = train(da, 2, 2, **kw)
    aug = train(da, 2, 2, augment=True, **kw)
    assert aug.metadata["protocol"]["augment"] == "dihedral"
    assert plain.metadata["protocol"]["augment"] is None
    # the same initial weights and batches, other sample orientations: other weights
    assert not torch.equal(aug.mean_net.stem.weight, plain.mean_net.stem.weight)
    assert all(np.isfinite(aug.metadata["history"][s]["train"][0]) for s in ("mean", "diffusion"))


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize("units, factor", [("mm h-1", 1.0), ("kg m-2 s-1", 1 / 3600.0), ("mm/d", 24.0),
                                           ("m h-1", 1e-3)])
def test_units_are_converted_to_mm_per_hour(units, factor):
    base = ramp(nt=8, ny=8, nx=8) * 0.01
    base.attrs["units"] = "mm h-1"
    conv = base * factor
    conv.attrs["units"] = units
    ref = build_training_data(base, 2, 2, config=tiny_config(2, 2, 2, tile=4))
    got = build_training_data(conv, 2, 2, config=tiny_config(2, 2, 2, tile=4))
    np.testing.assert_allclose(got.data.events[0].hr, base.values, rtol=1e-6)
    assert got.config.cap == pytest.approx(ref.config.cap, rel=1e-5)
    np.testing.assert_allclose(got.train[0]["target"].numpy(), ref.train[0]["target"].numpy(), rtol=1e-5)


def test_refusals_name_the_variable():
    da = ramp()
    del da.attrs["units"]
    with pytest.raises(ValueError, match="rain.*units"):
        train(da, 2, 2, config=tiny_config(2, 2, 2, tile=4), progress=False)
    neg = ramp()
    neg[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="rain.*negative"):
        train(neg, 2, 2, config=tiny_config(2, 2, 2, tile=4), progress=False)
    with pytest.raises(ValueError, match="rain.*K"):
        train(ramp(units="K"), 2, 2, config=tiny_config(2, 2, 2, tile=4), progress=False)
    with pytest.raises(TypeError, match="Dataset"):
        train(ramp().to_dataset(), 2, 2, progress=False)
    with pytest.raises(ValueError, match="too small"):
        train(ramp(ny=6, nx=6), 4, 2, config=tiny_config(4, 2, 2, tile=4), progress=False)
    with pytest.raises(ValueError, match="config is for"):
        train(ramp(), 2, 2, config=tiny_config(4, 2, 2, tile=4), progress=False)


# --------------------------------------------------------------------------- normalization
def test_gamma_cap_matches_scipy_fit():
    rng = np.random.default_rng(1)
    values = rng.gamma(0.7, 3.0, size=20_000)
    values[rng.random(values.size) < 0.6] = 0.0  # dry pixels
    values[:10] = np.nan
    fit = fit_cap(values)
    wet = values[np.isfinite(values) & (values > 0.1)]
    a, loc, scale = scipy.stats.gamma.fit(wet, floc=0)
    assert loc == 0
    assert fit.method == "gamma" and fit.n_wet == wet.size
    assert fit.shape == pytest.approx(a, rel=1e-9) and fit.scale == pytest.approx(scale, rel=1e-9)
    assert fit.cap == pytest.approx(scipy.stats.gamma.ppf(0.995, a, scale=scale), rel=1e-9)
    # ... and lies near the 99.5th percentile of the generating distribution's wet part
    true = scipy.stats.gamma(0.7, scale=3.0)
    p_wet = true.sf(0.1)
    assert fit.cap == pytest.approx(true.isf((1 - 0.995) * p_wet), rel=0.15)
    # too few wet values: the largest value
    small = fit_cap(np.array([0.0, 0.5, 2.0, np.nan]))
    assert small.method == "max" and small.cap == 2.0


def test_normalization_round_trip_and_training_arrays(radolan_small):
    precip, topo = radolan_small
    cap = 5.0
    x = np.array([0.0, 0.3, 4.99, 5.0, 12.0])
    n = normalize_precip(x, cap)
    np.testing.assert_allclose(n, [0.0, 0.06, 0.998, 1.0, 1.0])
    np.testing.assert_allclose(denormalize_precip(n, cap)[:4], x[:4])  # exact below the cap
    assert denormalize_precip(n, cap)[4] == cap  # clipped above

    td = build_training_data(precip, 4, 2, topography=topo, config=tiny_config(), n_folds=2)
    # the fitted cap is the gamma fit of the training tiles' wet values
    vals = []
    for k in td.split.train_tiles[0]:
        t = td.split.tiles[0][k]
        vals.append(precip.values[: 12, t.yslice, t.xslice].ravel())
    assert td.config.cap == pytest.approx(fit_cap(np.concatenate(vals)).cap, rel=1e-6)
    cap = td.config.cap
    np.testing.assert_allclose(td.train.hr[0], np.clip(precip.values, 0, cap) / cap, rtol=1e-6)
    np.testing.assert_allclose(td.train.hr[0] * cap, np.minimum(precip.values, cap), rtol=1e-5, atol=1e-6)
    # topography: min-max over the training tiles -> exactly [0, 1] there
    train_topo = np.concatenate([topo.values[td.split.tiles[0][k].yslice, td.split.tiles[0][k].xslice].ravel()
                                 for k in td.split.train_tiles[0]])
    assert td.topo_range == (pytest.approx(train_topo.min()), pytest.approx(train_topo.max()))
    tn = np.concatenate([td.train[i]["topography"].numpy().ravel() for i in range(len(td.train))])
    assert tn.min() == pytest.approx(0.0, abs=1e-6) and tn.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(td.train.topography[0],
                               (topo.values - train_topo.min()) / (train_topo.max() - train_topo.min()), rtol=1e-5)
    # a cap fixed by the config is used as is
    fixed = build_training_data(precip, 4, 2, topography=topo, config=tiny_config(cap=2.5), n_folds=2)
    assert fixed.config.cap == 2.5 and fixed.cap_fit is None
    # clip=False: the cap is only a scale; targets and contexts keep what lies above it
    free = build_training_data(precip, 4, 2, topography=topo, config=tiny_config(cap=2.5, clip=False),
                               n_folds=2)
    np.testing.assert_allclose(free.train.hr[0], np.maximum(precip.values, 0) / 2.5, rtol=1e-6)
    assert free.train.hr[0].max() == pytest.approx(float(precip.max()) / 2.5, rel=1e-6)
    assert float(precip.max()) / 2.5 > 1.0
    np.testing.assert_allclose(free.train.lr[0], block_mean(precip.values, 4, 2) / 2.5, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- the loop
def test_tiny_training_lowers_the_loss_and_records_everything(radolan_small, tmp_path, capsys):
    precip, topo = radolan_small
    model = train(precip, 4, 2, topography=topo, config=tiny_config(), epochs=4, batch_size=4, lr=2e-3,
                  mc_start_epoch=2, n_folds=2, seed=0, device="cpu", progress=False)
    assert "train mean" not in capsys.readouterr().err  # progress=False: no bar
    assert isinstance(model, SRModel)
    h = model.history
    for stage in ("mean", "diffusion"):
        assert len(h[stage]["train"]) == len(h[stage]["valid"]) == h[stage]["epochs_run"] == 4
        assert h[stage]["lr"][0] == pytest.approx(2e-3)
        assert h[stage]["lr"][1] == pytest.approx(2e-3 * (1 + np.cos(np.pi / 4)) / 2)  # cosine
    assert h["mean"]["train"][-1] < h["mean"]["train"][0]
    assert h["mean"]["best_valid"] < h["mean"]["valid"][0]
    assert h["diffusion"]["train"][-1] < h["diffusion"]["train"][0]
    assert h["mean"]["mc"] == [False, False, True, True]
    # normalization stored in the model
    norm = model.normalization
    assert norm["cap"] == model.config.cap > 0
    train_topo = np.concatenate([topo.values[t.yslice, t.xslice].ravel() for t in
                                 (tile_grid(32, 32, 16)[k] for k in (1, 2))])  # fold 1 of 2 trains
    assert (norm["topo_min"], norm["topo_max"]) == (pytest.approx(train_topo.min()), pytest.approx(train_topo.max()))
    assert norm["residual_scale"] > 0
    meta = model.metadata
    assert meta["n_samples"]["train"] == 2 * 5 and meta["time_step"] == "1h"
    assert meta["data"]["events"][0]["period"][0].startswith("2022-10-18T00:50")
    # the saved model keeps history and normalization; it predicts
    model.save(tmp_path / "m")
    back = SRModel.load(tmp_path / "m")
    assert back.history == json.loads(json.dumps(h))
    assert back.normalization == pytest.approx(norm)
    lr = xs.coarsen_perfect(precip, 4, 2).values[:2].astype(np.float32)
    out = back.predict_mean(lr, topo.values, device="cpu")
    assert out.shape == (2, 32, 32) and np.isfinite(out).all() and out.min() >= 0


def test_early_stopping_on_a_flat_validation_loss(knmi_small, capsys):
    # lr = 0: the weights never move, the validation loss is exactly flat
    model = train(knmi_small, 4, 2, config=tiny_config(), epochs=10, batch_size=8, lr=0.0, patience=2,
                  n_folds=2, device="cpu", progress=True)
    err = capsys.readouterr().err  # the tqdm bars, with the running losses
    assert "train mean" in err and "train diffusion" in err and "valid=" in err
    for stage in ("mean", "diffusion"):
        h = model.history[stage]
        assert h["early_stopped"] is True
        assert h["epochs_run"] == 3 and len(h["valid"]) == 3
        assert h["best_epoch"] == 1
        assert h["valid"][0] == h["valid"][1] == h["valid"][2]


class _Stop(Exception):
    pass


def _interrupting(after: int, calls: list):
    real = loop_mod.save_checkpoint

    def wrapped(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(kwargs["state"]["stage"] + str(kwargs["state"]["epoch"]))
        if len(calls) == after:
            raise _Stop
    return wrapped


def test_resume_continues_and_matches_an_uninterrupted_run(knmi_small, tmp_path, monkeypatch):
    kw = dict(config=tiny_config(), epochs=3, batch_size=8, lr=1e-3, mc_start_epoch=1, n_folds=2,
              device="cpu", progress=False, seed=3)
    ref = train(knmi_small, 4, 2, checkpoint_dir=tmp_path / "ref", **kw)
    files = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert all(f.endswith((".safetensors", ".json")) for f in files)  # never pickle
    assert json.loads((tmp_path / "ref" / "checkpoint.json").read_text())["stage"] == "diffusion"

    for stop_after, first_rerun_save in ((2, "mean3"), (4, "diffusion2")):
        d = tmp_path / f"run{stop_after}"
        calls: list = []
        monkeypatch.setattr(loop_mod, "save_checkpoint", _interrupting(stop_after, calls))
        with pytest.raises(_Stop):
            train(knmi_small, 4, 2, checkpoint_dir=d, **kw)
        saved = json.loads((d / "checkpoint.json").read_text())
        assert saved["stage"] + str(saved["epoch"]) == calls[-1]
        calls = []
        monkeypatch.setattr(loop_mod, "save_checkpoint", _interrupting(99, calls))
        model = train(knmi_small, 4, 2, checkpoint_dir=d, **kw)
        # the rerun continued after the saved epoch, it did not start again
        assert calls[0] == first_rerun_save
        assert len(calls) == 6 - stop_after
        assert model.metadata["protocol"]["resumed_from"] == {"stage": saved["stage"], "epoch": saved["epoch"]}
        # ... and ends where the uninterrupted run ended (CPU runs are deterministic)
        for stage in ("mean", "diffusion"):
            assert model.history[stage]["train"] == pytest.approx(ref.history[stage]["train"], rel=1e-6)
            assert model.history[stage]["valid"] == pytest.approx(ref.history[stage]["valid"], rel=1e-6)
        assert model.normalization["residual_scale"] == pytest.approx(ref.normalization["residual_scale"])
        sd, sr = model.state_dict(), ref.state_dict()
        for k in sr:
            torch.testing.assert_close(sd[k], sr[k], rtol=1e-5, atol=1e-6)
    # a finished run is not trained again
    monkeypatch.setattr(loop_mod, "save_checkpoint", _interrupting(99, calls := []))
    again = train(knmi_small, 4, 2, checkpoint_dir=tmp_path / "ref", **kw)
    assert calls == []
    assert again.history["diffusion"]["valid"] == ref.history["diffusion"]["valid"]
    # another run's checkpoint is refused
    with pytest.raises(ValueError, match="different run"):
        train(knmi_small, 4, 2, checkpoint_dir=tmp_path / "ref", **{**kw, "seed": 4})


def test_several_events(knmi_small):
    a = knmi_small.isel(time=slice(0, 8)).rename("a")
    b = knmi_small.isel(time=slice(8, 16)).rename("b")
    td = build_training_data([a, b], 4, 2, config=tiny_config(), n_folds=2)
    assert [e.name for e in td.data.events] == ["a", "b"]
    # 4 blocks per event, targets 1..3, 2 tiles per fold: samples never cross events
    assert len(td.train) == 2 * 2 * 3 and len(td.valid) == 2 * 2 * 3
    assert sorted(set(td.train.records["event"].tolist())) == [0, 1]
    assert td.train.records["block"].min() == 1
    c = knmi_small.isel(time=slice(0, 8)).resample(time="10min").mean()
    c.attrs["units"] = "mm h-1"
    with pytest.raises(ValueError, match="cadences"):
        build_training_data([a, c], 4, 2, config=tiny_config(), n_folds=2)


# --------------------------------------------------------------------------- training options
#: The defaults documented in train()'s docstring and docs/training.md.
DOCUMENTED_DEFAULTS = dict(epochs=80, batch_size=12, lr=1e-4, patience=8, mc_start_epoch=20, fold=0,
                           n_folds=4, valid=None, valid_events=None, seed=0, device="auto", progress=True,
                           checkpoint_dir=None, stage="both", augment=False, diffusion_mean="network",
                           residual_power=0.0, residual_floor=0.03)


def test_train_options_defaults_are_train_defaults():
    assert dataclasses.asdict(TrainOptions()) == DOCUMENTED_DEFAULTS
    params = inspect.signature(train).parameters
    for name, value in DOCUMENTED_DEFAULTS.items():
        # a keyword per field, keyword-only, whose signature still reads "epochs=80"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert repr(params[name].default) == repr(value)
        assert params[name].default.value == value
    assert params["options"].default is None
    # fit (the internal entry of tune and scripts) takes the options and field overrides
    assert inspect.signature(fit).parameters["options"].default is None
    with pytest.raises(TypeError, match="unexpected keyword"):
        fit(None, 2, 2, epoch=3)
    # the command line's flags default to the same values
    parser = argparse.ArgumentParser()
    cli_mod.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "in.nc", "--S", "4", "--T", "2", "--out", "m"])
    assert cli_mod._options(args) == TrainOptions()
    assert xs.tune.TUNE_OPTIONS == TrainOptions(epochs=20, progress=False)


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"epochs": 2.0}, "epochs must be a positive integer, got 2.0"),
    ({"batch_size": True}, "batch_size must be a positive integer, got True"),
    ({"patience": -1}, "patience must be a positive integer, got -1"),
    ({"n_folds": 0}, "n_folds must be a positive integer, got 0"),
    ({"mc_start_epoch": -1}, "mc_start_epoch must be a non-negative integer, got -1"),
    ({"fold": "1"}, "fold must be a non-negative integer, got '1'"),
    ({"seed": -3}, "seed must be a non-negative integer, got -3"),
    ({"lr": -1e-3}, "lr must be a finite number >= 0, got -0.001"),
    ({"lr": float("nan")}, "lr must be finite, got nan"),
    ({"lr": "fast"}, "lr must be a real number, got 'fast'"),
    ({"lr": True}, "lr must be a real number, got True"),
    ({"device": "gpu"}, "device 'gpu' is not a valid device; use one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
    ({"stage": "diffusion"}, "stage must be 'both' or 'mean', got 'diffusion'"),
    ({"checkpoint_dir": 3}, "checkpoint_dir must be a folder path or None, got 3"),
])
def test_train_options_validation(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainOptions(**kw)
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(TrainOptions(), **kw)
    # train() checks its keywords with the same rule and message, before reading any data
    with pytest.raises(ValueError, match=re.escape(message)):
        train(None, 4, 2, **kw)


def test_train_options_normalize_and_are_frozen(tmp_path):
    opts = TrainOptions(epochs=np.int64(3), lr=1, seed=np.uint8(7), progress=0, checkpoint_dir=tmp_path / "ck",
                        valid=slice("2020-01-01", None), device=torch.device("cpu"))
    assert type(opts.epochs) is int and opts.epochs == 3
    assert type(opts.seed) is int and opts.seed == 7
    assert type(opts.lr) is float and opts.lr == 1.0
    assert opts.progress is False
    assert opts.checkpoint_dir == str(tmp_path / "ck")
    assert opts.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.epochs = 4


def test_options_and_keywords_combine():
    opts = TrainOptions(epochs=3, lr=1e-3)
    # the keywords given override the fields of options; other names are ignored
    assert combine(opts, {"lr": 2e-3, "hr": None}) == TrainOptions(epochs=3, lr=2e-3)
    # a keyword left out (its default marker) never overrides
    assert combine(opts, {"epochs": DEFAULT.epochs, "lr": DEFAULT.lr}) is opts
    # ... but an explicit value equal to the default does
    assert combine(opts, {"epochs": 80}).epochs == 80
    assert combine(None, {"seed": 2}) == TrainOptions(seed=2)
    with pytest.raises(TypeError, match="options must be a TrainOptions, got dict"):
        train(ramp(), 2, 2, options={"epochs": 1})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train(ramp(), 2, 2, options=opts, epochs=0)


def test_keywords_and_options_give_the_same_training(knmi_small):
    kw = dict(epochs=2, batch_size=8, lr=1e-3, mc_start_epoch=1, n_folds=2, device="cpu", progress=False,
              seed=2)
    by_kw = train(knmi_small, 4, 2, config=tiny_config(), **kw)
    by_opts = train(knmi_small, 4, 2, config=tiny_config(), options=TrainOptions(**kw))
    # options as the base, explicit keywords on top: lr and seed of the options are overridden
    mixed = train(knmi_small, 4, 2, config=tiny_config(), lr=1e-3, seed=2,
                  options=TrainOptions(**{**kw, "lr": 0.5, "seed": 9}))
    keys = ("train", "valid", "lr", "best_epoch", "best_valid", "early_stopped", "epochs_run")
    for model in (by_opts, mixed):
        for stage in ("mean", "diffusion"):
            assert {k: model.history[stage][k] for k in keys} == {k: by_kw.history[stage][k] for k in keys}
        assert model.history["mean"]["mc"] == by_kw.history["mean"]["mc"] == [False, True]
        assert model.metadata["protocol"] == by_kw.metadata["protocol"]
        sd, ref = model.state_dict(), by_kw.state_dict()
        for k in ref:
            torch.testing.assert_close(sd[k], ref[k], rtol=0, atol=0)
    assert by_kw.metadata["protocol"]["lr"] == 1e-3 and by_kw.metadata["protocol"]["seed"] == 2


def test_fingerprint_of_a_config_without_a_later_field_still_matches():
    """A checkpoint written before SRConfig had ``clip`` resumes when the run uses the
    default (clip=True) and is refused for clip=False."""
    from xsuperres.training.checkpoint import check_fingerprint

    cfg = tiny_config(cap=2.0).to_dict()
    old = {"config": {k: v for k, v in cfg.items() if k != "clip"}, "n_train": 10}
    check_fingerprint(old, {"config": cfg, "n_train": 10}, "ck")
    with pytest.raises(ValueError, match="different run"):
        check_fingerprint(old, {"config": {**cfg, "clip": False}, "n_train": 10}, "ck")
    with pytest.raises(ValueError, match="n_train"):
        check_fingerprint(old, {"config": cfg, "n_train": 11}, "ck")
