"""What xsuperres refuses, and what it fixes for you: the shared input rules.

Every entry point (coarsen, interpolate, score, downscale, train) applies the same rules
(``xsuperres.validate``); this script shows a few, and the Dataset face of the accessor.

Run: ``python examples/07_input_rules.py`` (a few seconds).
"""

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import xsuperres

hr = xsuperres.open_sample("knmi")["precip"].isel(time=slice(0, 6), y=slice(0, 40), x=slice(0, 40))

# 1. Raw packed integers (a file opened with mask_and_scale=False) are refused, not averaged.
path = Path(xsuperres.__file__).parent / "data" / "knmi_2010-08-26_5min_sample.nc"
raw = xr.open_dataset(path, mask_and_scale=False)["precip"].isel(time=slice(0, 6))
try:
    raw.stsr.coarsen_perfect(10, 3)
except ValueError as err:
    print("packed:", str(err)[:140], "...")

# 2. No units, no guess: every entry point asks for them.
no_units = hr.copy()
no_units.attrs = {}
try:
    xsuperres.score(no_units, hr)
except ValueError as err:
    print("units: ", str(err)[:140], "...")

# 3. Integers in mm h-1 are worked on as float32; mm/d is converted.
ints = hr.round().astype(np.int16)
print("int16 coarsened to", ints.stsr.coarsen_perfect(10, 3).dtype)
per_day = (hr * 24).assign_attrs(units="mm/d")
print("MSE of mm/d against mm/h:", float(xsuperres.score(per_day, hr)["mse"]))  # 0 (same field)

# 4. A Dataset: precipitation variables are found by their units; others are left out.
lr = hr.stsr.coarsen_perfect(10, 3)
ds = xr.Dataset({"precip": lr, "tas": xr.full_like(lr, 285.0).assign_attrs(units="K")})
print("precipitation variables:", ds.stsr.precipitation_vars)
baseline = ds.stsr.interpolate(10, 3, "nearest")          # interpolates precip only
tas = xr.full_like(hr, 285.0).assign_attrs(units="K")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")                      # score says which it skipped
    scores = baseline.assign(tas=tas).stsr.score(xr.Dataset({"precip": hr, "tas": tas}))
print("CRPS of nearest:", round(float(scores["crps"]), 4), "| warned:", [str(w.message)[:60] for w in caught])

# 5. Training options in one validated object (shared by train, the CLI and tune).
opts = xsuperres.TrainOptions(epochs=2, batch_size=8)
print(opts)
try:
    xsuperres.TrainOptions(epochs=0)
except ValueError as err:
    print("options:", err)
