"""Figures a user calls from a notebook: maps of fields and members on one colour scale, the
PIT histogram of an ensemble, radially averaged power spectra.

Every function returns matplotlib objects (a ``Figure``, or the ``Axes`` drawn on) and
saves a PNG when given ``path``. The ``stsr`` accessor reaches them as
``ens.stsr.plot_members(truth=...)``, ``ens.stsr.plot_pit(truth)`` and
``ens.stsr.plot_spectra(truth=...)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .dims import find_dims

__all__ = ["plot_panels", "plot_members", "plot_pit", "plot_spectra", "mean_spectrum"]


def _pyplot(path):
    """matplotlib.pyplot, on the Agg backend when a PNG is written (headless runs)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot(path)
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


def plot_members(
    ens: xr.DataArray,
    truth: xr.DataArray | None = None,
    *,
    mean: xr.DataArray | None = None,
    n_members: int = 3,
    member_dim: str = "member",
    times: Sequence | None = None,
    path: str | Path | None = None,
    **kwargs,
):
    """Panels of truth, an optional deterministic mean and the first members.

    Parameters
    ----------
    ens
        Ensemble ``(member, time, y, x)`` in mm h-1 (the output of ``downscale``).
    truth
        The HR truth (or any reference) on the same grid; drawn first when given.
    mean
        E.g. ``downscale_mean(...)``; drawn after the truth when given.
    n_members
        How many members to draw (the first ones).
    member_dim, times, path
        Member dimension; HR time labels of the rows (default: the first three); PNG path.
    **kwargs
        Passed to :func:`plot_panels` (``vmax``, ``title``, ``dims``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if member_dim not in ens.dims:
        raise ValueError(f"the ensemble has no {member_dim!r} dimension (dims {ens.dims}); "
                         "pass member_dim=... or use plot_panels for single fields")
    fields: dict[str, xr.DataArray] = {}
    if truth is not None:
        fields["truth"] = truth
    if mean is not None:
        fields["deterministic mean"] = mean
    for m in range(min(int(n_members), ens.sizes[member_dim])):
        fields[f"member {m}"] = ens.isel({member_dim: m})
    return plot_panels(fields, times=times, path=path, **kwargs)


def plot_pit(ens: xr.DataArray, truth: xr.DataArray, *, bins: int = 10, member_dim: str = "member",
             ax=None, path: str | Path | None = None):
    """PIT histogram of an ensemble against the truth (flat at 1 when calibrated).

    The PIT values are those of :func:`xsuperres.metrics.pit_values` (per frame, the
    members' pixels pooled; mid-rank for ties). The title gives the PIT deviation
    (:func:`xsuperres.metrics.pit_deviation`).

    Returns
    -------
    matplotlib.axes.Axes
        With ``bins`` bars of relative frequency (density; 1 is calibrated).
    """
    from .metrics import pit_deviation, pit_values

    plt = _pyplot(path)
    if member_dim not in ens.dims:
        raise ValueError(f"the ensemble has no {member_dim!r} dimension (dims {ens.dims})")
    p = ens.transpose(member_dim, *truth.dims).values
    u = pit_values(p, truth.values)
    u = u[np.isfinite(u)]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    ax.hist(u, bins=bins, range=(0, 1), density=True, color="tab:blue", edgecolor="white")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xlabel("PIT")
    ax.set_ylabel("density")
    ax.set_title(f"PIT histogram (PITD {pit_deviation(u):.3f}, {u.size} pixels)", fontsize=9)
    if path is not None:
        ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    return ax


def mean_spectrum(da: xr.DataArray, dims: Mapping[str, Hashable] | None = None) -> np.ndarray:
    """Radially averaged FFT magnitude (:func:`xsuperres.metrics.radial_spectrum`) averaged
    over every frame (and member) of ``da``; NaN filled with 0. Shape ``(min(ny, nx)//2 + 1,)``."""
    from .metrics import radial_spectrum

    sp = find_dims(da, dims, roles=("y", "x"))
    a = np.nan_to_num(da.transpose(..., sp["y"], sp["x"]).values)
    return radial_spectrum(a.reshape(-1, *a.shape[-2:])).mean(axis=0)


def plot_spectra(fields: Mapping[str, xr.DataArray], *, dims: Mapping[str, Hashable] | None = None,
                 ax=None, path: str | Path | None = None):
    """Radially averaged power spectra of HR fields (truth, bicubic, members, ...), log-log.

    Each curve is :func:`mean_spectrum` squared, against the wavelength in grid pixels (or
    km when the x coordinate is regular and in metres). The LSD metric is the mean squared
    difference of these (log) spectra: a smooth field falls off at short wavelengths.

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = _pyplot(path)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    unit = "pixels"
    for name, da in fields.items():
        spec = mean_spectrum(da, dims) ** 2
        sp = find_dims(da, dims, roles=("y", "x"))
        n = min(da.sizes[sp["y"]], da.sizes[sp["x"]])
        k = np.arange(1, spec.size)
        wavelength = n / k
        x = da[sp["x"]].values if sp["x"] in da.coords else None
        if x is not None and x.size > 1 and str(da[sp["x"]].attrs.get("units", "")) in ("m", "metre", "meter"):
            wavelength = wavelength * abs(float(x[1] - x[0])) / 1000.0
            unit = "km"
        ax.loglog(wavelength, spec[1:], label=name)
    ax.invert_xaxis()
    ax.set_xlabel(f"wavelength ({unit})")
    ax.set_ylabel("power (mm2 h-2, unnormalised FFT)")
    ax.legend(fontsize=8)
    ax.set_title("radially averaged power spectra", fontsize=9)
    if path is not None:
        ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    return ax
