"""Benchmark of the two U-Nets and of the diffusion samplers on CPU (a script, not a test).

Prints

1. parameter counts of ``U_det`` and ``U_dif`` for each preset (L=5, T=3);
2. forward time per 100 x 100 HR tile ((S, T, L) = (10, 3, 5), batch 1, best of N):
   the deterministic U-Net, one diffusion-network step, and one sampler step (a DDIM run
   divided by its number of steps, i.e. network + sampler arithmetic + noise);
3. the sampler cost ratio on the tiny preset: the preprint's 1000-step ancestral sampler
   (timed once, about a minute and a half on 2 cores) against DDIM with k = 10, 20, 50
   steps; for the standard preset the 1000-step time is *estimated* from its per-step
   cost (running it on CPU would take several minutes);
4. end-to-end :meth:`SRModel.predict` (3 members, DDIM-20) per tile and preset.

Usage::

    python benchmarks/bench_model.py [--threads 2] [--quick] [--skip-ancestral]
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Callable

import numpy as np
import torch

from xsuperres.config import SRConfig
from xsuperres.model import SRModel
from xsuperres.nn.diffusion import LinearSchedule, sample
from xsuperres.nn.unet import PRESETS, DeterministicUNet, DiffusionUNet, n_parameters

S, T, L = 10, 3, 5


def best_of(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` in seconds (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="1 timed repeat instead of 3")
    ap.add_argument("--skip-ancestral", action="store_true",
                    help="estimate the 1000-step sampler of the tiny preset instead of timing it")
    ap.add_argument("--tile", type=int, default=100, help="HR tile side in pixels (default 100)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = 1 if args.quick else 3
    H = W = args.tile
    if H % S:
        raise SystemExit(f"--tile must be a multiple of S={S}")

    print(f"xsuperres U-Net benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, tile {H} x {W} HR px, (S, T, L) = ({S}, {T}, {L}), "
          f"best of {reps}")
    print()
    nets = {}
    print(f"{'preset':<10} {'U_det params':>14} {'U_dif params':>14} {'total':>12}")
    for name in PRESETS:
        det = DeterministicUNet(L, T, name).eval()
        dif = DiffusionUNet(L, T, name).eval()
        nets[name] = (det, dif)
        a, b = n_parameters(det), n_parameters(dif)
        print(f"{name:<10} {a:>14,d} {b:>14,d} {a + b:>12,d}")
    print()

    g = torch.Generator().manual_seed(0)
    context = torch.rand((1, L, H, W), generator=g)
    topo = torch.rand((1, 1, H, W), generator=g)
    mean = torch.rand((1, T, H, W), generator=g)
    r = torch.randn((1, T, H, W), generator=g)
    j = torch.tensor([500])
    schedule = LinearSchedule(2e-2)

    per_step: dict[str, float] = {}
    print(f"{'preset':<10} {'U_det fwd [s]':>14} {'U_dif fwd [s]':>14} {'sampler step [s]':>17} "
          f"{'overhead':>9}")
    with torch.inference_mode():
        for name, (det, dif) in nets.items():
            t_det = best_of(lambda: det(context, topo), reps)
            t_dif = best_of(lambda: dif(r, mean, context[:, -1:], context, j), reps)

            def model_fn(x, jj, _dif=dif):
                return _dif(x, mean, context[:, -1:], context, jj)

            k = 10
            t_ddim = best_of(lambda: sample(model_fn, (1, T, H, W), schedule, "ddim", steps=k,
                                            generator=0), reps, warmup=0)
            per_step[name] = t_ddim / k
            print(f"{name:<10} {t_det:>14.3f} {t_dif:>14.3f} {t_ddim / k:>17.3f} "
                  f"{t_ddim / k / t_dif - 1:>+8.0%}")
    print("  (sampler step = DDIM-10 wall time / 10; overhead = relative to one U_dif forward)")
    print()

    # sampler cost ratio on the tiny preset
    det, dif = nets["tiny"]

    def model_fn(x, jj):
        return dif(x, mean, context[:, -1:], context, jj)

    rows = []
    with torch.inference_mode():
        for k in (10, 20, 50):
            t = best_of(lambda: sample(model_fn, (1, T, H, W), schedule, "ddim", steps=k,
                                       generator=0), reps, warmup=0)
            rows.append((f"DDIM-{k}", k, t))
        if args.skip_ancestral:
            t_anc, how = 1000 * per_step["tiny"], "estimated (1000 x sampler step)"
        else:
            t0 = time.perf_counter()
            sample(model_fn, (1, T, H, W), schedule, "ancestral", generator=0)
            t_anc, how = time.perf_counter() - t0, "measured, 1 run"
    print(f"sampler cost on one tile, tiny preset (ancestral: {how})")
    print(f"{'sampler':<16} {'net calls':>9} {'time [s]':>10} {'ancestral / this':>17}")
    print(f"{'ancestral-1000':<16} {1000:>9d} {t_anc:>10.2f} {1.0:>17.1f}")
    for label, k, t in rows:
        print(f"{label:<16} {k:>9d} {t:>10.2f} {t_anc / t:>17.1f}")
    std = per_step["standard"]
    print(f"standard preset: ancestral-1000 ~ {1000 * std:.0f} s per tile and member on this CPU "
          f"(estimated from its per-step cost {std:.3f} s, not run); DDIM-20 ~ {20 * std:.1f} s")
    print()

    # end-to-end predict
    rng = np.random.default_rng(0)
    lr = (rng.gamma(0.6, 3.0, (L, H // S, W // S)) * (rng.random((L, H // S, W // S)) > 0.3))
    lr = lr.astype(np.float32)
    print("SRModel.predict, 1 tile, 3 members, DDIM-20 (incl. deterministic stage and "
          "mass conservation)")
    for name in PRESETS:
        torch.manual_seed(0)
        m = SRModel(SRConfig.recipe(S, T, preset=name, cap=55.0))
        t = best_of(lambda: m.predict(lr, n_members=3, steps=20, device="cpu"), 1, warmup=0)
        print(f"  {name:<10} {t:8.2f} s")


if __name__ == "__main__":
    main()
