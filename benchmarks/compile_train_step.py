"""Does ``torch.compile`` speed up a diffusion-stage training step on a CPU?

Not a test. Builds the ``radar-s10-t1`` recipe's networks (S = 10, T = 1, L = 10, "tiny"
preset, 40 px tiles; random weights and inputs: the timing does not depend on them),
and times one ``U_dif`` training step as the trainer takes it
(:func:`xsuperres.training.losses.diffusion_loss`, ``backward``, fused Adam; batch 12)

* eager, as the trainer runs it,
* with ``torch.compile`` (inductor) on ``U_dif``'s forward, keeping the hand-written
  neighbourhood-attention kernels (a graph break around each), and
* with ``torch.compile`` on the plain neighbourhood attention
  (``NeighborhoodAttention.forward_reference``), which inductor can fuse,

each in a fresh child process: the first step's wall time (for the compiled variants: the
compilation) and the mean of 10 steps after 2 warm-up steps.

Usage::

    python benchmarks/compile_train_step.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(mode: str, threads: int) -> dict:
    import torch

    import xsuperres
    from xsuperres.model.srmodel import SRModel
    from xsuperres.nn.attention import NeighborhoodAttention
    from xsuperres.training.losses import diffusion_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = xsuperres.SRConfig.recipe(10, 1, preset="tiny", tile_size=40)
    model = SRModel(cfg)
    model.normalization = {"residual_scale": 1.0}
    B = 12
    batch = {"context": torch.rand(B, cfg.L, 4, 4), "topography": torch.rand(B, 1, 40, 40),
             "target": torch.rand(B, 1, 40, 40), "mean": torch.rand(B, 1, 40, 40)}
    net = model.diffusion_net
    for p in model.parameters():
        p.requires_grad_(False)
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    gen = torch.Generator().manual_seed(0)
    model.eval()
    net.train()
    if mode == "compile-plain":
        NeighborhoodAttention.forward = NeighborhoodAttention.forward_reference
    if mode.startswith("compile"):
        net.forward = torch.compile(net.forward, dynamic=False)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = diffusion_loss(model, batch, torch.device("cpu"), gen)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(10):
        step()
    return {"mode": mode, "first_step_s": first, "step_ms": (time.perf_counter() - t0) / 10 * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.threads)))
        return
    rows = []
    for mode in ("eager", "compile", "compile-plain"):
        p = subprocess.run([sys.executable, __file__, "--child", mode, "--threads", str(a.threads)],
                           capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"{mode}: {p.stderr[-3000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{mode:>14}: first step {r['first_step_s']:8.1f} s, then {r['step_ms']:6.1f} ms per step",
              flush=True)
    eager = rows[0]["step_ms"]
    for r in rows[1:]:
        print(f"{r['mode']:>14}: {eager / r['step_ms']:.2f}x the eager step")


if __name__ == "__main__":
    main()
