"""Fine-tuning a shipped model to your own data: ``train(..., init=...)``.

The shipped ``radar-s10-t3`` learned from 5-min radar data; the embedded RADOLAN sample is
hourly, radar-gauge adjusted and has topography. ``init=`` starts both networks from the
shipped weights (architecture, cap and topography scaling kept; cadence and residual
scale refitted), so a short budget at a small learning rate builds on what the model
knows. On the whole RADOLAN day this beat the same budget from scratch by 7.7 % in CRPS
(docs/results.md). Here one epoch per stage, to show the call and what it records.

Run: ``python examples/09_finetune.py`` (about a minute on 2 CPU cores; it writes the
folder ``radolan-s10-t3-finetuned``).
"""

import xsuperres

ds = xsuperres.open_sample("radolan")  # hourly, 1 km, with topography
shipped = xsuperres.load_model("radar-s10-t3")

tuned = xsuperres.train(ds["precip"], 10, 3, topography=ds["topography"], init="radar-s10-t3",
                        epochs=1, lr=1e-4, batch_size=12, augment=True, progress=False,
                        device="cpu")

init = tuned.metadata["protocol"]["init"]
print("started from weights", init["weights_sha256"][:12], "trained on", init["trained_on"])
print("cadence:", shipped.config.time_step, "->", tuned.config.time_step,
      "| cap kept:", shipped.cap, "==", tuned.cap)
print("residual scale refitted:", round(shipped.normalization["residual_scale"], 4), "->",
      round(tuned.normalization["residual_scale"], 4))
print("validation losses (mean stage):", tuned.history["mean"]["valid"])
tuned.save("radolan-s10-t3-finetuned")  # safetensors + JSON, loads like any SRModel
