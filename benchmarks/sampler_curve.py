"""Sampler quality against cost on held-out radar tiles (a script, not a test).

For a shipped model (``xsuperres.load_model``) or a saved one (``SRModel.save`` folder,
e.g. a leave-one-event-out fold of ``scripts/loeo.py``) it measures CRPS, PITD, pe99 and LSD
(:mod:`xsuperres.metrics`, mm/h, frames of all samples pooled) and the fair CRPS (the
ensemble CRPS with the spread term over distinct member pairs: unbiased for the CRPS of
the sampler's distribution, whatever the ensemble size) against the number of
network evaluations (NFE) of the diffusion stage, for the preprint's 1000-step
ancestral sampler, DDIM (linear spacing, eta = 0) and DPM-Solver++(2M) (log-SNR
spacing) at several step counts.

Held-out data
-------------
``--heldout FILE ...`` names event files the model was *not* trained on (a
leave-one-event-out fold of ``scripts/loeo.py`` and its left-out event): square HR tiles
of the model's ``tile_size`` on a grid of that step over their whole grid, keeping the
tiles with no NaN at any time step. Per file, ``--per-event`` distinct such tiles are
drawn (fixed generator), each at one LR block whose HR truth has at least ``--min-wet``
of its pixels above 0.1 mm/h. The LR context is the perfect coarsening of the raw HR
truth (``coarsen_numpy``, blocks aligned at the first frame of the file, as in
training); no topography (zeros), as in training. This is the hold-out for the shipped
models of today, which are trained on the full grids of all four 5-min files: pass a
fold of their recipe with ``--model FOLDER`` and its inference settings
(``--threshold``, ``--residual-factor``, ``--mean``; the model card gives them).

Without ``--heldout`` the tiles come from all four files, *outside* rows/cols 120:280
(tiles not intersecting that 160 x 160 km box: rows 0:120 / 280:400 or cols 0:120 /
280:400). That box was the training crop of the first shipped weights (commits
``34a36fd`` and ``92df881``), for which the curves of docs/performance.md were first
measured; for the weights shipped now those tiles are training data.

``--mean motion`` (or ``linear``) samples around that temporal peer instead of ``U_det``'s
mean (``predict(..., mean=...)``, the ``radar-s1-t3`` recipe): the peer is computed on
the file's whole LR sequence (``xsuperres.temporal.upsample_in_time``, which uses the LR
step after the block, so only blocks that have one are drawn) and the tile cut out.

Noise estimate
--------------
Every configuration runs on the same samples with the same ``--seed`` (so the initial
noise ``r_J`` of a member is the same for every sampler). Error bars come from a
bootstrap over the samples (``--boot`` resamples of the samples with replacement, the
same resamples for every configuration): the standard deviation of each metric, of its
ratio to the ancestral sampler and of its difference from it (both paired: computed in
every resample), and the 2.5-97.5 percentiles of the ratio. ``--extra-seeds`` repeats
the few-step samplers with other noise seeds (same tiles: ``--seed`` draws them) and
reports the mean and spread over seeds too; ``--reference-seeds`` does the same for
ancestral-1000, the reference, and adds each configuration's mean over its seeds
divided by the reference's (``ratio_of_seed_means``), so that the reference's own noise
is not read as a sampler's error.

Output
------
``--json``: one file for all models (this model's entry is replaced, the others kept):
per configuration the seed-0 metrics, bootstrap spreads, ratios and differences to the
ancestral sampler, seed mean and spread, timings; the samples used; the machine.
``--png``: per model (one row each) and metric, the ratio to ancestral-1000 (the
difference for pe99) against NFE on a log axis, one line per sampler, ± 1 paired
bootstrap standard deviation.

Phases: ``run`` samples the ensembles (cached in ``--work``, one ``.npz`` per
configuration and seed, so a rerun skips what is done), ``report`` scores them and
writes the JSON and the figure; ``all`` (default) does both. The whole run of one model
(24 samples x 2 members, ancestral-1000 included) takes about 15-20 min on one CPU thread
at (10, 3); 40 samples of (25, 6) took 37 min for ancestral-1000 alone.

Usage (the runs of docs/performance.md). Leave-one-event-out folds of today's recipes,
sampled with their shipped inference settings (RUNS: the ``--runs`` folder of
``scripts/loeo.py``)::

    C="ddim:5 ddim:10 ddim:20 ddim:50 dpmpp_2m:5 dpmpp_2m:10 dpmpp_2m:20 ddim:10:eta=1 \
       ddim:20:eta=1 ddim:50:eta=1 ancestral:1000"
    nohup python benchmarks/sampler_curve.py --model RUNS/loeo_1x3_knmi2010/model \
        --label "radar-s1-t3 recipe, KNMI 2010 left out" --heldout knmi_2010-08-26_5min \
        --threshold 0 --residual-factor 0.75 --mean motion --per-event 40 --extra-seeds 1 \
        --configs $C --json docs/results/sampler_curve_heldout.json &
    nohup python benchmarks/sampler_curve.py --model RUNS/loeo_25x6_knmi2010/model \
        --label "radar-s25-t6 recipe, KNMI 2010 left out" --heldout knmi_2010-08-26_5min \
        --threshold 0.02 --per-event 40 --extra-seeds 1 --configs $C \
        --json docs/results/sampler_curve_heldout.json --png docs/results/sampler_curve_heldout.png &

The first weights (commits 34a36fd and 92df881; tiles outside their training crop)::

    nohup python benchmarks/sampler_curve.py --model radar-s10-t3 --extra-seeds 1 \\
        --configs ddim:5 ddim:10 ddim:20 ddim:50 dpmpp_2m:5 dpmpp_2m:10 dpmpp_2m:20 \\
                  ddim:10:eta=1 ddim:20:eta=1 ddim:50:eta=1 ancestral:1000 \\
        --json docs/results/sampler_curve.json --png docs/results/sampler_curve.png \\
        > /tmp/sampler_curve_s10t3.log 2>&1 &
    nohup python benchmarks/sampler_curve.py --model radar-s10-t1 --extra-seeds 1 \\
        --json docs/results/sampler_curve.json --png docs/results/sampler_curve.png \\
        > /tmp/sampler_curve_s10t1.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xsuperres
import xsuperres.metrics as xm
from xsuperres.temporal import upsample_in_time
from xsuperres.training.samples import coarsen_numpy

FILES = ("knmi_2010-08-26_5min.nc", "mch_20160711_5min.nc", "mch_20170131_5min.nc",
         "fmi_2016-09-28_5min.nc")
TRAIN_BOX = (120, 280)  # rows and cols of the training crop
METRICS = ("crps", "crps_fair", "pitd", "pe99", "lsd")
# sampler:steps[:spacing][:eta=X]; spacing left out = the sampler's default of SAMPLERS
DEFAULT_CONFIGS = (
    "ddim:5", "ddim:10", "ddim:20", "ddim:50",
    "dpmpp_2m:5", "dpmpp_2m:10", "dpmpp_2m:20",
    "ancestral:1000",
)


def parse(argv=None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="radar-s10-t3",
                   help="a shipped model's name or a saved model folder (SRModel.save)")
    p.add_argument("--label", default=None, help="the model's key in --json and the figure (default: --model)")
    p.add_argument("--heldout", nargs="+", default=None, metavar="FILE",
                   help="event files (names in --data-dir, .nc optional) the model was not trained on: "
                        "tiles from their whole grid instead of outside the training crop of all four")
    p.add_argument("--threshold", type=float, default=None, metavar="A",
                   help="sample with the threshold a of r_a set to A (SRModel.with_config), e.g. the "
                        "shipped inference setting of a fold trained with another")
    p.add_argument("--residual-factor", type=float, default=None, metavar="K",
                   help="sample with the residual scale times K (SRModel.with_residual_factor)")
    p.add_argument("--mean", default="network", choices=("network", "motion", "linear"),
                   help="the mean the members are sampled around: U_det's (network) or a temporal peer")
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--per-event", type=int, default=6, help="held-out samples per file")
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--min-wet", type=float, default=0.1,
                   help="minimum fraction of truth pixels above 0.1 mm/h in a sample")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                   help="sampler:steps[:spacing][:eta=X] (run in this order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra-seeds", type=int, nargs="*", default=[],
                   help="further noise seeds for the few-step samplers (not ancestral), same tiles")
    p.add_argument("--reference-seeds", type=int, nargs="*", default=[],
                   help="further noise seeds for ancestral-1000, same tiles: its seed-to-seed noise, and "
                        "ratios of seed means (ratio_of_seed_means in --json)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--work", default=None, help="cache folder (default /tmp/sampler_curve/<model>)")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--phase", choices=("run", "report", "all"), default="all")
    return p.parse_args(argv)


# ---------------------------------------------------------------------- data
def held_out_samples(model, args):
    """LR contexts (N, L, h, w), HR truths (N, T, H, W), where each comes from, and the
    temporal-peer means (N, T, H, W) for ``--mean`` other than ``network`` (else None)."""
    c = model.config
    S, T, L, n = c.S, c.T, c.L, c.tile_size
    rng = np.random.default_rng(args.seed)
    ctx, truth, where, means = [], [], [], []
    files = [f if f.endswith(".nc") else f + ".nc" for f in args.heldout] if args.heldout else FILES
    for name in files:
        with xr.open_dataset(Path(args.data_dir) / name) as ds:
            hr = ds["precip"].values.astype(np.float32)
            times = ds["time"].values
        hr = hr[: (hr.shape[0] // T) * T]
        lr = coarsen_numpy(hr, S, T)
        if args.mean != "network":
            peer = upsample_in_time(lr, T, args.mean).astype(np.float32)
        last = lr.shape[0] - (0 if args.mean == "network" else 1)  # a peer needs the next step
        a, b = TRAIN_BOX
        tiles = []
        for r0 in range(0, hr.shape[1] - n + 1, n):
            for c0 in range(0, hr.shape[2] - n + 1, n):
                inside = not args.heldout and r0 < b and r0 + n > a and c0 < b and c0 + n > a
                if inside or np.isnan(hr[:, r0:r0 + n, c0:c0 + n]).any():
                    continue
                tiles.append((r0, c0))
        order = rng.permutation(len(tiles))
        got = 0
        for k in order:
            r0, c0 = tiles[k]
            blocks = [t for t in range(L - 1, last)
                      if np.mean(hr[t * T:(t + 1) * T, r0:r0 + n, c0:c0 + n] > 0.1) >= args.min_wet]
            if not blocks:
                continue
            t = int(blocks[rng.integers(len(blocks))])
            ctx.append(lr[t - L + 1:t + 1, r0 // S:(r0 + n) // S, c0 // S:(c0 + n) // S])
            truth.append(hr[t * T:(t + 1) * T, r0:r0 + n, c0:c0 + n])
            if args.mean != "network":
                blk = peer[t * T:(t + 1) * T, r0 // S:(r0 + n) // S, c0 // S:(c0 + n) // S]
                means.append(np.repeat(np.repeat(blk, S, axis=-2), S, axis=-1))
            where.append({"file": name, "rows": f"{r0}:{r0 + n}", "cols": f"{c0}:{c0 + n}",
                          "lr_block": t, "hr_frames": f"{t * T}:{(t + 1) * T}",
                          "time_first": str(times[t * T])[:16], "time_last": str(times[(t + 1) * T - 1])[:16]})
            got += 1
            if got == args.per_event:
                break
    return (np.stack(ctx).astype(np.float32), np.stack(truth).astype(np.float32), where,
            np.stack(means) if means else None)


def parse_config(text: str) -> tuple[str, str, int, str | None, float]:
    """``(label, sampler, steps, spacing, eta)`` of ``sampler:steps[:spacing][:eta=X]``."""
    parts = text.split(":")
    sampler, steps = parts[0], int(parts[1])
    spacing, eta = None, 0.0
    for part in parts[2:]:
        if part.startswith("eta="):
            eta = float(part[4:])
        else:
            spacing = part
    label = f"{sampler}-{steps}" + (f"-{spacing}" if spacing else "") + (f"-eta{eta:g}" if eta else "")
    return label, sampler, steps, spacing, eta


def _noise_seeds(args, sampler: str) -> list[int]:
    """The noise seeds of a configuration: ``--seed``, then ``--reference-seeds`` for the
    ancestral sampler, ``--extra-seeds`` for the others (the tiles are those of ``--seed``)."""
    return [args.seed] + list(args.reference_seeds if sampler == "ancestral" else args.extra_seeds)


# ---------------------------------------------------------------------- run
def run(args, model, ctx, work: Path, mean=None) -> None:
    jobs = []
    for text in args.configs:
        label, sampler, steps, spacing, eta = parse_config(text)
        seeds = _noise_seeds(args, sampler)
        jobs += [(label, sampler, steps, spacing, eta, s) for s in seeds]
    # every configuration at the main seed first (ancestral last), then the extra seeds
    jobs.sort(key=lambda j: (j[5] != args.seed, j[1] == "ancestral"))
    for label, sampler, steps, spacing, eta, seed in jobs:
        f = work / f"{label}_seed{seed}.npz"
        if f.exists():
            continue
        t0 = time.perf_counter()
        ens = model.predict(ctx, n_members=args.members, sampler=sampler,
                            steps=None if sampler == "ancestral" else steps, spacing=spacing,
                            eta=eta, seed=seed, device="cpu", batch_size=args.batch_size, mean=mean)
        dt = time.perf_counter() - t0
        nfe = model.check_sampler(sampler, None if sampler == "ancestral" else steps, eta, spacing)
        np.savez_compressed(f, ens=ens, nfe=nfe, seconds=dt)
        print(f"{time.strftime('%H:%M:%S')} {label} seed {seed}: NFE {nfe}, {dt:.1f} s "
              f"({dt / (nfe * len(ctx) * args.members) * 1e3:.1f} ms per tile-member evaluation)",
              flush=True)


# ---------------------------------------------------------------------- report
class Scorer:
    """Metrics of a subset (with repetition) of the samples, from per-sample pieces."""

    def __init__(self, ens: np.ndarray, truth: np.ndarray):
        N, M, T, H, W = ens.shape
        self.ens, self.truth = ens, truth
        self.crps = np.array([xm.crps(ens[i], truth[i]) for i in range(N)])
        # fair CRPS (Ferro 2014): the spread term E|X - X'| over distinct member pairs, an
        # unbiased estimate of the CRPS of the infinite ensemble; the ensemble CRPS of
        # xsuperres.metrics (properscoring's) counts the M zero self-pairs too, which for
        # M = 2 halves the spread term and rewards under-dispersion
        self.crps_fair = (np.array([xm.crps(ens[i], truth[i], fair=True) for i in range(N)])
                          if M > 1 else self.crps)
        self.lsd = np.array([xm.lsd(ens[i], truth[i]) for i in range(N)])
        # PIT of each truth pixel against the pooled members of its frame (per frame, so
        # per sample): pooling the u values of a subset gives the PITD of that subset
        self.pit = np.stack([xm.pit_values(ens[i], truth[i]) for i in range(N)])
        self.pred_flat = ens.reshape(N, -1).astype(np.float64)
        self.truth_flat = truth.reshape(N, -1).astype(np.float64)

    def __call__(self, idx: np.ndarray) -> dict[str, float]:
        u = np.sort(self.pit[idx].ravel())
        n = u.size
        pitd = float(np.sqrt(np.mean((u - (np.arange(1, n + 1) - 0.5) / n) ** 2)))
        pe99 = abs(np.percentile(self.pred_flat[idx], 99) - np.percentile(self.truth_flat[idx], 99))
        return {"crps": float(self.crps[idx].mean()), "crps_fair": float(self.crps_fair[idx].mean()),
                "pitd": pitd, "pe99": float(pe99),
                "lsd": float(self.lsd[idx].mean())}


def report(args, model, ctx, truth, where, work: Path, mean=None) -> dict:
    N = len(truth)
    rng = np.random.default_rng(12345)
    boots = rng.integers(0, N, size=(args.boot, N))
    full = np.arange(N)
    rows = {}
    ref_label = None
    for text in args.configs:
        label, sampler, steps, spacing, eta = parse_config(text)
        seeds = _noise_seeds(args, sampler)
        per_seed, boot_vals, seconds, nfe = [], None, [], None
        for seed in seeds:
            f = work / f"{label}_seed{seed}.npz"
            if not f.exists():
                continue
            z = np.load(f)
            nfe, sec = int(z["nfe"]), float(z["seconds"])
            sc = Scorer(z["ens"], truth)
            # sanity check against the library's pooled metrics
            if seed == args.seed:
                p = z["ens"].transpose(1, 0, 2, 3, 4).reshape(args.members, -1, *truth.shape[2:])
                t = truth.reshape(-1, *truth.shape[2:])
                M = args.members
                chk = {"crps": xm.crps(p, t), "crps_fair": xm.crps(p, t, fair=True) if M > 1 else xm.crps(p, t),
                       "pitd": xm.pitd(p, t), "pe99": xm.pe99(p, t), "lsd": xm.lsd(p, t)}
                mine = sc(full)
                for k in METRICS:
                    assert abs(chk[k] - mine[k]) <= 1e-9 * max(1.0, abs(chk[k])), (k, chk[k], mine[k])
                boot_vals = {k: np.empty(args.boot) for k in METRICS}
                for b in range(args.boot):
                    r = sc(boots[b])
                    for k in METRICS:
                        boot_vals[k][b] = r[k]
            per_seed.append(sc(full))
            seconds.append(sec)
        if not per_seed or boot_vals is None:
            continue
        row = {"sampler": sampler, "steps": steps, "spacing": spacing, "eta": eta, "nfe": nfe,
               "seconds_per_run": float(np.mean(seconds)),
               "ms_per_tile_member_evaluation": float(np.mean(seconds)) / (nfe * N * args.members) * 1e3,
               "seed0": per_seed[0], "_boot": boot_vals}
        row["boot_sd"] = {k: float(np.std(boot_vals[k], ddof=1)) for k in METRICS}
        if len(per_seed) > 1:
            row["seeds"] = seeds[:len(per_seed)]
            row["seed_mean"] = {k: float(np.mean([s[k] for s in per_seed])) for k in METRICS}
            row["seed_std"] = {k: float(np.std([s[k] for s in per_seed], ddof=1)) for k in METRICS}
        rows[label] = row
        if sampler == "ancestral":
            ref_label = label
    if ref_label is not None:
        ref = rows[ref_label]
        for label, row in rows.items():
            row["ratio_to_ancestral"] = {k: row["seed0"][k] / ref["seed0"][k] for k in METRICS}
            rb = {k: row["_boot"][k] / ref["_boot"][k] for k in METRICS}
            row["ratio_sd"] = {k: float(np.std(rb[k], ddof=1)) for k in METRICS}
            row["ratio_p2.5"] = {k: float(np.percentile(rb[k], 2.5)) for k in METRICS}
            row["ratio_p97.5"] = {k: float(np.percentile(rb[k], 97.5)) for k in METRICS}
            row["diff_to_ancestral"] = {k: row["seed0"][k] - ref["seed0"][k] for k in METRICS}
            row["diff_sd"] = {k: float(np.std(row["_boot"][k] - ref["_boot"][k], ddof=1)) for k in METRICS}
            if "seed_mean" in ref:  # --reference-seeds: the mean over seeds on both sides
                mine = row.get("seed_mean", row["seed0"])
                row["ratio_of_seed_means"] = {k: mine[k] / ref["seed_mean"][k] for k in METRICS}
    for row in rows.values():
        row.pop("_boot")
    # deterministic stage alone (U_det + mass conservation, no diffusion), for reference
    det = Scorer((model.predict_mean(ctx, device="cpu") if mean is None else mean)[:, None], truth)(full)
    doc = {
        "model": args.label or args.model,
        "model_source": args.model,
        "config": model.config.to_dict(),
        "data": {
            "files": list(args.heldout or FILES),
            **({"held_out": "left-out events: HR tiles of tile_size on a grid of that step over their whole "
                            "grid, NaN-free at every time step; "} if args.heldout else {
                "training_crop_rows_cols": f"{TRAIN_BOX[0]}:{TRAIN_BOX[1]}",
                "held_out": "HR tiles of tile_size on a grid of that step over rows/cols 0:400 of the same "
                            "files, not intersecting the training crop, NaN-free at every time step; "}),
            "selection": f"{args.per_event} per file, one LR block each with >= {args.min_wet:.0%} of "
                         "truth pixels > 0.1 mm/h; LR = perfect coarsening of the HR truth",
            "n_samples": N, "hr_frames": int(N * truth.shape[1]), "tile": list(truth.shape[2:]),
            "samples": where,
        },
        "members": args.members,
        "inference": {"mean": args.mean, "threshold": model.config.threshold,
                      "residual_factor": args.residual_factor},
        "seed": args.seed,
        "extra_seeds": list(args.extra_seeds),
        "reference_seeds": list(args.reference_seeds),
        "noise_estimate": f"bootstrap over the {N} samples ({args.boot} resamples with replacement, "
                          "the same resamples for every configuration): standard deviation of each metric and "
                          "of its paired ratio to ancestral-1000 (ratio_sd), and 2.5-97.5 percentiles of the ratio"
                          + ("; plus mean and standard deviation over seeds "
                             f"{[args.seed] + list(args.extra_seeds)} for the few-step samplers"
                             if args.extra_seeds else "")
                          + (f"; ancestral-1000 drawn with noise seeds {[args.seed] + list(args.reference_seeds)}, "
                             "ratio_of_seed_means: a configuration's mean over its seeds over the reference's"
                             if args.reference_seeds else ""),
        "metrics_units": "crps (xsuperres.metrics.crps of the M-member ensemble), crps_fair (fair CRPS, "
                         "spread term over distinct member pairs), pe99 in mm/h; pitd, lsd unitless; lower is better; frames of all samples pooled",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "xsuperres": xsuperres.__version__,
                    "note": "2 CPU cores shared with other jobs: timings are indicative"},
        "deterministic_stage": det,  # U_det + mass conservation, or the temporal peer of --mean
        "results": rows,
    }
    return doc


def table(doc: dict) -> str:
    means = any("ratio_of_seed_means" in r for r in doc["results"].values())
    lines = ["| sampler | NFE | CRPS [mm/h] | fair CRPS [mm/h] | PITD | pe99 [mm/h] | LSD "
             "| CRPS / ancestral | fair CRPS / ancestral | PITD / ancestral |"
             + (" fair CRPS / ancestral, seed means | PITD / ancestral, seed means |" if means else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if means else "")]
    for label, r in sorted(doc["results"].items(), key=lambda kv: (kv[1]["sampler"] == "ancestral",
                                                                    kv[1]["sampler"], kv[1]["nfe"])):
        def pm(k):
            return f"{r['seed0'][k]:.4f} ± {r['boot_sd'][k]:.4f}"

        def ratio(k):
            if "ratio_to_ancestral" not in r:
                return "-"
            return f"{r['ratio_to_ancestral'][k]:.3f} ± {r['ratio_sd'][k]:.3f}"
        line = (f"| {label} | {r['nfe']} | {pm('crps')} | {pm('crps_fair')} | {pm('pitd')} | {pm('pe99')} "
                f"| {pm('lsd')} | {ratio('crps')} | {ratio('crps_fair')} | {ratio('pitd')} |")
        if means:
            line += "".join(f" {r['ratio_of_seed_means'][k]:.3f} |" if "ratio_of_seed_means" in r else " - |"
                            for k in ("crps_fair", "pitd"))
        lines.append(line)
    return "\n".join(lines)


def plot(docs: list[dict], path: str) -> None:
    """Each metric relative to ancestral-1000 against NFE: one row per model, one line per
    sampler, paired bootstrap error bars (the ratio for CRPS, fair CRPS, PITD and LSD; the
    difference for pe99, whose ancestral value can be near 0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {("ddim", "", 0.0): ("C0", "o", "DDIM (linear, eta 0)"),
              ("dpmpp_2m", "", 0.0): ("C1", "s", "DPM-Solver++(2M) (log-SNR)"),
              ("ddim", "", 1.0): ("C2", "v", "DDIM (linear, eta 1)"),
              ("ddim", "logsnr", 1.0): ("C4", "^", "DDIM (log-SNR, eta 1)"),
              ("dpmpp_2m", "", 1.0): ("C3", "D", "DPM-Solver++(2M) SDE (log-SNR, eta 1)")}
    docs = [d for d in docs if any(r["sampler"] == "ancestral" for r in d["results"].values())]
    if not docs:
        print("no model with an ancestral-1000 run: no figure")
        return
    fig, axes = plt.subplots(len(docs), len(METRICS), figsize=(3.6 * len(METRICS), 3.4 * len(docs)),
                             constrained_layout=True, squeeze=False)
    for row, doc in zip(axes, docs):
        res = doc["results"]
        anc = next(r for r in res.values() if r["sampler"] == "ancestral")
        names = {"crps": f"CRPS ({doc['members']} members)", "crps_fair": "fair CRPS",
                 "pitd": "PITD", "pe99": "pe99", "lsd": "LSD"}
        lines = sorted({(r["sampler"], r["spacing"] or "", r.get("eta", 0.0)) for r in res.values()
                        if r["sampler"] != "ancestral"})
        for ax, k in zip(row, METRICS):
            diff = k == "pe99"
            val, err = ("diff_to_ancestral", "diff_sd") if diff else ("ratio_to_ancestral", "ratio_sd")
            for i, key in enumerate(lines):
                rs = sorted([r for r in res.values() if (r["sampler"], r["spacing"] or "", r.get("eta", 0.0))
                             == key], key=lambda r: r["nfe"])
                c, m, lab = styles.get(key, (f"C{i + 3}", "d", ", ".join(str(v) for v in key if v)))
                ax.errorbar([r["nfe"] * (1 + 0.04 * (i - 1)) for r in rs], [r[val][k] for r in rs],
                            yerr=[r[err][k] for r in rs], color=c, marker=m, capsize=3, label=lab)
            ref = 0.0 if diff else 1.0
            ax.axhline(ref, color="k", ls="--", lw=1)
            ax.plot([anc["nfe"]], [ref], "k*", ms=11, label="ancestral-1000 (reference)")
            if k in ("crps", "crps_fair"):
                ax.axhspan(ref, 1.05, color="C2", alpha=0.08, lw=0)   # the 5 % band
            ax.set_xscale("log")
            ax.set_xlabel("network evaluations (NFE)")
            unit = " [mm/h]" if diff else ""
            what = "minus" if diff else "/"
            ax.set_title(f"{names[k]} {what} ancestral{unit}\n(ancestral: {anc['seed0'][k]:.3g})",
                         fontsize=9)
            ax.grid(alpha=0.3, which="both")
        row[0].legend(fontsize=7)
        row[0].set_ylabel("\n".join(textwrap.wrap(doc["model"], 28)), fontsize=10, fontweight="bold")
    d = docs[0]["data"]
    where = ("outside the training crop" if "training_crop_rows_cols" in d
             else "of the events left out of each model's training")
    fig.suptitle(f"Lower is better. {d['n_samples']} held-out samples per model (tiles {where}), "
                 f"{docs[0]['members']} members, seed "
                 f"{docs[0]['seed']}; bars: ± 1 s.d. of the paired bootstrap over samples; "
                 "shaded: within 5 % of ancestral", fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if Path(args.model).exists():
        model = xsuperres.SRModel.load(args.model)
    else:
        model = xsuperres.load_model(args.model)
    if args.threshold is not None:
        model = model.with_config(threshold=args.threshold)
    if args.residual_factor is not None:
        model = model.with_residual_factor(args.residual_factor)
    label = args.label or args.model
    work = Path(args.work or f"/tmp/sampler_curve/{label.replace('/', '_')}")
    work.mkdir(parents=True, exist_ok=True)
    ctx, truth, where, mean = held_out_samples(model, args)
    print(f"{len(ctx)} held-out samples, context {ctx.shape}, truth {truth.shape}; "
          f"wet fraction {np.mean(truth > 0.1):.2f}, mean {truth.mean():.3f} mm/h", flush=True)
    if args.phase in ("run", "all"):
        run(args, model, ctx, work, mean)
    if args.phase in ("report", "all"):
        doc = report(args, model, ctx, truth, where, work, mean)
        doc["table"] = table(doc)
        print(doc["table"], flush=True)
        docs = [doc]
        if args.json:
            # one file for every model: this model's entry is replaced, the others kept
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            allm = json.loads(path.read_text()) if path.exists() else {}
            models = allm.get("models", {})
            models[label] = doc
            allm = {"script": "benchmarks/sampler_curve.py", "models": dict(sorted(models.items()))}
            path.write_text(json.dumps(allm, indent=1))
            docs = list(allm["models"].values())
        if args.png:
            plot(docs, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
