"""The model on the workers: model handles, model resolution and the per-process cache.

Tasks carry a small picklable :class:`ModelHandle` (the path of a saved model and a hash),
never the model. Each worker process loads a model at most once (a module cache keyed by
hash and device, :func:`get_model`); an in-memory model is saved once to a temporary model
directory (``$XSUPERRES_MODEL_DIR`` or the system temporary folder) so that worker
processes can load it (:func:`handle_for`). :func:`loaded_models` reports what this
process has loaded.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelHandle", "resolve_model", "handle_for", "get_model", "loaded_models"]


@dataclass(frozen=True)
class ModelHandle:
    """What a task carries instead of the model: a saved-model directory and its hash.

    Attributes
    ----------
    path
        Directory written by :meth:`SRModel.save` (readable by every worker).
    token
        SHA-256 of its ``config.json`` (which holds the weights' SHA-256): the cache key.
    """

    path: str
    token: str


_LOCK = threading.RLock()
#: models of this process by token (the caller's own objects, not kept alive here)
_LOCAL: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
#: models ready to run, by (token, device); a few at most
_CACHE: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_CACHE_SIZE = 4
#: number of models loaded from disk by this process (see :func:`loaded_models`)
_LOAD_COUNT = 0
#: where a model loaded from a path came from: model -> ModelHandle
_SOURCE: "weakref.WeakKeyDictionary[Any, ModelHandle]" = weakref.WeakKeyDictionary()


def loaded_models() -> dict[str, Any]:
    """What this process's model cache holds, e.g. to check "one load per worker".

    Returns
    -------
    dict
        ``loaded``: the number of models this process has read from disk (a model the
        caller passed in memory is never counted); ``cached``: the ``(token, device)``
        keys of the models ready to run (most recently used last, at most
        ``cache_size``); ``cache_size``.

    Examples
    --------
    On a ``dask.distributed`` cluster: ``client.run(loaded_models)``.
    """
    with _LOCK:
        return {"loaded": _LOAD_COUNT, "cached": list(_CACHE), "cache_size": _CACHE_SIZE}


def _config_token(directory: Path) -> str:
    return hashlib.sha256((directory / "config.json").read_bytes()).hexdigest()


def _model_root() -> Path:
    root = os.environ.get("XSUPERRES_MODEL_DIR")
    if root:
        return Path(root)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"xsuperres-models-{uid}"


def resolve_model(model: Any):
    """An :class:`SRModel` from a model, a saved-model directory or a registry name.

    Registry names (e.g. ``"radar-s10-t3"``) are resolved by
    :func:`xsuperres.pretrained.load_model`.
    """
    from ..model import SRModel

    if isinstance(model, SRModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.exists():
            d = p.parent if p.is_file() else p
            m = SRModel.load(d, device="cpu")
            handle = ModelHandle(str(d.resolve()), _config_token(d))
            _SOURCE[m] = handle
            return m
        if isinstance(model, str):
            from .. import pretrained

            try:
                loaded = pretrained.load_model(model)
            except KeyError as err:  # an unknown name (UnknownModelError)
                raise ValueError(
                    f"model {model!r} is not an existing model directory (written by "
                    f"SRModel.save) nor a known pretrained model: {err.args[0] if err.args else err}"
                ) from None
            return resolve_model(loaded)
        raise ValueError(f"model directory {os.fspath(model)!r} does not exist")
    raise TypeError(
        "model must be an SRModel, a directory written by SRModel.save, or a registry "
        f"name; got {type(model).__name__}"
    )


def handle_for(model) -> ModelHandle:
    """A handle workers can load ``model`` from; registers the object for this process."""
    handle = _SOURCE.get(model)
    if handle is None:
        root = _model_root()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".saving-"))
        try:
            model.save(tmp)
            token = _config_token(tmp)
            final = root / token
            if not (final / "config.json").is_file():
                try:
                    os.replace(tmp, final)
                except OSError:  # another process won the race
                    pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        handle = ModelHandle(str(final), token)
    with _LOCK:
        _LOCAL[handle.token] = model
    return handle


def get_model(handle: ModelHandle, device: str):
    """The model of ``handle`` on ``device``: loaded at most once per process."""
    global _LOAD_COUNT
    from ..model import SRModel, _resolve_device

    dev = _resolve_device(device)
    key = (handle.token, str(dev))
    with _LOCK:
        m = _CACHE.get(key)
        if m is not None:
            _CACHE.move_to_end(key)
            return m
        local = _LOCAL.get(handle.token)
        if local is not None and not local.training and local.device == dev:
            m = local
        elif local is not None:
            m = copy.deepcopy(local).to(dev).eval()
        else:
            if not (Path(handle.path) / "config.json").is_file():
                raise FileNotFoundError(
                    f"xsuperres.downscale: model directory {handle.path!r} is not readable "
                    "on this worker; save the model to storage shared by all workers "
                    "(SRModel.save) and pass that path as `model`"
                )
            m = SRModel.load(handle.path, device=dev)
            _LOAD_COUNT += 1
        _CACHE[key] = m
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return m
