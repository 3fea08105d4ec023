"""Side-by-side maps of precipitation fields on one colour scale."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .dims import find_dims

__all__ = ["plot_panels"]


def _frame(da: xr.DataArray, time, tdim: Hashable) -> xr.DataArray:
    """The frame of ``da`` valid at ``time`` (an LR frame covers its whole block)."""
    if tdim not in da.dims:
        return da
    return da.sel({tdim: time}, method="pad")


def plot_panels(
    fields: Mapping[str, xr.DataArray],
    times: Sequence | None = None,
    path: str | Path | None = None,
    *,
    vmax: float | None = None,
    title: str | None = None,
    dims: Mapping[str, Hashable] | None = None,
):
    """Draw one column per field and one row per time step, with a shared colour scale.

    Parameters
    ----------
    fields
        ``{column title: DataArray (time, y, x)}`` in mm h-1. Fields may be on
        different grids (e.g. the LR input next to HR fields); each is drawn on
        its own coordinates. An LR field's frame is the one whose block contains
        the row's time.
    times
        HR time labels of the rows; default: the first three of the first field.
    path
        Where to save a PNG; the figure is returned either way.
    vmax
        Upper end of the colour scale (mm h-1); default: the 99.9th percentile
        over all panels.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    first = next(iter(fields.values()))
    tdim = find_dims(first, dims, roles=("time",))["time"]
    if times is None:
        times = first[tdim].values[:3]
    frames = {name: [_frame(da, t, tdim) for t in times] for name, da in fields.items()}
    if vmax is None:
        values = np.concatenate([np.ravel(f.values) for fs in frames.values() for f in fs])
        vmax = float(np.nanpercentile(values, 99.9)) if np.isfinite(values).any() else 1.0
        vmax = max(vmax, 0.1)
    nrow, ncol = len(times), len(fields)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol + 0.8, 2.3 * nrow + 0.6), squeeze=False)
    mesh = None
    for col, (name, fs) in enumerate(frames.items()):
        for row, frame in enumerate(fs):
            ax = axes[row, col]
            sp = find_dims(frame, dims, roles=("y", "x"))
            frame = frame.transpose(sp["y"], sp["x"])
            mesh = ax.pcolormesh(frame[sp["x"]].values, frame[sp["y"]].values, frame.values,
                                 cmap="turbo", vmin=0.0, vmax=vmax, shading="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(np.datetime_as_string(np.datetime64(times[row]), unit="m"), fontsize=8)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label="precipitation rate (mm h-1)")
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
