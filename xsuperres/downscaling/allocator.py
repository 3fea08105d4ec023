"""The C allocator of ``dask.distributed`` worker processes: undo an eager-trim setting.

A ``dask.distributed`` nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``) so that glibc gives freed memory back to the
operating system early. Setting that variable also switches off glibc's *dynamic* mmap
threshold: every allocation above 128 kB then becomes its own ``mmap``/``munmap`` with
fresh zero pages. The networks allocate and free temporaries of 0.1-10 MB thousands of
times per chunk, so a downscaling task in such a worker ran **2.1-2.3x slower** than the
same task in the client process (measured on 2 cores, ``docs/performance.md``, "Fast by
default: the results").

:func:`tune_allocator` therefore sets, once per process and only where that variable is
set and glibc's ``mallopt`` is available, an mmap threshold of :data:`MMAP_THRESHOLD`
and a trim threshold of :data:`TRIM_THRESHOLD`: allocations up to 32 MB come from the
heap again, and at most 64 MB of freed heap is kept before trimming (the worker still
returns memory; it no longer does it after every tensor). That restored the client's
speed (1.34-1.38 s against 1.27 s for the same ``SRModel.predict`` call; 2.9 s without).
``XSUPERRES_KEEP_MALLOC=1`` leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

log = logging.getLogger(__name__)

#: allocations up to this size (bytes) come from the heap in a tuned process
MMAP_THRESHOLD = 32 << 20
#: freed heap memory kept (bytes) before glibc trims it
TRIM_THRESHOLD = 64 << 20

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3

_LOCK = threading.Lock()
_DONE: list[bool] = []


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once in a process started with
    ``MALLOC_TRIM_THRESHOLD_`` (a ``dask.distributed`` worker); see the module docstring.

    Returns
    -------
    bool
        Whether this process runs with the tuned thresholds (set now or earlier).
    """
    with _LOCK:
        if _DONE:
            return _DONE[0]
        ok = False
        if (sys.platform.startswith("linux") and "MALLOC_TRIM_THRESHOLD_" in os.environ
                and os.environ.get("XSUPERRES_KEEP_MALLOC", "") not in ("1", "true", "yes")):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # not glibc
                ok = False
            log.debug("xsuperres: glibc mmap/trim thresholds set to %d/%d bytes: %s",
                      MMAP_THRESHOLD, TRIM_THRESHOLD, ok)
        _DONE.append(ok)
        return ok
