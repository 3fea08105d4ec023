"""Temporal super-resolution against its classical peers, and exact block conservation.

Coarsen 15 minutes of the 5-min KNMI sample to 15-min means (S = 1, T = 3), then rebuild
the 5-min steps with the three temporal peers of ``xsuperres.interpolate``
(``time_method="persistence"``, ``"linear"``, ``"motion"``: the last two use the following
15-min step, the motion one needs pysteps: ``pip install "xsuperres[peers]"``) and with the
shipped ``radar-s1-t3`` model, whose default ``mass_conservation="auto"`` is per block at
S = 1: every member's 15-min means equal the input exactly. The model runs around its own
network mean (``mean="network"``, the preprint's method) and with its default
``mean="auto"``, which for temporal models is ``"motion"``: the diffusion stage samples
around the motion-compensated interpolation (which, like the peer, uses the following
15-min step). Prints a CRPS table and the largest block-mean error of each. The KNMI day
is one of the model's training days; docs/results.md scores days it never saw.

Run: ``python examples/10_temporal_peers.py`` (about a minute on 2 CPU cores).
"""

import numpy as np
import pandas as pd

import xsuperres as xs

model = xs.load_model("radar-s1-t3")
S, T, L = model.config.S, model.config.T, model.config.L
# its diffusion stage was trained around the motion mean (train(..., diffusion_mean="motion")),
# which the default mean="auto" of downscale therefore samples around
print("diffusion stage trained around:", model.diffusion_mean)
blocks = 6
truth = xs.open_sample("knmi").precip.isel(time=slice(45, 45 + (L - 1 + blocks + 1) * T),
                                           y=slice(60, 140), x=slice(60, 140))
lr = truth.stsr.coarsen_perfect(S, T)                       # 15-min means, 1 km
scored = slice((L - 1) * T, (L - 1 + blocks) * T)            # the blocks with a full context
truth_s, lr_s = truth.isel(time=scored), lr.isel(time=slice(L - 1, L - 1 + blocks))

fields = {tm: lr.stsr.interpolate(S, T, "nearest", time_method=tm).isel(time=scored)
          for tm in ("persistence", "linear", "motion")}
ctx = lr.isel(time=slice(0, L - 1 + blocks))                 # the model sees no later block
for mode in ("auto", "tile"):
    fields[f"radar-s1-t3, 5 members ({mode}, mean='network')"] = ctx.stsr.downscale(
        model, 5, context="drop", mass_conservation=mode, mean="network").compute()
# the defaults (mean="auto" is "motion" here): the context also holds the block after the last
fields["radar-s1-t3, 5 members (defaults: auto, mean='motion')"] = lr.stsr.downscale(
    model, 5, context="drop").compute()

rows = {}
for name, f in fields.items():
    back = f.stsr.coarsen_perfect(S, T)
    rows[name] = {"CRPS (mm/h)": float(xs.score(f, truth_s).crps),
                  "max block-mean error (mm/h)": float(np.abs(back - lr_s).max())}
print(pd.DataFrame(rows).T.round(4))
