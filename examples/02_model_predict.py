"""Build an SRModel, predict an ensemble on numpy arrays, save and reload it.

The weights here are untrained (random initialisation), so the fields are not meteorology:
the script shows the shapes, units, reproducibility, mass conservation and the file
format. Training comes with ``xsuperres.train`` (docs/training.md).

Run: ``python examples/02_model_predict.py`` (about 10-20 s on a 2-core CPU).
"""

import tempfile

import numpy as np

import xsuperres
from xsuperres.nn.mass import coarsen

# (S, T) = (10, 3) with the preprint's hyperparameters; block-wise mass conservation and no
# final threshold so that coarsening the output gives the input back exactly.
cfg = xsuperres.SRConfig.recipe(10, 3, mass_conservation="block", threshold=0.0)
model = xsuperres.SRModel(cfg, normalization={"cap": 55.0, "topo_min": 0.0, "topo_max": 1000.0})
print(model)

# LR context from the embedded KNMI sample (5-min, 1 km; T = 3 -> 15-min, 10 km blocks):
# the L = 5 LR frames ending at block 20, over the first 100 x 100 km tile (rows and columns 0-99).
ds = xsuperres.open_sample("knmi")
lr = ds.precip.stsr.coarsen_perfect(10, 3, boundary="trim")   # 92 steps -> (30, 20, 20)
context = lr.values[20 - cfg.L + 1 : 21, :10, :10][None]       # (1, L, 10, 10) mm/h
print("LR block mean", float(context[0, -1].mean()), "mm/h")
topo = None                                                     # KNMI sample: no topography (flat)

ens = model.predict(context, topography=topo, n_members=3, sampler="ddim", steps=20, seed=0)
print("ensemble", ens.shape, ens.dtype, "min", ens.min(), "mm/h")     # (1, 3, 3, 100, 100)
mean = model.predict_mean(context, topography=topo)
print("deterministic mean", mean.shape)                               # (1, 3, 100, 100)

# Block mass conservation: coarsening each member gives the LR block back.
import torch

back = coarsen(torch.from_numpy(ens[0]), 10, 3).numpy()[:, 0]          # (3 members, 10, 10)
target = context[0, -1]
print("max |A(member) - x[t]| =", float(np.abs(back - target).max()), "mm/h")

with tempfile.TemporaryDirectory() as d:
    model.save(d)                                     # model.safetensors + config.json
    again = xsuperres.SRModel.load(d)                 # hash-verified, no pickle
    ens2 = again.predict(context, topography=topo, n_members=3, sampler="ddim", steps=20, seed=0)
    print("bit-identical after save/load:", np.array_equal(ens, ens2))
