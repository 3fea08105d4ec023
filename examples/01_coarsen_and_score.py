"""Coarsen the embedded radar sample and score the interpolation baselines.

Run: ``python examples/01_coarsen_and_score.py`` (writes ``coarsen_and_score.png``).
"""

import xsuperres

ds = xsuperres.open_sample("radolan")          # DWD RADOLAN RW, hourly, 1 km (cite DWD)
truth = ds.precip

# Perfect-model coarsening: 10 x 10 km blocks, 3-hourly means. Lazy on dask input.
lr = truth.chunk(time=6).stsr.coarsen_perfect(10, 3)
print(lr)                                       # dask-backed, cell_methods "... time: mean area: mean"

# Baselines back on the HR grid: each HR hour of a 3-h block takes the block's LR frame.
bicubic = xsuperres.interpolate(lr, 10, 3, "bicubic")
nearest = xsuperres.interpolate(lr, 10, 3, "nearest")

# The eight metrics, as an xarray Dataset (computing here); per-time-step with dim="time".
scores = {name: pred.stsr.score(truth) for name, pred in [("bicubic", bicubic), ("nearest", nearest)]}
for name, s in scores.items():
    print(name, {k: round(float(v), 4) for k, v in s.data_vars.items()})
per_step = bicubic.stsr.score(truth, dim="time")
print(per_step.crps.to_series().head())

# Nearest-neighbour conserves every block's mean: coarsening it gives the LR input back.
back = nearest.stsr.coarsen_perfect(10, 3)
print("max |A(nearest) - lr| =", float(abs(back - lr).max()), "mm h-1")

from xsuperres.plot import plot_panels

plot_panels({"LR input": lr, "truth": truth, "bicubic": bicubic, "nearest": nearest},
            times=truth.time.values[3:6], path="coarsen_and_score.png")
print("wrote coarsen_and_score.png")
