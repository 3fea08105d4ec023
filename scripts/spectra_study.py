"""Where in the spectrum a fold's members and peers depart from the truth: the scales behind
an LSD score.

The log-spectral distance (:func:`xsuperres.metrics.lsd`) of a frame is the RMS over radii
``k`` of ``d_k = log10 P_pred(k) - log10 P_truth(k)`` (``P``: the radially averaged FFT
magnitude, :func:`xsuperres.metrics.radial_spectrum`), averaged over frames and members.
One number does not say whether a method has too much or too little variability, nor at
which scales. For a ``train_shared.py`` run (its left-out event's validation samples,
rebuilt as the run evaluated them) this script prints and saves, per method and radius ``k``:

- the median of ``d_k`` over frames and members (> 0: more power than the truth at that
  scale; the ratio ``10 ** median(d_k)`` is plotted), and
- the share of the LSD that each radius carries (additive: the shares sum to the LSD),

with the LSD itself, split into the frames whose truth is wet and those where it is dry
(all pixels 0: there any non-zero value gives ``d`` near 10, whatever its pattern), for
nearest and bicubic upsampling, RainFARM (with pysteps), the motion peer (T > 1, with
pysteps), the deterministic mean and the full model's members (sampled around the mean
``downscale`` uses: ``SRModel.diffusion_mean``; ``--threshold`` sets the output's ``a``).
Wavelength of radius ``k`` on a tile of ``n`` pixels: ``n / k`` pixels.

Usage::

    python scripts/spectra_study.py /work/runs/s16/loeo_1x3_knmi2010 [--members 5] [--threads 1]

Writes ``RUN/spectra.json`` and ``RUN/spectra.png`` (``--out`` for another stem).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import rainfarm_members, temporal_peer  # noqa: E402
from lsd_dry_frames import dry_wet_lsd  # noqa: E402
from package_model import load_run, validation_records  # noqa: E402

import xsuperres.metrics as xm  # noqa: E402
from xsuperres.nn.baselines import bicubic_baseline, nearest_baseline  # noqa: E402


def spectral_departure(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Per-radius departure of ``pred`` ``(N, M, T, H, W)`` from ``truth`` ``(N, T, H, W)``.

    With ``d[m, f, k]`` of :func:`xsuperres.metrics.spectral_log_ratio` and the frame's
    ``LSD[m, f] = sqrt(mean_k d ** 2)``: the median and mean over members and frames of
    ``d`` per radius (the median is not moved by the few frames whose truth has almost no
    power, where ``d`` reaches 10), each radius's additive share of the LSD
    (``mean_{m,f} d ** 2 / (K LSD[m, f])``, summing to the LSD over the ``K`` radii), the
    LSD, and (``lsd_dry_frames.dry_wet_lsd``) the LSD of the frames whose truth is dry
    and of the others."""
    N, M, T, H, W = pred.shape
    d = xm.spectral_log_ratio(pred.transpose(1, 0, 2, 3, 4).reshape(M, N * T, H, W), truth.reshape(N * T, H, W))
    frame_lsd = np.sqrt(np.mean(d ** 2, axis=-1))  # (M, frames)
    share = np.mean(d ** 2 / (d.shape[-1] * np.where(frame_lsd > 0, frame_lsd, 1.0)[..., None]), axis=(0, 1))
    split = dry_wet_lsd(pred, truth)
    return {"median_d": np.median(d, axis=(0, 1)).tolist(), "mean_d": d.mean(axis=(0, 1)).tolist(),
            "lsd_share": share.tolist(), "lsd": float(frame_lsd.mean()),
            "lsd_dry_truth": split["lsd_dry"], "lsd_wet_truth": split["lsd_wet"],
            "dry_frames": split["dry_truth_frames"], "frames": split["frames"]}


def figure(result: dict, path: Path) -> None:
    """Two panels against the wavelength: the ratio ``10 ** median(d_k)`` of each method's
    spectrum to the truth's, and each radius's share of the LSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result["tile_px"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, r in result["methods"].items():
        wl = n / np.arange(1, len(r["median_d"]))
        a.plot(wl, 10 ** np.asarray(r["median_d"][1:]), "o-", ms=3, label=f"{name} (LSD {r['lsd']:.3f})")
        b.plot(wl, r["lsd_share"][1:], "o-", ms=3, label=name)
    ticks = sorted({w for w in (2, 3, 5, 10, 20, 50, 100, 200) if 2 <= w < n} | {n})
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"wavelength (HR pixels; tile of {n})")
        ax.invert_xaxis()
    a.set_yscale("log")
    yt = [v for v in (0.25, 0.5, 0.7, 1, 1.5, 2, 3, 5) if a.get_ylim()[0] <= v <= a.get_ylim()[1]]
    a.set_yticks(yt, [f"{v:g}" for v in yt])
    a.axhline(1, color="k", lw=0.8)
    a.set_ylabel("spectrum / truth's (median over frames)")
    b.set_ylabel("share of the LSD per radius")
    a.legend(fontsize=7)
    fig.suptitle(result["title"], fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="train_shared.py output folder (model/ and results.json)")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=None, metavar="A",
                   help="the threshold a of the model's output (default: the run's own)")
    p.add_argument("--out", help="output stem (default RUN/spectra: .json and .png)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    doc, model, ctx, truth, td = load_run(run, args.data_dir, args.threshold)
    c = model.config
    records = validation_records(td, len(ctx))
    upto = torch.from_numpy(ctx[:, :c.L])
    preds = {"nearest": nearest_baseline(upto, c.S, c.T).numpy()[:, None],
             "bicubic": bicubic_baseline(upto, c.S, c.T).numpy()[:, None]}
    try:
        import pysteps  # noqa: F401

        have_pysteps = True
    except ImportError:
        have_pysteps = False
        print("pysteps is not installed: no RainFARM or motion peer rows", flush=True)
    if have_pysteps:
        preds["RainFARM"] = rainfarm_members(td, args.members, args.seed, records=records)
        if c.T > 1:
            preds["motion peer"] = temporal_peer(td, "motion", records)
    extra = {}
    if model.diffusion_mean == "motion":  # the motion peer, as validation_motion_mean gives it
        motion = preds["motion peer"] if "motion peer" in preds else temporal_peer(td, "motion", records)
        extra["mean"] = motion[:, 0]
    t0 = time.perf_counter()
    preds["deterministic mean"] = model.predict_mean(ctx, device="cpu")[:, None]
    preds[f"members ({args.members})"] = model.predict(ctx, n_members=args.members, sampler="dpmpp_2m",
                                                       steps=10, seed=args.seed, device="cpu", **extra)
    wall = time.perf_counter() - t0
    result = {"run": str(run), "n_samples": int(len(ctx)), "tile_px": int(truth.shape[-1]),
              "members_around": model.diffusion_mean, "config": c.to_dict(),
              "model_wall_s": wall,
              "title": f"(S, T) = ({c.S}, {c.T}), left out: {doc['protocol'].get('valid_event')}, "
                       f"{len(ctx)} samples, threshold a = {model.config.threshold:g}",
              "methods": {}}
    for name, pred in preds.items():
        result["methods"][name] = spectral_departure(pred, truth)
    n = result["tile_px"]
    radii = len(next(iter(result["methods"].values()))["median_d"])
    bands = [(0, 0), (1, 2), (3, max(3, radii // 4)), (max(4, radii // 4 + 1), radii - 1)]
    head = ["k = 0 (tile mean)"] + [f"k {lo}-{hi} ({n / hi:.0f}-{n / lo:.0f} px)" for lo, hi in bands[1:]]
    lines = [f"{'method':<22}{'LSD':>8}{'wet / dry truth':>18}" + "".join(f"{h:>24}" for h in head),
             f"{'':<48}" + f"{'median d / LSD share':>24}" * len(bands)]
    for name, r in result["methods"].items():
        d, sh = np.asarray(r["median_d"]), np.asarray(r["lsd_share"])
        wet_dry = f"{r['lsd_wet_truth'] or float('nan'):.3f} / {r['lsd_dry_truth'] or float('nan'):.3f}"
        lines.append(f"{name:<22}{r['lsd']:>8.4f}{wet_dry:>18}" + "".join(
            f"{f'{np.median(d[lo:hi + 1]):+.3f} / {sh[lo:hi + 1].sum():.3f}':>24}" for lo, hi in bands))
    lines.append(f"{result['methods']['nearest']['dry_frames']} of {result['methods']['nearest']['frames']} "
                 "truth frames are dry (all pixels 0).")
    result["table"] = "\n".join(lines)
    print(result["table"])
    stem = Path(args.out) if args.out else run / "spectra"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    figure(result, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and .png", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
