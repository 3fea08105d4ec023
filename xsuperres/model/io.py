"""Saving and loading a model directory: the file format of :class:`~xsuperres.model.SRModel`.

A model directory holds ``model.safetensors`` (the state dict, never pickle) and
``config.json`` (configuration, normalization, metadata and the SHA-256 of the weights
file); the weights file in turn carries the SHA-256 of the configuration
(:data:`BINDING_KEY` in its header metadata), so that editing either file is detected
by :func:`load_srmodel`. :meth:`SRModel.save <xsuperres.model.SRModel.save>` and
:meth:`SRModel.load <xsuperres.model.SRModel.load>` call :func:`save_srmodel` and
:func:`load_srmodel`; their docstrings describe the format.

Imports torch, numpy and safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
import torch

from .._version import __version__
from ..config import SRConfig
from .device import DeviceLike, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from .srmodel import SRModel

#: ``format`` entry of ``config.json``.
FORMAT = "xsuperres.SRModel"
#: ``format_version`` written by this version of the package. Version 2 binds
#: ``config.json`` to the weights (``config_sha256`` in the safetensors header metadata);
#: version 1 (no binding) is still read, with a warning.
FORMAT_VERSION = 2
#: Every ``format_version`` that :meth:`SRModel.load` reads.
READABLE_FORMAT_VERSIONS = (1, 2)
#: Key of the configuration binding in the safetensors header metadata.
BINDING_KEY = "config_sha256"
#: ``config.json`` entries left out of the configuration binding: the weights' own hash
#: (which covers the binding) and purely informational version strings.
UNBOUND_KEYS = ("tensors_sha256", "xsuperres_version", "torch_version")
WEIGHTS_FILE = "model.safetensors"
#: the optional model card (JSON) written by ``save`` when ``model.card`` is set
CARD_FILE = "card.json"
CONFIG_FILE = "config.json"


class ModelFileError(ValueError):
    """A saved model directory is missing, corrupted, modified or of an unknown format."""


def _jsonable(obj: Any, where: str = "metadata") -> Any:
    """Convert numpy scalars/arrays, tuples and paths to JSON types; raise on others."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        if isinstance(obj, float) and not math.isfinite(obj):
            return obj  # json writes NaN/Infinity; Python's json reads them back
        return obj
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise ValueError(f"{where}: key {k!r} is not JSON-serialisable")
            out[str(k) if not isinstance(k, str) else k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "isoformat"):  # datetime, date, pandas Timestamp
        return obj.isoformat()
    raise ValueError(
        f"{where} = {obj!r} (type {type(obj).__name__}) is not JSON-serialisable"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_sha256(doc: Mapping[str, Any]) -> str:
    """SHA-256 that binds a ``config.json`` document to its weights.

    Parameters
    ----------
    doc
        The JSON-parsed ``config.json`` (a mapping of JSON values). Every entry except
        :data:`UNBOUND_KEYS` is bound (format, format_version, dtype, config,
        normalization, metadata and any other entry).

    Returns
    -------
    str
        Lower-case hex SHA-256 of the canonical serialisation
        ``json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``:
        independent of key order, indentation and whitespace, sensitive to every value.
    """
    bound = {k: v for k, v in doc.items() if k not in UNBOUND_KEYS}
    text = json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _weights_metadata(wpath: Path) -> dict[str, str]:
    """Header metadata of a safetensors file (``{}`` if none); ModelFileError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            meta = f.metadata()
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"{wpath} is not a readable safetensors file: {e}") from None
    return dict(meta) if meta else {}


def _list(names: Sequence[str], limit: int = 10) -> str:
    names = sorted(names)
    s = ", ".join(names[:limit])
    return s + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")


def _canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header keys sorted.

    safetensors writes the ``__metadata__`` entries in a per-process random order (a Rust
    hash map), so saving one model twice would give files with different SHA-256 and a
    new ``tensors_sha256`` each time. Sorting the header (the tensor bytes and their
    offsets are untouched; the header stays padded with spaces to a multiple of 8 bytes,
    as safetensors writes it) makes :meth:`SRModel.save` byte-for-byte reproducible.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def save_srmodel(
    model: "SRModel", path: Union[str, os.PathLike], dtype: str = "float32"
) -> Path:
    """Write ``model`` to the directory ``path``: :meth:`SRModel.save <xsuperres.model.SRModel.save>`."""
    from safetensors.torch import save

    dt = {"float32": torch.float32, "float16": torch.float16}.get(dtype)
    if dt is None:
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    doc_meta = _jsonable(model.metadata, "metadata")
    doc_norm = _jsonable(model.normalization, "normalization")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xsuperres_version": __version__,
        "torch_version": torch.__version__,
        "dtype": dtype,
        "config": model.config.to_dict(),
        "normalization": doc_norm,
        "metadata": doc_meta,
    }
    # bind the values exactly as load() will read them back from config.json
    binding = _config_sha256(json.loads(json.dumps(doc)))
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if v.is_floating_point():
            v = v.to(dt)
        tensors[k] = v.contiguous().clone()
    wpath = d / WEIGHTS_FILE
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".model-", suffix=".safetensors")
    os.close(fd)
    try:
        data = save(tensors, metadata={"format": FORMAT, "dtype": dtype, BINDING_KEY: binding})
        with open(tmp, "wb") as f:
            f.write(_canonical_safetensors(data))
        digest = _sha256(Path(tmp))
        os.replace(tmp, wpath)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    doc["tensors_sha256"] = digest
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, d / CONFIG_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if getattr(model, "card", None) is not None:
        card = _jsonable(model.card, "card")
        (d / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return d


def load_srmodel(
    cls: type, path: Union[str, os.PathLike], device: DeviceLike = "cpu"
) -> "SRModel":
    """Read a directory written by :func:`save_srmodel` into an instance of ``cls``.

    :meth:`SRModel.load <xsuperres.model.SRModel.load>` (its docstring lists the checks).
    """
    from safetensors import safe_open

    d = Path(path)
    if d.is_file():
        d = d.parent
    if not d.is_dir():
        raise ModelFileError(f"model directory {str(d)!r} does not exist")
    cpath, wpath = d / CONFIG_FILE, d / WEIGHTS_FILE
    missing = [p.name for p in (cpath, wpath) if not p.is_file()]
    if missing:
        raise ModelFileError(f"model directory {str(d)!r} lacks {', '.join(missing)}")
    try:
        doc = json.loads(cpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{cpath} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelFileError(f"{cpath} is not an xsuperres model (format {got!r}, expected {FORMAT!r})")
    ver = doc.get("format_version")
    if type(ver) is not int or ver not in READABLE_FORMAT_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise ModelFileError(
            f"{cpath} has format_version {ver!r}; this xsuperres ({__version__}) reads "
            f"format_version {readable} only (the file says it was written by "
            f"xsuperres {doc.get('xsuperres_version')!r})"
        )
    need = [k for k in ("config", "normalization", "tensors_sha256") if k not in doc]
    if need:
        raise ModelFileError(f"{cpath} lacks the entries {need}")
    expected = str(doc["tensors_sha256"]).lower()
    got = _sha256(wpath)
    if got != expected:
        raise ModelFileError(
            f"{wpath} is corrupted or modified: expected sha256 {expected} "
            f"(from {CONFIG_FILE}), got {got}"
        )
    # the weights (now known to be the ones config.json names) carry the binding
    bound = _weights_metadata(wpath).get(BINDING_KEY)
    if bound is not None:  # checked whatever format_version config.json claims
        computed = _config_sha256(doc)
        if str(bound).lower() != computed:
            raise ModelFileError(
                f"{cpath} was edited after saving (or belongs to other weights): its "
                f"values do not match the configuration bound into {wpath} "
                f"({BINDING_KEY} {bound}, {CONFIG_FILE} gives {computed}); re-save the "
                f"model with SRModel.save or restore the original {CONFIG_FILE}"
            )
    elif ver == 1:
        warnings.warn(
            f"model directory {str(d)!r} was saved by an older xsuperres without a "
            f"configuration binding; re-save with model.save(path) to bind it "
            f"(format_version 1: edits to its {CONFIG_FILE} cannot be detected)",
            UserWarning,
            stacklevel=3,
        )
    else:
        raise ModelFileError(
            f"{wpath} carries no configuration binding ({BINDING_KEY!r} in its "
            f"safetensors metadata) although {cpath} has format_version {ver}: the "
            f"weights were replaced or written by another tool; re-save the model with "
            f"SRModel.save or restore the original {WEIGHTS_FILE}"
        )
    try:
        config = SRConfig.from_dict(doc["config"])
        model = cls(config, doc["normalization"], doc.get("metadata") or {})
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{cpath}: invalid configuration: {e}") from None

    ref = model.state_dict()
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            names = set(f.keys())
            unknown = names - set(ref)
            absent = set(ref) - names
            if unknown or absent:
                parts = []
                if unknown:
                    parts.append(f"unknown tensors: {_list(unknown)}")
                if absent:
                    parts.append(f"missing tensors: {_list(absent)}")
                raise ModelFileError(
                    f"{wpath} does not match the architecture of its config "
                    f"({'; '.join(parts)})"
                )
            bad = []
            for k in sorted(names):
                shp = tuple(f.get_slice(k).get_shape())
                if shp != tuple(ref[k].shape):
                    bad.append(f"{k}: file {shp} vs model {tuple(ref[k].shape)}")
            if bad:
                raise ModelFileError(
                    f"{wpath}: tensor shapes do not match the architecture of its "
                    f"config: {'; '.join(bad[:10])}"
                    + (f" ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
                )
            state = {}
            for k in names:
                t = f.get_tensor(k)
                state[k] = t.to(ref[k].dtype) if t.is_floating_point() else t
    except ModelFileError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"{wpath} is not a readable safetensors file: {e}") from None
    model.load_state_dict(state, strict=True)
    model.eval()
    cpath_card = d / CARD_FILE
    if cpath_card.is_file():
        try:
            model.card = json.loads(cpath_card.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ModelFileError(f"{cpath_card} is not valid JSON: {e}") from None
    return model.to(resolve_device(device))
