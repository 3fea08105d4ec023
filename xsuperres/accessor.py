"""The ``.stsr`` accessor on ``xarray.Dataset`` and ``xarray.DataArray``.

The accessor is a thin face: it forwards to plain public functions
(:func:`xsuperres.coarsen_perfect`, :func:`xsuperres.score`, ...) that can be
used and tested without it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import xarray as xr

from .coarsen import coarsen_perfect
from .dims import find_dims

__all__ = ["STSRAccessor"]


class STSRAccessor:
    """Spatio-temporal super-resolution verbs for precipitation fields.

    Registered as ``obj.stsr`` on both ``xarray.DataArray`` and ``xarray.Dataset``
    by ``import xsuperres``.
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
    ) -> xr.Dataset:
        """Score this prediction (optionally with a ``member`` dim) against ``truth``.

        See :func:`xsuperres.score` for the eight metrics and their definitions.
        """
        from .scoring import score

        return score(self._obj, truth, dim, member_dim=member_dim, dims=dims)

    def downscale(
        self,
        model,
        n_members: int = 3,
        *,
        topography: xr.DataArray | None = None,
        sampler: str = "ddim",
        steps: int | None = None,
        seed: int = 0,
        device: str = "auto",
        batch_size: int | None = None,
        context: str = "pad",
        strict: bool = True,
        dims: Mapping[str, Hashable] | None = None,
        **kwargs,
    ) -> xr.DataArray | xr.Dataset:
        """Lazy ensemble downscaling with an ``SRModel`` (or a saved-model path or name).

        See :func:`xsuperres.downscale.downscale` for the parameters and the output.
        """
        from .downscale import downscale

        return downscale(self._obj, model, n_members, topography=topography, sampler=sampler,
                         steps=steps, seed=seed, device=device, batch_size=batch_size,
                         context=context, strict=strict, dims=dims, **kwargs)


xr.register_dataarray_accessor("stsr")(STSRAccessor)
xr.register_dataset_accessor("stsr")(STSRAccessor)
