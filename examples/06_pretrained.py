"""A shipped pretrained model: list, read the card, downscale, score.

Runs offline: the four radar models ship inside the package (fp16 safetensors, hash-checked
against ``xsuperres/weights/registry.txt`` on every load). They were trained on 5-min radar
data, so the example uses the 5-min KNMI sample: 4 LR steps (20 min) of an 80 x 80 km
crop, coarsened by the model's own factors (S = 10, T = 3), downscaled to 3 members.

Run: ``python examples/06_pretrained.py`` (about 30 s on 2 CPU cores).
"""

import xsuperres

print(xsuperres.list_models())                   # ['radar-s1-t3', 'radar-s10-t1', ...]
card = xsuperres.pretrained.model_card("radar-s10-t3")
print("\n".join(card.splitlines()[:12]))         # factors, L, beta_max, F, data ...

model = xsuperres.load_model("radar-s10-t3")
S, T, L = model.config.S, model.config.T, model.config.L
truth = xsuperres.open_sample("knmi").precip.isel(time=slice(45, 45 + (L + 3) * T),
                                                   y=slice(0, 80), x=slice(0, 80))
lr = truth.stsr.coarsen_perfect(S, T)            # (L + 3) LR steps of 10 x 10 km
ens = lr.stsr.downscale(model, n_members=3, steps=10, context="drop")   # lazy
print(ens)                                       # member x time x y x, mm h-1
truth = truth.isel(time=slice((L - 1) * T, None))                      # the downscaled blocks
ens = ens.compute().assign_coords(time=truth.time, y=truth.y, x=truth.x)
print(xsuperres.score(ens, truth)[["crps", "pitd", "pe99", "lsd"]])
