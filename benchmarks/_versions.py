"""Two copies of the package for a benchmark against an older revision.

:func:`package_copies` puts ``xsuperres`` as of a git revision (``git archive``) and a
snapshot of the working tree into a temporary folder; a child process imports one of them
by putting its folder first on ``sys.path``. The snapshot keeps edits made during a long
run out of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_copies(rev: str, tmp: str | Path) -> tuple[Path, Path]:
    """``(reference, this)``: folders holding ``xsuperres`` at ``rev`` and as checked out now."""
    ref = Path(tmp) / "ref"
    ref.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "xsuperres"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
    this = Path(tmp) / "this"
    shutil.copytree(REPO / "xsuperres", this / "xsuperres",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return ref, this
