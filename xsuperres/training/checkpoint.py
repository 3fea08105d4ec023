"""Per-epoch training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds

``checkpoint.json``
    Stage (``"mean"`` or ``"diffusion"``), epochs completed in that stage, loss history,
    early-stopping state (best loss, best epoch, epochs without improvement, stopped),
    the run's fingerprint (config, normalization, sample counts), the optimizer's
    hyper-parameters (``param_groups``) and non-tensor state, the LR scheduler's state.
    Written last, atomically: it marks a complete checkpoint.
``model-<tag>.safetensors``
    The model's current ``state_dict`` (both U-Nets).
``best-<tag>.safetensors``
    The best (lowest validation loss) ``state_dict`` of the stage's network so far.
``optimizer-<tag>.safetensors``
    The optimizer's per-parameter tensors (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``),
    keys ``"<param index>.<name>"``.
``rng-<tag>.safetensors``
    Random-number-generator states (global torch CPU RNG, the DataLoader's shuffling
    generator, CUDA RNG when used) as uint8 tensors.

``<tag>`` is ``<stage>-<epoch>`` (e.g. ``mean-003``). The tensor files of a new epoch are
written first, then ``checkpoint.json`` (which names them) is replaced atomically, then
the files of older tags are deleted: an interrupted save leaves the previous complete
checkpoint readable.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..config import SRConfig

__all__ = ["save_checkpoint", "load_checkpoint", "optimizer_to_safe", "optimizer_from_safe", "CHECKPOINT_FILE",
           "rng_states", "set_rng_states", "machine", "check_fingerprint"]

#: Name of the JSON file that marks a complete checkpoint.
CHECKPOINT_FILE = "checkpoint.json"
_KINDS = ("model", "best", "optimizer", "rng")


def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _save_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def optimizer_to_safe(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's ``state_dict`` into tensors and JSON-friendly values.

    Parameters
    ----------
    optimizer
        Any ``torch.optim`` optimizer.

    Returns
    -------
    tensors : dict
        ``{"<param index>.<name>": tensor}`` for every tensor of the per-parameter state.
    rest : dict
        ``{"param_groups": [...], "state": {"<param index>": {name: value}}}`` with the
        non-tensor values.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    rest_state: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value
            else:
                rest_state.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "state": rest_state}


def optimizer_from_safe(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                        rest: Mapping[str, Any]) -> None:
    """Restore an optimizer saved with :func:`optimizer_to_safe` (in place)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in rest.get("state", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    state: Mapping[str, Any],
    model_state: Mapping[str, torch.Tensor],
    best_state: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: Mapping[str, torch.Tensor],
) -> None:
    """Write one checkpoint (see the module notes for the files).

    Parameters
    ----------
    directory
        Checkpoint folder (created if needed).
    state
        JSON-serialisable run state (stage, epoch, history, ...).
    model_state
        The model's current ``state_dict``.
    best_state
        Best ``state_dict`` of the stage's network.
    optimizer, scheduler
        The stage's optimizer and learning-rate scheduler.
    rng
        RNG states as uint8 tensors.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tag = f"{state['stage']}-{int(state['epoch']):03d}"
    files = {kind: f"{kind}-{tag}.safetensors" for kind in _KINDS}
    opt_tensors, opt_rest = optimizer_to_safe(optimizer)
    for kind, tensors in zip(_KINDS, (model_state, best_state, opt_tensors, rng)):
        _save_tensors(tensors, d / files[kind])
    full = dict(state)
    full["files"] = files
    full["optimizer"] = opt_rest
    full["scheduler"] = scheduler.state_dict()
    _save_json(full, d / CHECKPOINT_FILE)
    keep = set(files.values())
    for old in d.glob("*.safetensors"):
        if old.name not in keep and old.name.split("-", 1)[0] in _KINDS:
            old.unlink(missing_ok=True)


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any] | None:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    directory
        Checkpoint folder.

    Returns
    -------
    dict or None
        ``None`` if the folder holds no complete checkpoint, else ``{"state": dict,
        "model": tensors, "best": tensors, "optimizer": tensors, "rng": tensors}``
        (``state`` includes ``"optimizer"`` and ``"scheduler"``).
    """
    d = Path(directory)
    if not (d / CHECKPOINT_FILE).is_file():
        return None
    state = json.loads((d / CHECKPOINT_FILE).read_text())
    out: dict[str, Any] = {"state": state}
    for kind in _KINDS:
        out[kind] = load_file(str(d / state["files"][kind]))
    return out


# ---------------------------------------------------------------------------------------
# what a resumed run must restore and check: generator states, the run's fingerprint
# ---------------------------------------------------------------------------------------
def rng_states(gens: dict[str, torch.Generator], device: torch.device) -> dict[str, torch.Tensor]:
    """The states of the run's generators and of torch's global CPU (and CUDA) generator."""
    out = {name: g.get_state() for name, g in gens.items()}
    out["torch_cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_states(states: dict[str, torch.Tensor], gens: dict[str, torch.Generator],
                   device: torch.device) -> None:
    """Restore what :func:`rng_states` saved (a resumed run draws what the first would)."""
    for name, g in gens.items():
        if name in states:
            g.set_state(states[name])
    if "torch_cpu" in states:
        torch.set_rng_state(states["torch_cpu"])
    if "torch_cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["torch_cuda"], device)


def machine(device: torch.device) -> dict[str, Any]:
    """Where the run happened: platform, processor, versions, device and torch threads."""
    out = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "python": platform.python_version(), "torch_version": torch.__version__,
           "xsuperres_version": __version__, "device": str(device),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


def check_fingerprint(saved: dict[str, Any], now: dict[str, Any], directory: str) -> None:
    """Refuse to resume from a checkpoint of another run (data, config or options differ).

    The configurations are compared as :class:`~xsuperres.config.SRConfig` objects, so a
    checkpoint written before a configuration field existed resumes when the run uses
    that field's default.
    """
    saved, now = dict(saved), dict(now)
    for fp in (saved, now):
        if isinstance(fp.get("config"), dict):
            try:
                fp["config"] = SRConfig.from_dict(fp["config"]).to_dict()
            except ValueError:
                pass  # compared as written
    diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}" for k in diff)
        raise ValueError(
            f"checkpoint_dir {directory!r} holds a checkpoint of a different run ({details}); "
            "use another directory or the same data and settings to resume"
        )
