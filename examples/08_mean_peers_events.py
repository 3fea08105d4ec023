"""The deterministic stage, the RainFARM peer and an event-level hold-out.

1. ``downscale_mean``: the deterministic U-Net (with mass conservation) through the same
   tiles and blending as ``downscale`` -- one smooth field, no members, no tile seams.
2. ``rainfarm``: the classical stochastic downscaling (pysteps; ``pip install
   "xsuperres[peers]"``), members keyed by seed like the model's; skipped with a note when
   pysteps is absent.
3. ``train(..., valid_events=[...], augment=True)``: validate on a whole event the model
   never saw (leave-one-event-out), with the 8 rotations/reflections as augmentation.

Run: ``python examples/08_mean_peers_events.py`` (about half a minute on 2 CPU cores).
"""

import xsuperres

S, T = 10, 3
hr = xsuperres.open_sample("knmi")["precip"].isel(time=slice(36, 54), y=slice(0, 80), x=slice(0, 80))
lr = hr.stsr.coarsen_perfect(S, T)

# 1. the deterministic stage alone, and the ensemble, scored against the truth
mean = lr.stsr.downscale_mean("radar-s10-t3", context="drop", device="cpu")
ens = lr.stsr.downscale("radar-s10-t3", n_members=3, context="drop", device="cpu")
truth = hr.isel(time=slice((5 - 1) * T, None))  # context="drop": the first L - 1 = 4 LR steps
print(mean.dims, mean.attrs["xsuperres_stage"], "|", ens.dims, ens.attrs["xsuperres_stage"])
scores = {"deterministic mean": xsuperres.score(mean.compute(), truth),
          "full model (3 members)": xsuperres.score(ens.compute(), truth)}

# 2. RainFARM on the same LR steps (an optional dependency)
try:
    farm = xsuperres.rainfarm(lr.isel(time=slice(4, None)), S, T, n_members=3, seed=0)
    scores["RainFARM (3 members)"] = xsuperres.score(farm.compute(), truth)
except ImportError as err:
    print("RainFARM skipped:", str(err).splitlines()[0])
for name, sc in scores.items():
    print(f"{name:<24s} CRPS {float(sc['crps']):.3f} mm/h  PITD {float(sc['pitd']):.3f}  "
          f"LSD {float(sc['lsd']):.3f}")

# 3. two events (the two halves of the sample, named), the second held out whole
first = hr.isel(time=slice(0, 9)).rename("early")
second = hr.isel(time=slice(9, 18)).rename("late")
model = xsuperres.train([first, second], S, T, valid_events=["late"], augment=True, epochs=1,
                        progress=False, config=xsuperres.SRConfig.recipe(S, T, preset="tiny",
                                                                        tile_size=40, L=2))
md = model.metadata
print("held out:", md["data"]["split"]["valid_events"], "| samples:", md["n_samples"],
      "| augmentation:", md["protocol"]["augment"])
