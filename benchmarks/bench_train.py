"""Training throughput of both stages, this version against a reference revision.

Not a test. Trains the ``radar-s10-t1`` recipe (S = 10, T = 1, L = 10, "tiny" preset,
40 px tiles, batch 12, seed 0) on a crop of the embedded KNMI sample with **this** package
and with the package as of git revision ``REV`` (exported with ``git archive`` into a
temporary folder and imported from there in a child process; both run in the same
environment, one after the other, with the same torch thread count). Reported per stage:

* training samples per second: training samples x epochs / the stage's summed epoch
  wall time (each epoch's time includes its validation pass, as the history records it),
* the per-epoch training and validation losses of both versions and their ratios: the
  check that a faster loop still learns the same thing (same data, same seed, same
  initial weights; only float rounding differs, so the curves should agree within the
  run-to-run noise of the first epochs).

Usage::

    python benchmarks/bench_train.py --compare 76f0283 [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _versions import package_copies

#: crop of the embedded KNMI sample (HR pixels, 5-min frames) used for the benchmark
CROP = {"y": slice(0, 120), "x": slice(40, 160), "time": slice(20, 60)}


def child(pkg: str, epochs: int, threads: int, out_json: str) -> None:
    """In a fresh process: train both stages with the package at ``pkg``; write JSON."""
    if pkg != "-":
        sys.path.insert(0, pkg)
    import torch

    import xsuperres

    torch.set_num_threads(threads)
    hr = xsuperres.open_sample("knmi")["precip"].isel(**CROP)
    cfg = xsuperres.SRConfig.recipe(10, 1, preset="tiny", tile_size=40)
    t0 = time.perf_counter()
    model = xsuperres.train(hr, 10, 1, config=cfg, epochs=epochs, batch_size=12, seed=0,
                            mc_start_epoch=1, patience=epochs + 1, progress=False, device="cpu")
    wall = time.perf_counter() - t0
    md = model.metadata
    hist = md["history"]
    n_train = int(md["n_samples"]["train"])
    out = {"package": xsuperres.__file__, "wall_s": wall, "n_train": n_train,
           "n_valid": int(md["n_samples"]["valid"]), "threads": torch.get_num_threads()}
    for stage in ("mean", "diffusion"):
        h = hist[stage]
        out[stage] = {"train": h["train"], "valid": h["valid"], "wall_s": h["wall_s"],
                      "samples_per_s": n_train * len(h["wall_s"]) / sum(h["wall_s"])}
    Path(out_json).write_text(json.dumps(out))


def run_compare(rev: str, epochs: int, threads: int) -> dict:
    res = {"reference": rev, "epochs": epochs, "threads": threads, "crop": {
        k: [v.start, v.stop] for k, v in CROP.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        ref, this = package_copies(rev, tmp)  # git archive of rev, snapshot of this tree
        for label, pkg in ((rev, str(ref)), ("this", str(this))):
            out = str(Path(tmp) / f"{label}.json")
            p = subprocess.run([sys.executable, __file__, "--child", pkg, str(epochs), str(threads),
                                out], capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError(f"{label}: {p.stderr[-3000:]}")
            res[label] = json.loads(Path(out).read_text())
            r = res[label]
            print(f"{label:>8}: {r['n_train']} training samples, "
                  f"mean stage {r['mean']['samples_per_s']:.2f} samples/s, "
                  f"diffusion stage {r['diffusion']['samples_per_s']:.2f} samples/s "
                  f"(total {r['wall_s']:.0f} s; {r['package']})", flush=True)
    for stage in ("mean", "diffusion"):
        a, b = res[rev][stage], res["this"][stage]
        res[f"{stage}_speedup"] = b["samples_per_s"] / a["samples_per_s"]
        print(f"{stage}: {res[f'{stage}_speedup']:.2f}x samples/s", flush=True)
        for e, (ta, tb, va, vb) in enumerate(zip(a["train"], b["train"], a["valid"], b["valid"]), 1):
            print(f"   epoch {e}: train loss {ta:.5f} vs {tb:.5f} (ratio {tb / ta:.3f}), "
                  f"valid loss {va:.5f} vs {vb:.5f} (ratio {vb / va:.3f})", flush=True)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", metavar="REV", default="76f0283")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    res = run_compare(args.compare, args.epochs, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
