"""The scale-adaptive super-resolution model: :class:`SRModel` (inference, save/load).

One concept per module; everything is importable from ``xsuperres.model`` as before:

* :mod:`~xsuperres.model.srmodel` -- the :class:`SRModel` class (configuration,
  normalization, ``predict`` / ``predict_mean``, ``check_sampler``, save/load);
* :mod:`~xsuperres.model.inputs` -- validation and batching of the inputs of ``predict``;
* :mod:`~xsuperres.model.members` -- :func:`~xsuperres.model.members.sample_members`, the
  diffusion stage of ``predict``: members around a batch of means, noise keyed per item;
* :mod:`~xsuperres.model.normalization` -- :func:`normalize_precip`,
  :func:`denormalize_precip`, :func:`normalize_topography` and the cap rules;
* :mod:`~xsuperres.model.io` -- the model directory format (``model.safetensors`` +
  ``config.json``, bound to each other), :class:`ModelFileError`;
* :mod:`~xsuperres.model.device` -- :func:`resolve_device`, the one validator of device
  arguments.

The forward passes of both stages, shared with training, are in
:mod:`xsuperres.nn.denoiser`; the sampler defaults in
:data:`xsuperres.nn.diffusion.SAMPLERS`.

This package imports torch, numpy and safetensors only (no xarray, dask or pooch).
"""

from __future__ import annotations

from .device import VALID_DEVICES, DeviceLike, _resolve_device, resolve_device
from .inputs import _topo_slice, prepare_inputs
from .io import (
    BINDING_KEY,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    READABLE_FORMAT_VERSIONS,
    UNBOUND_KEYS,
    WEIGHTS_FILE,
    ModelFileError,
    _config_sha256,
    _jsonable,
    _list,
    _sha256,
    _weights_metadata,
    load_srmodel,
    save_srmodel,
)
from .normalization import (
    _KNOWN_NORM_KEYS,
    ArrayLike,
    _as_float_array,
    _check_cap,
    check_normalization,
    denormalize_precip,
    normalize_precip,
    normalize_topography,
)
from .srmodel import SRModel

__all__ = [
    "SRModel",
    "ModelFileError",
    "normalize_precip",
    "denormalize_precip",
    "normalize_topography",
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_FORMAT_VERSIONS",
]

# names importable from the former single module, kept for importers (pyflakes: used)
_REEXPORTED = (
    VALID_DEVICES, DeviceLike, _resolve_device, resolve_device, _topo_slice, prepare_inputs,
    BINDING_KEY, CONFIG_FILE, UNBOUND_KEYS, WEIGHTS_FILE, _config_sha256, _jsonable, _list,
    _sha256, _weights_metadata, load_srmodel, save_srmodel, ArrayLike, _as_float_array,
    _check_cap, _KNOWN_NORM_KEYS, check_normalization,
)
