#!/usr/bin/env python
"""Split a run's deterministic-mean LSD into frames dry and wet in the truth.

The log-spectral distance (:func:`xsuperres.metrics.lsd`) compares
``log10(spectrum + 1e-12)`` frame by frame, so a frame that is dry in the truth and
holds any drizzle in the prediction scores an LSD near 10, whatever the prediction does
elsewhere. This script rebuilds the validation samples of ``scripts/train_shared.py``
runs exactly as ``scripts/package_model.py`` does, predicts the deterministic mean
(``SRModel.predict_mean``, the inference default of mass conservation) and reports, per
run: the number of HR frames, how many are dry in the truth, the LSD over all frames, over
the wet and over the dry ones, and the largest and mean predicted rate on the dry ones.
Used for the ablation without mass conservation in docs/results.md.

Usage::

    python scripts/lsd_dry_frames.py full=RUNS/loeo_10x3_mch2016 no_mc=RUNS2/loeo_10x3_mch2016 \\
        --json docs/results/loeo_10x3_lsd_dry_frames.json
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
    """LSD of single-valued ``pred`` against ``truth`` (both ``(..., y, x)``), split by
    whether the truth frame is dry (no pixel above 0; NaN counts as dry)."""
    t = truth.reshape(-1, *truth.shape[-2:])
    p = pred.reshape(-1, *pred.shape[-2:])
    dry = np.nan_to_num(t).max(axis=(1, 2)) <= 0
    out = {"frames": int(len(t)), "dry_truth_frames": int(dry.sum()),
           "lsd_all": xm.lsd(p[None], t), "lsd_wet": xm.lsd(p[~dry][None], t[~dry]) if (~dry).any() else None,
           "lsd_dry": xm.lsd(p[dry][None], t[dry]) if dry.any() else None,
           "max_pred_on_dry_frames": float(p[dry].max()) if dry.any() else None,
           "mean_pred_on_dry_frames": float(p[dry].mean()) if dry.any() else None}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER (a train_shared.py output folder)")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {}
    for label, run in _variants(args.runs).items():
        doc = json.loads((Path(run) / "results.json").read_text())
        ctx, truth, _ = package_model.rebuild_validation(doc, args.data_dir)
        det = SRModel.load(Path(run) / "model").predict_mean(ctx, device="cpu")
        out[label] = {"run": run, **dry_wet_lsd(det, truth)}
        print(label, json.dumps(out[label]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
