#!/usr/bin/env python
"""What moves the calibration and the tails of a trained model, without retraining.

For a ``scripts/train_shared.py`` run folder ``RUN`` (best with a left-out event,
``--valid-event``), this rebuilds the run's scored samples (the same split and subset as
the run, checked through the bicubic score; ``package_model.rebuild_validation``) and
scores the run's model under inference-time variants, one at a time against the default:

* the sampler and its number of steps (DPM-Solver++(2M) 5 / 10 / 20, DDIM 20 with
  ``eta`` 0 and 1, DDIM 10 with ``eta`` 1, DPM-Solver++(2M) 10 / 20 with ``eta`` 1, its
  SDE variant: ``eta = 1`` adds fresh noise at every step);
* the ensemble size (3, 5, 10 members);
* the mass-conservation settings applied to the output: the threshold ``a`` of
  ``r_a`` (x 0, 0.5, 2 of the trained value) and the exponent ``p`` of ``F(x) = x ** p``
  (0.8, 1.25);
* the residual scale at inference (x 0.75, 1.5, 2 of the trained value: the sampled
  residual around the deterministic mean ``U_det`` narrowed or widened, a post-hoc spread
  deflation or inflation);
* the seed (two seeds of the default: the noise level of every number);
* the mass-conservation mode of the output: the default ``"auto"`` against the other
  mode (block for the shipped (S <= 10) recipes, so against the ``"tile"`` mode they were
  trained with; tile for (25, 6), so against ``"block"``).

Members are sampled around the mean the run's diffusion stage was trained around (``--mean
auto``): ``U_det``'s, or for S = 1 runs trained with ``--diffusion-mean motion`` the
motion-compensated interpolation in time of the LR steps, as the run's "full model around
the motion mean" row and ``downscale``'s default for such models.

``--quick`` scores only the default, its second seed and the other mode; ``--only TEXT
[TEXT ...]`` only the variants whose label contains one of the texts (the default and its
second seed always; ``--no-second-seed`` drops the second seed, e.g. where the noise level
is already known). ``--threshold-factors`` sets the multiples of the trained threshold ``a``
that are tried (default 0, 0.5 and 2), ``--residual-factors`` those of the residual scale
(default 0.75, 1.5 and 2); ``--threshold A`` scores every variant with the run's threshold
replaced by ``A`` (e.g. the shipped model's, where it differs from the trained one).

CRPS, PITD, pe99 (and its sign, ``q99_bias``), LSD and the spread-error ratio of each, next
to RainFARM's from the run, in ``--out`` (default ``RUN/calibration.json``) and a printed
table. ``beta_max`` acts during training and is not varied here (it needs a retrained
diffusion stage); the residual scale is varied only at inference (the network
still models the residual scaled by the trained value).

Usage::

    python scripts/calibration_study.py /work/runs/loeo_10x3_mch2016 [--members 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import scores, table  # noqa: E402
from package_model import load_run, validation_motion_mean  # noqa: E402

from xsuperres.config import inference_mass_conservation  # noqa: E402


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="train_shared.py output folder (model/ and results.json)")
    p.add_argument("--members", type=int, default=5, help="members of every variant but the size sweep")
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="only the default, a second seed and the other MC mode")
    p.add_argument("--only", nargs="+", metavar="TEXT",
                   help="only the variants whose label contains one of these texts (and the default; "
                        "its second seed unless --no-second-seed)")
    p.add_argument("--threshold-factors", type=float, nargs="+", default=[0.0, 0.5, 2.0], metavar="F",
                   help="multiples of the trained threshold a to try (default: 0 0.5 2)")
    p.add_argument("--residual-factors", type=float, nargs="+", default=[0.75, 1.5, 2.0], metavar="K",
                   help="multiples of the trained residual scale to try at inference (default: 0.75 1.5 2)")
    p.add_argument("--threshold", type=float, default=None, metavar="A",
                   help="the threshold a of every variant's base model (default: the run's own)")
    p.add_argument("--no-second-seed", action="store_true", help="skip the default's second noise seed")
    p.add_argument("--out", help="output JSON (default RUN/calibration.json)")
    p.add_argument("--mean", choices=("auto", "network", "motion"), default="auto",
                   help="the mean the members are sampled around: U_det's (network) or the "
                        "motion-compensated interpolation in time (motion, S = 1 only); auto: the one "
                        "the run's diffusion stage was trained around")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    doc, model, ctx, truth, td = load_run(run, args.data_dir, args.threshold)
    c = model.config
    M, seed = args.members, args.seed
    around = model.diffusion_mean if args.mean == "auto" else args.mean
    extra = {}
    if around == "motion":  # as train_shared's "full model around the motion mean" row
        extra["mean"] = validation_motion_mean(td, len(ctx))

    mode = inference_mass_conservation(c)
    other = "block" if mode == "tile" else "tile"
    default = dict(sampler="dpmpp_2m", steps=10, n_members=M, seed=seed, **extra)  # predict keywords
    plan = [  # (label, model, predict keywords)
        (f"default: dpmpp_2m 10 steps, {M} members, seed {seed}, {mode} MC (auto), around the {around} mean", model,
         default),
        (f"default, seed {seed + 1}", model, {**default, "seed": seed + 1}),
        (f"{other} MC" + (" (the training mode)" if other == c.mass_conservation else ""), model,
         {**default, "mass_conservation": other}),
    ]
    if args.quick:
        plan = plan[:3]
    else:
        plan += [
            ("dpmpp_2m 5 steps", model, {**default, "steps": 5}),
            ("dpmpp_2m 20 steps", model, {**default, "steps": 20}),
            ("ddim 20 steps, eta 0", model, {**default, "sampler": "ddim", "steps": 20}),
            ("ddim 10 steps, eta 1", model, {**default, "sampler": "ddim", "steps": 10, "eta": 1.0}),
            ("ddim 20 steps, eta 1", model, {**default, "sampler": "ddim", "steps": 20, "eta": 1.0}),
            ("dpmpp_2m 10 steps, eta 1 (SDE)", model, {**default, "eta": 1.0}),
            ("dpmpp_2m 20 steps, eta 1 (SDE)", model, {**default, "steps": 20, "eta": 1.0}),
            ("3 members", model, {**default, "n_members": 3}),
            ("10 members", model, {**default, "n_members": 10}),
        ]
        for f in args.threshold_factors:
            plan.append((f"threshold a x {f:g} ({c.threshold * f:.3g})", model.with_config(threshold=c.threshold * f),
                         default))
        rs = float(model.normalization.get("residual_scale", 1.0))
        for k in args.residual_factors:  # members' residuals around U_det scaled by k (spread deflation, inflation)
            plan.append((f"residual x {k:g} at inference ({rs * k:.3g})",
                         model.with_residual_factor(k),
                         default))
        for pw in (0.8, 1.25):
            plan.append((f"F(x) = x ** {pw:g}", model.with_config(power=pw),
                         default))

    if args.only:
        plan = plan[:2] + [v for v in plan[2:] if any(t in v[0] for t in args.only)]
    if args.no_second_seed:
        del plan[1]

    results = {k: v for k, v in doc["results"].items()
               if k.startswith(("RainFARM", "bicubic", "linear in time", "motion-compensated"))}
    timing = {}
    for label, m, kw in plan:
        t0 = time.perf_counter()
        results[label] = scores(m.predict(ctx, device="cpu", **kw), truth)
        timing[label] = time.perf_counter() - t0
        print(f"{label}: CRPS {results[label]['crps']:.4f}, PITD {results[label]['pitd']:.4f} "
              f"({timing[label]:.0f} s)", flush=True)
    text = table(results, cols=("crps", "pitd", "pe99", "q99_bias", "lsd", "spread_error"), width=14)
    print(text)
    out = {"run": str(run), "n_samples": int(len(ctx)), "config": c.to_dict(), "mean": around, "results": results,
           "wall_s": timing, "table": text,
           "metrics_units": "crps, pe99, q99_bias (members' q99 minus the truth's) in mm/h; pitd, lsd, "
                            "pit_outer_fraction (0.2 if calibrated), spread_error (1 if calibrated) unitless"}
    (Path(args.out) if args.out else run / "calibration.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
