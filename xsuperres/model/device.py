"""Device arguments: :func:`resolve_device`, the one validator of ``device=`` values.

Every ``device`` argument of the package (``SRModel.predict``/``load``, ``downscale``,
training) goes through :func:`resolve_device` (also importable as ``_resolve_device``,
its former name). Imports torch only.
"""

from __future__ import annotations

from typing import Union

import torch

DeviceLike = Union[str, torch.device]

#: device types accepted by :func:`resolve_device` (besides ``"auto"``)
VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: DeviceLike) -> torch.device:
    """The torch device for ``device``: the one validator of device arguments.

    ``"auto"`` is CUDA when available, else the CPU; otherwise ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or a :class:`torch.device` of those types. Anything else is a
    ``ValueError`` that lists the valid devices (not torch's list of every device type).
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device.strip() if isinstance(device, str) else device)
        except (RuntimeError, TypeError, ValueError):
            dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device {device!r} is not a valid device; use one of "
            f"{', '.join(repr(d) for d in VALID_DEVICES)} (N: the GPU number)"
        )
    return dev


#: The former name of :func:`resolve_device` (imported by downscale and training).
_resolve_device = resolve_device
