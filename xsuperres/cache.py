"""The xsuperres cache folder: one rule for where downloaded files go.

The cache root is, first match wins:

1. the ``cache=`` argument of the calling function (``~`` expanded);
2. the environment variable ``XSUPERRES_CACHE`` (read at every call, ``~`` expanded);
3. ``pooch.os_cache("xsuperres")`` (e.g. ``~/.cache/xsuperres`` on Linux,
   ``~/Library/Caches/xsuperres`` on macOS).

Below the root, each kind of download has its own folder:

* :data:`MODELS` (``models/``): pretrained models, ``<root>/models/<name>/<file>``
  (:mod:`xsuperres.pretrained`);
* :data:`GLO90` (``glo90/``): Copernicus GLO-90 DEM tiles and their ``.absent`` markers
  (:mod:`xsuperres.topography`).

The module imports only the standard library (pooch is imported when the default is
needed), so that light modules such as :mod:`xsuperres.topography` do not pull in torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

__all__ = ["cache_root", "ENV_CACHE", "MODELS", "GLO90"]

#: Environment variable that overrides the default cache root.
ENV_CACHE = "XSUPERRES_CACHE"
#: Sub-folder of the cache root holding pretrained models.
MODELS = "models"
#: Sub-folder of the cache root holding Copernicus GLO-90 tiles.
GLO90 = "glo90"

PathLike = Union[str, os.PathLike]


def cache_root(cache: Optional[PathLike] = None, subdir: Optional[str] = None) -> Path:
    """The xsuperres cache root: ``cache``, else ``$XSUPERRES_CACHE``, else pooch's OS cache.

    Parameters
    ----------
    cache
        Explicit cache root (a ``cache=`` argument); ``None`` for the environment/default.
    subdir
        A sub-folder of the root to return instead (:data:`MODELS`, :data:`GLO90`).

    Returns
    -------
    pathlib.Path
        The folder (not created here).
    """
    if cache is not None:
        root = Path(cache).expanduser()
    else:
        env = os.environ.get(ENV_CACHE)
        if env:
            root = Path(env).expanduser()
        else:
            import pooch

            root = Path(pooch.os_cache("xsuperres"))
    return root / subdir if subdir else root
