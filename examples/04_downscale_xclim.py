"""Downscale a (coarsened) radar day lazily with ``.stsr.downscale`` and hand it to xclim.

Steps: open the embedded RADOLAN sample (hourly, 1 km), coarsen it by S = 5, T = 3 to
3-hourly 5 km fields, chunk it in time, downscale it back to an ensemble of hourly 1 km
fields (nothing is computed yet), then compute daily indices with xclim directly on the
output: no attribute is fixed by hand.

By default the model is a tiny *untrained* one built here (random weights: the fields are
not meteorology, but shapes, coordinates, units, laziness, mass conservation and the
xclim chain are real). Pass a trained model directory to use it instead::

    python examples/04_downscale_xclim.py                 # tiny random model, about a minute on 2 cores
    python examples/04_downscale_xclim.py --model MODEL_DIR
"""

import argparse
import warnings

import dask
import numpy as np
import torch
import xarray as xr
import xclim
from xclim.core.units import convert_units_to

import xsuperres
from xsuperres.downscaling import downscale

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=None, help="directory written by SRModel.save")
parser.add_argument("--members", type=int, default=2)
parser.add_argument("--steps", type=int, default=4)
args = parser.parse_args()
torch.set_num_threads(1)  # one torch thread per dask task

S, T = 5, 3
if args.model is None:
    torch.manual_seed(0)
    cfg = xsuperres.SRConfig.recipe(S, T, preset="tiny", tile_size=40, cap=55.0, time_step="1h",
                                    mass_conservation="block", threshold=0.0)
    model = xsuperres.SRModel(cfg, normalization={"cap": 55.0, "topo_min": 0.0, "topo_max": 1000.0,
                                                  "residual_scale": 0.05},
                              metadata={"name": "untrained-demo"})
else:
    model = args.model

# 1. LR input: 60 x 60 km of the sample, coarsened to 3 h / 5 km. The sample holds one day;
#    xclim's indicators want at least 3 daily values, so the day is repeated 4 times here
#    (a demonstration device only).
ds = xsuperres.open_sample("radolan").isel(y=slice(0, 60), x=slice(0, 60))
one_day = ds.precip.astype("float32").isel(time=slice(0, 24))
one_day = one_day.assign_coords(time=one_day.time.values - np.timedelta64(50, "m"))  # 00:00 ...
days = [one_day.assign_coords(time=one_day.time.values + np.timedelta64(k, "D")) for k in range(4)]
truth = xr.concat(days, "time", combine_attrs="override")
lr = truth.stsr.coarsen_perfect(S, T).chunk(time=4)          # (32, 12, 12), lazy
print("LR input:", dict(lr.sizes), lr.attrs["units"], "chunks", lr.chunks[0])

# 2. lazy downscaling (the sample's topography is on the HR grid already)
hr = downscale(lr, model, args.members, topography=ds.topography, steps=args.steps, seed=0)
print("HR ensemble (lazy):", dict(hr.sizes), hr.dtype, type(hr.data).__name__)
print("  attributes:", {k: hr.attrs[k] for k in ("units", "standard_name", "cell_methods",
                                                   "xsuperres_S", "xsuperres_T", "xsuperres_L",
                                                   "xsuperres_sampler", "xsuperres_steps")})

# 3. xclim straight on the output: units, daily resampling, indicators
with dask.config.set(scheduler="threads", num_workers=2):
    hr = hr.persist()
daily = hr.resample(time="D").mean()                          # mm h-1, daily mean rate
daily_mm = convert_units_to(daily, "mm/d")
# 4 days only: skip xclim's missing-month check (real runs cover whole months)
with xclim.set_options(check_missing="skip"), warnings.catch_warnings():
    warnings.simplefilter("ignore")                           # xclim's CF notes
    rx1day = xclim.atmos.max_1day_precipitation_amount(daily, freq="MS")
    wet = xclim.atmos.wetdays(daily, thresh="1 mm/d", freq="MS")
print(f"daily total, domain mean per member: {daily_mm.mean(('time', 'y', 'x')).values.round(2)} "
      f"{daily_mm.attrs['units']}")
print(f"rx1day: max {float(rx1day.max()):.1f} {rx1day.attrs['units']}; "
      f"wet days (>= 1 mm/d): {float(wet.mean()):.2f} of 4 on average per member and pixel")

# 4. checks: block mass conservation and the truth's daily totals for comparison
back = hr.stsr.coarsen_perfect(S, T)
err = float(np.nanmax(np.abs(back.values - lr.values[None])))
print(f"coarsen(downscale(x)) - x: max {err:.2e} mm/h (block mass conservation)")
print(f"truth daily total, domain mean: {float(convert_units_to(truth.resample(time='D').mean(), 'mm/d').mean()):.2f} mm/d")
