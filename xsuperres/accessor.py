"""The ``.stsr`` accessor on ``xarray.DataArray`` and ``xarray.Dataset``.

The accessor is a thin face: it forwards to plain public functions
(:func:`xsuperres.coarsen_perfect`, :func:`xsuperres.score`, :func:`xsuperres.downscale`,
:func:`xsuperres.interpolate`) that can be used and tested without it. As in rioxarray
(``raster_array.py`` / ``raster_dataset.py``), one base class holds the verbs both faces
share; the DataArray face adds what takes one field, and the Dataset face maps those
over its precipitation variables (the ones with rate units, :func:`xsuperres.validate.is_precipitation`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import xarray as xr

from .coarsen import coarsen_perfect
from .dims import find_dims
from .validate import is_precipitation

__all__ = ["STSRAccessor", "STSRArrayAccessor", "STSRDatasetAccessor"]


class STSRAccessor:
    """Spatio-temporal super-resolution verbs shared by the DataArray and Dataset faces.

    Registered as ``obj.stsr`` (through :class:`STSRArrayAccessor` and
    :class:`STSRDatasetAccessor`) by ``import xsuperres``.
    """

    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    def dims(self, dims: Mapping[str, Hashable] | None = None) -> dict[str, Hashable]:
        """The ``{"time": ..., "y": ..., "x": ...}`` dimension names (see :func:`xsuperres.find_dims`)."""
        return find_dims(self._obj, dims)

    def coarsen_perfect(
        self, S: int, T: int, *, dims: Mapping[str, Hashable] | None = None, boundary: str = "exact"
    ) -> xr.DataArray | xr.Dataset:
        """Perfect-model coarsening ``A_{S,T}``; see :func:`xsuperres.coarsen_perfect`."""
        return coarsen_perfect(self._obj, S, T, dims=dims, boundary=boundary)

    def score(
        self,
        truth: xr.DataArray | xr.Dataset,
        dim: str | Sequence[str] | None = None,
        *,
        member_dim: str = "member",
        dims: Mapping[str, Hashable] | None = None,
        extra: str | Sequence[str] = (),
    ) -> xr.Dataset:
        """Score this prediction (optionally with a ``member`` dim) against ``truth``.

        See :func:`xsuperres.score` for the eight metrics, their definitions and the
        ``extra`` ensemble scores (``"crps_fair"``, ``"spread_error_ratio"``).
        """
        from .scoring import score

        return score(self._obj, truth, dim, member_dim=member_dim, dims=dims, extra=extra)

    def downscale(self, model, n_members: int = 3, **kwargs) -> xr.DataArray | xr.Dataset:
        """Lazy ensemble downscaling with an ``SRModel`` (or a saved-model path or name).

        See :func:`xsuperres.downscale` for the keyword arguments (``topography``,
        ``sampler``, ``steps``, ``seed``, ``device``, ``batch_size``, ``context``,
        ``strict``, ``dims``, ``eta``, ``tile_size``, ``overlap``, ``mass_conservation``,
        ``mean``) and the output.
        """
        from .downscaling import downscale

        return downscale(self._obj, model, n_members, **kwargs)

    def downscale_mean(self, model, **kwargs) -> xr.DataArray | xr.Dataset:
        """The deterministic stage alone (the conditional mean), through the same tiles.

        See :func:`xsuperres.downscale_mean` for the keyword arguments (``topography``,
        ``device``, ``batch_size``, ``context``, ``strict``, ``dims``, ``tile_size``,
        ``overlap``, ``mass_conservation``) and the output.
        """
        from .downscaling import downscale_mean

        return downscale_mean(self._obj, model, **kwargs)


class STSRArrayAccessor(STSRAccessor):
    """``DataArray.stsr``: the shared verbs, and those that take one precipitation field."""

    def interpolate(self, S: int, T: int, method: str = "bicubic", **kwargs) -> xr.DataArray:
        """Bicubic / nearest baseline back on the HR grid; see :func:`xsuperres.interpolate`."""
        from .interpolate import interpolate

        return interpolate(self._obj, S, T, method, **kwargs)


    def plot_members(self, truth: xr.DataArray | None = None, **kwargs):
        """Panels of ``truth``, an optional ``mean=`` and the first members of this ensemble;
        see :func:`xsuperres.plot.plot_members`. Returns the matplotlib Figure."""
        from .plot import plot_members

        return plot_members(self._obj, truth, **kwargs)

    def plot_pit(self, truth: xr.DataArray, **kwargs):
        """PIT histogram of this ensemble against ``truth``; see :func:`xsuperres.plot.plot_pit`."""
        from .plot import plot_pit

        return plot_pit(self._obj, truth, **kwargs)

    def plot_spectra(self, truth: xr.DataArray | None = None, others=None, **kwargs):
        """Power spectra of this field (all members pooled), ``truth`` and ``others``
        (``{name: DataArray}``, e.g. bicubic); see :func:`xsuperres.plot.plot_spectra`."""
        from .plot import plot_spectra

        name = "members" if "member" in self._obj.dims else str(self._obj.name or "field")
        fields = {} if truth is None else {"truth": truth}
        fields.update({name: self._obj, **dict(others or {})})
        return plot_spectra(fields, **kwargs)


class STSRDatasetAccessor(STSRAccessor):
    """``Dataset.stsr``: the shared verbs, and the single-field ones mapped over its
    precipitation variables."""

    @property
    def precipitation_vars(self) -> list[Hashable]:
        """Names of the data variables with precipitation-rate ``units``."""
        return [n for n, v in self._obj.data_vars.items() if is_precipitation(v)]

    def interpolate(self, S: int, T: int, method: str = "bicubic", **kwargs) -> xr.Dataset:
        """:func:`xsuperres.interpolate` of every precipitation variable (others are left out).

        Raises
        ------
        ValueError
            If the Dataset has no variable with precipitation-rate units.
        """
        from .interpolate import interpolate

        names = self.precipitation_vars
        if not names:
            raise ValueError("the Dataset has no precipitation variable (one with rate units, e.g. "
                             f"'mm h-1'); its variables are {list(map(str, self._obj.data_vars))}")
        out = xr.Dataset({n: interpolate(self._obj[n], S, T, method, **kwargs) for n in names})
        out.attrs = dict(self._obj.attrs)
        return out


xr.register_dataarray_accessor("stsr")(STSRArrayAccessor)
xr.register_dataset_accessor("stsr")(STSRDatasetAccessor)
