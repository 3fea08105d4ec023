"""GPU check: inference throughput of both presets in fp32, bf16 and with ``torch.compile``.

One script for a lent GPU machine (it fits in about 8 minutes on one H100): for the
``tiny`` and ``standard`` presets at (S, T) = (10, 3) with random weights (timings do not
depend on the weights), it runs :meth:`SRModel.predict` (the deterministic stage and the
default sampler, 3 members) on batches of HR tiles and prints

* throughput in HR pixel-frame-members per second, per preset and mode
  (``fp32``, ``bf16`` autocast, ``compile`` = ``torch.compile`` of both U-Nets, fp32,
  ``compile-bf16`` = both; ``compile-na``, ``compile-na-bf16``: ``torch.compile`` of the
  neighbourhood attention blocks alone, where a GPU spends most of its time; ``fused``,
  ``fused-bf16``: the neighbourhood attention in the fused Triton kernel of
  :mod:`xsuperres.nn.neighborhood_fused`, which these rows also check block by block
  against the plain version: largest difference and time per block, on the inputs the
  blocks get in one batch),
* peak GPU memory of each run,
* the extrapolated time for a year of 400 x 400 hourly HR precipitation at (10, 3) with
  3 members (2920 LR steps x the tiles of the default layout; goal: under 5 minutes);
* with ``--profile PRESET:MODE``: the 15 operations that take the most device time in one
  batch of that preset and mode (``torch.profiler``), to show where a year's time goes;
* with ``--train``: training samples per second of both stages per preset (bf16 autocast,
  as :func:`xsuperres.train` uses on CUDA) and the time a (10, 3) leave-one-event-out
  fold of that preset would take, with the plain and the fused neighbourhood attention
  (rows ``train`` and ``train-fused``).

``--dry-run`` runs the same code with tiny sizes on whatever device there is (the CPU
here), to check the script before spending device time; it leaves out ``compile`` unless
``--modes`` names it (compiling the U-Nets takes about 4 minutes on 2 CPU cores). A
mode that fails (e.g. no bf16 support, no compiler) is reported, not fatal.
``benchmarks/gpu_check.sh`` runs it on a lent machine (docs/performance.md has the numbers).

Usage::

    python benchmarks/gpu_check.py [--train]    # on the GPU machine
    python benchmarks/gpu_check.py --dry-run    # a minute on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time

import numpy as np
import torch

S, T = 10, 3
YEAR_LR_STEPS = 365 * 24 // T
DOMAIN_HR = 400


def _model(preset: str, tile: int, device: torch.device):
    import xsuperres

    torch.manual_seed(0)
    cfg = xsuperres.SRConfig.recipe(S, T, preset=preset, tile_size=tile, cap=30.0)
    m = xsuperres.SRModel(cfg, normalization={"cap": 30.0, "residual_scale": 0.05})
    return m.to(device).eval()


def _lr_batch(model, tile: int, batch: int) -> np.ndarray:
    """``batch`` LR inputs ``(batch, L, p, p)`` of gamma-distributed rain (seed 0)."""
    p = tile // S
    x = np.random.default_rng(0).gamma(0.6, 2.0, size=(batch, model.config.L, p, p))
    return x.astype(np.float32)


def _autocast(mode: str, device: torch.device):
    """bf16 autocast for the ``*bf16`` modes, nothing for the others."""
    if mode.endswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _kernel(kind: str):
    """The neighbourhood attention's CUDA kernel ``kind`` inside the block, the previous after."""
    from xsuperres.nn.attention import set_gpu_kernel

    previous = set_gpu_kernel(kind)
    try:
        yield
    finally:
        set_gpu_kernel(previous)


def _compile_neighborhood(model) -> None:
    """``torch.compile`` of each neighbourhood attention block alone (its plain version,
    whose (2n+1)^2 shifted products and sums the compiler can fuse): small graphs, one per
    block."""
    from xsuperres.nn.attention import NeighborhoodAttention

    for name in ("recompile_limit", "cache_size_limit"):  # one graph per block, not 8 in all
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    for m in model.modules():
        if isinstance(m, NeighborhoodAttention):
            m.forward = torch.compile(m.forward_reference, dynamic=False)


def _neighborhood_inputs(model, x: np.ndarray, kw: dict, mode: str, device: torch.device) -> list:
    """``(block, input)`` of each neighbourhood attention block's first call in one batch."""
    from xsuperres.nn.attention import NeighborhoodAttention

    seen: dict = {}

    def keep(block, args):
        seen.setdefault(block, args[0].detach().clone())

    blocks = [m for m in model.modules() if isinstance(m, NeighborhoodAttention)]
    handles = [b.register_forward_pre_hook(keep) for b in blocks]
    try:
        with _autocast(mode, device):
            model.predict(x, **kw)
    finally:
        for h in handles:
            h.remove()
    return list(seen.items())


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (after one warm-up call)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeats


def _fused_block_check(model, x: np.ndarray, kw: dict, mode: str, device: torch.device,
                       repeats: int) -> dict:
    """Each neighbourhood attention block on its own input of one batch: the fused kernel
    against the plain version (largest difference; summed time per call of all blocks)."""
    pairs = _neighborhood_inputs(model, x, kw, mode, device)
    diff = scale = t_ref = t_fused = 0.0
    with torch.inference_mode(), _autocast(mode, device):
        for block, inp in pairs:
            ref, fused = block.forward_reference(inp).float(), block.forward_fused(inp).float()
            diff = max(diff, (fused - ref).abs().max().item())
            scale = max(scale, ref.abs().max().item())
            t_ref += _timed(lambda: block.forward_reference(inp), repeats, device)
            t_fused += _timed(lambda: block.forward_fused(inp), repeats, device)
    return {"na_blocks": len(pairs), "na_max_abs_diff": diff, "na_max_abs_value": scale,
            "na_ms_reference": 1e3 * t_ref, "na_ms_fused": 1e3 * t_fused, "na_speedup": t_ref / t_fused}


def _tiles_per_step(tile: int) -> int:
    """Tiles of the default layout (overlap p // 4) covering the 400 x 400 HR domain."""
    from xsuperres.downscaling import tile_layout

    n, p = DOMAIN_HR // S, tile // S
    return len(tile_layout(n, p, max(1, p // 4))) ** 2


def run(preset: str, mode: str, tile: int, batch: int, repeats: int, steps: int | None,
        device: torch.device) -> dict:
    model = _model(preset, tile, device)
    x = _lr_batch(model, tile, batch)
    kw = dict(n_members=3, device=device, batch_size=3 * batch, steps=steps)
    check = {}
    if mode.startswith("fused"):
        check = _fused_block_check(model, x, kw, mode, device, repeats)
    with _kernel("triton" if mode.startswith("fused") else "torch"):
        row = _throughput(model, preset, mode, x, kw, tile, batch, repeats, device)
    return {**row, **check}


def _throughput(model, preset: str, mode: str, x: np.ndarray, kw: dict, tile: int, batch: int,
                repeats: int, device: torch.device) -> dict:
    if mode.startswith("compile-na"):
        _compile_neighborhood(model)
    elif mode.startswith("compile"):
        model.mean_net = torch.compile(model.mean_net)
        model.diffusion_net = torch.compile(model.diffusion_net)
    with _autocast(mode, device):
        model.predict(x, **kw)  # warm-up (and compilation)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.predict(x, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = (time.perf_counter() - t0) / repeats
    samples_per_s = batch / wall
    rate = batch * 3 * T * tile * tile / wall
    year_s = YEAR_LR_STEPS * _tiles_per_step(tile) / samples_per_s
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return {"preset": preset, "mode": mode, "tile": tile, "batch": batch, "wall_s": wall,
            "px_frame_members_per_s": rate, "peak_gpu_gib": peak, "year_400x400_s": year_s}


def profile(preset: str, mode: str, tile: int, batch: int, device: torch.device, top: int = 15) -> str:
    """The ``top`` operations by self device time (CPU time on a CPU) of one batch."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = _model(preset, tile, device)
    x = _lr_batch(model, tile, batch)
    kw = dict(n_members=3, device=device, batch_size=3 * batch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _kernel("triton" if mode.startswith("fused") else "torch"), _autocast(mode, device):
        model.predict(x, **kw)  # warm-up
        with torch_profile(activities=activities) as prof:
            model.predict(x, **kw)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


def train_rate(preset: str, device: torch.device, dry_run: bool, kernel: str = "torch") -> dict:
    """Training samples per second of both stages (the last of 2 epochs; the first warms
    up), the ``radar-s10-t3`` recipe on the embedded KNMI sample, bf16 autocast on CUDA as
    :func:`xsuperres.train` does there; and the extrapolated time of a (10, 3)
    leave-one-event-out fold (3,500 samples, 12 mean and 20 diffusion epochs), with the
    neighbourhood attention's ``kernel`` (:func:`~xsuperres.nn.attention.set_gpu_kernel`)."""
    import xsuperres

    hr = xsuperres.open_sample("knmi")["precip"]
    if dry_run:
        hr = hr.isel(y=slice(0, 80), x=slice(0, 80), time=slice(0, 40))
    cfg = xsuperres.SRConfig.recipe(S, T, preset=preset, tile_size=40, clip=False)
    with _kernel(kernel):
        model = xsuperres.train(hr, S, T, config=cfg, epochs=2, batch_size=12, seed=0, mc_start_epoch=1,
                                patience=3, progress=False, device=device)
    md = model.metadata
    n = int(md["n_samples"]["train"])
    rate = {st: n / md["history"][st]["wall_s"][-1] for st in ("mean", "diffusion")}
    fold_s = 3500 * (12 / rate["mean"] + 20 / rate["diffusion"])
    return {"preset": preset, "mode": "train" if kernel == "torch" else "train-fused", "n_train": n,
            "samples_per_s": rate, "loeo_fold_10x3_min": fold_s / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, any device (check the script)")
    p.add_argument("--presets", default="tiny,standard")
    p.add_argument("--modes", default=None, help="default fp32,bf16,compile (fp32,bf16 with "
                   "--dry-run: compiling the U-Nets takes about 4 minutes on 2 CPU cores)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--batch", type=int, default=None, help="HR tiles per batch (default 64; 2 with --dry-run)")
    p.add_argument("--profile", metavar="PRESET:MODE", help="also the top operations of one batch "
                   "(e.g. tiny:bf16)")
    p.add_argument("--train", action="store_true", help="also training samples/s per preset and stage")
    p.add_argument("--train-kernels", default="torch,triton", help="the neighbourhood attention's "
                   "kernels of the --train rows (set_gpu_kernel; 'triton' only acts on CUDA)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.modes is None:
        args.modes = "fp32,bf16" if args.dry_run else "fp32,bf16,compile"
    tile, batch, repeats, steps = (20, 2, 1, 2) if args.dry_run else (100, 64, 3, None)
    batch = args.batch or batch
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, tile {tile} HR px, batch {batch} tiles x 3 members, "
          f"steps {'default' if steps is None else steps}")
    rows: list[dict] = []
    for preset in args.presets.split(","):
        for mode in filter(None, args.modes.split(",")):  # --modes "": no inference rows
            _measure(rows, args.json, preset, mode, lambda: run(preset, mode, tile, batch, repeats, steps, device),
                     lambda r: f"{r['px_frame_members_per_s']:12.4g} HR px-frame-members/s, peak "
                               f"{r['peak_gpu_gib']:.2f} GiB, a year of 400 x 400 hourly at (10, 3), "
                               f"3 members: {r['year_400x400_s'] / 60:.1f} min" + _describe_check(r))
    if args.profile:
        preset, mode = args.profile.split(":")
        try:
            print(f"profile of one batch, {preset} {mode}:\n" + profile(preset, mode, tile, batch, device), flush=True)
        except Exception as err:  # noqa: BLE001 - report, go on
            print(f"profile {preset} {mode} failed: {type(err).__name__}: {err}"[:300], flush=True)
    for preset in args.presets.split(",") if args.train else ():
        for kernel in args.train_kernels.split(","):
            mode = "train" if kernel == "torch" else "train-fused"
            _measure(rows, args.json, preset, mode, lambda: train_rate(preset, device, args.dry_run, kernel),
                     lambda r: f"{r['samples_per_s']['mean']:8.1f} (mean) {r['samples_per_s']['diffusion']:8.1f} "
                               f"(diffusion) samples/s; a (10, 3) fold: {r['loeo_fold_10x3_min']:.1f} min")


def _describe_check(r: dict) -> str:
    if "na_speedup" not in r:
        return ""
    return (f"; its {r['na_blocks']} neighbourhood blocks: {r['na_ms_reference']:.2f} ms plain, "
            f"{r['na_ms_fused']:.2f} ms fused ({r['na_speedup']:.2f}x), largest difference "
            f"{r['na_max_abs_diff']:.2e} (of values up to {r['na_max_abs_value']:.3g})")


def _measure(rows: list[dict], path: str | None, preset: str, mode: str, measure, describe) -> None:
    """One row: measured and printed, or its failure reported (not fatal); then saved."""
    try:
        r = measure()
    except Exception as err:  # noqa: BLE001 - report, go on
        r = {"preset": preset, "mode": mode, "error": f"{type(err).__name__}: {err}"[:300]}
        print(f"{preset:9s} {mode:8s} failed: {r['error']}", flush=True)
    else:
        print(f"{preset:9s} {mode:8s} {describe(r)}", flush=True)
    rows.append(r)
    _save(path, rows)


def _save(path: str | None, rows: list[dict]) -> None:
    """Write the rows so far (a run stopped at a time limit keeps what it measured)."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
