"""xsuperres: scale-adaptive spatio-temporal super-resolution of precipitation.

``import xsuperres`` registers the ``.stsr`` accessor on ``xarray.Dataset`` and
``xarray.DataArray``.
"""

from ._version import __version__
from .dims import DimensionError, find_dims

__all__ = ["__version__", "DimensionError", "find_dims"]
