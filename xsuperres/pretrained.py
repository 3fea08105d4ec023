"""Pretrained models: a hash-verified, cached registry of :class:`~xsuperres.SRModel` files.

Every pretrained model is a directory named after the data and the factors it was trained
for, e.g. ``radar-s10-t3`` (radar data, ``S = 10``, ``T = 3``), holding the two files written
by :meth:`SRModel.save <xsuperres.SRModel.save>` (``model.safetensors`` and ``config.json``)
and a model card (``model_card.md`` or ``card.json``). One `pooch
<https://www.fatiando.org/pooch>`_ registry file, ``xsuperres/weights/registry.txt``, lists
every file of every model with its SHA-256::

    # name/file                        sha256                                   [url]
    radar-s10-t3/config.json           sha256:3f1c...
    radar-s10-t3/model.safetensors     sha256:9ab0...
    radar-s10-t3/model_card.md         sha256:77d2...

Where a file comes from:

* **shipped** -- the file lies next to the registry inside the installed package
  (``xsuperres/weights/<name>/<file>``). It is used where it is, without any network access,
  after its SHA-256 has been checked against the registry (pooch has no ``file://``
  downloader, and a copy into the cache would only duplicate the file).
* **fetched** -- otherwise it is downloaded once with pooch from ``<base URL><name>/<file>``
  (or from the URL in the registry line's third column) into the cache and verified there
  (pooch deletes a download whose hash differs). A cached file that no longer matches is
  downloaded again. A model that is only partly shipped is assembled in the cache.

Environment variables (read at every call, so they can be changed at run time):

``XSUPERRES_CACHE``
    Cache root (default ``pooch.os_cache("xsuperres")``, e.g. ``~/.cache/xsuperres`` on
    Linux); models go to ``<root>/models/<name>/``.
``XSUPERRES_BASE_URL``
    Base URL of the model files (a mirror, or an internal web server on an air-gapped
    cluster); it replaces :data:`DEFAULT_BASE_URL` and any per-file URLs of the registry.

A missing name, a file whose hash differs from the registry (tampered, truncated, outdated)
and a file that can be neither found nor downloaded are :class:`~xsuperres.ModelFileError`
(unknown names: :class:`UnknownModelError`, which lists the known names).

Maintainers register new models with :func:`make_registry` (or
``python -m xsuperres.pretrained DIRECTORY -o xsuperres/weights/registry.txt``); see
``docs/pretrained.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional, Union

from . import cache as _cache
from .model import CONFIG_FILE, WEIGHTS_FILE, ModelFileError, SRModel, _sha256

__all__ = [
    "load_model",
    "list_models",
    "fetch_model",
    "model_card",
    "make_registry",
    "ModelRegistry",
    "UnknownModelError",
    "REGISTRY_FILE",
    "DEFAULT_BASE_URL",
    "CARD_FILES",
    "cache_root",
]

PathLike = Union[str, os.PathLike]

#: The registry shipped with the package (its directory also holds the shipped models).
REGISTRY_FILE = Path(__file__).resolve().parent / "weights" / "registry.txt"

#: Where files that are not shipped are downloaded from when ``XSUPERRES_BASE_URL`` is not
#: set. ``None``: no public host has been set up yet; files that are not shipped then need
#: ``XSUPERRES_BASE_URL`` (or a per-file URL in the registry).
DEFAULT_BASE_URL: Optional[str] = None

#: Accepted model-card file names (the first one present is returned by :func:`model_card`).
CARD_FILES = ("model_card.md", "card.json")

ENV_CACHE = _cache.ENV_CACHE
ENV_BASE_URL = "XSUPERRES_BASE_URL"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


class UnknownModelError(ModelFileError, KeyError):
    """A model name that the registry does not list (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
#: The cache root (``cache``, else ``$XSUPERRES_CACHE``, else pooch's OS cache): the one
#: cache-folder rule of :mod:`xsuperres.cache`, re-exported here.
cache_root = _cache.cache_root


def _base_url(base_url: Optional[str]) -> Optional[str]:
    url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    if not url:
        return None
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class _Entry:
    file: str  # "name/file" (POSIX)
    sha256: str  # lower-case hex
    url: Optional[str]  # per-file URL from the registry's third column


def _parse_registry(path: Path) -> dict[str, _Entry]:
    """Read a pooch registry file (parsed by pooch itself) and validate the entries."""
    import pooch

    if not path.is_file():
        raise ModelFileError(f"model registry {str(path)!r} does not exist")
    p = pooch.create(path=".", base_url="", registry={})  # parser only; nothing is fetched
    try:
        p.load_registry(path)
    except OSError as e:
        raise ModelFileError(f"model registry {path}: {e}") from None
    out: dict[str, _Entry] = {}
    for fname, digest in p.registry.items():
        parts = PurePosixPath(fname).parts
        if len(parts) != 2 or not _NAME_RE.match(parts[0]) or parts[1].startswith("."):
            raise ModelFileError(
                f"model registry {path}: entry {fname!r} is not of the form "
                "'<model-name>/<file>' (lower-case name: letters, digits, '.', '_', '-')"
            )
        alg, _, hexd = digest.rpartition(":")
        if (alg or "sha256") != "sha256" or not _HEX_RE.match(hexd):
            raise ModelFileError(
                f"model registry {path}: entry {fname!r} needs a SHA-256 "
                f"('sha256:<64 hex digits>'), got {digest!r}"
            )
        out[fname] = _Entry(fname, hexd, p.urls.get(fname))
    return out


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------
class ModelRegistry:
    """A pooch registry of model files plus the directory of the shipped ones.

    Parameters
    ----------
    registry
        Path of the registry file (default: :data:`REGISTRY_FILE`, the package's
        ``weights/registry.txt``).
    shipped_dir
        Directory that holds shipped model directories (default: the registry file's
        directory).

    The module functions (:func:`load_model`, :func:`list_models`, ...) use the package's
    registry unless given another one; tests and private model collections build their own.
    """

    def __init__(
        self, registry: Optional[PathLike] = None, shipped_dir: Optional[PathLike] = None
    ):
        self.path = Path(REGISTRY_FILE if registry is None else registry)
        self.shipped_dir = Path(shipped_dir) if shipped_dir is not None else self.path.parent
        self.entries = _parse_registry(self.path)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.path)!r}, models={self.names()})"

    # ------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        """Sorted model names."""
        return sorted({PurePosixPath(f).parts[0] for f in self.entries})

    def files(self, name: str) -> list[_Entry]:
        """Registry entries of model ``name``; :class:`UnknownModelError` if it is not listed."""
        if not isinstance(name, str) or name not in self.names():
            known = self.names()
            listing = ", ".join(known) if known else "none (the registry is empty)"
            raise UnknownModelError(
                f"unknown pretrained model {name!r}; known models: {listing} "
                f"(registry {self.path})"
            )
        return [e for f, e in sorted(self.entries.items()) if PurePosixPath(f).parts[0] == name]

    def is_shipped(self, name: str) -> bool:
        """Whether every file of ``name`` is shipped (usable with no network and no cache)."""
        return all((self.shipped_dir / e.file).is_file() for e in self.files(name))

    # ------------------------------------------------------------------ fetching
    def _check_shipped(self, e: _Entry) -> Path:
        p = self.shipped_dir / e.file
        got = _sha256(p)
        if got != e.sha256:
            raise ModelFileError(
                f"shipped model file {p} does not match the registry {self.path}: expected "
                f"sha256 {e.sha256}, got {got} (the installation is corrupted or the file "
                "was modified; reinstall xsuperres or regenerate the registry)"
            )
        return p

    def fetch(
        self,
        name: str,
        *,
        base_url: Optional[str] = None,
        cache: Optional[PathLike] = None,
        progress: bool = False,
    ) -> Path:
        """Make every file of model ``name`` available locally, verified; return its directory.

        A fully shipped model is returned where it lies in the package (no network, no
        cache). Otherwise the files are fetched into ``<cache root>/models/<name>/`` with
        pooch (only those missing from the cache or whose hash no longer matches); shipped
        files of a partly shipped model are copied there after verification.

        Parameters
        ----------
        name
            Model name (:meth:`names`).
        base_url
            Overrides ``$XSUPERRES_BASE_URL`` and :data:`DEFAULT_BASE_URL`.
        cache
            Cache root; overrides ``$XSUPERRES_CACHE``.
        progress
            Show pooch's download progress bar (needs tqdm).

        Raises
        ------
        UnknownModelError
            ``name`` is not in the registry.
        ModelFileError
            A file's SHA-256 differs from the registry (tampered, truncated or outdated), or
            a file is neither shipped, cached nor downloadable (no base URL configured,
            server unreachable, HTTP error).
        """
        entries = self.files(name)
        if self.is_shipped(name):
            for e in entries:
                self._check_shipped(e)
            return self.shipped_dir / name

        import pooch

        target = cache_root(cache) / "models"
        url = _base_url(base_url)
        override = bool(base_url or os.environ.get(ENV_BASE_URL))
        registry, urls = {}, {}
        for e in entries:
            shipped = self.shipped_dir / e.file
            dest = target / e.file
            if shipped.is_file():
                src = self._check_shipped(e)
                if not (dest.is_file() and _sha256(dest) == e.sha256):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dest)
                continue
            registry[e.file] = f"sha256:{e.sha256}"
            if e.url and not override:
                urls[e.file] = e.url
            elif url is None and not (dest.is_file() and _sha256(dest) == e.sha256):
                raise ModelFileError(
                    f"pretrained model {name!r}: {e.file} is not shipped with this "
                    f"installation nor in the cache ({target}), and no download location "
                    f"is configured: set the environment variable {ENV_BASE_URL} to a URL "
                    f"that serves '<name>/<file>' (a mirror or a local web server), or copy "
                    f"the model directory into {target}"
                )
        if registry:
            pup = pooch.create(
                path=target, base_url=url or "", registry=registry, urls=urls,
                retry_if_failed=0, allow_updates=True,
            )
            for fname in registry:
                src_url = pup.get_url(fname)
                try:
                    pup.fetch(fname, progressbar=progress)
                except ValueError as err:  # pooch: hash mismatch of the download
                    raise ModelFileError(
                        f"pretrained model {name!r}: {fname} downloaded from {src_url} does "
                        f"not match the registry sha256 {registry[fname][7:]} (truncated, "
                        f"tampered or outdated file; the download was deleted): {err}"
                    ) from None
                except Exception as err:  # requests errors: HTTP status, connection, ...
                    raise ModelFileError(
                        f"pretrained model {name!r}: could not download {fname} from "
                        f"{src_url}: {type(err).__name__}: {err}"
                    ) from err
        return target / name

    def load(
        self,
        name: str,
        device: str = "cpu",
        *,
        base_url: Optional[str] = None,
        cache: Optional[PathLike] = None,
        progress: bool = False,
    ) -> SRModel:
        """:meth:`fetch` the model, then :meth:`SRModel.load <xsuperres.SRModel.load>` it."""
        d = self.fetch(name, base_url=base_url, cache=cache, progress=progress)
        model = SRModel.load(d, device=device)
        model.metadata.setdefault("pretrained_name", name)
        return model

    def card(self, name: str, **kwargs) -> str:
        """Text of the model card of ``name`` (markdown or JSON); fetches the model if needed."""
        d = self.fetch(name, **kwargs)
        for c in CARD_FILES:
            if (d / c).is_file():
                return (d / c).read_text(encoding="utf-8")
        raise ModelFileError(
            f"pretrained model {name!r} has no model card (one of {', '.join(CARD_FILES)})"
        )


def _registry(registry: Union[None, PathLike, ModelRegistry]) -> ModelRegistry:
    if isinstance(registry, ModelRegistry):
        return registry
    return ModelRegistry(REGISTRY_FILE if registry is None else registry)


# ---------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------
def list_models(*, registry: Union[None, PathLike, ModelRegistry] = None) -> list[str]:
    """Names of the pretrained models, sorted (e.g. ``["radar-s10-t3", ...]``).

    Parameters
    ----------
    registry
        A :class:`ModelRegistry` or the path of a registry file (default: the package's).

    Returns
    -------
    list of str
        Valid ``name`` values for :func:`load_model`; empty if none is registered.
    """
    return _registry(registry).names()


def fetch_model(
    name: str,
    *,
    base_url: Optional[str] = None,
    cache: Optional[PathLike] = None,
    progress: bool = False,
    registry: Union[None, PathLike, ModelRegistry] = None,
) -> Path:
    """Local, verified directory of pretrained model ``name`` (see :meth:`ModelRegistry.fetch`).

    Useful to pre-populate a cache (``XSUPERRES_CACHE``) on a machine with network access
    before copying it to an air-gapped one.
    """
    return _registry(registry).fetch(name, base_url=base_url, cache=cache, progress=progress)


def load_model(
    name: str,
    device: str = "cpu",
    *,
    base_url: Optional[str] = None,
    cache: Optional[PathLike] = None,
    progress: bool = False,
    registry: Union[None, PathLike, ModelRegistry] = None,
) -> SRModel:
    """Load a pretrained :class:`~xsuperres.SRModel` by name.

    Parameters
    ----------
    name
        Model name, one of :func:`list_models`, e.g. ``"radar-s10-t3"``.
    device
        Where to put the weights (``"cpu"``, ``"cuda"``, ``"auto"``).
    base_url
        Download location; overrides ``$XSUPERRES_BASE_URL`` and :data:`DEFAULT_BASE_URL`.
        Unused for shipped models.
    cache
        Cache root; overrides ``$XSUPERRES_CACHE`` (default ``pooch.os_cache("xsuperres")``).
    progress
        Show a download progress bar.
    registry
        A :class:`ModelRegistry` or a registry file (default: the package's).

    Returns
    -------
    SRModel
        In eval mode on ``device``; ``model.metadata["pretrained_name"] == name``.

    Raises
    ------
    UnknownModelError
        ``name`` is not registered; the message lists the known names.
    ModelFileError
        A file does not match its registered SHA-256 or cannot be obtained; or the model
        directory itself is invalid (:meth:`SRModel.load <xsuperres.SRModel.load>`).

    Examples
    --------
    >>> import xsuperres
    >>> xsuperres.list_models()                       # doctest: +SKIP
    ['radar-s10-t3', ...]
    >>> model = xsuperres.load_model("radar-s10-t3")  # doctest: +SKIP
    """
    return _registry(registry).load(
        name, device, base_url=base_url, cache=cache, progress=progress
    )


def model_card(
    name: str,
    *,
    base_url: Optional[str] = None,
    cache: Optional[PathLike] = None,
    registry: Union[None, PathLike, ModelRegistry] = None,
) -> str:
    """Text of the model card (``model_card.md`` or ``card.json``) of model ``name``."""
    return _registry(registry).card(name, base_url=base_url, cache=cache)


# ---------------------------------------------------------------------------------------
# maintainers: (re)generating the registry
# ---------------------------------------------------------------------------------------
def make_registry(
    directory: PathLike,
    output: Optional[PathLike] = None,
    *,
    check: bool = True,
    require_card: bool = True,
) -> str:
    """Registry lines (pooch format, ``<name>/<file> sha256:<hex>``) for model directories.

    Parameters
    ----------
    directory
        A directory whose sub-directories are model directories (each with
        ``model.safetensors``, ``config.json`` and a card), e.g. ``xsuperres/weights`` for
        the shipped models, or a staging directory of models to upload. Every regular,
        non-hidden file of each model directory is listed.
    output
        If given, the text is written there (e.g. ``xsuperres/weights/registry.txt``).
    check
        Load every model with :meth:`SRModel.load <xsuperres.SRModel.load>` first
        (verifies the weights against ``config.json`` and the architecture).
    require_card
        Refuse a model directory without ``model_card.md`` or ``card.json``.

    Returns
    -------
    str
        The registry text (a header comment, then one line per file, sorted).

    Raises
    ------
    ModelFileError
        A sub-directory with an invalid name or lacking a required file, or a model that
        does not load.

    Notes
    -----
    Models may be merged from several staging directories by concatenating the outputs.
    To serve a model from a web server, upload ``<name>/<file>`` under the base URL; to
    ship it in the package, copy the directory into ``xsuperres/weights/``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ModelFileError(f"{str(root)!r} is not a directory")
    lines = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if not (d / CONFIG_FILE).is_file() and not (d / WEIGHTS_FILE).is_file():
            continue  # not a model directory
        if not _NAME_RE.match(d.name):
            raise ModelFileError(
                f"model directory name {d.name!r} is not valid (lower-case letters, digits, "
                "'.', '_', '-'; e.g. 'radar-s10-t3')"
            )
        missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (d / f).is_file()]
        if require_card and not any((d / c).is_file() for c in CARD_FILES):
            missing.append(" or ".join(CARD_FILES))
        if missing:
            raise ModelFileError(f"model directory {d} lacks {', '.join(missing)}")
        if check:
            SRModel.load(d)
        for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
            if " " in f.name:
                raise ModelFileError(f"file names may not contain spaces: {f}")
            lines.append(f"{d.name}/{f.name} sha256:{_sha256(f)}")
    width = max((len(ln.split()[0]) for ln in lines), default=0)
    body = [f"{a:<{width}} {b}" for a, b in (ln.split() for ln in lines)]
    text = (
        "# xsuperres pretrained-model registry (pooch format):\n"
        "#   <model-name>/<file> sha256:<hex> [url]\n"
        "# Generated by xsuperres.pretrained.make_registry; see docs/pretrained.md.\n"
        + "".join(b + "\n" for b in body)
    )
    if output is not None:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return text


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m xsuperres.pretrained DIRECTORY [-o FILE]``: print or write a registry."""
    ap = argparse.ArgumentParser(
        prog="python -m xsuperres.pretrained",
        description="Generate pooch registry lines (sha256 per file) for model directories.",
    )
    ap.add_argument("directory", help="directory holding <model-name>/ sub-directories")
    ap.add_argument("-o", "--output", help="write the registry here instead of stdout")
    ap.add_argument("--no-check", action="store_true", help="do not load each model first")
    args = ap.parse_args(argv)
    text = make_registry(args.directory, args.output, check=not args.no_check)
    if args.output is None:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
