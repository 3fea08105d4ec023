"""Train a (tiny) model on the embedded RADOLAN sample, in well under a minute on a CPU.

This is a smoke-sized run to show the API, not a useful model: a 64 x 64 km crop of the
hourly RADOLAN day (with its topography), (S, T) = (4, 2), 16-pixel tiles, 3 epochs per
stage. See docs/training.md for real trainings and scripts/train_shared.py for the
(10, 3) model trained on the radar files of ../shared/data.

Run::

    python examples/03_train.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

import xsuperres as xs
from xsuperres.config import SRConfig
from xsuperres.model import SRModel
from xsuperres.training import train

torch.set_num_threads(1)  # tiny networks: one thread is fastest (and safe on shared CPUs)
start = time.perf_counter()

# 1. data: HR precipitation (time, y, x) in a precipitation unit, and topography in m
ds = xs.open_sample("radolan").isel(time=slice(0, 12), y=slice(64, 128), x=slice(64, 128))
precip, topography = ds["precip"], ds["topography"]
print(f"HR data: {dict(precip.sizes)}, units {precip.attrs['units']!r}")

# 2. configuration: the recipe for (S, T) with a smaller context and tiles for the demo
S, T = 4, 2
config = SRConfig.recipe(S, T, L=2, tile_size=16, preset="tiny")

# 3. train: tiles + Latin-square folds, gamma-fit cap, mean stage then residual diffusion
with tempfile.TemporaryDirectory() as tmp:
    model = train(precip, S, T, topography=topography, config=config, epochs=3, batch_size=8,
                  lr=1e-3, mc_start_epoch=1, fold=0, n_folds=4, seed=0, device="cpu",
                  progress=False, checkpoint_dir=f"{tmp}/checkpoints")
    print(model)
    for stage, h in model.history.items():
        print(f"{stage:9s} train {np.round(h['train'], 4).tolist()}  valid {np.round(h['valid'], 4).tolist()}")
    print("normalization:", {k: round(v, 3) if v is not None else None for k, v in model.normalization.items()})
    model.save(f"{tmp}/model")
    model = SRModel.load(f"{tmp}/model")

# 4. downscale one validation tile (the model sees only LR data and the topography)
split = model.metadata["data"]["split"]["events"][0]
row, col = split["valid_tiles"][0]
tile = slice(row * 16, (row + 1) * 16), slice(col * 16, (col + 1) * 16)
lr = xs.coarsen_perfect(precip, S, T).values  # (6, 16, 16) LR frames, mm/h
t = 2  # downscale LR block 2 from blocks 1..2
context = lr[t - config.L + 1:t + 1, tile[0].start // S:tile[0].stop // S, tile[1].start // S:tile[1].stop // S]
ens = model.predict(context, topography.values[tile], n_members=3, sampler="dpmpp_2m", steps=10, device="cpu")
truth = precip.values[t * T:(t + 1) * T][:, tile[0], tile[1]]
print(f"ensemble {ens.shape}: CRPS {xs.metrics.crps(ens, truth):.3f} mm/h; "
      f"deterministic MAE {xs.metrics.mae(model.predict_mean(context, topography.values[tile], device='cpu'), truth):.3f} mm/h")
print(f"done in {time.perf_counter() - start:.1f} s")
