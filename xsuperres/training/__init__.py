"""Training of :class:`~xsuperres.model.SRModel` (the preprint's protocol; docs/training.md).

Modules
-------
:mod:`~xsuperres.training.inputs`
    Checking the user's DataArrays (units, cadence, grid spacing, topography).
:mod:`~xsuperres.training.tiles`
    Tile grid and Latin-square cross-validation folds.
:mod:`~xsuperres.training.split`
    Training/validation split (tiles, folds, held-out period) and sample records.
:mod:`~xsuperres.training.samples`
    Sample construction and the torch ``Dataset``.
:mod:`~xsuperres.training.normalization`
    Gamma-fit precipitation cap, topography range.
:mod:`~xsuperres.training.data`
    The whole data pipeline (:func:`build_training_data`).
:mod:`~xsuperres.training.checkpoint`
    Per-epoch checkpoints (safetensors + JSON).
:mod:`~xsuperres.training.options`
    The training options of one run, :class:`TrainOptions` (shared by :func:`train`,
    :func:`fit`, the command line and :mod:`xsuperres.tune`).
:mod:`~xsuperres.training.loop`
    The two-stage training loop, :func:`train`.
:mod:`~xsuperres.training.warmstart`
    Warm starts from a trained model (``train(..., init=model)``, fine-tuning).
:mod:`~xsuperres.training.cli`
    The ``xsuperres train`` sub-command.
"""

from .data import TrainingData, build_training_data, time_means
from .loop import STAGES, fit, train
from .normalization import CapFit, fit_cap
from .options import TrainOptions
from .samples import RECORD_DTYPE, GivenMeanDataset, SampleDataset, make_samples
from .split import Split, split_samples
from .tiles import Tile, choose_tile_size, latin_square_folds, tile_grid

__all__ = [
    "CapFit",
    "GivenMeanDataset",
    "RECORD_DTYPE",
    "STAGES",
    "SampleDataset",
    "Split",
    "Tile",
    "TrainOptions",
    "TrainingData",
    "build_training_data",
    "choose_tile_size",
    "fit",
    "fit_cap",
    "latin_square_folds",
    "make_samples",
    "split_samples",
    "tile_grid",
    "time_means",
    "train",
]
