"""Fingerprint the outputs of the four shipped models on the embedded KNMI sample.

Used to show that a refactoring changes no number: run it before (``--write FILE``) and
after (``--check FILE``); ``--check`` exits with status 1 and names every output whose
bytes differ. For each shipped model it records the SHA-256 of

* ``predict_mean`` on the 4 wettest LR steps of a 60 x 60 km crop (coarsened by the
  model's S and T),
* ``predict`` (2 members, DDIM 4 steps, seed 0; ``sampler="ddim"`` passed explicitly, so
  the fingerprints do not follow the default sampler) on the same context,
* ``downscale`` (the xarray/dask path: 2 members, DDIM 4 steps, seed 0) of the same LR
  field, and the output's coordinates.

Bitwise equality holds on one machine (same CPU kernels, one torch thread); digests
written on another CPU may differ at float-rounding level.

Usage::

    python scripts/shipped_outputs.py --write /tmp/before.json
    python scripts/shipped_outputs.py --check /tmp/before.json
    python scripts/shipped_outputs.py --batching    # default batching vs batch_size=1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
import torch


def _digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def _setting(hr, model):
    """The LR input of a shipped model: the wettest ``L + 3`` LR steps of a 60 km crop."""
    c = model.config
    size = 60 if 60 % c.S == 0 else 50
    crop = hr.isel(y=slice(40, 40 + size), x=slice(60, 60 + size))
    n = (crop.sizes["time"] // c.T) * c.T
    lr = crop.isel(time=slice(0, n)).stsr.coarsen_perfect(c.S, c.T)
    wet = lr.mean(("y", "x")).values
    k = c.L + 3
    start = int(np.argmax(np.convolve(wet, np.ones(k), "valid")))
    return lr.isel(time=slice(start, start + k)), k


def batching_differences() -> dict[str, dict[str, float]]:
    """Per shipped model, in the setting of the fingerprints but with the default sampler:
    the largest difference between the default (batched) ``downscale`` and ``batch_size=1``,
    and between two chunkings with the default batching (mm h-1)."""
    import dask

    import xsuperres

    torch.set_num_threads(1)
    hr = xsuperres.open_sample("knmi")["precip"]
    res = {}
    with dask.config.set(scheduler="synchronous"):
        for name in xsuperres.list_models():
            model = xsuperres.load_model(name)
            lr, _ = _setting(hr, model)
            kw = dict(seed=0, device="cpu", context="drop")
            one = xsuperres.downscale(lr, model, 2, batch_size=1, **kw).values
            auto = xsuperres.downscale(lr, model, 2, **kw).values
            other = xsuperres.downscale(lr.chunk({"time": 2, "x": 3}), model, 2, **kw).values
            res[name] = {"batched_vs_unbatched": float(np.abs(auto - one).max()),
                         "two_chunkings": float(np.abs(other - auto).max()),
                         "largest_value": float(np.abs(one).max())}
            print(f"{name}: batched vs batch_size=1 {res[name]['batched_vs_unbatched']:.2e}, "
                  f"two chunkings {res[name]['two_chunkings']:.2e} mm h-1 (largest value "
                  f"{res[name]['largest_value']:.2f})", flush=True)
    return res


def fingerprints() -> dict[str, str]:
    import dask

    import xsuperres

    torch.set_num_threads(1)
    hr = xsuperres.open_sample("knmi")["precip"]
    out: dict[str, str] = {}
    with dask.config.set(scheduler="synchronous"):
        for name in xsuperres.list_models():
            model = xsuperres.load_model(name)
            c = model.config
            lr, k = _setting(hr, model)
            x = lr.values.astype(np.float32)
            ctx = np.stack([x[t - c.L + 1:t + 1] for t in range(c.L - 1, k)])  # (4, L, h, w)
            out[f"{name}/predict_mean"] = _digest(model.predict_mean(ctx, device="cpu"))
            # the sampler is named so that a change of the default sampler leaves the reference
            out[f"{name}/predict"] = _digest(model.predict(ctx, n_members=2, sampler="ddim", steps=4,
                                                           seed=0, device="cpu"))
            ens = xsuperres.downscale(lr, model, 2, sampler="ddim", steps=4, seed=0, device="cpu",
                                      context="drop")
            out[f"{name}/downscale"] = _digest(ens.values)
            out[f"{name}/downscale_coords"] = _digest(np.concatenate(
                [ens[v].values.astype(np.float64).ravel() for v in ("y", "x", "lat", "lon")]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    g.add_argument("--batching", action="store_true",
                   help="print the batched-vs-unbatched and chunking differences instead")
    args = p.parse_args(argv)
    if args.batching:
        batching_differences()
        return 0
    now = fingerprints()
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            json.dump(now, f, indent=1, sort_keys=True)
        print(f"wrote {len(now)} fingerprints to {args.write}")
        return 0
    with open(args.check, encoding="utf-8") as f:
        ref = json.load(f)
    bad = sorted(k for k in ref.keys() | now.keys() if ref.get(k) != now.get(k))
    for k in bad:
        print(f"DIFFERS: {k}")
    print(f"{len(now) - len(bad)}/{len(now)} fingerprints identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
