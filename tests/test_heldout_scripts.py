"""The held-out scoring of the scripts (scripts/heldout.py), against independent paths.

The numbers in docs/results.md come from these functions: the contexts and truths must be
the raw (uncapped) data at the records' places, and RainFARM's members must be those of
the public ``xsuperres.rainfarm`` on the whole LR field, cut to the tile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.training import build_training_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
heldout = pytest.importorskip("heldout")

S, T, L = 4, 2, 2


@pytest.fixture(scope="module")
def td():
    da = xs.open_sample("knmi")["precip"]
    a = da.isel(time=slice(0, 24), y=slice(0, 48), x=slice(0, 48)).load().rename("a")
    b = da.isel(time=slice(30, 54), y=slice(40, 88), x=slice(20, 68)).load().rename("b")
    cfg = SRConfig.recipe(S, T, L=L, tile_size=16, preset="tiny", cap=2.0)  # a low cap: clipping matters
    return build_training_data([a, b], S, T, config=cfg, valid_events=["b"]), b


def block_mean(a):
    nt, ny, nx = a.shape
    return a[: nt // T * T].reshape(nt // T, T, ny // S, S, nx // S, S).mean(axis=(1, 3, 5))


def test_validation_arrays_are_the_raw_data_at_the_records(td):
    data, b = td
    ctx, truth, where = heldout.validation_arrays(data)
    raw = b.values
    lr = block_mean(raw)
    assert len(ctx) == len(data.valid.records) > 0 and ctx.shape[1:] == (L, 4, 4)
    assert truth.max() > 2.0  # uncapped
    for i, (e, k, t) in enumerate(data.valid.records):
        assert int(e) == 1 and where[i][0] == "b"
        tile = data.split.tiles[1][int(k)]
        ys, xs_ = tile.yslice, tile.xslice
        np.testing.assert_allclose(ctx[i], lr[t - L + 1: t + 1, ys.start // S: ys.stop // S,
                                              xs_.start // S: xs_.stop // S], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(truth[i], raw[t * T:(t + 1) * T, ys, xs_].astype(np.float32))


def test_rainfarm_members_are_the_public_rainfarm_cut_to_the_tile(td):
    pytest.importorskip("pysteps")
    data, b = td
    got = heldout.rainfarm_members(data, 2, seed=3)
    lr = xs.coarsen_perfect(b, S, T)
    ref = xs.rainfarm(lr, S, T, n_members=2, seed=3).values  # (member, time, y, x)
    assert got.shape == (len(data.valid.records), 2, T, 16, 16)
    for i, (e, k, t) in enumerate(data.valid.records):
        tile = data.split.tiles[1][int(k)]
        np.testing.assert_allclose(got[i], ref[:, t * T:(t + 1) * T, tile.yslice, tile.xslice],
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["linear", "motion"])
def test_temporal_peer_is_the_public_interpolate_cut_to_the_tile(td, method):
    pytest.importorskip("pysteps")
    data, b = td
    got = heldout.temporal_peer(data, method)
    lr = xs.coarsen_perfect(b, S, T)
    ref = xs.interpolate(lr, S, T, "nearest", time_method=method).values
    assert got.shape == (len(data.valid.records), 1, T, 16, 16)
    for i, (e, k, t) in enumerate(data.valid.records):
        tile = data.split.tiles[1][int(k)]
        np.testing.assert_allclose(got[i, 0], ref[t * T:(t + 1) * T, tile.yslice, tile.xslice],
                                   rtol=1e-4, atol=1e-5)


def test_scores_of_a_perfect_and_a_shifted_ensemble():
    rng = np.random.default_rng(0)
    truth = rng.gamma(0.5, 2.0, (3, 2, 8, 8)).astype(np.float32)
    perfect = heldout.scores(np.repeat(truth[:, None], 2, axis=1), truth)
    assert perfect["crps"] == pytest.approx(0.0, abs=1e-7) and perfect["mae"] == pytest.approx(0.0, abs=1e-7)
    assert heldout.scores(truth[:, None], truth)["pe99"] == pytest.approx(0.0, abs=1e-6)
    shifted = heldout.scores((truth + 1.0)[:, None], truth)  # one member, +1 mm/h everywhere
    assert shifted["crps"] == pytest.approx(1.0, rel=1e-5) and shifted["mae"] == pytest.approx(1.0, rel=1e-5)
    assert shifted["pe99"] == pytest.approx(1.0, rel=1e-4)
    assert shifted["q99_bias"] == pytest.approx(1.0, rel=1e-4)  # too heavy: positive
    assert heldout.scores((truth * 0.5)[:, None], truth)["q99_bias"] == pytest.approx(
        -0.5 * np.percentile(truth, 99), rel=1e-4)  # halved: too weak, negative
    # PIT pools each frame's member pixels: a dry truth under a wet ensemble is always
    # below it (u = 0, an outer decile); a truth inside the ensemble's range is not
    dry = np.zeros_like(truth)
    assert heldout.scores(np.ones_like(truth)[:, None], dry)["pit_outer_fraction"] == 1.0
    assert heldout.scores(np.repeat(truth[:, None], 2, axis=1), truth)["pit_outer_fraction"] < 0.5
    # spread-error ratio only for ensembles: members +-1 mm/h around the truth differ by 2
    # and miss by 1; one member has none
    assert "spread_error" not in shifted
    pm = np.stack([truth - 1.0, truth + 1.0], axis=1)
    assert heldout.scores(pm, truth)["spread_error"] == pytest.approx(2.0, rel=1e-6)
    # and the fair CRPS: E|X - y| = 1 minus half the distinct members' difference, 2
    assert heldout.scores(pm, truth)["crps_fair"] == pytest.approx(0.0, abs=1e-6)
    assert "crps_fair" not in shifted
    # a row without a column prints "-" in it
    text = heldout.table({"one member": shifted, "two members": heldout.scores(pm, truth)},
                         cols=("crps", "spread_error"))
    assert text.splitlines()[1].split()[-1] == "-"
    assert float(text.splitlines()[2].split()[-1]) == pytest.approx(2.0, abs=1e-4)


def test_loeo_summary_checks_the_targets(tmp_path):
    """scripts/loeo.py summary: one column group per left-out event and the issue's targets
    (CRPS at least 10 % below RainFARM's, PITD < 0.1, pe99 and LSD no worse) judged right."""
    loeo = pytest.importorskip("loeo")
    rows = {"bicubic": (1.0, 0.2, 3.0, 1.0),
            "RainFARM (5 members, whole LR frames)": (0.50, 0.12, 2.0, 0.9),
            "full model (dpmpp_2m, 10 steps, 5 members)": (0.44, 0.08, 2.5, 0.8)}
    for event, scale in (("mch2016", 1.0), ("fmi2016", 1.2)):
        d = tmp_path / f"loeo_10x3_{event}"
        d.mkdir()
        res = {n: dict(zip(("crps", "pitd", "pe99", "lsd"), v)) for n, v in rows.items()}
        res["full model (dpmpp_2m, 10 steps, 5 members)"]["crps"] *= scale
        (d / "results.json").write_text(json.dumps({"results": res}))
    out = tmp_path / "loeo.md"
    assert loeo.main(["summary", "--runs", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## (S, T) = (10, 3)" in text
    assert "| method | fmi2016 crps | fmi2016 pitd |" in text and "mch2016 lsd |" in text
    lines = {ln.split(":")[0].strip("- "): ln for ln in text.splitlines() if ln.startswith("- ")}
    # mch2016: 0.44 vs 0.50 is 12 % below (met); PITD met; pe99 2.5 > 2.0 missed; LSD met
    assert "12.0 % below RainFARM's (met" in lines["mch2016"]
    assert "PITD 0.080 (met)" in lines["mch2016"] and "pe99 2.50 vs 2.00 (missed)" in lines["mch2016"]
    assert "LSD 0.800 vs 0.900 (met)" in lines["mch2016"]
    # fmi2016: 0.528 vs 0.50 is 5.6 % above (missed)
    assert "5.6 % above RainFARM's (missed" in lines["fmi2016"]
    assert "spread-error" not in text  # no MAE stored: no ratio
    # with MAE: full model 2 (0.60 - 0.44) 5 / 4 / 0.60 = 0.667, RainFARM 2 (0.55 - 0.50) 5 / 4 / 0.55
    # = 0.227; a stored spread_error is used as it is
    res = json.loads((tmp_path / "loeo_10x3_mch2016" / "results.json").read_text())["results"]
    res["full model (dpmpp_2m, 10 steps, 5 members)"]["mae"] = 0.60
    res["RainFARM (5 members, whole LR frames)"]["mae"] = 0.55
    (tmp_path / "loeo_10x3_mch2016" / "results.json").write_text(json.dumps({"results": res}))
    res["RainFARM (5 members, whole LR frames)"]["spread_error"] = 0.9
    (tmp_path / "loeo_10x3_fmi2016" / "results.json").write_text(json.dumps({"results": res}))
    assert loeo.main(["summary", "--runs", str(tmp_path), "--out", str(out)]) == 0
    lines = {ln.split(":")[0].strip("- "): ln for ln in out.read_text().splitlines() if ln.startswith("- ")}
    # fair CRPS: 0.60 - 0.16 * 5 / 4 = 0.40 against 0.55 - 0.05 * 5 / 4 = 0.4875, 17.9 % below
    assert lines["mch2016"].endswith("spread-error ratio 0.67 vs 0.23; fair CRPS 17.9 % below RainFARM's")
    assert lines["fmi2016"].endswith("spread-error ratio 0.67 vs 0.90; fair CRPS 17.9 % below RainFARM's")


def test_loeo_summary_temporal_targets(tmp_path):
    """S = 1 folds: both full-model rows judged against persistence, linear and motion."""
    loeo = pytest.importorskip("loeo")
    rows = {"nearest": (1.0, 0.2, 3.0, 1.0), "linear in time": (0.8, 0.2, 3.0, 1.0),
            "motion-compensated (Proesmans flow)": (0.5, 0.2, 3.0, 1.0),
            "full model (dpmpp_2m, 10 steps, 5 members)": (0.55, 0.08, 2.5, 0.8),
            "full model around the motion mean (dpmpp_2m, 10 steps, 5 members)": (0.44, 0.12, 2.5, 0.8)}
    d = tmp_path / "loeo_1x3_mch2016"
    d.mkdir()
    res = {n: dict(zip(("crps", "pitd", "pe99", "lsd"), v)) for n, v in rows.items()}
    (d / "results.json").write_text(json.dumps({"results": res}))
    out = tmp_path / "loeo.md"
    assert loeo.main(["summary", "--runs", str(tmp_path), "--out", str(out)]) == 0
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("- mch2016, ")]
    assert len(lines) == 2
    # network mean: 0.55 vs 1.0, 0.8, 0.5 -> 45.0 % and 31.2 % below (met), 10.0 % above motion
    assert "45.0 % below persistence (met)" in lines[0] and "31.2 % below linear (met)" in lines[0]
    assert "10.0 % above motion (missed)" in lines[0] and "PITD 0.080 (met)" in lines[0]
    # around the motion mean: 0.44 vs 0.5 is 12.0 % below (met); PITD 0.12 missed
    assert lines[1].startswith("- mch2016, around the motion mean")
    assert "12.0 % below motion (met)" in lines[1] and "PITD 0.120 (missed)" in lines[1]


def _card_stub(loeo_table: dict) -> dict:
    """A shipped card (radar-s1-t3's card.json) with ``loeo_table`` as its leave-one-event-out table."""
    card = json.loads((Path(__file__).resolve().parent.parent / "xsuperres" / "weights" / "radar-s1-t3"
                       / "card.json").read_text())
    return {**card, "loeo": loeo_table}


def test_loeo_table_of_the_card_and_the_summary_heading(tmp_path):
    """scripts/package_model.py --loeo: per left-out event the rows of every fold, keyed by
    method; the summary names the diffusion mean the folds were trained around."""
    loeo = pytest.importorskip("loeo")
    package_model = pytest.importorskip("package_model")
    for event, crps in (("knmi2010", 0.1), ("fmi2016", 0.2)):
        d = tmp_path / f"loeo_1x3_{event}"
        d.mkdir()
        res = {"nearest": {"crps": 2 * crps, "pitd": 0.1, "pe99": 1.0, "lsd": 0.5},
               "full model around the motion mean (dpmpp_2m, 10 steps, 5 members)":
                   {"crps": crps, "pitd": 0.05, "pe99": 0.5, "lsd": 0.2}}
        (d / "results.json").write_text(json.dumps({"results": res, "protocol": {
            "diffusion_mean": "motion", "mean_epochs": 6, "diffusion_epochs": 12}}))
    longer = package_model.loeo_table(tmp_path, 1, 3, epochs=(6, 30))["description"]
    assert "The folds trained 6 mean and 12 diffusion epochs, this model 6 and 30." in longer
    assert "The folds trained" not in package_model.loeo_table(tmp_path, 1, 3, epochs=(6, 12))["description"]
    table = package_model.loeo_table(tmp_path, 1, 3)
    assert list(table["events"]) == ["fmi2016", "knmi2010"]
    assert table["methods"] == ["nearest", "full model around the motion mean"]
    assert table["events"]["knmi2010"]["full model around the motion mean"] == {"crps": 0.1, "pitd": 0.05,
                                                                                "pe99": 0.5, "lsd": 0.2}
    assert table["events"]["fmi2016"]["nearest"]["crps"] == pytest.approx(0.4)
    assert "trained around the motion mean" in table["description"]
    assert "the default of `downscale` for this model" in table["description"]  # S = 1: motion mean
    assert "The folds trained" not in table["description"]  # no budget given: nothing to compare
    # the card's markdown: one cell per event, the four metrics of the targets in order
    md = package_model.card_markdown(_card_stub(table))
    assert "| method | fmi2016: CRPS / PITD / pe99 / LSD | knmi2010: CRPS / PITD / pe99 / LSD |" in md
    assert "| full model around the motion mean | 0.200 / 0.050 / 0.500 / 0.200 | 0.100 / 0.050 / 0.500 / 0.200 |" in md
    with pytest.raises(FileNotFoundError, match="loeo_10x3"):
        package_model.loeo_table(tmp_path, 10, 3)
    out = tmp_path / "loeo.md"
    assert loeo.main(["summary", "--runs", str(tmp_path), "--out", str(out)]) == 0
    assert "## (S, T) = (1, 3), diffusion stage trained around the motion mean" in out.read_text()


def test_caveats_say_only_what_the_scores_show():
    """scripts/package_model.py caveats: a baseline is named only on the metrics where it wins,
    and the member-MAE sentence appears only when single members are worse than the mean."""
    package_model = pytest.importorskip("package_model")
    row = {"crps": 0.2, "pitd": 0.08, "pe99": 1.0, "lsd": 0.5, "mae": 0.30}
    scores = {"bicubic": {**row, "crps": 0.3, "pe99": 0.9}, "nearest": {**row, "crps": 0.35, "lsd": 0.6},
              "deterministic (U_det + MC)": {**row, "crps": 0.25, "pitd": 0.2, "mae": 0.25},
              "full": dict(row)}
    out = package_model.caveats(scores, "full", valid_event="knmi_2010-08-26_5min")
    assert out[0] == "bicubic beats the full model on PE99 (0.9000 vs 1.0000)."
    assert not any(s.startswith("nearest") for s in out)
    assert any("MAE of single members (0.3000 mm/h) is worse than the deterministic mean's (0.2500)" in s
               for s in out)
    scores["full"]["mae"] = 0.25  # equal: not worse, so not said
    assert not any("MAE of single members" in s for s in package_model.caveats(scores, "full"))


def card_copy(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """``(shipped folder, tmp_path/weights/name)``: a copy of a shipped model's card and
    configuration (not its weights) to rewrite."""
    shipped = Path(__file__).resolve().parent.parent / "xsuperres" / "weights" / name
    dest = tmp_path / "weights" / name
    dest.mkdir(parents=True)
    for f in ("card.json", "model_card.md", "config.json"):
        (dest / f).write_bytes((shipped / f).read_bytes())
    return shipped, dest


def test_refresh_loeo_rewrites_only_the_cards_table(tmp_path):
    """scripts/package_model.py --refresh-loeo: the packaged card's leave-one-event-out table
    comes from the new folds; its held-out scores and the weights' files stay byte for byte."""
    package_model = pytest.importorskip("package_model")
    shipped, dest = card_copy(tmp_path, "radar-s1-t3")
    runs = tmp_path / "runs"
    d = runs / "loeo_1x3_fmi2016"
    d.mkdir(parents=True)
    res = {"nearest": {"crps": 0.4, "pitd": 0.1, "pe99": 1.0, "lsd": 0.5},
           "full model (dpmpp_2m, 10 steps, 5 members)": {"crps": 0.123, "pitd": 0.05, "pe99": 0.5, "lsd": 0.2}}
    (d / "results.json").write_text(json.dumps({"results": res, "protocol": {"diffusion_mean": "network"}}))
    before = json.loads((dest / "card.json").read_text())
    assert package_model.main(["--refresh-loeo", "radar-s1-t3", "--loeo", str(runs),
                               "--out", str(tmp_path / "weights")]) == 0
    after = json.loads((dest / "card.json").read_text())
    assert list(after["loeo"]["events"]) == ["fmi2016"]
    assert after["loeo"]["events"]["fmi2016"]["full model"]["crps"] == 0.123
    assert {k: v for k, v in after.items() if k != "loeo"} == {k: v for k, v in before.items() if k != "loeo"}
    assert "| full model | 0.123 / 0.050 / 0.500 / 0.200 |" in (dest / "model_card.md").read_text()
    assert (dest / "config.json").read_bytes() == (shipped / "config.json").read_bytes()
    with pytest.raises(SystemExit):  # RUN/NAME and --refresh-loeo do not mix
        package_model.main(["run", "name", "--refresh-loeo", "radar-s1-t3", "--loeo", str(runs)])


def test_loeo_compare_puts_variants_side_by_side(tmp_path):
    """scripts/loeo.py compare: the peers once per event, then each variant's model rows."""
    loeo = pytest.importorskip("loeo")
    for label, crps in (("a", 0.3), ("b", 0.2)):
        d = tmp_path / label / "loeo_1x3_knmi2010"
        d.mkdir(parents=True)
        res = {"nearest": {"crps": 1.0, "pitd": 0.1, "pe99": 1.0, "lsd": 0.5},
               "full model around the motion mean (dpmpp_2m, 10 steps, 5 members)":
                   {"crps": crps, "pitd": 0.05, "pe99": 0.5, "lsd": 0.2}}
        (d / "results.json").write_text(json.dumps({"results": res}))
    out = tmp_path / "cmp.json"
    assert loeo.main(["compare", "--pair", "1x3", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}",
                      "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["events"]["knmi2010"]
    assert list(rows) == ["nearest", "full model around the motion mean [a]", "full model around the motion mean [b]"]
    assert rows["full model around the motion mean [b]"]["crps"] == 0.2


def test_loeo_curves_read_finished_and_running_folds(tmp_path):
    """scripts/loeo.py curves: a finished fold's history from results.json, a running one's
    from its checkpoint; hours are the cumulated epoch times; the last-3-epochs gain by hand."""
    loeo = pytest.importorskip("loeo")
    hist = {"train": [1, 1, 1, 1], "valid": [1.0, 0.8, 0.7, 0.6], "wall_s": [1800, 1800, 3600, 3600],
            "best_epoch": 4, "best_valid": 0.6}
    done = tmp_path / "a" / "loeo_10x3_knmi2010"
    done.mkdir(parents=True)
    (done / "results.json").write_text(json.dumps({"history": {"mean": hist, "diffusion": hist}}))
    running = tmp_path / "b" / "loeo_10x3_knmi2010" / "checkpoints-mean"
    running.mkdir(parents=True)
    (running / "checkpoint.json").write_text(json.dumps({"history": {"mean": {**hist, "valid": [2.0, 2.0], "wall_s": [60, 60],
                                                                              "best_epoch": 1, "best_valid": 2.0}}}))
    assert loeo.fold_history(tmp_path / "b" / "loeo_10x3_mch2016") is None
    out = tmp_path / "curves.json"
    assert loeo.main(["curves", "--pair", "10x3", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}",
                      "--out", str(tmp_path / "c.png"), "--json", str(out)]) == 0
    folds = json.loads(out.read_text())["folds"]
    assert set(folds) == {"knmi2010 [a]", "knmi2010 [b]"}
    assert set(folds["knmi2010 [b]"]) == {"mean"}
    a = folds["knmi2010 [a]"]["mean"]
    assert a["hours"] == [0.5, 1.0, 2.0, 3.0]
    # last 3 epochs' best 0.6 against the earlier best 1.0
    assert a["last3_gain"] == pytest.approx(1 - 0.6 / 1.0)
    assert (tmp_path / "c.png").stat().st_size > 0


def test_card_stage_minutes_of_a_resumed_run():
    """scripts/package_model.py: a stage taken over from checkpoints records 0 minutes in the
    run; the card then counts its epochs' times (here 2 x 90 s = 3 min)."""
    package_model = pytest.importorskip("package_model")
    doc = {"wall_time_min": {"mean_stage": 0.0, "diffusion_stage": 10.0},
           "history": {"mean": {"wall_s": [90.0, 90.0]}, "diffusion": {"wall_s": [60.0] * 9}}}
    assert package_model.stage_minutes(doc, "mean") == pytest.approx(3.0)
    # the recorded time (data preparation included) wins when it is the larger
    assert package_model.stage_minutes(doc, "diffusion") == pytest.approx(10.0)


def test_lsd_split_into_dry_and_wet_truth_frames():
    """scripts/lsd_dry_frames.py: identical wet frames score 0; a dry truth frame scores 0
    when the prediction is dry too, and near 10 (log10 of the 1e-12 floor against a real
    spectrum) with a drizzle; the counts and the drizzle's rates by hand."""
    lsd_dry_frames = pytest.importorskip("lsd_dry_frames")
    rng = np.random.default_rng(0)
    wet = rng.gamma(0.5, 2.0, size=(2, 16, 16))
    truth = np.concatenate([wet, np.zeros((2, 16, 16))])            # frames 2 and 3 dry
    pred = truth.copy()
    res = lsd_dry_frames.dry_wet_lsd(pred, truth)
    assert (res["frames"], res["dry_truth_frames"]) == (4, 2)
    assert res["lsd_wet"] == pytest.approx(0.0, abs=1e-12) and res["lsd_dry"] == pytest.approx(0.0, abs=1e-12)
    pred[3] = rng.uniform(0.0, 0.02, size=(16, 16))                 # drizzle on one dry frame
    res = lsd_dry_frames.dry_wet_lsd(pred, truth)
    assert res["lsd_wet"] == pytest.approx(0.0, abs=1e-12)
    assert res["lsd_dry"] > 3.0                                      # mean of ~0 and a frame near 10
    from xsuperres.metrics import lsd
    assert res["lsd_dry"] == pytest.approx(lsd(pred[None, 3:4], truth[3:4]) / 2)   # the dry-dry frame adds 0
    assert res["max_pred_on_dry_frames"] == pytest.approx(pred[3].max())
    assert res["mean_pred_on_dry_frames"] == pytest.approx(pred[3].mean() / 2)
    assert res["wet_truth_frames_predicted_dry"] == 0 and res["lsd_wet_predicted_dry"] is None


def test_lsd_split_with_members_and_wet_frames_predicted_dry():
    """scripts/lsd_dry_frames.py on an (n, M, T, y, x) ensemble: every LSD is the mean over
    members and frames (metrics.lsd with the member axis first); a member that leaves a wet
    truth frame all dry is counted, and its LSD (log10 of the 1e-12 floor against a real
    spectrum, near 10) is split from the other wet frames'."""
    lsd_dry_frames = pytest.importorskip("lsd_dry_frames")
    from xsuperres.metrics import lsd
    rng = np.random.default_rng(1)
    truth = rng.gamma(0.5, 2.0, size=(2, 3, 16, 16))                 # n = 2 samples, T = 3, all wet
    truth[1, 2] = 0.0                                                 # one dry truth frame
    ens = np.stack([truth + rng.uniform(0, 0.1, truth.shape), truth * 1.5], axis=1)   # (2, M=2, 3, 16, 16)
    ens[0, 1, 0] = 0.0                                                # member 1 leaves wet frame (0, 0) dry
    res = lsd_dry_frames.dry_wet_lsd(ens, truth)
    frames_t = truth.reshape(-1, 16, 16)
    frames_p = np.moveaxis(ens, 1, 0).reshape(2, -1, 16, 16)
    assert (res["frames"], res["members"], res["dry_truth_frames"]) == (6, 2, 1)
    assert res["lsd_all"] == pytest.approx(lsd(frames_p, frames_t))
    assert res["wet_truth_frames_predicted_dry"] == 1
    per = {(m, f): lsd(frames_p[m, f][None, None], frames_t[f][None]) for m in range(2) for f in range(5)}
    assert res["lsd_wet_predicted_dry"] == pytest.approx(per[(1, 0)]) and per[(1, 0)] > 5
    others = [v for k, v in per.items() if k != (1, 0)]
    assert res["lsd_wet_predicted_wet"] == pytest.approx(np.mean(others))
    assert res["lsd_wet"] == pytest.approx(np.mean(list(per.values())))
    assert res["max_truth_on_frames_predicted_dry"] == pytest.approx(truth[0, 0].max())
    with pytest.raises(ValueError, match="neither"):
        lsd_dry_frames.dry_wet_lsd(ens[:, :, :2], truth)


def test_train_only_then_eval_only_gives_the_training_record(tmp_path, capsys):
    # training on one machine (a lent GPU), scoring on another: --eval-only scores the model
    # that --train-only saved and reports that run's stage times and machine
    train_shared = pytest.importorskip("train_shared")
    da = xs.open_sample("knmi")["precip"]
    for name, sel in (("a", dict(time=slice(0, 24), y=slice(0, 48), x=slice(0, 48))),
                      ("b", dict(time=slice(30, 54), y=slice(40, 88), x=slice(20, 68)))):
        da.isel(**sel).to_dataset(name="precip").to_netcdf(tmp_path / f"{name}.nc", engine="netcdf4")
    out = tmp_path / "run"
    common = ["--data-dir", str(tmp_path), "--files", "a.nc", "b.nc", "--crop", "all", "--S", str(S),
              "--T", str(T), "--tile-size", "16", "--valid-event", "b", "--out", str(out),
              "--device", "cpu", "--no-rainfarm"]
    with pytest.raises(SystemExit, match="train with --train-only first"):
        train_shared.main([*common, "--eval-only"])
    # inference settings that no model takes are refused before any training
    for flag, bad in (("--infer-residual-factor", "0"), ("--infer-residual-factor", "nan"),
                      ("--infer-threshold", "-0.01")):
        with pytest.raises(SystemExit):
            train_shared.parse([*common, flag, bad])
        assert f"{flag} must be" in capsys.readouterr().err
    assert train_shared.main([*common, "--mean-epochs", "1", "--diffusion-epochs", "1", "--train-only"]) == 0
    trained = json.loads((out / "training.json").read_text())
    assert (out / "model").is_dir() and not (out / "results.json").exists()
    assert trained["machine"]["device"] == "cpu" and trained["wall_s"]["mean_stage"] > 0
    assert train_shared.main([*common, "--eval-only", "--members", "2", "--max-eval", "4"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["wall_time_min"]["mean_stage"] == pytest.approx(trained["wall_s"]["mean_stage"] / 60)
    assert doc["machine"]["training"] == trained["machine"]
    assert doc["n_samples"]["evaluated"] == 4
    assert doc["history"]["mean"]["epochs_run"] == 1 and doc["history"]["diffusion"]["epochs_run"] == 1
    assert {"bicubic", "deterministic (U_det + MC)"} <= set(doc["results"])
    # --infer-threshold scores the same weights with another threshold a, and says so
    assert train_shared.main([*common, "--eval-only", "--members", "2", "--max-eval", "4",
                              "--infer-threshold", "0"]) == 0
    doc0 = json.loads((out / "results.json").read_text())
    assert doc0["config"]["threshold"] == 0.0 and doc["config"]["threshold"] > 0
    assert doc0["protocol"]["infer_threshold"] == 0.0
    assert doc0["protocol"]["trained_threshold"] == doc["config"]["threshold"]
    assert doc0["results"]["bicubic"] == doc["results"]["bicubic"]
    det = "deterministic (U_det + MC)"
    assert doc0["results"][det]["crps"] != doc["results"][det]["crps"]
    # --infer-residual-factor scales the members' departures only: the mean's rows stay
    assert train_shared.main([*common, "--eval-only", "--members", "2", "--max-eval", "4",
                              "--samplers", "dpmpp_2m:10", "--infer-residual-factor", "0.5"]) == 0
    docr = json.loads((out / "results.json").read_text())
    assert docr["protocol"]["infer_residual_factor"] == 0.5
    assert docr["protocol"]["residual_scale"] == doc["protocol"]["residual_scale"]  # the trained one
    assert docr["results"][det] == doc["results"][det]
    # calibration_study's "residual x 0.5" variant is the same model: the same full-model scores,
    # and not those of its default (residual x 1)
    calibration_study = pytest.importorskip("calibration_study")
    assert calibration_study.main([str(out), "--data-dir", str(tmp_path), "--members", "2", "--threads", "1",
                                   "--only", "residual x", "--residual-factors", "0.5", "--no-second-seed"]) == 0
    cal = json.loads((out / "calibration.json").read_text())["results"]
    [half] = [k for k in cal if k.startswith("residual x 0.5 at inference")]
    [one] = [k for k in cal if k.startswith("default: dpmpp_2m 10 steps, 2 members")]
    full = docr["results"]["full model (dpmpp_2m, 10 steps, 2 members)"]
    assert cal[half]["crps"] == pytest.approx(full["crps"], rel=1e-5)
    assert cal[one]["crps"] != pytest.approx(full["crps"], rel=1e-3)
    # a model without mass conservation (the --no-mc ablation) is not labelled "+ MC"
    xs.SRModel.load(out / "model").with_config(mass_conservation=None).save(out / "model")
    assert train_shared.main([*common, "--eval-only", "--members", "2", "--max-eval", "4"]) == 0
    rows = set(json.loads((out / "results.json").read_text())["results"])
    assert "deterministic (U_det)" in rows and "deterministic (U_det + MC)" not in rows
    with pytest.raises(SystemExit, match="--edsr-epochs 0"):
        train_shared.main([*common, "--eval-only", "--edsr-epochs", "2"])


def test_card_rebuilds_its_own_validation_samples():
    """scripts/package_model.py --rescore starts from the card alone: the shipped
    radar-s25-t6 card gives back its split (sample counts checked inside) and the very
    samples it was scored on (bicubic CRPS as recorded)."""
    package_model = pytest.importorskip("package_model")
    data = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if not (data / "mch_20160711_5min.nc").exists():
        pytest.skip("needs ../shared/data beside the checkout")
    card = json.loads((Path(__file__).resolve().parent.parent / "xsuperres" / "weights" / "radar-s25-t6"
                       / "card.json").read_text())
    ctx, truth, td = package_model.rebuild_validation(package_model.doc_from_card(card), str(data))
    assert (len(td.train), len(td.valid)) == (card["training"]["n_train"], card["training"]["n_valid"])
    assert truth.shape == (card["evaluation"]["n_samples"], 6, 50, 50)
    bic = package_model.scores(package_model.bicubic_baseline(torch.from_numpy(ctx), 25, 6).numpy()[:, None], truth)
    assert bic["crps"] == pytest.approx(card["scores"]["bicubic"]["crps"], abs=1e-6)


def test_residual_scale_study_finds_the_scale_that_made_the_residual():
    """Residuals drawn as ``(D + 0.03) * z`` (z standard normal): the study's grid choice
    is that floor and power 1, and its per-bin RMS of the raw residual matches numpy."""
    rss = pytest.importorskip("residual_scale_study")
    rng = np.random.default_rng(0)
    D = np.concatenate([np.zeros(20000), 10 ** rng.uniform(-3, 0.7, 80000)])
    r = (D + 0.03) * rng.standard_normal(D.size)
    res = rss.study(D, r)
    assert res["choice"] == {"floor": 0.03, "power": 1.0}
    best = next(g for g in res["grid"] if g["floor"] == 0.03 and g["power"] == 1.0)
    assert best["evenness"] < 1.1
    sel = (D >= 0.1) & (D < 0.3)
    b = next(b for b in res["residual_rms_per_bin"] if b["D_from"] == 0.1)
    assert b["n"] == sel.sum()
    assert b["rms"] == pytest.approx(np.sqrt(np.mean(r[sel] ** 2)), rel=1e-9)


def test_loeo_table_says_how_each_fold_scaled_the_residual(tmp_path):
    """The card's description names the residual scaling: once when the folds agree, fold by
    fold when they differ (e.g. three folds by the mean, one with the global scale)."""
    package_model = pytest.importorskip("package_model")
    res = {"nearest": {"crps": 0.2, "pitd": 0.1, "pe99": 1.0, "lsd": 0.5}}

    def fold(event, protocol):
        d = tmp_path / f"loeo_10x3_{event}"
        d.mkdir(exist_ok=True)
        (d / "results.json").write_text(json.dumps({"results": res, "protocol": protocol}))

    fold("knmi2010", {"residual_power": 1.0, "residual_floor": 0.1})
    fold("fmi2016", {"residual_power": 1.0, "residual_floor": 0.1})
    same = package_model.loeo_table(tmp_path, 10, 3)["description"]
    assert same.endswith(" The residual of the diffusion stage was scaled by (D + 0.1) ** 1 (`residual_power`).")
    fold("mch2016", {})
    mixed = package_model.loeo_table(tmp_path, 10, 3)["description"]
    assert mixed.endswith(" The residual of the diffusion stage was scaled differently per fold "
                          "(mch2016: the global scale (`residual_power` 0); "
                          "fmi2016, knmi2010: scaled by (D + 0.1) ** 1).")
    fold("fmi2016", {})
    fold("knmi2010", {})
    assert "residual" not in package_model.loeo_table(tmp_path, 10, 3)["description"]
    # folds scored with another threshold at inference say so; mixed thresholds are refused
    for e in ("fmi2016", "knmi2010", "mch2016"):
        fold(e, {"infer_threshold": 0.0, "trained_threshold": 0.02})
    assert package_model.loeo_table(tmp_path, 10, 3)["description"].endswith(
        " Scored with the threshold a = 0 at inference (trained with 0.02; `--infer-threshold`).")
    fold("mch2016", {})
    with pytest.raises(ValueError, match="different thresholds"):
        package_model.loeo_table(tmp_path, 10, 3)
    # likewise the residual factor
    for e in ("fmi2016", "knmi2010", "mch2016"):
        fold(e, {"infer_residual_factor": 0.75})
    assert package_model.loeo_table(tmp_path, 10, 3)["description"].endswith(
        " Scored with the residual scale x 0.75 at inference (`--infer-residual-factor`).")
    fold("mch2016", {})
    with pytest.raises(ValueError, match="different residual factors"):
        package_model.loeo_table(tmp_path, 10, 3)


def test_set_threshold_resaves_the_same_weights_with_the_new_threshold(tmp_path):
    """package_model --rescore NAME --threshold A: the packaged model is re-saved with the
    threshold of its output changed, bit-identical weights, the card keeping the trained value."""
    import shutil

    package_model = pytest.importorskip("package_model")
    src = Path(__file__).resolve().parent.parent / "xsuperres" / "weights" / "radar-s10-t3"
    dest = shutil.copytree(src, tmp_path / "radar-s10-t3")
    before = xs.SRModel.load(dest)
    package_model.set_threshold(dest, 0.005, "chosen on held-out events")
    after = xs.SRModel.load(dest)  # the new configuration binding verifies
    assert after.config == before.config.replace(threshold=0.005)
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items())
    assert after.card["config"]["threshold"] == 0.005
    trained = before.card["training"].get("threshold_trained", before.config.threshold)
    assert after.card["training"]["threshold_trained"] == trained  # the value training used
    md = package_model.card_markdown(after.card)
    assert (f"The threshold a was {trained:g} in training and is 0.005 at inference: "
            "chosen on held-out events") in md
    # a card whose threshold is the trained one has no such sentence
    same = {**before.card, "config": {**before.card["config"], "threshold": trained}}
    assert "in training and is" not in package_model.card_markdown(same)


def test_spectral_departure_shares_sum_to_the_lsd():
    """scripts/spectra_study.py: the per-radius shares add up to the project's LSD of the same
    pooled frames, and dry truth frames are counted and scored apart."""
    spectra_study = pytest.importorskip("spectra_study")
    import xsuperres.metrics as xm

    rng = np.random.default_rng(3)
    truth = rng.gamma(0.5, 2.0, (4, 3, 16, 16)) * (rng.random((4, 3, 16, 16)) < 0.6)
    truth[1, 2] = 0.0  # one dry frame
    pred = truth[:, None] * rng.uniform(0.5, 1.5, (4, 2, 3, 16, 16))
    r = spectra_study.spectral_departure(pred, truth)
    pooled = (pred.transpose(1, 0, 2, 3, 4).reshape(2, 12, 16, 16), truth.reshape(12, 16, 16))
    assert r["lsd"] == pytest.approx(xm.lsd(*pooled), rel=1e-12)
    assert sum(r["lsd_share"]) == pytest.approx(r["lsd"], rel=1e-12)
    assert (r["dry_frames"], r["frames"]) == (1, 12)
    assert r["lsd_dry_truth"] == 0.0  # pred is 0 wherever the truth is: both spectra the same
    assert r["lsd"] == pytest.approx(11 / 12 * r["lsd_wet_truth"], rel=1e-12)


def test_set_residual_factor_rescales_only_the_residual(tmp_path):
    """scripts/package_model.py --residual-factor: the packaged model is re-saved with its
    residual scale times K, the same weights, and the card keeps the trained scale and why."""
    package_model = pytest.importorskip("package_model")
    from xsuperres.model import SRModel

    shipped = Path(__file__).resolve().parent.parent / "xsuperres" / "weights" / "radar-s1-t3"
    dest = tmp_path / "radar-s1-t3"
    dest.mkdir()
    for f in shipped.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    before = SRModel.load(dest)
    package_model.set_residual_factor(dest, 0.75, "chosen on a fold")
    after = SRModel.load(dest)
    # the factor applies to the trained scale (the card's record where the shipped model has one)
    rs = before.card["training"].get("residual_scale_trained", before.normalization["residual_scale"])
    assert after.normalization["residual_scale"] == pytest.approx(0.75 * rs, rel=1e-12)
    assert {k: v for k, v in after.normalization.items() if k != "residual_scale"} == \
        {k: v for k, v in before.normalization.items() if k != "residual_scale"}
    for (k, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.equal(a, b), k
    assert after.config == before.config
    tr = after.card["training"]
    assert tr["residual_scale_trained"] == pytest.approx(rs) and tr["residual_note"] == "chosen on a fold"
    package_model.set_residual_factor(dest, 0.5, "again")  # relative to the trained scale, not compounded
    assert SRModel.load(dest).normalization["residual_scale"] == pytest.approx(0.5 * rs, rel=1e-12)
    assert SRModel.load(dest).metadata["residual_scale_trained"] == pytest.approx(rs, rel=1e-12)
    md = package_model.card_markdown(SRModel.load(dest).card)
    assert f"The residual scale was {rs:.4g} (normalized) in training and is {0.5 * rs:.4g} at inference: again" in md
    with pytest.raises(ValueError, match=r"factor must be a finite number > 0"):
        package_model.set_residual_factor(dest, 0.0, "no")


def test_event_study_box_is_the_wettest_fully_covered_one():
    event_study = pytest.importorskip("event_study")
    import xarray as xr

    rain = np.zeros((3, 8, 8), np.float32)
    rain[:, 0:2, 0:2] = 9.0  # the wettest 4 x 4 corner, but a no-data pixel below
    rain[1, 3, 1] = np.nan
    rain[:, 4:6, 6:8] = 2.0  # the wettest covered box on the 2-px grid is y 4:8, x 4:8
    rain[0, 6, 4] = 1.0
    da = xr.DataArray(rain, dims=("time", "y", "x"), name="precip")
    # an independent loop: every covered box on the grid and its total
    best = max((np.nansum(rain[:, y:y + 4, x:x + 4]), y, x) for y in range(0, 5, 2) for x in range(0, 5, 2)
               if not np.isnan(rain[:, y:y + 4, x:x + 4]).any())
    assert (best[1], best[2]) == (4, 4)
    assert event_study.wettest_covered_box(da, 4, 2) == (slice(4, 8), slice(4, 8))
    with pytest.raises(ValueError, match="no 8 x 8 px box of 'precip'"):
        event_study.wettest_covered_box(da, 8, 2)


def test_renote_rewrites_only_the_notes(tmp_path):
    """scripts/package_model.py --renote: the notes change, everything else of the card and
    the weights' files stay byte for byte; a note for a setting never changed is refused."""
    package_model = pytest.importorskip("package_model")
    shipped, dest = card_copy(tmp_path, "radar-s1-t3")
    before = json.loads((dest / "card.json").read_text())
    assert package_model.main(["--renote", "radar-s1-t3", "--residual-note", "confirmed on two folds",
                               "--out", str(tmp_path / "weights")]) == 0
    after = json.loads((dest / "card.json").read_text())
    assert after["training"]["residual_note"] == "confirmed on two folds"
    assert after["training"]["threshold_note"] == before["training"]["threshold_note"]
    after["training"]["residual_note"] = before["training"]["residual_note"]
    assert after == before
    assert "confirmed on two folds" in (dest / "model_card.md").read_text()
    assert (dest / "config.json").read_bytes() == (shipped / "config.json").read_bytes()
    card = json.loads((dest / "card.json").read_text())
    del card["training"]["threshold_note"]
    (dest / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="no threshold_note to rewrite"):
        package_model.set_notes(dest, threshold_note="x")
    with pytest.raises(SystemExit):  # nothing to rewrite
        package_model.main(["--renote", "radar-s1-t3", "--out", str(tmp_path / "weights")])
