#!/usr/bin/env python
"""Turn a ``scripts/train_shared.py`` run into a shipped pretrained model.

For a run folder ``RUN`` (holding ``RUN/model`` and ``RUN/results.json``) this

1. rebuilds the run's validation samples from the same files, crop, tiles, fold, seed,
   stride and ``--max-eval`` subset (the split is deterministic) and checks that the
   bicubic score comes out exactly as the run recorded it (so the baselines below are
   scored on the very samples the model was scored on);
2. scores nearest neighbour on them (runs older than that baseline lack it);
3. saves the model as fp16 safetensors (``SRModel.save(dtype="float16")``) into
   ``OUT/NAME/`` and reloads it to score the deterministic mean again with the fp16
   weights (reported next to the fp32 number);
4. writes the model card: ``model_card.md`` (for people) and ``card.json`` (the same
   facts, for programs).

Register the result afterwards with::

    python -m xsuperres.pretrained xsuperres/weights -o xsuperres/weights/registry.txt

Usage::

    python scripts/package_model.py /work/keep/shared_10x3 radar-s10-t3 [--loeo RUNS]

``--refresh-loeo NAME --loeo RUNS`` only rewrites the leave-one-event-out table of an
already packaged card from newer folds (the run folder is not needed).
``--rescore NAME`` re-scores the deterministic and full-model rows of a packaged card with
the shipped (float16) weights and the current inference defaults, on the card's own
validation samples (rebuilt from the card; the run folder is not needed), e.g. after a
change of what ``mass_conservation="auto"`` picks. ``--rescore NAME --threshold A
--threshold-note TEXT`` first re-saves the model with the threshold ``a`` of its output set
to ``A`` (``SRModel.with_config``; same weights), the card keeping the trained value;
``--residual-factor K --residual-note TEXT`` likewise multiplies the residual scale the
members' departures from the mean are scaled back with (a spread deflation, K < 1, or
inflation at inference; same weights), the card keeping the trained scale.
``--renote NAME --threshold-note TEXT`` (and/or ``--residual-note TEXT``) only rewrites
why an earlier ``--threshold`` (``--residual-factor``) was chosen, e.g. after another fold
confirmed it (weights, scores and the setting untouched).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_shared as ts  # noqa: E402
from heldout import scores, temporal_peer, validation_arrays  # noqa: E402

from xsuperres.config import inference_mass_conservation  # noqa: E402
from xsuperres.model import SRModel  # noqa: E402
from xsuperres.nn.baselines import bicubic_baseline, nearest_baseline  # noqa: E402

DATA_LICENCES = {
    "knmi": "KNMI radar composite (De Bilt + Den Helder), KNMI open data, CC BY 4.0",
    "mch": "MeteoSwiss radar composite (AQC), MeteoSwiss data (cite MeteoSwiss)",
    "fmi": "FMI radar composite, rain rate from Z = 223 R^1.53, FMI open data, CC BY 4.0",
}


def rebuild_validation(doc: dict, data_dir: str):
    """Validation contexts and truths of a run, as train_shared.py evaluated them."""
    cfg_d = doc["config"]
    n = doc["n_samples"]
    argv = ["--data-dir", data_dir, "--files", *doc["files"], "--crop", doc["crop_rows_cols"],
            "--S", str(cfg_d["S"]), "--T", str(cfg_d["T"]), "--tile-size", str(cfg_d["tile_size"]),
            "--preset", cfg_d["preset"], "--seed", str(doc["protocol"]["seed"]),
            "--stride", str(n.get("stride", 1))]
    proto = doc.get("protocol", {})
    if proto.get("valid_event"):
        argv += ["--valid-event", proto["valid_event"]]
    if proto.get("cap_quantile") not in (None, 0.995):
        argv += ["--cap-quantile", str(proto["cap_quantile"])]
    if cfg_d.get("clip") is False:
        argv += ["--no-clip"]
    if cfg_d.get("lookahead"):
        argv += ["--lookahead", str(cfg_d["lookahead"])]
    if cfg_d.get("mass_conservation") == "block":
        argv += ["--mass-conservation", "block"]
    args = ts.parse(argv)
    td = ts.training_data(ts.load_events(args), args)
    if (len(td.train), len(td.valid)) != (n["train"], n["valid"]):
        raise RuntimeError(f"rebuilt split has {len(td.train)}/{len(td.valid)} samples, the run had "
                           f"{n['train']}/{n['valid']}")
    ctx, truth, where = validation_arrays(td)
    if n["evaluated"] < len(ctx):
        idx = ts.eval_subset(len(ctx), n["evaluated"])
        ctx, truth = ctx[idx], truth[idx]
    return ctx, truth, td


def load_run(run: Path, data_dir: str, threshold: float | None = None):
    """A ``train_shared.py`` run folder's ``results.json``, its model (with the threshold ``a``
    of its output set to ``threshold`` if given) and its rebuilt validation samples:
    ``(doc, model, ctx, truth, td)``."""
    doc = json.loads((run / "results.json").read_text())
    model = SRModel.load(run / "model")
    if threshold is not None:
        model = model.with_config(threshold=threshold)
    ctx, truth, td = rebuild_validation(doc, data_dir)
    return doc, model, ctx, truth, td


def validation_motion_mean(td, n: int):
    """The motion-compensated interpolation in time (mm/h, ``(n, T, H, W)``) of the ``n``
    validation samples that :func:`rebuild_validation` returns for ``td``: the mean that
    the members of a model trained with ``--diffusion-mean motion`` are sampled around in
    the "full model around the motion mean" rows (it uses the LR step after the block)."""
    return temporal_peer(td, "motion", validation_records(td, n))[:, 0]


def validation_records(td, n: int):
    """The records of the ``n`` validation samples that :func:`rebuild_validation` returns
    for ``td`` (``train_shared.py``'s ``--max-eval`` subset when ``n`` is smaller)."""
    records = td.valid.records
    return records[ts.eval_subset(len(records), n)] if n < len(records) else records


def check_same_samples(ctx, truth, S: int, T: int, recorded_bicubic_crps: float) -> None:
    """Raise unless bicubic scores the rebuilt samples exactly as recorded (same samples)."""
    bic = scores(bicubic_baseline(torch.from_numpy(ctx), S, T).numpy()[:, None], truth)
    if abs(bic["crps"] - recorded_bicubic_crps) > 1e-6:
        raise RuntimeError(f"rebuilt validation set differs: bicubic CRPS {bic['crps']} vs "
                           f"{recorded_bicubic_crps} recorded")


def stage_minutes(doc: dict, stage: str) -> float:
    """Minutes of training of ``stage`` ("mean" or "diffusion") of a train_shared.py run.

    The run's recorded stage time, or the sum of the stage's epoch times when that is
    larger: a run resumed from checkpoints records only the epochs it ran itself (e.g. 0
    for a mean stage taken over from another run's checkpoints)."""
    recorded = doc["wall_time_min"][f"{stage}_stage"]
    epochs = sum(doc.get("history", {}).get(stage, {}).get("wall_s", [])) / 60
    return max(recorded, epochs)


def _row(r: dict) -> str:
    return " | ".join(f"{r[k]:.4f}" for k in ("crps", "pitd", "pe99", "lsd", "mae", "pit_outer_fraction"))


def card_markdown(card: dict) -> str:
    c = card["config"]
    tr = card["training"]
    lines = [
        f"# {card['name']}: xsuperres tiny model, S = {c['S']}, T = {c['T']} (radar precipitation, 5 min)",
        "",
        card["summary"],
        "",
        "## Configuration",
        "",
        "| S | T | L | beta_max | F: exponent p | F: threshold a (normalized) | mass conservation (training) "
        "| preset | tile (HR px) | cadence | cap (mm/h) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {c['S']} | {c['T']} | {c['L']} | {c['beta_max']} | {c['power']} | {c['threshold']} | "
        f"{c['mass_conservation']} | {c['preset']} | {c['tile_size']} | {c['time_step']} | {c['cap']:.3f} |",
        "",
        *([f"The threshold a was {tr['threshold_trained']:g} in training and is {c['threshold']:g} at inference: "
           f"{tr['threshold_note']}", ""] if tr.get("threshold_trained", c["threshold"]) != c["threshold"] else []),
        *([f"The residual scale was {tr['residual_scale_trained']:.4g} (normalized) in training and is "
           f"{tr['residual_scale_inference']:.4g} at inference: {tr['residual_note']}", ""]
          if "residual_note" in tr else []),
        f"Parameters: U_det {card['parameters']['mean_net']:,}, U_dif {card['parameters']['diffusion_net']:,}. "
        f"Weights stored as {card['weights_dtype']} safetensors.",
        "",
        "## Data",
        "",
        "5-minute radar composites from `../shared/data` of the xsuperres repository (pysteps-data "
        + ("conversions), their full grids (1 km pixels):" if card["data"]["crop_rows_cols"] == "all" else
           f"conversions), each cropped to rows/cols {card['data']['crop_rows_cols']} (a "
           f"{card['data']['crop_km']} km box, 1 km pixels):"),
        "",
    ]
    for name, (a, b) in card["data"]["periods"].items():
        lines.append(f"- `{name}`: {a} to {b} UTC; {card['data']['licences'][name]}")
    lines += [
        "",
        "No topography input (zeros): these files have none.",
        "",
        "## Tiles, folds and training",
        "",
        f"- Tiles of {c['tile_size']} x {c['tile_size']} HR px, a {card['data']['tile_grid']} grid per event; "
        "Latin-square fold 0 of 4 (the diagonal tiles of every event) held out for validation, "
        "the other tiles train.",
        f"- Samples: {tr['n_train']} train, {tr['n_valid']} validation"
        + (f" (every {tr['stride']}{ {2: 'nd', 3: 'rd'}.get(tr['stride'], 'th')} sample kept)"
           if tr["stride"] > 1 else "") + ".",
        f"- Deterministic mean: {tr['mean_epochs_run']} epochs (best {tr['mean_best_epoch']}); residual "
        f"diffusion: {tr['diffusion_epochs_run']} epochs (best {tr['diffusion_best_epoch']}), trained around "
        + ("`U_det`'s mean" if tr.get("diffusion_mean", "network") == "network" else
           f"the {tr['diffusion_mean']} mean of `xsuperres.temporal` (`train(..., diffusion_mean="
           f"\"{tr['diffusion_mean']}\")`), the mean `downscale` samples around by default")
        + (f", the residual divided by `residual_scale * (D + {tr['residual_floor']}) ** "
           f"{tr['residual_power']:g}` (a scale that grows with the mean, `residual_power`)"
           if tr.get("residual_power") else "")
        + ("; every training sample turned by a random rotation/reflection" if tr.get("augment") else "")
        + "; Adam, "
        f"lr {tr['lr']}, cosine annealing, batch {tr['batch_size']}, early-stopping patience "
        f"{tr['patience']}, best weights kept, seed {tr['seed']}.",
        f"- Wall time: mean stage {tr['wall_time_min']['mean_stage']:.1f} min, diffusion stage "
        f"{tr['wall_time_min']['diffusion_stage']:.1f} min, on {card['machine']}."
        + (f" The mean network is that of `{tr['mean_from']}` before this run (its mean stage's time); "
           "this run trained the diffusion stage only." if tr.get("mean_from") else ""),
        "",
        "## Held-out scores",
        "",
        f"{card['evaluation']['description']}" + (f" {card['evaluation']['rescored']}"
                                                  if card["evaluation"].get("rescored") else ""),
        "",
        "| method | CRPS (mm/h) | PITD | pe99 (mm/h) | LSD | MAE (mm/h) | PIT outer-decile share |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in card["scores"].items():
        lines.append(f"| {name} | {_row(r)} |")
    lines += [
        "",
        "Lower is better for every column (the PIT outer-decile share is 0.2 for a calibrated "
        "ensemble). For a deterministic method CRPS equals MAE.",
        "",
        f"fp16 check: deterministic-mean CRPS {card['fp16_check']['fp16']:.4f} with the shipped fp16 "
        f"weights vs {card['fp16_check']['fp32']:.4f} with the fp32 weights it was trained as.",
        "",
    ]
    if card.get("loeo"):
        lo = card["loeo"]
        evs = list(lo["events"])
        lines += ["## Leave-one-event-out", "",
                  f"{lo['description']}", "",
                  "| method | " + " | ".join(f"{e}: CRPS / PITD / pe99 / LSD" for e in evs) + " |",
                  "|---|" + "---|" * len(evs)]
        for m in lo["methods"]:
            cells = []
            for e in evs:
                r = lo["events"][e].get(m)
                cells.append(" / ".join(f"{r[k]:.3f}" if k in r else "-" for k in LOEO_METRICS) if r else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Where it does not win",
        "",
    ]
    lines += [f"- {w}" for w in card["caveats"]]
    lines += ["", "## Use", "", "```python", "import xsuperres",
              f'model = xsuperres.load_model("{card["name"]}")',
              f"hr = lr.stsr.downscale(model, n_members=3)   # lr: 5-min precipitation in mm/h, "
              f"coarsened by S={c['S']}, T={c['T']}", "```", ""]
    if c["S"] == 1 and c["T"] > 1:
        lines += ["For this temporal model the default `mean=\"auto\"` samples the members around "
                  "the motion-compensated interpolation of the LR steps (`mean=\"motion\"`; it uses "
                  "the step after each block and needs `pip install \"xsuperres[peers]\"`); "
                  "`mean=\"network\"` is the preprint's `U_det` mean. See docs/downscale.md.", ""]
    return "\n".join(lines)


def caveats(scores: dict, full: str, valid_event: str | None = None, minutes: float = 40.0) -> list[str]:
    """Plain statements of every metric where a baseline or peer beats the full model."""
    out = []
    f = scores[full]
    peers = [k for k in scores if k.startswith(("RainFARM", "EDSR", "linear in time", "motion-compensated"))]
    for base in ("bicubic", "nearest", *peers, "deterministic (U_det + MC)"):
        worse = [m for m in ("crps", "pitd", "pe99", "lsd") if scores[base][m] < f[m]]
        if worse:
            out.append(f"{base} beats the full model on " + ", ".join(
                f"{m.upper()} ({scores[base][m]:.4f} vs {f[m]:.4f})" for m in worse) + ".")
    if "pitd_floor" in f and "pitd_randomized" in f:
        rnd = {k: r["pitd_randomized"] for k, r in scores.items() if "pitd_randomized" in r}
        out.append(f"PITD (mid-rank) of the full model {f['pitd']:.4f}; the truth itself, as a one-member "
                   f"forecast, scores {f['pitd_floor']:.4f} (the ties of dry pixels, docs/metrics.md). With "
                   f"randomized ties the full model has {f['pitd_randomized']:.4f}, the others "
                   + ", ".join(f"{k.split(' (')[0]} {v:.4f}" for k, v in rnd.items() if k != full) + ".")
    det = scores["deterministic (U_det + MC)"]
    for base in ("bicubic", "nearest"):
        if scores[base]["crps"] <= det["crps"]:
            out.append(f"The deterministic mean alone does not beat {base} on CRPS/MAE "
                       f"({det['crps']:.4f} vs {scores[base]['crps']:.4f}).")
    if scores["bicubic"] == scores["nearest"]:
        out.append("With S = 1 bicubic and nearest coincide: both repeat the LR frame over the T steps.")
    if f["mae"] > det["mae"]:
        out.append(f"MAE of single members ({f['mae']:.4f} mm/h) is worse than the deterministic mean's "
                   f"({det['mae']:.4f}): members are samples, not estimates of the mean; use the "
                   "ensemble mean for a point forecast.")
    if valid_event:
        out.append(f"The scores are on the left-out event {valid_event}, which also selected the best "
                   "epoch (validation scores): scores on other days and radars may be worse.")
    else:
        out.append("Validation tiles come from the same days as the training tiles (spatial hold-out "
                   "only) and select the best epoch: scores on other days and radars will be worse "
                   "(the leave-one-event-out scores, where given, are the better guide). "
                   f"A tiny model trained in {minutes:.0f} minutes on a CPU, not the preprint's standard model.")
    return out


#: the metrics of the leave-one-event-out table (the retraining issue's targets)
LOEO_METRICS = ("crps", "pitd", "pe99", "lsd")


def _residual_scaling_sentence(folds: dict) -> str:
    """How the folds scaled the diffusion stage's residual, fold by fold where they differ."""
    def scaling(d: dict) -> str:
        pr = d.get("protocol", {})
        power = pr.get("residual_power") or 0.0
        return f"by (D + {pr.get('residual_floor')}) ** {power:g}" if power else ""

    by = {e: scaling(d) for e, d in folds.items()}
    kinds = set(by.values())
    if kinds == {""}:
        return ""
    if len(kinds) == 1:
        return f" The residual of the diffusion stage was scaled {kinds.pop()} (`residual_power`)."
    parts = [f"{', '.join(e for e in by if by[e] == k)}: "
             + (f"scaled {k}" if k else "the global scale (`residual_power` 0)") for k in sorted(kinds)]
    return f" The residual of the diffusion stage was scaled differently per fold ({'; '.join(parts)})."


def _inference_setting(folds: dict, runs: Path, key: str, what: str):
    """The inference-time setting ``protocol[key]`` the folds were scored with (``None``:
    the trained one); folds scored with different ones are refused."""
    values = {d.get("protocol", {}).get(key) for d in folds.values()}
    if len(values) > 1:
        raise ValueError(f"the folds under {runs} were scored with different {what} {values}")
    return values.pop()


def loeo_table(runs: Path, S: int, T: int, clip: bool | None = None,
               epochs: tuple[int, int] | None = None) -> dict:
    """The leave-one-event-out rows (CRPS, PITD, pe99, LSD per left-out event) of ``runs``.

    ``clip``: the shipped model's ``config.clip``; ``epochs``: its (mean, diffusion) epoch
    budget. The description says so when the folds were trained with the other
    representation or another budget."""
    from loeo import _method_key, load_folds

    folds = load_folds(runs, f"{S}x{T}").get(f"{S}x{T}", {})
    if not folds:
        raise FileNotFoundError(f"no loeo_{S}x{T}_*/results.json under {runs}")
    events = {e: {_method_key(n): {m: r[m] for m in LOEO_METRICS if m in r}
                  for n, r in d["results"].items()} for e, d in folds.items()}
    methods = list(dict.fromkeys(m for ev in events.values() for m in ev))
    d0 = next(iter(folds.values()))
    dm = d0["protocol"].get("diffusion_mean", "network")
    fold_clip = d0["config"].get("clip", True) if "config" in d0 else None
    rep = ("" if clip is None or fold_clip is None or fold_clip == clip else
           f" The folds were trained {'with' if fold_clip else 'without'} the clip of inputs and targets "
           f"at the cap, this model {'with' if clip else 'without'} it.")
    rep += _residual_scaling_sentence(folds)
    a = _inference_setting(folds, runs, "infer_threshold", "thresholds")
    if a is not None:
        rep += (f" Scored with the threshold a = {a:g} at inference (trained with "
                f"{d0['protocol'].get('trained_threshold'):g}; `--infer-threshold`).")
    k = _inference_setting(folds, runs, "infer_residual_factor", "residual factors")
    if k is not None:
        rep += f" Scored with the residual scale x {k:g} at inference (`--infer-residual-factor`)."
    fold_epochs = tuple(d0.get("protocol", {}).get(k) for k in ("mean_epochs", "diffusion_epochs"))
    if epochs is not None and None not in fold_epochs and fold_epochs != tuple(epochs):
        rep += (f" The folds trained {fold_epochs[0]} mean and {fold_epochs[1]} diffusion epochs, "
                f"this model {epochs[0]} and {epochs[1]}.")
    return {"source": f"scripts/loeo.py runs ({runs.name}), docs/results/loeo.md",
            "description": (
                "Each column is a model trained like this one on the three other 5-min events "
                "(full grids) and scored on the left-out one (at most 300 samples of its whole grid; "
                "CRPS and pe99 in mm/h); the left-out event chose the best epochs, so these are validation "
                f"scores. Diffusion stage trained around the {'`U_det`' if dm == 'network' else dm} mean"
                + ("; `full model` samples around `U_det`'s mean, `full model around the motion mean` "
                   "around motion-compensated interpolation (the default of `downscale` for this model)."
                   if S == 1 and T > 1 else ".") + rep),
            "methods": methods, "events": events}


def refresh_loeo(dest: Path, runs: Path) -> dict:
    """Rewrite the leave-one-event-out table of the packaged model ``dest`` (its
    ``card.json`` and ``model_card.md``) from the folds under ``runs``; everything else of
    the card, and the weights, stay as they are. Returns the new card."""
    card = json.loads((dest / "card.json").read_text())
    c, tr = card["config"], card["training"]
    card["loeo"] = loeo_table(runs, c["S"], c["T"], c.get("clip"),
                              (tr["mean_epochs_run"], tr["diffusion_epochs_run"]))
    write_card(dest, card)
    return card


def summary_text(S: int, T: int, mc_train: str, mc_infer: str) -> str:
    """The card's one-paragraph summary."""
    return (f"Scale-adaptive super-resolution of 5-min radar precipitation by S = {S} in space "
            f"and T = {T} in time: deterministic attention U-Net with {mc_train} mass conservation "
            f"in training ({mc_infer} at inference, the default `mass_conservation=\"auto\"`) "
            "for the conditional mean plus a residual diffusion model for the ensemble, "
            "trained with `xsuperres.train` machinery by `scripts/train_shared.py` and packaged "
            "by `scripts/package_model.py`.")


def doc_from_card(card: dict) -> dict:
    """The parts of a run's ``results.json`` that :func:`rebuild_validation` reads, from a
    packaged card (a model trained on the tile fold, no left-out event)."""
    tr = card["training"]
    return {"config": card["config"], "files": card["data"]["files"],
            "crop_rows_cols": card["data"]["crop_rows_cols"],
            "n_samples": {"train": tr["n_train"], "valid": tr["n_valid"], "stride": tr["stride"],
                          "evaluated": card["evaluation"]["n_samples"]},
            "protocol": {"seed": tr["seed"]}}


def set_threshold(dest: Path, threshold: float, why: str) -> None:
    """Re-save the packaged model ``dest`` with the threshold ``a`` of its output set to
    ``threshold`` (``SRModel.with_config``: the same float16 weights, a new configuration
    binding); the card records the trained value and ``why``."""
    model = SRModel.load(dest)
    card = model.card
    tr = card["training"]
    tr.setdefault("threshold_trained", model.config.threshold)
    tr["threshold_note"] = why
    new = model.with_config(threshold=threshold)
    card["config"] = new.config.to_dict()
    new.card = card
    new.save(dest, dtype=card.get("weights_dtype", "float16"))


def set_notes(dest: Path, threshold_note: str = "", residual_note: str = "") -> dict:
    """Rewrite why the packaged model ``dest``'s inference threshold and/or residual scale
    differ from the trained ones (its ``card.json`` and ``model_card.md``; the weights, the
    configuration and the scores stay as they are). Returns the new card."""
    card = json.loads((dest / "card.json").read_text())
    tr = card["training"]
    for note, key, what in ((threshold_note, "threshold_note", "--threshold"),
                            (residual_note, "residual_note", "--residual-factor")):
        if note:
            if key not in tr:
                raise ValueError(f"{dest.name}: its card has no {key} to rewrite; set the value with "
                                 f"--rescore {dest.name} {what} ... first")
            tr[key] = note
    write_card(dest, card)
    return card


def set_residual_factor(dest: Path, factor: float, why: str) -> None:
    """Re-save the packaged model ``dest`` with its residual scale multiplied by ``factor``
    (same weights: the diffusion network still models the residual scaled by the trained
    value, so its members' departures from the mean come out ``factor`` times as large);
    the card records the trained scale and ``why``."""
    model = SRModel.load(dest)
    card = model.card
    tr = card["training"]
    trained = tr.setdefault("residual_scale_trained", float(model.normalization["residual_scale"]))
    # relative to the trained scale, so that a second --residual-factor replaces the first
    new = model.with_residual_factor(trained * factor / float(model.normalization["residual_scale"]))
    new.metadata["residual_scale_trained"] = trained  # the card's record (older models lack the metadata's)
    tr["residual_scale_inference"] = float(new.normalization["residual_scale"])
    tr["residual_note"] = why
    new.card = card
    new.save(dest, dtype=card.get("weights_dtype", "float16"))


def rescore(dest: Path, data_dir: str) -> dict:
    """Re-score the deterministic and full-model rows of the packaged model ``dest`` with
    its shipped weights and the current ``mass_conservation="auto"``, on the card's
    validation samples (checked against the card's bicubic score); rewrite the card.
    Other rows, the weights and the leave-one-event-out table stay. Returns the card."""
    card = json.loads((dest / "card.json").read_text())
    ctx, truth, td = rebuild_validation(doc_from_card(card), data_dir)
    res = card["scores"]
    S, T = card["config"]["S"], card["config"]["T"]
    check_same_samples(ctx, truth, S, T, res["bicubic"]["crps"])
    model = SRModel.load(dest)
    mc = inference_mass_conservation(model.config) or "none"
    det = "deterministic (U_det + MC)"
    res[det] = scores(model.predict_mean(ctx, device="cpu")[:, None], truth)
    fulls = [k for k in res if k.startswith("full")]
    motion = None
    for name in fulls:
        m = re.fullmatch(r"full model( around the motion mean)? \((\w+), (\d+) steps, (\d+) members\)", name)
        if m is None:
            raise ValueError(f"cannot re-score the row {name!r}")
        if m.group(1) and motion is None:
            motion = validation_motion_mean(td, len(ctx))
        ens = model.predict(ctx, n_members=int(m.group(4)), sampler=m.group(2), steps=int(m.group(3)),
                            seed=card["training"]["seed"], device="cpu", mean=motion if m.group(1) else None)
        res[name] = scores(ens, truth)
    best = min(fulls, key=lambda k: res[k]["crps"])
    card["summary"] = summary_text(S, T, model.config.mass_conservation or "no", mc)
    ev = card["evaluation"]
    ev["description"] = re.sub(r"use \S+ mass conservation", f"use {mc} mass conservation", ev["description"])
    ev["rescored"] = (f"The deterministic and full-model rows were re-scored with the shipped float16 "
                      f"weights, threshold a = {model.config.threshold:g} and "
                      f"`mass_conservation=\"auto\"` = {mc} (xsuperres "
                      f"{json.loads((dest / 'config.json').read_text())['xsuperres_version']}); the "
                      "leave-one-event-out table keeps the scores of its folds.")
    card["caveats"] = caveats(res, best, None, sum(card["training"]["wall_time_min"].values()))
    write_card(dest, card)
    return card


def write_card(dest: Path, card: dict) -> None:
    """``card.json`` (for programs) and ``model_card.md`` (for people) of ``card`` in ``dest``."""
    (dest / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    (dest / "model_card.md").write_text(card_markdown(card))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent.parent
    p.add_argument("run", nargs="?", help="train_shared.py output folder (model/ and results.json)")
    p.add_argument("name", nargs="?", help="registry name, e.g. radar-s10-t3")
    p.add_argument("--out", default=str(here / "xsuperres" / "weights"))
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--loeo", default=None,
                   help="folder of scripts/loeo.py runs (loeo_{S}x{T}_EVENT) whose table goes into the card")
    p.add_argument("--refresh-loeo", metavar="NAME", default=None,
                   help="only rewrite the leave-one-event-out table of the packaged card OUT/NAME from "
                        "--loeo (weights and held-out scores untouched, nothing re-scored; no RUN needed)")
    p.add_argument("--rescore", metavar="NAME", default=None,
                   help="only re-score the deterministic and full-model rows of the packaged card OUT/NAME "
                        "with its shipped weights and the current inference defaults (no RUN needed)")
    p.add_argument("--threshold", type=float, default=None, metavar="A",
                   help="with --rescore: first re-save OUT/NAME with the threshold a of its output set to A "
                        "(same weights; the card keeps the trained value and --threshold-note)")
    p.add_argument("--threshold-note", default="",
                   help="with --threshold: why (e.g. the leave-one-event-out scores that chose it)")
    p.add_argument("--residual-factor", type=float, default=None, metavar="K",
                   help="with --rescore: first re-save OUT/NAME with its trained residual scale times K "
                        "(same weights; the card keeps the trained scale and --residual-note)")
    p.add_argument("--residual-note", default="", help="with --residual-factor: why")
    p.add_argument("--renote", metavar="NAME", default=None,
                   help="only rewrite the packaged card OUT/NAME's --threshold-note and/or --residual-note "
                        "(the settings, weights and scores untouched)")
    args = p.parse_args(argv)
    if args.renote:
        if (args.run is not None or args.rescore or args.threshold is not None or args.residual_factor is not None
                or not (args.threshold_note or args.residual_note)):
            p.error("--renote NAME takes --threshold-note and/or --residual-note and nothing else")
        print(card_markdown(set_notes(Path(args.out) / args.renote, args.threshold_note, args.residual_note)))
        return 0
    if (args.threshold is not None or args.residual_factor is not None) and not args.rescore:
        p.error("--threshold A and --residual-factor K go with --rescore NAME")
    if args.rescore:
        if args.run is not None:
            p.error("--rescore NAME takes no RUN/NAME arguments")
        torch.set_num_threads(args.threads)
        if args.threshold is not None:
            set_threshold(Path(args.out) / args.rescore, args.threshold, args.threshold_note)
        if args.residual_factor is not None:
            set_residual_factor(Path(args.out) / args.rescore, args.residual_factor, args.residual_note)
        card = rescore(Path(args.out) / args.rescore, args.data_dir)
        print(card_markdown(card))
        return 0
    if args.refresh_loeo:
        if args.loeo is None or args.run is not None:
            p.error("--refresh-loeo NAME takes --loeo RUNS and no RUN/NAME arguments")
        refresh_loeo(Path(args.out) / args.refresh_loeo, Path(args.loeo))
        return 0
    if args.run is None or args.name is None:
        p.error("RUN and NAME are required (or --refresh-loeo NAME --loeo RUNS)")
    torch.set_num_threads(args.threads)

    run = Path(args.run)
    doc = json.loads((run / "results.json").read_text())
    model = SRModel.load(run / "model")
    ctx, truth, td = rebuild_validation(doc, args.data_dir)
    S, T = model.config.S, model.config.T

    results = dict(doc["results"])
    check_same_samples(ctx, truth, S, T, results["bicubic"]["crps"])
    if "nearest" not in results:
        results["nearest"] = scores(nearest_baseline(torch.from_numpy(ctx), S, T).numpy()[:, None], truth)
    peers = [k for k in results if k.startswith(("linear in time", "motion-compensated", "RainFARM", "EDSR"))]
    order = ["bicubic", "nearest", *peers, "deterministic (U_det + MC)"] + [k for k in results if k.startswith("full")]
    results = {k: results[k] for k in order}

    dest = Path(args.out) / args.name
    model.save(dest, dtype="float16")
    shipped = SRModel.load(dest)
    t0 = time.perf_counter()
    det16 = scores(shipped.predict_mean(ctx)[:, None], truth)
    print(f"fp16 deterministic CRPS {det16['crps']:.4f} vs fp32 "
          f"{results['deterministic (U_det + MC)']['crps']:.4f} ({time.perf_counter() - t0:.0f} s)")

    meta = model.metadata
    hist = meta["history"]
    full = min((k for k in results if k.startswith("full")), key=lambda k: results[k]["crps"])
    crop = ts._crop(doc["crop_rows_cols"])
    grid = doc["split"]["events"][0]["tile_grid"]
    members = int(re.search(r"(\d+) members", full).group(1))
    stage_min = {f"{k}_stage": stage_minutes(doc, k) for k in ("mean", "diffusion")}
    minutes = sum(stage_min.values())
    n = doc["n_samples"]
    m = doc["machine"]
    mc_train = model.config.mass_conservation or "no"
    mc_infer = inference_mass_conservation(model.config) or "none"
    card = {
        "name": args.name,
        "summary": summary_text(S, T, mc_train, mc_infer),
        "config": model.config.to_dict(),
        "parameters": model.n_parameters,
        "weights_dtype": "float16",
        "data": {"files": doc["files"], "crop_rows_cols": doc["crop_rows_cols"],
                 "crop_km": None if crop.start is None else f"{crop.stop - crop.start} x {crop.stop - crop.start}",
                 "periods": doc["periods"], "tile_grid": f"{grid[0]} x {grid[1]}",
                 "licences": {k: next(v for p, v in DATA_LICENCES.items() if k.startswith(p))
                              for k in doc["periods"]}},
        "training": {"n_train": n["train"], "n_valid": n["valid"], "stride": n.get("stride", 1),
                     "mean_epochs_run": hist["mean"]["epochs_run"], "mean_best_epoch": hist["mean"]["best_epoch"],
                     "diffusion_epochs_run": hist["diffusion"]["epochs_run"],
                     "diffusion_best_epoch": hist["diffusion"]["best_epoch"],
                     **{k: doc["protocol"][k] for k in ("lr", "batch_size", "patience", "seed", "mc_start_epoch")},
                     "diffusion_mean": doc["protocol"].get("diffusion_mean", "network"),
                     "augment": bool(doc["protocol"].get("augment")),
                     **({"residual_power": doc["protocol"]["residual_power"],
                         "residual_floor": doc["protocol"].get("residual_floor")}
                        if doc["protocol"].get("residual_power") else {}),
                     **({"mean_from": doc["protocol"]["mean_from"]} if doc["protocol"].get("mean_from") else {}),
                     "wall_time_min": stage_min},
        "machine": (f"{m['cpu_count']} x86_64 CPU cores (AMD EPYC VM), {m['torch_threads']} torch thread{'s' if m['torch_threads'] > 1 else ''}, "
                    f"torch {m['torch']}, {m['device']}, no GPU"),
        "evaluation": {"description": (
            f"{n['evaluated']} validation samples (the held-out diagonal tiles of every event, "
            f"{truth.shape[0] * truth.shape[1]} HR frames of {truth.shape[2]} x {truth.shape[3]} px), "
            "LR input = perfect coarsening of the raw HR data; metrics of `xsuperres.metrics` on "
            f"the uncapped truth in mm/h with all frames pooled; full-model rows are {members}-member "
            "ensembles. Bicubic: bicubic interpolation of the block's LR frame; nearest: every HR "
            "frame of the block is the LR frame, repeated over SxS pixels. The deterministic and "
            f"full-model rows use {mc_infer} mass conservation (`\"auto\"`)."
            + (" Linear and motion-compensated interpolation in time"
               + (" (and the members around the motion mean)" if S == 1 else "")
               + " use the LR step after the block." if T > 1 else "")),
            "n_samples": n["evaluated"]},
        "scores": results,
        "fp16_check": {"fp16": det16["crps"], "fp32": results["deterministic (U_det + MC)"]["crps"]},
        "caveats": caveats(results, full, doc.get("protocol", {}).get("valid_event"), minutes),
        "loeo": None if args.loeo is None else loeo_table(
            Path(args.loeo), S, T, model.config.clip,
            (doc["protocol"]["mean_epochs"], doc["protocol"]["diffusion_epochs"])),
        "xsuperres_version": json.loads((dest / "config.json").read_text())["xsuperres_version"],
    }
    write_card(dest, card)
    print((dest / "model_card.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
