"""The one place pysteps (an optional dependency: ``xsuperres[peers]``) is imported.

pysteps prints where it found its configuration file when first imported. The message is
silenced with ``contextlib.redirect_stdout``, which swaps ``sys.stdout`` for the whole
process: two dask tasks redirecting at once would restore each other's buffers and leave
``sys.stdout`` pointing at a discarded one (every later ``print`` lost). So the import is
done once, under a lock, and the pysteps functions themselves are called without any
redirection.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()


def import_pysteps(module: str, purpose: str) -> ModuleType:
    """``pysteps.<module>``, imported once with its message silenced (thread-safe).

    Parameters
    ----------
    module
        Submodule, e.g. ``"motion"`` or ``"downscaling.rainfarm"``.
    purpose
        What needs it, for the ``ImportError`` (e.g. ``"RainFARM"``).
    """
    name = f"pysteps.{module}"
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    with _LOCK:
        if sys.modules.get(name) is not None:
            return sys.modules[name]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return importlib.import_module(name)
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"{purpose} needs pysteps, an optional dependency: pip install "
                f"\"xsuperres[peers]\" (or pip install pysteps); import failed with: {err}") from None
