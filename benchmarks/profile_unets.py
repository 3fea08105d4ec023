"""Where the time of the two U-Nets goes on a CPU: per block type and per torch operator.

Not a test. Loads a shipped model (default ``radar-s10-t1``), builds random inputs of the
shapes a default downscaling call hands to the networks (the training tile, ``--batch``
items per call), and times

* ``U_det`` (one call on ``batch / members`` samples, as in ``SRModel.predict``), and
* one diffusion-sampler step of ``U_dif`` (the function the sampler calls, i.e. the
  bound :class:`~xsuperres.nn.denoiser.ResidualDenoiser`, on ``batch`` items),

under ``torch.inference_mode`` with ``--threads`` torch threads (default all cores; a
downscaling task on 2 cores runs with 1). Prints the mean wall time per call, the share
of each block type (forward hooks: residual blocks, neighbourhood, temporal and cross
attention, context encoder, ...), the top operators of ``torch.profiler``, and the same
calls with the plain implementations (``NeighborhoodAttention.forward_reference``, the
context encoded in every sampler step) for the ratio.

Usage::

    python benchmarks/profile_unets.py [--model radar-s10-t1] [--batch 15] [--members 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import torch


def _hooks(net: torch.nn.Module, totals: dict, names: tuple[str, ...]):
    """Accumulate the wall time of every module whose class name is in ``names``."""
    stack: dict[int, float] = {}
    handles = []
    for mod in net.modules():
        cls = type(mod).__name__
        if cls not in names:
            continue

        def pre(m, args, _id=id(mod)):
            stack[_id] = time.perf_counter()

        def post(m, args, out, _id=id(mod), _cls=cls):
            totals[_cls] += time.perf_counter() - stack.pop(_id)

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return handles


BLOCKS = ("ResBlock", "NeighborhoodAttention", "TemporalAttention", "CrossAttention",
          "ContextEncoder", "FrameCollapse", "_Upsample", "StepEmbedding")


def _timed(fn, repeats: int) -> float:
    """Mean wall time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def _report(label: str, fn, repeats: int, net: torch.nn.Module) -> float:
    per_call = _timed(fn, repeats)
    totals: dict = defaultdict(float)
    handles = _hooks(net, totals, BLOCKS)
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    print(f"\n== {label}: {per_call * 1e3:.1f} ms per call")
    for cls, s in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"   {cls:<24s} {s * 1e3:8.1f} ms  {100 * s / per_call:5.1f} %")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return per_call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="radar-s10-t1")
    p.add_argument("--batch", type=int, default=15, help="diffusion items per call")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--tile", type=int, default=None, help="HR tile side (default: training tile)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-plain", action="store_true",
                   help="skip the timing of the plain implementations")
    args = p.parse_args()

    import xsuperres

    torch.set_num_threads(args.threads)
    model = xsuperres.load_model(args.model).eval()
    c = model.config
    tile = args.tile or c.tile_size
    ns = max(1, args.batch // args.members)
    g = torch.Generator().manual_seed(0)
    context = torch.rand(ns, c.L, tile, tile, generator=g)
    topo = torch.rand(ns, 1, tile, tile, generator=g)
    print(f"{args.model}: preset {c.preset}, L={c.L}, T={c.T}, tile {tile}, "
          f"{ns} samples x {args.members} members per call, {args.threads} torch threads")
    mean_net = model.mean_net
    denoiser = model.denoiser
    with torch.inference_mode():
        D = mean_net(context, topo)
        idx = torch.arange(ns).repeat_interleave(args.members)
        fn_step = denoiser.bind(D[idx], context[idx, -1:], context[idx])
        r = torch.randn(len(idx), c.T, tile, tile, generator=g)
        j = torch.full((len(idx),), 500)
        t_det = _report("U_det (one call)", lambda: mean_net(context, topo), args.repeats, mean_net)
        t_dif = _report("U_dif (one sampler step)", lambda: fn_step(r, j), args.repeats, denoiser)
        if args.no_plain:
            return
        # the plain implementations, in the same run: neighbourhood attention as
        # forward_reference, the context encoded in every sampler step
        from xsuperres.nn.attention import NeighborhoodAttention

        optimised = NeighborhoodAttention.forward
        NeighborhoodAttention.forward = NeighborhoodAttention.forward_reference
        try:
            ctx_i, up_i, D_i = context[idx], context[idx, -1:], D[idx]
            p_det = _timed(lambda: mean_net(context, topo), args.repeats)
            p_dif = _timed(lambda: denoiser(r, j, D_i, up_i, ctx_i), args.repeats)
        finally:
            NeighborhoodAttention.forward = optimised
        print("\n== plain implementations against the optimised ones (same run)")
        print(f"   U_det call:           {p_det * 1e3:8.1f} ms -> {t_det * 1e3:8.1f} ms  "
              f"({p_det / t_det:.2f}x)")
        print(f"   U_dif sampler step:   {p_dif * 1e3:8.1f} ms -> {t_dif * 1e3:8.1f} ms  "
              f"({p_dif / t_dif:.2f}x)")

if __name__ == "__main__":
    main()
