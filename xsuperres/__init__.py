"""xsuperres: scale-adaptive spatio-temporal super-resolution of precipitation.

``import xsuperres`` registers the ``.stsr`` accessor on ``xarray.Dataset`` and
``xarray.DataArray``.
"""

from . import accessor  # registers ``.stsr`` on DataArray and Dataset
from . import metrics, pretrained, topography, tune, validate
from ._version import __version__
from .coarsen import coarsen_perfect
from .config import SRConfig
from .dims import DimensionError, find_dims
from .downscaling import downscale, downscale_mean
from .interpolate import interpolate
from .peers import rainfarm
from .model import ModelFileError, SRModel
from .pretrained import list_models, load_model
from .sample import list_samples, open_sample
from .scoring import score
from .training import TrainOptions, train
from .units import check_precipitation, to_mm_per_hour

__all__ = [
    "__version__",
    "accessor",
    "TrainOptions",
    "DimensionError",
    "ModelFileError",
    "SRConfig",
    "SRModel",
    "check_precipitation",
    "coarsen_perfect",
    "downscale",
    "downscale_mean",
    "find_dims",
    "interpolate",
    "rainfarm",
    "list_models",
    "list_samples",
    "load_model",
    "metrics",
    "open_sample",
    "pretrained",
    "score",
    "to_mm_per_hour",
    "topography",
    "train",
    "tune",
    "validate",
]
