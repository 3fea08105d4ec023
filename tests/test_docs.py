"""The documentation site builds with no warnings and its notebooks run, with outputs.

``python -m sphinx -W -b html docs OUT`` executes every notebook of ``docs/gallery`` (a
cell that raises fails the build, and ``-W`` turns every warning into an error); the built
pages must then hold the notebooks' outputs: figures (PNG files that exist), tables and
the model's HTML display. Takes a few minutes; ``pytest -m "not docs"`` skips it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
GALLERY = sorted(p.stem for p in (ROOT / "docs" / "gallery").glob("0*.md"))
#: figures each notebook must show (at least)
FIGURES = {"01_quickstart": 1, "02_xclim": 1, "03_train": 1, "04_verification": 3}

pytestmark = pytest.mark.docs


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MPLBACKEND", None)  # the notebooks draw inline (they say %matplotlib inline anyway)
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
                           "-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def test_gallery_has_the_five_notebooks():
    assert GALLERY == ["01_quickstart", "02_xclim", "03_train", "04_verification", "05_scale_out"]


@pytest.mark.parametrize("name", GALLERY)
def test_notebook_pages_hold_their_outputs(site, name):
    page = (site / "gallery" / f"{name}.html").read_text(encoding="utf-8")
    outputs = re.findall(r'class="cell_output', page)
    assert len(outputs) >= 3, f"{name}: {len(outputs)} cell outputs"
    images = re.findall(r'<img [^>]*src="([^"]+\.png)"', page)
    assert len(images) >= FIGURES.get(name, 0), f"{name}: {len(images)} figures"
    for src in images:
        png = (site / "gallery" / src).resolve()
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    text = re.sub(r"<[^>]+>", " ", page)
    assert "Traceback" not in text and "Warning:" not in text, name  # clean outputs


def test_quickstart_shows_the_model_and_a_score_table(site):
    page = (site / "gallery" / "01_quickstart.html").read_text(encoding="utf-8")
    assert "xsuperres-model" in page  # SRModel._repr_html_
    assert re.search(r'<table[^>]*class="dataframe', page)
    for row in ("nearest", "bicubic", "deterministic mean", "ensemble"):
        assert f"<th>{row}</th>" in page


def test_api_reference_is_generated(site):
    page = (site / "reference.html").read_text(encoding="utf-8")
    for name in ("xsuperres.downscale", "xsuperres.coarsen_perfect", "xsuperres.SRModel.predict",
                 "xsuperres.temporal.motion_in_time", "xsuperres.plot.plot_pit"):
        assert f'id="{name}"' in page, name
