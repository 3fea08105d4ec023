"""Warm starts / fine-tuning: ``train(..., init=model)`` (xsuperres.training.warmstart)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.training import build_training_data, train
from xsuperres.training import cli as cli_mod
from xsuperres.training.loop import fit
from xsuperres.training.warmstart import warm_start_config, weights_digest


def tiny_config(**kw):
    return SRConfig.recipe(4, 2, **{"L": 2, "tile_size": 16, "preset": "tiny", **kw})


@pytest.fixture(scope="module")
def knmi():
    """Two 32 x 32 km, 16-frame crops of the embedded KNMI sample (5-min, mm/h)."""
    da = xs.open_sample("knmi")["precip"]
    return (da.isel(time=slice(0, 16), y=slice(0, 32), x=slice(0, 32)).load(),
            da.isel(time=slice(16, 32), y=slice(32, 64), x=slice(32, 64)).load())


@pytest.fixture(scope="module")
def base(knmi):
    """A model trained for one epoch per stage on the first crop."""
    return train(knmi[0], 4, 2, config=tiny_config(), epochs=1, batch_size=8, n_folds=2,
                 seed=0, device="cpu", progress=False)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_warm_start_begins_from_the_init_weights(knmi, base):
    """lr = 0: the weights never move, so a warm-started run ends with exactly ``base``'s
    weights (both networks), while the same run from scratch has its own initialisation."""
    other = knmi[1]
    warm = train(other, 4, 2, init=base, epochs=1, batch_size=8, lr=0.0, n_folds=2, seed=5,
                 device="cpu", progress=False)
    scratch = train(other, 4, 2, config=tiny_config(), epochs=1, batch_size=8, lr=0.0, n_folds=2,
                    seed=5, device="cpu", progress=False)
    want, got, fresh = _state(base), _state(warm), _state(scratch)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert any(not torch.equal(fresh[k], want[k]) for k in want if fresh[k].is_floating_point())
    # the validation loss of the warm start is the base model's on the new data, not a
    # random network's: the mean stage of base is already a reasonable predictor
    assert warm.history["mean"]["valid"][0] < scratch.history["mean"]["valid"][0]


def test_scaling_is_kept_and_the_cadence_taken_from_the_data(knmi, base):
    """The cap and the architecture come from init; the cadence is the new data's; the
    residual scale is refitted; the metadata names the init weights."""
    hourly = knmi[1].coarsen(time=2).mean()  # 10-min data: another cadence
    hourly.attrs.update(knmi[1].attrs)
    scratch_cap = train(hourly, 4, 2, config=tiny_config(), epochs=1, batch_size=8, n_folds=2,
                        stage="mean", device="cpu", progress=False).normalization["cap"]
    warm = train(hourly, 4, 2, init=base, epochs=1, batch_size=8, n_folds=2, device="cpu",
                 progress=False)
    assert warm.normalization["cap"] == base.normalization["cap"] != pytest.approx(scratch_cap)
    assert warm.config.time_step == "10min" and base.config.time_step == "5min"
    assert warm.config.replace(time_step=None) == base.config.replace(time_step=None)
    assert warm.normalization["residual_scale"] != base.normalization["residual_scale"]
    init = warm.metadata["protocol"]["init"]
    assert init["weights_sha256"] == weights_digest(base)
    assert init["config"] == base.config.to_dict()
    assert warm.metadata["protocol"]["init"] is not None
    assert base.metadata["protocol"]["init"] is None


def test_topography_range_of_init_is_kept():
    ds = xs.open_sample("radolan").isel(time=slice(0, 12), y=slice(96, 128), x=slice(96, 128))
    precip, topo = ds["precip"].load(), ds["topography"].load()
    a = train(precip, 4, 2, topography=topo, config=tiny_config(), epochs=1, batch_size=4,
              n_folds=2, stage="mean", device="cpu", progress=False)
    shifted = topo + 500.0  # another range: a from-scratch run would fit (min + 500, max + 500)
    shifted.attrs.update(topo.attrs)
    b = train(precip, 4, 2, topography=shifted, init=a, epochs=1, batch_size=4, n_folds=2,
              stage="mean", device="cpu", progress=False)
    assert (b.normalization["topo_min"], b.normalization["topo_max"]) == (
        a.normalization["topo_min"], a.normalization["topo_max"])
    assert b.metadata["data"]["topography"]["scaling"].endswith("(warm start)")


def test_refusals(knmi, base):
    with pytest.raises(ValueError, match="trained for S=4, T=2.*same factors"):
        train(knmi[1], 2, 2, init=base, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"architecture: L=3 \(init has 2\)"):
        train(knmi[1], 4, 2, init=base, config=tiny_config(L=3), epochs=1, device="cpu",
              progress=False)
    with pytest.raises(TypeError, match="init must be an SRModel.*got dict"):
        train(knmi[1], 4, 2, init={}, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="not an existing model directory .* nor a known pretrained model"):
        train(knmi[1], 4, 2, init="no-such-model", epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="init .* or mean_from, not both"):
        fit(knmi[1], 4, 2, init=base, mean_from=base, epochs=1, device="cpu", progress=False)
    td = build_training_data(knmi[1], 4, 2, config=tiny_config(), n_folds=2)  # its own cap
    with pytest.raises(ValueError, match="training_data was prepared with cap"):
        fit(None, 4, 2, training_data=td, init=base, epochs=1, device="cpu", progress=False)


def test_config_defaults_and_overrides(base):
    cfg = warm_start_config(base, 4, 2, None)
    assert cfg.time_step is None and cfg.cap == base.normalization["cap"]
    # other hyperparameters may change; a given cap is kept
    cfg2 = warm_start_config(base, 4, 2, base.config.replace(beta_max=0.02, cap=3.0, time_step=None))
    assert (cfg2.beta_max, cfg2.cap) == (0.02, 3.0)


def test_weights_digest_identifies_the_weights(base, tmp_path):
    d = weights_digest(base)
    assert len(d) == 64 and weights_digest(xs.SRModel.load(base.save(tmp_path / "m"))) == d
    other = xs.SRModel.load(tmp_path / "m")
    with torch.no_grad():
        next(other.diffusion_net.parameters()).view(-1)[0] += 1e-6
    assert weights_digest(other) != d


def test_resume_of_another_init_is_refused(knmi, base, tmp_path):
    ck = tmp_path / "ck"
    train(knmi[1], 4, 2, init=base, epochs=1, batch_size=8, n_folds=2, device="cpu",
          progress=False, checkpoint_dir=str(ck), stage="mean")
    other = xs.SRModel.load(base.save(tmp_path / "m"))
    with torch.no_grad():
        next(other.mean_net.parameters()).view(-1)[0] += 1.0
    with pytest.raises(ValueError, match="init"):
        train(knmi[1], 4, 2, init=other, epochs=1, batch_size=8, n_folds=2, device="cpu",
              progress=False, checkpoint_dir=str(ck), stage="mean")


def test_cli_init(knmi, base, tmp_path, capsys):
    src = tmp_path / "in.nc"
    knmi[1].to_dataset(name="precip").to_netcdf(src)
    saved = base.save(tmp_path / "base")
    out = tmp_path / "out"
    rc = cli_mod.main([str(src), "--S", "4", "--T", "2", "--out", str(out), "--init", str(saved),
                       "--epochs", "1", "--batch-size", "8", "--n-folds", "2", "--no-progress",
                       "--quiet"])
    assert rc == 0
    m = xs.SRModel.load(out)
    assert m.metadata["protocol"]["init"]["weights_sha256"] == weights_digest(base)
    assert m.config.L == base.config.L == 2 and m.config.tile_size == 16
    rc = cli_mod.main([str(src), "--S", "4", "--T", "2", "--out", str(tmp_path / "o2"), "--init",
                       str(saved), "--L", "3"])
    assert rc == 2 and "--preset and --L come from the --init model" in capsys.readouterr().err
    assert np.isfinite(m.normalization["residual_scale"])


def test_a_warm_start_keeps_the_init_residual_scaling(knmi, base):
    """An init whose residual scale grows with the mean (``residual_power``) passes it on,
    since its diffusion network models residuals scaled that way; a non-zero power given
    explicitly wins."""
    grown = xs.SRModel(base.config, normalization={**base.normalization, "residual_power": 1.0,
                                                   "residual_floor": 0.05})
    grown.load_state_dict(base.state_dict())
    kw = dict(epochs=1, batch_size=8, n_folds=2, device="cpu", progress=False)
    warm = train(knmi[1], 4, 2, init=grown, **kw)
    assert (warm.normalization["residual_power"], warm.normalization["residual_floor"]) == (1.0, 0.05)
    assert warm.metadata["protocol"]["residual_power"] == 1.0
    other = train(knmi[1], 4, 2, init=grown, residual_power=0.5, residual_floor=0.1, **kw)
    assert (other.normalization["residual_power"], other.normalization["residual_floor"]) == (0.5, 0.1)
    plain = train(knmi[1], 4, 2, init=base, **kw)
    assert "residual_power" not in plain.normalization
