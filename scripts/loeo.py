#!/usr/bin/env python
"""Leave-one-event-out runs over the four 5-min events, and their summary table.

``run``: trains and scores one (S, T) pair with each of the four 5-min events left out in
turn (``scripts/train_shared.py --valid-event EVENT --crop all --augment``, RainFARM and
EDSR rows included), one after the other, in ``RUNS/loeo_{S}x{T}_{event}``. A fold whose
``results.json`` exists is skipped; an unfinished fold resumes from its checkpoints, so
the same command can be repeated across sessions until every fold is done.

``compare``: one pair's folds from several ``--runs`` folders (training variants, e.g.
``clip=runs noclip=runs/noclip``) side by side, per left-out event.

``curves``: the learning curves on the left-out events (validation loss per epoch of
each stage against the training hours, finished and running folds of one or more
``--runs`` folders) as a figure, and per fold whether the last epochs still paid.

``summary``: reads every ``RUNS/loeo_*/results.json`` and writes a Markdown table per pair
(rows: methods; per left-out event CRPS, PITD, pe99 and LSD), with the full model's CRPS
relative to RainFARM's and the targets of the retraining issue checked (CRPS at least
10 % below RainFARM's, PITD < 0.1, pe99 and LSD no worse than RainFARM's), and the
spread-error ratio of both ensembles (1 if calibrated, < 1 members too alike).

Usage::

    nohup python scripts/loeo.py run --pair 10x3 > runs/loeo_10x3.log 2>&1 &
    python scripts/loeo.py summary --out docs/results/loeo.md
    python scripts/loeo.py curves --pair 10x3 clip=runs noclip=runs/noclip --out curves.png
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from xsuperres.metrics import fair_crps_from_scores, spread_error_ratio_from_scores

#: event file stem -> short name used in the run folders
EVENTS = {"knmi_2010-08-26_5min": "knmi2010", "mch_20160711_5min": "mch2016",
          "mch_20170131_5min": "mch2017", "fmi_2016-09-28_5min": "fmi2016"}

#: per pair: train_shared arguments (epochs chosen for CPU budgets of 1-3 hours per fold).
#: No clip for the spatial pairs: on the (10, 3) MeteoSwiss 2016 fold it took CRPS from 13.9
#: to 21.8 % below RainFARM and pe99 from 1.13 to 0.13 mm/h (docs/results.md); the first
#: (10, 3) fold, with the clip, ran before this setting.
PAIRS = {
    "10x3": ["--S", "10", "--T", "3", "--mean-epochs", "12", "--diffusion-epochs", "20", "--no-clip"],
    # T = 1: about 11,800 training samples per fold on the full grids (3.3x those of (10, 3)),
    # each with L = 10 frames: every 4th sample as for the shipped radar-s10-t1 (consecutive
    # 5-min samples are nearly alike), no EDSR (it is the (10, 3) folds' deep peer), so that
    # two folds side by side, one thread each, fit in one 3-hour session
    "10x1": ["--S", "10", "--T", "1", "--stride", "4", "--mean-epochs", "8", "--diffusion-epochs", "16",
             "--no-clip", "--edsr-epochs", "0"],
    "25x6": ["--S", "25", "--T", "6", "--tile-size", "50", "--mean-epochs", "12", "--diffusion-epochs", "20",
             "--no-clip"],
    # S = 1: ~9x the samples of S = 10 on the same grids, each as costly for U_det: every
    # 3rd sample, fewer epochs, no EDSR (the temporal peers are its baselines)
    "1x3": ["--S", "1", "--T", "3", "--stride", "3", "--mean-epochs", "6", "--diffusion-epochs", "12",
            "--edsr-epochs", "0"],
}
COMMON = ["--crop", "all", "--augment", "--max-eval", "300", "--samplers", "dpmpp_2m:10",
          "--members", "5", "--edsr-epochs", "8", "--threads", "2"]
METRICS = ("crps", "pitd", "pe99", "lsd")


def run(args: argparse.Namespace) -> int:
    here = Path(__file__).resolve().parent
    events = args.events or list(EVENTS)
    for ev in events:
        out = Path(args.runs) / f"loeo_{args.pair}_{EVENTS[ev]}"
        if (out / "results.json").exists():
            print(f"{out}: done, skipped", flush=True)
            continue
        cmd = [sys.executable, str(here / "train_shared.py"), *COMMON, *PAIRS[args.pair],
               "--valid-event", ev, "--out", str(out), *args.extra]
        print("running", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        if rc:
            print(f"{out}: failed with status {rc}", flush=True)
            return rc
    return 0


def _method_key(name: str) -> str:
    for key in ("bicubic", "nearest", "RainFARM", "EDSR", "deterministic", "full model around the motion mean",
                "full model", "linear in time", "motion-compensated"):
        if name.startswith(key):
            return key
    return name


def _n_members(name: str, r: dict) -> int | None:
    """The member count in an ensemble row's name (``"... 5 members"``); ``None`` if it has
    none, fewer than two or no stored MAE."""
    m = re.search(r"(\d+) members", name)
    if not m or "mae" not in r or int(m.group(1)) < 2:
        return None
    return int(m.group(1))


def spread_error(name: str, r: dict) -> float | None:
    """The spread-error ratio of an ensemble row: its ``spread_error`` score, or for folds
    scored before that was recorded, from its CRPS and MAE and the member count in its
    name (``xsuperres.metrics.spread_error_ratio_from_scores``); ``None`` if unknown."""
    if "spread_error" in r:
        return r["spread_error"]
    m = _n_members(name, r)
    return None if m is None else spread_error_ratio_from_scores(r["crps"], r["mae"], m)


def fair_crps(name: str, r: dict) -> float | None:
    """The fair CRPS of an ensemble row (``xsuperres.metrics.crps(..., fair=True)``): its
    ``crps_fair`` score, or from its CRPS, MAE and member count; ``None`` if unknown."""
    if "crps_fair" in r:
        return r["crps_fair"]
    m = _n_members(name, r)
    return None if m is None else fair_crps_from_scores(r["crps"], r["mae"], m)


def _temporal_targets(e: str, res: dict) -> list[str]:
    """S = 1 pairs: each full-model row against the temporal peers (at least 10 % below
    persistence, i.e. nearest, linear and motion-compensated interpolation; PITD < 0.1)."""
    out = []
    peers = {"persistence": res.get("nearest"), "linear": res.get("linear in time"),
             "motion": res.get("motion-compensated")}
    for key, label in (("full model", "full model"), ("full model around the motion mean", "around the motion mean")):
        full = res.get(key)
        if not full:
            continue
        checks = []
        for peer, r in peers.items():
            if r:
                gain = 1 - full["crps"] / r["crps"]
                checks.append(f"{100 * abs(gain):.1f} % {'below' if gain >= 0 else 'above'} {peer} "
                              f"({'met' if gain >= 0.10 else 'missed'})")
        pitd = f"PITD {full['pitd']:.3f} ({'met' if full['pitd'] < 0.1 else 'missed'}"
        if "pitd_floor" in full:  # what the truth itself scores (the ties of dry pixels)
            pitd += f"; the truth's own floor {full['pitd_floor']:.3f}, randomized PITD {full['pitd_randomized']:.3f}"
        checks.append(pitd + ")")
        out.append(f"- {e}, {label}: CRPS " + "; ".join(checks))
    return out


def load_folds(runs: str | Path, pair: str = "*") -> dict[str, dict[str, dict]]:
    """``{pair: {event: results.json}}`` of the finished folds ``RUNS/loeo_{pair}_{event}``."""
    by_pair: dict[str, dict[str, dict]] = {}
    for f in sorted(Path(runs).glob(f"loeo_{pair}_*/results.json")):
        p, event = f.parent.name.split("_", 2)[1:3]
        by_pair.setdefault(p, {})[event] = json.loads(f.read_text())
    return by_pair


def summary(args: argparse.Namespace) -> int:
    by_pair = load_folds(args.runs)
    lines = ["# Leave-one-event-out scores", "",
             "Written by `python scripts/loeo.py summary`; each column group is a model trained on",
             "the three other 5-min events and scored on the left-out one (samples of the whole",
             "left-out grid, at most 300 evenly spread; CRPS and pe99 in mm/h). The left-out event",
             "is these runs' validation set: its loss chose each stage's best epoch, so these are",
             "validation scores, used to choose epochs and settings; the test is radar days in",
             "none of the shared files.", ""]
    if not by_pair:
        lines.append("No finished fold yet.")
    for pair, folds in sorted(by_pair.items()):
        evs = sorted(folds)
        dm = {folds[e].get("protocol", {}).get("diffusion_mean", "network") for e in evs}
        note = "" if dm == {"network"} else f", diffusion stage trained around the {'/'.join(sorted(dm))} mean"
        lines += [f"## (S, T) = ({pair.replace('x', ', ')}){note}", ""]
        head = "| method | " + " | ".join(f"{e} {m}" for e in evs for m in METRICS) + " |"
        lines += [head, "|" + "---|" * (1 + len(evs) * len(METRICS))]
        names = list(dict.fromkeys(n for e in evs for n in folds[e]["results"]))
        for name in names:
            cells = []
            for e in evs:
                r = folds[e]["results"].get(name)
                cells += [f"{r[m]:.3f}" if r else "" for m in METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "Targets (full model against RainFARM, per left-out event):", ""]
        for e in evs:
            names = {_method_key(n): n for n in folds[e]["results"]}
            res = {_method_key(n): r for n, r in folds[e]["results"].items()}
            full, rf = res.get("full model"), res.get("RainFARM")
            if not full or not rf:
                lines.append(f"- {e}: no RainFARM or full-model row")
                continue
            gain = 1 - full["crps"] / rf["crps"]
            side = "below" if gain >= 0 else "above"
            checks = [f"CRPS {100 * abs(gain):.1f} % {side} RainFARM's ({'met' if gain >= 0.10 else 'missed'}: "
                      "at least 10 % below)",
                      f"PITD {full['pitd']:.3f} ({'met' if full['pitd'] < 0.1 else 'missed'})",
                      f"pe99 {full['pe99']:.2f} vs {rf['pe99']:.2f} ({'met' if full['pe99'] <= rf['pe99'] else 'missed'})",
                      f"LSD {full['lsd']:.3f} vs {rf['lsd']:.3f} ({'met' if full['lsd'] <= rf['lsd'] else 'missed'})"]
            sr = [spread_error(names[k], res[k]) for k in ("full model", "RainFARM")]
            if None not in sr:  # 1 if calibrated, < 1 too alike
                checks.append(f"spread-error ratio {sr[0]:.2f} vs {sr[1]:.2f}")
            fc = [fair_crps(names[k], res[k]) for k in ("full model", "RainFARM")]
            if None not in fc:  # no finite-ensemble penalty on the better-spread ensemble
                g = 1 - fc[0] / fc[1]
                checks.append(f"fair CRPS {100 * abs(g):.1f} % {'below' if g >= 0 else 'above'} RainFARM's")
            lines.append(f"- {e}: " + "; ".join(checks))
        if pair.startswith("1x"):
            lines += ["", "Targets of temporal super-resolution (each full-model row against the "
                      "temporal peers: at least 10 % below persistence, linear and motion-compensated "
                      "interpolation; PITD < 0.1):", ""]
            for e in evs:
                lines += _temporal_targets(e, {_method_key(n): r for n, r in folds[e]["results"].items()})
        lines.append("")
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _variants(specs: list[str]) -> dict[str, str]:
    """``["LABEL=FOLDER", ...]`` -> ``{label: folder}`` (the variants of ``compare`` and ``curves``)."""
    return dict(spec.partition("=")[::2] for spec in specs)


def compare(args: argparse.Namespace) -> int:
    """One pair's folds from several run folders (variants of the training), side by side:
    per left-out event the peers once (from the first variant that has the event), then
    each variant's model rows (deterministic, full model, full model around the motion mean)."""
    variants: dict[str, dict[str, dict]] = {}
    for label, folder in _variants(args.variant).items():
        variants[label] = load_folds(folder, args.pair).get(args.pair, {})
    events = [e for e in EVENTS.values() if any(e in v for v in variants.values())]
    peers = ("nearest", "linear in time", "motion-compensated", "RainFARM")
    models = ("deterministic", "full model", "full model around the motion mean")
    lines = ["| left out | method | CRPS | PITD | pe99 | LSD |", "|---|---|---|---|---|---|"]
    out: dict[str, dict[str, dict]] = {}
    for e in events:
        rows: dict[str, dict] = {}
        for label, folds in variants.items():
            if e not in folds:
                continue
            res = {_method_key(n): r for n, r in folds[e]["results"].items()}
            if not rows:
                rows.update({k: res[k] for k in peers if k in res})
            rows.update({f"{k} [{label}]": res[k] for k in models if k in res})
        out[e] = {name: {m: r[m] for m in METRICS} for name, r in rows.items()}
        lines += [f"| {e} | {name} | {r['crps']:.4f} | {r['pitd']:.3f} | {r['pe99']:.3f} | {r['lsd']:.3f} |"
                  for name, r in rows.items()]
    print("\n".join(lines))
    if args.json:
        doc = {"pair": args.pair, "variants": _variants(args.variant), "events": out}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def fold_history(folder: Path) -> dict | None:
    """The training history of one fold: from ``results.json`` when it is finished, else
    from its checkpoints (a fold still running); ``None`` before its first epoch."""
    res = folder / "results.json"
    if res.exists():
        return json.loads(res.read_text()).get("history")
    hist: dict = {}
    for stage in ("mean", "diffusion"):
        ck = folder / f"checkpoints-{stage}" / "checkpoint.json"
        if ck.exists():
            hist.update(json.loads(ck.read_text())["history"])
    return hist or None


def still_paying(valid: list[float], last: int = 3) -> float:
    """Relative drop of the validation loss in the last ``last`` epochs: ``1 - min(last
    epochs) / min(earlier epochs)`` (> 0: the last epochs still improved it)."""
    if len(valid) <= last:
        return float("nan")
    return 1 - min(valid[-last:]) / min(valid[:-last])


def curves(args: argparse.Namespace) -> int:
    """Validation loss per epoch against the hours of training, per stage, fold and variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lines = ["| fold | variant | stage | epochs | best epoch | valid loss at best | last 3 epochs' gain | hours |",
             "|---|---|---|---|---|---|---|---|"]
    doc: dict[str, dict] = {}
    colors = dict(zip(EVENTS.values(), ("C0", "C1", "C2", "C3")))  # colour: event; line: variant
    variants = _variants(args.variant)
    for (label, folder), style in zip(variants.items(), ["-", "--", ":", "-."] * len(variants)):
        for ev in EVENTS.values():
            hist = fold_history(Path(folder) / f"loeo_{args.pair}_{ev}")
            if not hist:
                continue
            for ax, stage in zip(axes, ("mean", "diffusion")):
                h = hist.get(stage)
                if not h or not h["valid"]:
                    continue
                hours = [sum(h["wall_s"][: i + 1]) / 3600 for i in range(len(h["wall_s"]))]
                ax.plot(hours, h["valid"], style, marker=".", color=colors[ev], label=f"{ev} [{label}]")
                b = h["best_epoch"] - 1
                ax.plot(hours[b], h["valid"][b], "o", mfc="none", ms=9, color=colors[ev])
                gain = still_paying(h["valid"])
                lines.append(f"| {ev} | {label} | {stage} | {len(h['valid'])} | {h['best_epoch']} | "
                             f"{h['best_valid']:.5g} | {100 * gain:.1f} % | {hours[-1]:.2f} |")
                doc.setdefault(f"{ev} [{label}]", {})[stage] = {
                    "valid": h["valid"], "hours": hours, "best_epoch": h["best_epoch"], "last3_gain": gain}
    for ax, stage in zip(axes, ("mean", "diffusion")):
        ax.set(xlabel="training hours (wall time, 2 CPU cores)", ylabel=f"{stage} stage: validation loss",
               yscale="log", title=f"({args.pair.replace('x', ', ')}), {stage} stage, left-out event")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.text(0.01, 0.01, "circles: the kept (best) epoch; losses of different variants (clip / no clip) "
             "are on different scales", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    print("\n".join(lines))
    if args.out:
        fig.savefig(args.out, dpi=110)
    if args.json:
        Path(args.json).write_text(json.dumps({"pair": args.pair, "folds": doc}, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score the folds of one pair")
    r.add_argument("--pair", choices=sorted(PAIRS), required=True)
    r.add_argument("--events", nargs="+", choices=sorted(EVENTS), default=None)
    r.add_argument("--runs", default=str(here / "runs"))
    r.add_argument("extra", nargs=argparse.REMAINDER, help="more train_shared arguments after --")
    s = sub.add_parser("summary", help="the tables of every finished fold")
    s.add_argument("--runs", default=str(here / "runs"))
    s.add_argument("--out", default=None)
    c = sub.add_parser("compare", help="one pair's folds from several run folders, side by side")
    c.add_argument("--pair", choices=sorted(PAIRS), required=True)
    c.add_argument("variant", nargs="+", help="LABEL=FOLDER (a --runs folder of `run`)")
    c.add_argument("--json", default=None)
    k = sub.add_parser("curves", help="learning curves on the left-out events")
    k.add_argument("--pair", choices=sorted(PAIRS), required=True)
    k.add_argument("variant", nargs="+", help="LABEL=FOLDER (a --runs folder of `run`)")
    k.add_argument("--out", default=None, help="the figure (PNG)")
    k.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.command == "curves":
        return curves(args)
    if args.command == "compare":
        return compare(args)
    if args.command == "run":
        args.extra = [a for a in args.extra if a != "--"]
        return run(args)
    return summary(args)


if __name__ == "__main__":
    raise SystemExit(main())
