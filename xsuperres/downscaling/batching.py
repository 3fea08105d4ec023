"""How many samples (tile x LR step) of an output chunk go to the networks in one call.

A *sample* is one tile at one LR step; an *item* is one ``(sample, member)`` pair. Each
call of :meth:`SRModel.predict` from a downscaling task gets ``g`` whole samples with all
``M`` members of the task's member chunk: the deterministic network runs on the ``g``
samples, the diffusion network on the ``g M`` items. :func:`samples_per_call` picks
``g``:

* ``batch_size`` given: the target number of items per call, rounded down to whole
  samples, at least one sample: ``g = max(1, batch_size // M)``. ``batch_size=1`` is
  therefore *one sample per call* (its ``M`` members together), the composition of every
  call is then independent of the chunking, and results are **bitwise** chunk-invariant
  (and identical to the default of xsuperres before automatic batching).
* ``batch_size=None`` (default): as many samples as fit in a quarter of the free memory
  (:func:`available_memory`, shared by the dask tasks that run at once), from the
  activation memory of one sample (:func:`call_bytes`), capped at :data:`MAX_ITEMS` items
  and at the samples of the chunk; on a CPU also at :data:`CPU_MAX_PIXELS` HR pixels of
  items per call (larger CPU batches were measured slower: their activations no longer
  stay in cache, so the calls become memory-bound). Calls then mix samples, which changes
  results at float-rounding level only (noise is keyed by global position, never by
  batch).
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["MAX_ITEMS", "CPU_MAX_PIXELS", "MEMORY_FRACTION", "available_memory", "call_bytes",
           "samples_per_call"]

#: most ``(sample, member)`` items per diffusion call chosen automatically
MAX_ITEMS = 64
#: most HR pixels x items per diffusion call on a CPU (e.g. 5 samples of 3 members on
#: 40 x 40 tiles, one sample of 3 members on 80 x 80): the fastest measured on a 2-core
#: x86_64 VM with the "tiny" preset (docs/performance.md, "Downscaling defaults")
CPU_MAX_PIXELS = 24_576
#: the share of the free memory that the batches of all running tasks may take
MEMORY_FRACTION = 0.25
#: peak activation memory per HR pixel of the "tiny" preset (16 base channels), measured
#: on CPU as the peak RSS of ``SRModel.predict`` calls (tiles of 40 to 200 HR pixels,
#: ``radar-s10-t1`` / ``-t3``: 3.0-4.1 kB per pixel and context frame of one sample for the
#: deterministic net, 3.3-4.0 kB per pixel of one item for the diffusion net), rounded up.
#: Other presets scale with their base channels (the "standard" preset, 4 x the
#: channels, measured 14 kB and 5.4 kB: below the scaled 18 kB). See
#: docs/performance.md, "Downscaling defaults".
MEAN_BYTES_PER_FRAME_PIXEL = 4.5e3
DIFFUSION_BYTES_PER_PIXEL = 4.5e3
_TINY_CHANNELS = 16


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> Optional[int]:
    """Room left under a cgroup v2 memory limit (containers), or None without one."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory(device: Any = "cpu") -> int:
    """Free memory in bytes for the batches on ``device``.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (else the free pages,
    ``os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")``), and at most the room
    left under a cgroup v2 memory limit. CUDA: the free memory of the device
    (``torch.cuda.mem_get_info``). Other devices: 4 GiB.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type != "cpu":
        return 4 << 30
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
            free = 4 << 30
    room = _cgroup_available()
    return int(free if room is None else min(free, room))


def call_bytes(config: Any, h: int, w: int, n_members: int) -> float:
    """Estimated peak activation memory (bytes) of one sample in a call.

    ``h x w`` HR pixels per tile, ``n_members`` items per sample. The deterministic and
    the diffusion networks run one after the other: the larger of ``L`` frames of the
    former and ``n_members`` items of the latter, scaled by the preset's base channels.
    """
    from ..nn.unet import get_preset

    scale = get_preset(config.preset).base_channels / _TINY_CHANNELS
    mean = MEAN_BYTES_PER_FRAME_PIXEL * config.n_context
    diffusion = DIFFUSION_BYTES_PER_PIXEL * n_members
    return float(h) * float(w) * scale * max(mean, diffusion)


def samples_per_call(batch_size: Optional[int], config: Any, h: int, w: int, n_members: int,
                     n_samples: int, device: Any = "cpu", tasks: int = 1) -> int:
    """Samples per network call of a downscaling task (see the module docstring).

    Parameters
    ----------
    batch_size
        ``(sample, member)`` items per call as given to :func:`xsuperres.downscale`, or
        None (automatic).
    config
        The model's :class:`~xsuperres.config.SRConfig` (preset, ``L``).
    h, w
        HR pixels of a tile.
    n_members
        Members of the task's member chunk.
    n_samples
        Samples (tiles x LR steps) of the task: the automatic size never exceeds it.
    device
        Where the networks run (the memory probe).
    tasks
        Tasks of this process running at once (they share the memory).

    Returns
    -------
    int
        ``g >= 1``.
    """
    import torch

    M = max(1, int(n_members))
    if batch_size is not None:
        return max(1, int(batch_size) // M)
    budget = MEMORY_FRACTION * available_memory(device) / max(1, int(tasks))
    g = int(budget // call_bytes(config, h, w, M))
    g = min(g, MAX_ITEMS // M, int(n_samples))
    if torch.device(device).type == "cpu":
        g = min(g, CPU_MAX_PIXELS // (M * max(1, h * w)))
    return max(1, g)
