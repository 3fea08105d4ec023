"""Tuning the three scale-adaptive hyperparameters (preprint section 5.1; docs/training.md).

:func:`context_length`
    ``L`` by an elbow search on the validation loss of the deterministic mean model: for
    every candidate a mean model is trained (``stage="mean"``) on one common sample set
    (targets from block ``max(candidates) - 1`` on, so that every ``L`` sees the same
    validation targets), and the chosen ``L`` is the smallest one beyond which the
    validation loss improves by less than ``tolerance`` (relative):
    ``(loss(L) - min_{L' > L} loss(L')) / loss(L) < tolerance``. Using the best of *all*
    larger candidates (not only the next one) keeps a noisy non-monotone curve from
    stopping the search too early.
:func:`calibrate`
    ``beta_max`` and the exponent ``p`` of ``F(x) = x ** p`` by the PIT deviation (PITD,
    :func:`xsuperres.metrics.pitd` with the *randomized* PIT for ties) of ensembles
    generated on the validation tiles. Randomized, because the mid-rank PIT stacks every
    dry truth pixel of a frame at one value inside the histogram, so that even a perfect
    ensemble of a frame more than 20 % dry shows too few outer-decile values and would
    read as over-dispersive. One mean model is trained per ``p`` and one diffusion model per
    ``(p, beta_max)`` on top of it. The grid point with the lowest PITD wins. For every
    grid point the table also reports the shape of the PIT histogram: the fraction of
    PIT values in the two outer deciles (0.2 for a calibrated ensemble); more means a
    U-shaped histogram (under-dispersive ensemble: increase ``beta_max`` / ``p``), less a
    hump (over-dispersive: decrease them), as the preprint prescribes; and the
    spread-error ratio (:func:`xsuperres.metrics.spread_error_ratio`, 1 if calibrated).

Both return a :class:`TuneResult` (a :class:`pandas.DataFrame` table, the chosen value and
the configuration with the chosen value filled in).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .config import SRConfig
from .metrics import pit_deviation, pit_values, spread_error_ratio
from .training.data import TrainingData, build_training_data
from .training.loop import fit
from .training.options import TrainOptions, _Default, combine

__all__ = ["TuneResult", "context_length", "calibrate", "elbow", "pit_summary"]

log = logging.getLogger(__name__)

#: Keywords that describe the data rather than the training (passed to
#: :func:`~xsuperres.training.data.build_training_data`).
_DATA_KWARGS = ("topography", "dims")
#: Training options that the tuning functions set themselves: the stage of every model,
#: and no checkpoints (several models are trained, one checkpoint folder cannot hold them).
_FIXED_OPTIONS = ("stage", "checkpoint_dir")
#: The training options of the tuning functions when ``options`` is not given: shorter
#: runs than :func:`xsuperres.train`'s and no progress bar.
TUNE_OPTIONS = TrainOptions(epochs=20, progress=False)


@dataclass
class TuneResult:
    """Outcome of a tuning search.

    Attributes
    ----------
    table
        One row per candidate (see the function's notes for the columns).
    best
        The chosen value: ``int`` (``L``) or ``dict`` (``{"beta_max": .., "power": ..}``).
    config
        The base configuration with the chosen value(s) filled in.
    models
        The trained models by candidate (only with ``keep_models=True``), else ``None``.
    """

    table: pd.DataFrame
    best: Any
    config: SRConfig
    models: dict[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"TuneResult(best={self.best!r})\n{self.table.to_string(index=False)}"


def _split_kwargs(kwargs: dict[str, Any], options: TrainOptions | None,
                  epochs: Any) -> tuple[dict[str, Any], TrainOptions]:
    """``(data keywords, training options)`` of a tuning call.

    The options are ``options`` (default :data:`TUNE_OPTIONS`) with the training keywords
    given explicitly (``epochs`` included) filled in, as in :func:`xsuperres.train`.
    """
    accepted = [f.name for f in dataclasses.fields(TrainOptions) if f.name not in _FIXED_OPTIONS]
    unknown = set(kwargs) - set(_DATA_KWARGS) - set(accepted)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; accepted: "
                        f"{sorted([*_DATA_KWARGS, *accepted, 'options'])}")
    data_kw = {k: v for k, v in kwargs.items() if k in _DATA_KWARGS}
    opts = combine(TUNE_OPTIONS if options is None else options, {**kwargs, "epochs": epochs})
    if opts.checkpoint_dir is not None:
        raise ValueError("the tuning functions train several models and keep no checkpoints; "
                         f"use options with checkpoint_dir=None, got {opts.checkpoint_dir!r}")
    return data_kw, opts


def elbow(values: Sequence[float], tolerance: float = 0.02) -> tuple[int, np.ndarray]:
    """Index of the elbow of a loss curve over increasing candidates.

    Parameters
    ----------
    values
        Validation losses in the order of increasing candidate (lower is better).
    tolerance
        Relative improvement regarded as marginal.

    Returns
    -------
    index : int
        Smallest ``k`` with ``gain[k] < tolerance`` (the last index if none).
    gain : numpy.ndarray
        ``gain[k] = (v[k] - min(v[k+1:])) / v[k]`` (0 for the last candidate); negative
        when every larger candidate is worse.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not v.size:
        raise ValueError("values must be a non-empty 1-D sequence")
    gain = np.zeros(v.size)
    for k in range(v.size - 1):
        gain[k] = (v[k] - np.min(v[k + 1:])) / v[k] if v[k] > 0 else 0.0
    below = np.flatnonzero(gain < tolerance)
    return int(below[0]) if below.size else v.size - 1, gain


def context_length(
    hr: xr.DataArray | Sequence[xr.DataArray],
    S: int,
    T: int,
    candidates: Sequence[int] = (1, 2, 3, 4, 6),
    *,
    epochs: int = _Default(TUNE_OPTIONS.epochs),
    tolerance: float = 0.02,
    config: SRConfig | None = None,
    keep_models: bool = False,
    options: TrainOptions | None = None,
    **train_kwargs: Any,
) -> TuneResult:
    """Choose the context length ``L`` by the elbow rule (see the module notes).

    Parameters
    ----------
    hr, S, T
        Training data and factors, as in :func:`xsuperres.train`.
    candidates
        Context lengths to try (positive integers).
    epochs
        Maximum epochs of each mean model (20, or ``options.epochs`` when ``options`` is
        given).
    tolerance
        Relative validation-loss improvement regarded as marginal (default 2 %).
    config
        Base configuration (default ``SRConfig.recipe(S, T)``); only ``L`` varies.
    keep_models
        Keep the trained mean models in ``result.models`` (by ``L``).
    options
        Training options (:class:`~xsuperres.training.options.TrainOptions`) of every
        model; default :data:`TUNE_OPTIONS` (``epochs=20, progress=False``, else the
        defaults of :func:`xsuperres.train`). Its ``stage`` is ignored (the tuning
        functions set it) and its ``checkpoint_dir`` must be ``None``.
    **train_kwargs
        ``topography`` and ``dims``, and the training options as keywords (every field
        of :class:`~xsuperres.training.options.TrainOptions` but ``stage`` and
        ``checkpoint_dir``: ``fold``, ``n_folds``, ``valid``, ``batch_size``, ``lr``,
        ``patience``, ``mc_start_epoch``, ``seed``, ``device``, ``progress``), as in
        :func:`xsuperres.train`; they override the fields of ``options``.

    Returns
    -------
    TuneResult
        ``table`` columns: ``L``, ``attention_horizon`` (``T L`` HR steps),
        ``attention_time`` (the horizon as a duration, if the cadence is known),
        ``valid_loss`` (best validation MSE of the mean, normalized units), ``best_epoch``,
        ``epochs_run``, ``n_valid``, ``gain_beyond`` (relative improvement still available
        from larger ``L``) and ``chosen``; ``best`` is the chosen ``L``.
    """
    cands = sorted({int(c) for c in candidates})
    if not cands or cands[0] < 1:
        raise ValueError(f"candidates must be positive integers, got {candidates!r}")
    data_kw, opts = _split_kwargs(train_kwargs, options, epochs)
    opts = dataclasses.replace(opts, stage="mean")
    base = config if config is not None else SRConfig.recipe(S, T)
    first = max(cands) - 1
    rows, models = [], {}
    cap = base.cap
    for L in cands:
        cfg = base.replace(L=L, cap=cap)
        td = build_training_data(hr, S, T, config=cfg, first_block=first, seed=opts.seed, fold=opts.fold,
                                 n_folds=opts.n_folds, valid=opts.valid, **data_kw)
        cap = td.config.cap  # the same cap for every candidate
        model = fit(None, S, T, options=opts, training_data=td)
        h = model.history["mean"]
        step = td.config.time_step
        rows.append({
            "L": L,
            "attention_horizon": T * L,
            "attention_time": None if step is None else str(pd.Timedelta(step) * T * L),
            "valid_loss": h["best_valid"],
            "best_epoch": h["best_epoch"],
            "epochs_run": h["epochs_run"],
            "n_valid": len(td.valid),
        })
        log.info("L=%d: best validation loss %.5g", L, h["best_valid"])
        if keep_models:
            models[L] = model
        base = base.replace(tile_size=td.config.tile_size, time_step=td.config.time_step)
    table = pd.DataFrame(rows)
    k, gain = elbow(table["valid_loss"].to_numpy(), tolerance)
    table["gain_beyond"] = gain
    table["chosen"] = np.arange(len(table)) == k
    best = int(table["L"].iloc[k])
    return TuneResult(table, best, base.replace(L=best, cap=cap), models if keep_models else None)


def pit_summary(u: np.ndarray, tolerance: float = 0.02) -> dict[str, Any]:
    """PITD and dispersion diagnosis of PIT values.

    Parameters
    ----------
    u
        PIT values in ``[0, 1]`` (NaN ignored).
    tolerance
        Allowed deviation of the outer-decile fraction from 0.2 before a dispersion
        problem is reported.

    Returns
    -------
    dict
        ``pitd`` (``sqrt(mean((u_(i) - (i - 0.5) / N)^2))``), ``outer_fraction`` (share of
        ``u < 0.1`` or ``u > 0.9``; 0.2 if calibrated), ``dispersion``
        (``"under"``: U-shaped histogram, ``"over"``: hump, ``"ok"``) and ``advice``
        (``"larger"``, ``"smaller"`` or ``"keep"``: which way to move ``beta_max``/``p``).
    """
    u = np.sort(np.asarray(u, dtype=float)[np.isfinite(u)])
    if not u.size:
        return {"pitd": float("nan"), "outer_fraction": float("nan"), "dispersion": "unknown",
                "advice": "unknown"}
    pitd = pit_deviation(u)
    outer = float(np.mean((u < 0.1) | (u > 0.9)))
    if outer > 0.2 + tolerance:
        disp, advice = "under", "larger"
    elif outer < 0.2 - tolerance:
        disp, advice = "over", "smaller"
    else:
        disp, advice = "ok", "keep"
    return {"pitd": pitd, "outer_fraction": outer, "dispersion": disp, "advice": advice}


def _validation_arrays(td: TrainingData, max_samples: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Up to ``max_samples`` evenly spaced validation samples in physical units.

    Returns ``(lr (N, L, h, w) mm/h, topography (N, H, W) m or None, truth (N, T, H, W) mm/h)``.
    """
    ds = td.valid
    n = len(ds)
    idx = np.unique(np.linspace(0, n - 1, min(n, int(max_samples))).round().astype(int))
    cap = float(td.config.cap)
    lr, truth, topo = [], [], []
    for i in idx:
        item = ds[int(i)]
        lr.append(item["context"].numpy() * cap)
        truth.append(item["target"].numpy() * cap)
        e, k, _ = (int(v) for v in ds.records[i])
        ev, tile = td.data.events[e], td.split.tiles[e][k]
        if td.topo_range is not None:
            z = ev.topography if ev.topography is not None else np.full(ev.hr.shape[1:], td.topo_range[0])
            topo.append(z[tile.yslice, tile.xslice])
    return (np.stack(lr), np.stack(topo) if topo else None, np.stack(truth))


def calibrate(
    hr: xr.DataArray | Sequence[xr.DataArray],
    S: int,
    T: int,
    *,
    beta_max_grid: Sequence[float] = (5e-3, 1e-2, 2e-2, 4e-2),
    power_grid: Sequence[float] = (0.8, 1.0, 1.25),
    epochs: int = _Default(TUNE_OPTIONS.epochs),
    n_members: int = 3,
    sampler: str = "dpmpp_2m",
    steps: int | None = 20,
    max_samples: int = 64,
    dispersion_tolerance: float = 0.02,
    config: SRConfig | None = None,
    keep_models: bool = False,
    options: TrainOptions | None = None,
    **train_kwargs: Any,
) -> TuneResult:
    """Choose ``beta_max`` and the exponent ``p`` of ``F`` by PIT deviation.

    Parameters
    ----------
    hr, S, T
        Training data and factors, as in :func:`xsuperres.train`.
    beta_max_grid
        Candidate ``beta_max`` values (each in ``(beta_min, 1)``).
    power_grid
        Candidate exponents ``p > 0``.
    epochs
        Maximum epochs per stage of each model (20, or ``options.epochs`` when
        ``options`` is given).
    n_members
        Ensemble size used for the PIT.
    sampler, steps
        Sampler of :meth:`xsuperres.model.SRModel.predict`: DPM-Solver++(2M) with 20
        log-SNR-spaced steps by default (few-step DDIM is itself under-dispersive, which
        would push the search towards too large ``beta_max``/``p``);
        ``sampler="ancestral", steps=None`` for the preprint's 1000-step reference.
    max_samples
        Validation samples (evenly spaced) on which ensembles are generated.
    dispersion_tolerance
        See :func:`pit_summary`.
    config
        Base configuration (default ``SRConfig.recipe(S, T)``).
    keep_models
        Keep the trained models in ``result.models`` by ``(power, beta_max)``.
    options, **train_kwargs
        As in :func:`context_length`.

    Returns
    -------
    TuneResult
        ``table`` columns: ``power``, ``beta_max``, ``pitd``, ``outer_fraction`` (both of
        the randomized PIT, ``seed``; all samples' frames pooled), ``dispersion``
        (``under``/``over``/``ok``), ``advice`` (``larger``/``smaller``/``keep``),
        ``spread_error`` (members' mutual MAE over their MAE, 1 if calibrated),
        ``valid_loss_mean``, ``valid_loss_diffusion`` and ``chosen``;
        ``best`` is ``{"beta_max": .., "power": ..}`` of the lowest PITD.
    """
    betas = [float(b) for b in beta_max_grid]
    powers = [float(p) for p in power_grid]
    if not betas or not powers:
        raise ValueError("beta_max_grid and power_grid must not be empty")
    data_kw, opts = _split_kwargs(train_kwargs, options, epochs)
    seed = opts.seed
    base = config if config is not None else SRConfig.recipe(S, T)
    for b in betas:
        base.replace(beta_max=b)  # validates every grid value before any training
    for p in powers:
        base.replace(power=p)
    td0 = build_training_data(hr, S, T, config=base, seed=seed, fold=opts.fold, n_folds=opts.n_folds,
                              valid=opts.valid, **data_kw)
    lr, topo, truth = _validation_arrays(td0, max_samples)
    device = opts.device
    rows, models = [], {}
    for p in powers:
        td_mean = dataclasses.replace(td0, config=td0.config.replace(power=p))
        mean_model = fit(None, S, T, options=dataclasses.replace(opts, stage="mean"), training_data=td_mean)
        for b in betas:
            td = dataclasses.replace(td0, config=td0.config.replace(power=p, beta_max=b))
            model = fit(None, S, T, options=dataclasses.replace(opts, stage="both"), training_data=td,
                        mean_from=mean_model)
            pred = model.predict(lr, topo, n_members=n_members, sampler=sampler, steps=steps,
                                 seed=seed, device=device)
            n, m = pred.shape[:2]  # (N, M, T, H, W) -> members over all N * T frames
            members = pred.transpose(1, 0, 2, 3, 4).reshape(m, n * pred.shape[2], *pred.shape[3:])
            frames = truth.reshape(n * truth.shape[1], *truth.shape[2:])
            summary = pit_summary(pit_values(members, frames, ties="randomized", seed=seed),
                                  dispersion_tolerance)
            rows.append({"power": p, "beta_max": b, **summary,
                         "spread_error": spread_error_ratio(members, frames),
                         "valid_loss_mean": model.history["mean"]["best_valid"],
                         "valid_loss_diffusion": model.history["diffusion"]["best_valid"]})
            log.info("power=%g beta_max=%g: PITD %.4f, outer deciles %.3f (%s-dispersive)", p, b,
                     summary["pitd"], summary["outer_fraction"], summary["dispersion"])
            if keep_models:
                models[(p, b)] = model
    table = pd.DataFrame(rows)
    k = int(np.nanargmin(table["pitd"].to_numpy())) if table["pitd"].notna().any() else 0
    table["chosen"] = np.arange(len(table)) == k
    best = {"beta_max": float(table["beta_max"].iloc[k]), "power": float(table["power"].iloc[k])}
    cfg = td0.config.replace(**best)
    return TuneResult(table, best, cfg, models if keep_models else None)
