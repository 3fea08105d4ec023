"""Training options: the settings of one training run, in one frozen dataclass.

A training run of :func:`xsuperres.train` is described by the data (``hr``, ``S``, ``T``,
``topography``, ``dims``), the model's hyperparameters (:class:`~xsuperres.config.SRConfig`)
and the *training options*: the optimisation protocol (epochs, batch size, learning rate,
early stopping, when mass conservation enters the loss), the validation split (fold,
number of folds, held-out period), the random seed, the device, the progress bar, the
checkpoint folder and the stage(s) to train. :class:`TrainOptions` holds the training
options; it is shared by :func:`~xsuperres.training.loop.train`,
:func:`~xsuperres.training.loop.fit`, the ``xsuperres train`` command line and
:mod:`xsuperres.tune`, so that every default and every rule on these settings lives here
once.

The training functions accept the options both as keywords (``epochs=3``) and as one
object (``options=TrainOptions(epochs=3)``). The rule (:func:`combine`): ``options`` is
the base (``TrainOptions()`` when omitted) and the keywords *given explicitly* override
its fields, so ``train(hr, S, T, options=opts, lr=1e-3)`` is
``train(hr, S, T, options=dataclasses.replace(opts, lr=1e-3))``. A keyword left out never
overrides: the functions' defaults are markers (:data:`DEFAULT`) that print as the
:class:`TrainOptions` default, so the signatures read as before (``epochs=80``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..checks import integer, non_negative_float, positive_int
from ..checks import seed as check_seed

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["TrainOptions", "STAGE_CHOICES", "DIFFUSION_MEANS", "DEFAULT", "combine"]

#: Values of :attr:`TrainOptions.stage`.
STAGE_CHOICES: tuple[str, ...] = ("both", "mean")

#: Values of :attr:`TrainOptions.diffusion_mean`: the mean network, or a temporal peer of
#: :mod:`xsuperres.temporal` (the ``mean=`` choices of :func:`xsuperres.downscale`).
DIFFUSION_MEANS: tuple[str, ...] = ("network", "motion", "linear", "persistence")


def _event_list(value: Any) -> tuple[int | str, ...] | None:
    """``valid_events`` as a tuple of event indices / names (or None)."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, int)) else list(value)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, int) and v < 0):
            raise ValueError("valid_events must be event names or non-negative indices (or None), "
                             f"got {value!r}")
    if not items:
        raise ValueError("valid_events is empty: name at least one event to hold out, or pass None")
    return tuple(items)


@dataclass(frozen=True)
class TrainOptions:
    """The training options of :func:`xsuperres.train` (see the module notes).

    Every field is validated on construction (and by :func:`dataclasses.replace`), with
    the messages of :mod:`xsuperres.checks` and, for ``device``, of the one device
    validator of :mod:`xsuperres.model`; integers are stored as ``int``, ``lr`` as
    ``float`` and ``checkpoint_dir`` as ``str``.

    Attributes
    ----------
    epochs
        Maximum number of epochs per stage (positive integer; 80 in the preprint).
    batch_size
        Samples per batch (positive integer; 12 in the preprint).
    lr
        Adam learning rate (finite, ``>= 0``; 1e-4), on the losses in normalized units;
        annealed to 0 over ``epochs`` epochs with a cosine.
    patience
        Early stopping after this many epochs without a strictly lower validation loss
        (positive integer; 8).
    mc_start_epoch
        Number of epochs trained before mass conservation enters the training loss of the
        mean: it is used from epoch ``mc_start_epoch + 1`` on (non-negative integer; 20,
        "after the 20th epoch").
    fold
        Validation fold of the Latin-square tile folds, 0-based (non-negative integer).
        Whether it lies below ``n_folds`` is checked with the split
        (:func:`~xsuperres.training.split.split_samples`).
    n_folds
        Number of folds (positive integer; the split needs at least 2).
    valid
        Optional held-out validation period ``slice(t0, t1)`` of time labels (checked
        against the data's time axis by :mod:`xsuperres.training.split`), or ``None``.
    valid_events
        Events held out whole for validation (the event-level hold-out, e.g.
        leave-one-event-out): event indices or names (the DataArrays' names), stored as a
        tuple; ``None`` (default): the tile folds. Not combined with ``valid``; ``fold``
        and ``n_folds`` are then unused.
    seed
        Seed of the weights' initialisation, the shuffling and the diffusion noise
        (non-negative integer).
    device
        ``"auto"`` (CUDA if available, resolved when training starts), ``"cpu"``,
        ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a :class:`torch.device`.
    progress
        Show a tqdm progress bar with the running losses (stored as ``bool``).
    checkpoint_dir
        Folder (path) of the per-epoch checkpoints; an existing checkpoint there is
        resumed. ``None``: no checkpoints.
    stage
        ``"both"`` (the mean, then the residual diffusion) or ``"mean"`` (the
        deterministic mean only).
    augment
        Turn every training sample of every epoch by a random element of the dihedral
        group (the 8 rotations by 90 degrees and reflections,
        :mod:`xsuperres.training.augment`; stored as ``bool``; default ``False``).
    diffusion_mean
        The conditional mean ``D`` the diffusion stage learns the residual around:
        ``"network"`` (default: the frozen ``U_det``, the preprint's protocol) or, for
        temporal models (``S = 1``, ``T > 1``), one of the temporal peers ``"motion"``,
        ``"linear"``, ``"persistence"`` of :mod:`xsuperres.temporal` computed on each
        event's whole LR sequence (:func:`~xsuperres.training.data.time_means`): the
        mean that ``downscale(..., mean=...)`` gives the diffusion stage at inference.
        The mean stage is trained either way.
    residual_power, residual_floor
        The scale of the residual the diffusion stage models:
        ``residual_scale * (D + residual_floor) ** residual_power``
        (:func:`~xsuperres.model.normalization.residual_std`; ``D`` and the floor in
        normalized units, ``mm/h / cap``). ``residual_power = 0`` (default): one global
        scale, the RMS residual. ``1`` with the floor ``0.03``: a residual scale that
        grows with the mean (on the training samples of a (10, 1) fold the residual's RMS
        grows from 0.01 where ``D`` is dry to 2.2 where ``D > 3``, and divided by
        ``D + 0.03`` it stays between 0.8 and 2 in every intensity bin). Finite, ``>= 0``
        and ``> 0``. Saved in the model's normalization; the mean stage does not use them.
    """

    epochs: int = 80
    batch_size: int = 12
    lr: float = 1e-4
    patience: int = 8
    mc_start_epoch: int = 20
    fold: int = 0
    n_folds: int = 4
    valid: slice | None = None
    valid_events: tuple[int | str, ...] | None = None
    seed: int = 0
    device: str | torch.device = "auto"
    progress: bool = True
    checkpoint_dir: str | os.PathLike[str] | None = None
    stage: str = "both"
    augment: bool = False
    diffusion_mean: str = "network"
    residual_power: float = 0.0
    residual_floor: float = 0.03

    def __post_init__(self) -> None:
        # imported here: the model module needs torch, this one does not
        from ..model import _resolve_device
        from ..model.normalization import check_residual_scaling

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("epochs", "batch_size", "patience", "n_folds"):
            put(name, positive_int(getattr(self, name), name))
        put("mc_start_epoch", integer(self.mc_start_epoch, "mc_start_epoch", 0))
        put("fold", integer(self.fold, "fold", 0))
        put("seed", check_seed(self.seed))
        put("valid_events", _event_list(self.valid_events))
        put("lr", non_negative_float(self.lr, "lr"))
        power, floor = check_residual_scaling(self.residual_power, self.residual_floor)
        put("residual_power", power)
        put("residual_floor", floor)
        _resolve_device(self.device)  # raises a ValueError listing the valid devices
        put("progress", bool(self.progress))
        put("augment", bool(self.augment))
        if self.checkpoint_dir is not None:
            try:
                put("checkpoint_dir", os.fsdecode(self.checkpoint_dir))
            except TypeError:
                raise ValueError(f"checkpoint_dir must be a folder path or None, "
                                 f"got {self.checkpoint_dir!r}") from None
        if self.stage not in STAGE_CHOICES:
            raise ValueError(f"stage must be 'both' or 'mean', got {self.stage!r}")
        if self.diffusion_mean not in DIFFUSION_MEANS:
            raise ValueError(f"diffusion_mean must be one of {DIFFUSION_MEANS}, got {self.diffusion_mean!r}")


class _Default:
    """The default of a training keyword that the caller left out.

    Its ``repr`` is the default value, so that ``help(train)`` shows ``epochs=80``;
    :func:`combine` skips it, so that a keyword left out never overrides ``options``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


#: Defaults of the training keywords of :func:`~xsuperres.training.loop.train` and
#: :func:`~xsuperres.training.loop.fit`, one per field of :class:`TrainOptions`
#: (``DEFAULT.epochs`` prints as ``80``; ``DEFAULT.epochs.value`` is 80).
DEFAULT = SimpleNamespace(**{f.name: _Default(f.default) for f in fields(TrainOptions)})


def combine(options: TrainOptions | None, keywords: Mapping[str, Any]) -> TrainOptions:
    """The training options of a call: ``options`` overridden by the keywords given.

    Parameters
    ----------
    options
        The ``options=`` argument: a :class:`TrainOptions`, or ``None`` for
        ``TrainOptions()``.
    keywords
        The call's arguments by name (e.g. ``locals()`` at the top of the function). The
        names that are fields of :class:`TrainOptions` are used, except those left at
        their :data:`DEFAULT` marker; other names are ignored.

    Returns
    -------
    TrainOptions
        ``dataclasses.replace(options, **given)``, validated.

    Raises
    ------
    TypeError
        ``options`` is not a :class:`TrainOptions`.
    ValueError
        An invalid value (see :class:`TrainOptions`).
    """
    given = {f.name: keywords[f.name] for f in fields(TrainOptions)
             if f.name in keywords and not isinstance(keywords[f.name], _Default)}
    if options is None:
        return TrainOptions(**given)
    if not isinstance(options, TrainOptions):
        raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
    return dataclasses.replace(options, **given) if given else options
