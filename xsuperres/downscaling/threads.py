"""Torch's intra-op threads inside the downscaling tasks: never more threads than cores.

Dask runs several downscaling tasks at once (one per scheduler thread) and each task's
torch calls start their own intra-op threads: left alone, 2 dask threads x 2 torch
threads on 2 cores oversubscribe the CPU. Every task therefore runs inside
:func:`task_threads`, which sets torch's intra-op threads to

    ``n = max(1, min(user, cores // dask_threads))``

* ``cores``: the cores this process may run on (``os.sched_getaffinity``, else
  ``os.cpu_count()``), :func:`available_cores`;
* ``dask_threads``: the dask tasks this process runs at once (:func:`dask_threads`): the
  pool size of dask's threaded scheduler (``num_workers``, a ``pool`` given in
  ``dask.config``, else ``os.cpu_count()``), ``worker.state.nthreads`` in a
  ``dask.distributed`` worker, ``os.cpu_count()`` in a worker process of the
  multiprocessing scheduler, 1 for the synchronous scheduler;
* ``user``: torch's setting when the first task came in (``torch.get_num_threads()``), so
  the library only ever lowers it: ``torch.set_num_threads(1)`` still means one thread,
  and ``dask.distributed`` workers (whose nanny sets ``OMP_NUM_THREADS=1``) keep one.

On 2 cores this gives one torch thread per task with the threaded scheduler's 2 workers
and 2 with the synchronous scheduler, the fastest settings measured
(``docs/performance.md``, "Downscaling defaults").

``torch.set_num_threads`` is process-wide state (with torch's OpenMP backend the count
is kept per OS thread and seeds new threads), and tasks run concurrently in threads: a
process-wide lock and reference count make the first task in save the user's setting and
the last task out restore it; with the OpenMP backend every task also puts its own
thread back to that setting, so no dask thread keeps the lowered value.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import torch

__all__ = ["available_cores", "dask_threads", "torch_threads_rule", "task_threads"]

_LOCK = threading.Lock()
#: downscaling tasks of this process inside :func:`task_threads` now
_ACTIVE = 0
#: torch's thread count when the first of them came in (restored by the last one out)
_SAVED: Optional[int] = None
_PER_THREAD: Optional[bool] = None


def available_cores() -> int:
    """The CPU cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def dask_threads() -> int:
    """How many dask tasks this process runs at once, seen from inside a task.

    ``dask.distributed`` worker: its ``nthreads``. A thread of dask's threaded scheduler
    (its default pool, a pool made for ``num_workers``, or a ``pool`` set in
    ``dask.config``): that pool's size. A worker process of the multiprocessing
    scheduler (a child process, not a distributed worker): ``os.cpu_count()`` (the pool
    size is not known there). Otherwise the task runs in the thread that called
    ``compute`` (the synchronous scheduler): 1.
    """
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            return max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
    me = threading.current_thread()
    try:
        import dask
        import dask.threaded as dt

        pools = [dask.config.get("pool", None), dt.default_pool]
        pools += [p for per_thread in list(dt.pools.values()) for p in list(per_thread.values())]
    except Exception:  # noqa: BLE001 - dask internals moved: fall through to the cases below
        pools = []
    for pool in pools:
        if pool is not None and _in_pool(me, pool):
            return max(1, int(getattr(pool, "_max_workers", 1)))
    if multiprocessing.parent_process() is not None:
        return max(1, os.cpu_count() or 1)
    return 1


def _in_pool(thread: threading.Thread, pool) -> bool:
    """Whether ``thread`` is a worker of the ``concurrent.futures`` executor ``pool``.

    By name as well as by membership: a new executor thread may run its first task
    before the executor has added it to its ``_threads``.
    """
    if thread in getattr(pool, "_threads", ()):
        return True
    prefix = getattr(pool, "_thread_name_prefix", None)
    return bool(prefix) and thread.name.startswith(f"{prefix}_")


def torch_threads_rule(user: Optional[int] = None) -> int:
    """The torch intra-op threads of one downscaling task in this thread.

    ``max(1, min(user, available_cores() // dask_threads()))``; ``user`` defaults to
    ``torch.get_num_threads()``.
    """
    if user is None:
        user = torch.get_num_threads()
    return max(1, min(int(user), available_cores() // dask_threads()))


def _per_thread() -> bool:
    """Whether torch keeps its thread count per OS thread (the OpenMP backend)."""
    global _PER_THREAD
    if _PER_THREAD is None:
        try:
            _PER_THREAD = "parallel backend: OpenMP" in torch.__config__.parallel_info()
        except Exception:  # noqa: BLE001 - informational API
            _PER_THREAD = False
    return _PER_THREAD


@contextmanager
def task_threads() -> Iterator[int]:
    """Run the body with :func:`torch_threads_rule` torch threads; restore the setting after.

    Yields the number of threads set. Safe when several tasks of the process run at once
    in threads (a process-wide lock and reference count: first in saves the setting, last
    out restores it) and when the body raises.
    """
    global _ACTIVE, _SAVED
    per_thread = _per_thread()
    with _LOCK:
        if _ACTIVE == 0:
            _SAVED = torch.get_num_threads()
        _ACTIVE += 1
        saved = int(_SAVED)  # type: ignore[arg-type]
        n = torch_threads_rule(saved)
        try:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
        except BaseException:
            _ACTIVE -= 1
            raise
    try:
        yield n
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if (_ACTIVE == 0 or per_thread) and torch.get_num_threads() != saved:
                torch.set_num_threads(saved)
