#!/usr/bin/env python
"""Split a run's LSD into frames dry and wet in the truth, and wet frames predicted dry.

The log-spectral distance (:func:`xsuperres.metrics.lsd`) compares
``log10(spectrum + 1e-12)`` frame by frame, so a frame that is dry in the truth and
holds any drizzle in the prediction scores an LSD near 10, whatever the prediction does
elsewhere; and so does the reverse, a frame with rain in the truth that the prediction
leaves all dry. This script rebuilds the validation samples of ``scripts/train_shared.py``
runs exactly as ``scripts/package_model.py`` does, predicts the deterministic mean
(``SRModel.predict_mean``, the inference default of mass conservation) or, with
``--members N``, an ``N``-member ensemble (``SRModel.predict``, the default sampler, seed
0), and reports, per run: the number of HR frames, how many are dry in the truth, the LSD
over all frames, over the wet and over the dry ones, the largest and mean predicted rate
on the dry ones, and how many (member-)frames wet in the truth are all dry in the
prediction with the LSD of the wet frames split by that. Used for the ablation without
mass conservation and for the (25, 6) model in docs/results.md.

Usage::

    python scripts/lsd_dry_frames.py full=RUNS/loeo_10x3_mch2016 no_mc=RUNS2/loeo_10x3_mch2016 \\
        --json docs/results/loeo_10x3_lsd_dry_frames.json
    python scripts/lsd_dry_frames.py s25t6=RUNS/ship_s25t6 --members 5
    python scripts/lsd_dry_frames.py refill=xsuperres/weights/radar-s25-t6 --members 5 \
        --mass-conservation tile_refill

A folder without ``results.json`` but with a ``card.json`` is a packaged model: its card's
validation samples are rebuilt (``package_model.doc_from_card``) and its shipped weights
used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import package_model  # noqa: E402
from loeo import _variants  # noqa: E402

from xsuperres import metrics as xm  # noqa: E402
from xsuperres.model import SRModel  # noqa: E402


def dry_wet_lsd(pred: np.ndarray, truth: np.ndarray) -> dict:
    """LSD of ``pred`` against ``truth`` split by whether the truth frame is dry (no pixel
    above 0; NaN counts as dry).

    ``truth`` is ``(..., y, x)``; ``pred`` the same shape (single-valued) or
    ``(n, M, ...)`` with ``truth`` ``(n, ...)`` (an ``M``-member ensemble, member axis
    second as ``SRModel.predict`` returns it): every LSD is then the mean over members
    and frames, as :func:`xsuperres.metrics.lsd` takes it.
    """
    t = truth.reshape(-1, *truth.shape[-2:])
    if pred.shape == truth.shape:
        p = pred.reshape(1, -1, *pred.shape[-2:])
    else:
        if pred.shape[:1] + pred.shape[2:] != truth.shape:
            raise ValueError(f"pred shape {pred.shape} is neither truth's {truth.shape} nor (n, M, ...) of it")
        p = np.moveaxis(pred, 1, 0).reshape(pred.shape[1], -1, *pred.shape[-2:])
    dry = np.nan_to_num(t).max(axis=(1, 2)) <= 0
    pred_dry = p.max(axis=(2, 3)) <= 0                                 # (M, frames)
    missed = pred_dry & ~dry                                           # wet truth, all-dry member frame
    wet_lsd = np.array([[xm.lsd(p[m, f][None, None], t[f][None]) for f in np.flatnonzero(~dry)]
                        for m in range(len(p))]).reshape(len(p), -1)
    miss_w = missed[:, ~dry]
    out = {"frames": int(len(t)), "members": int(len(p)), "dry_truth_frames": int(dry.sum()),
           "lsd_all": xm.lsd(p, t), "lsd_wet": float(wet_lsd.mean()) if (~dry).any() else None,
           "lsd_dry": xm.lsd(p[:, dry], t[dry]) if dry.any() else None,
           "max_pred_on_dry_frames": float(p[:, dry].max()) if dry.any() else None,
           "mean_pred_on_dry_frames": float(p[:, dry].mean()) if dry.any() else None,
           "wet_truth_frames_predicted_dry": int(missed.sum()),
           "lsd_wet_predicted_dry": float(wet_lsd[miss_w].mean()) if miss_w.any() else None,
           "lsd_wet_predicted_wet": float(wet_lsd[~miss_w].mean()) if (~miss_w).any() else None,
           "max_truth_on_frames_predicted_dry":
               float(np.nan_to_num(t[~dry][miss_w.any(0)]).max()) if miss_w.any() else None}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER (a train_shared.py output folder)")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--members", type=int, default=0,
                   help="score an ensemble of this many members (default sampler, seed 0); 0: the deterministic mean")
    p.add_argument("--mass-conservation", default="auto",
                   help="mass-conservation mode of the predictions (default: auto)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {}
    for label, run in _variants(args.runs).items():
        if (Path(run) / "results.json").exists():
            doc = json.loads((Path(run) / "results.json").read_text())
            model = SRModel.load(Path(run) / "model")
        else:  # a packaged model
            doc = package_model.doc_from_card(json.loads((Path(run) / "card.json").read_text()))
            model = SRModel.load(run)
        ctx, truth, _ = package_model.rebuild_validation(doc, args.data_dir)
        mc = None if args.mass_conservation == "none" else args.mass_conservation
        pred = (model.predict(ctx, n_members=args.members, seed=0, device="cpu", mass_conservation=mc)
                if args.members else model.predict_mean(ctx, device="cpu", mass_conservation=mc))
        out[label] = {"run": run, "mass_conservation": args.mass_conservation, **dry_wet_lsd(pred, truth)}
        print(label, json.dumps(out[label]), flush=True)
    if args.json:  # added to the file's other labels
        old = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
        Path(args.json).write_text(json.dumps({**old, **out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
