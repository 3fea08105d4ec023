"""SRModel's notebook display (``_repr_html_``) and ``__repr__``, parsed, not string-matched."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import torch

import xsuperres as xs
from xsuperres.model import SRModel


class Cells(HTMLParser):
    """Collects the text of every table row as a list of cell strings, and tag counts."""

    def __init__(self):
        super().__init__()
        self.rows, self.tags, self._row, self._cell = [], {}, None, None

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(text: str) -> Cells:
    p = Cells()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = xs.SRConfig.recipe(1, 3, preset="tiny", cap=7.5)
    return SRModel(cfg, normalization={"cap": 7.5, "residual_scale": 0.1},
                   metadata={"time_step": "5min", "grid_spacing_m": [1000.0, 1000.0],
                             "name": "my-model", "trained_at": "2026-11-26T10:00:00Z"})


def test_repr_html_facts(model):
    page = parse(model._repr_html_())
    facts = {r[0]: r[1] for r in page.rows if len(r) == 2}
    n = model.n_parameters
    assert facts["factors"] == "S = 1 (space), T = 3 (time), L = 4 LR context steps"
    assert facts["trained for"] == ("HR cadence 5min (LR cadence 3 x 5min); HR grid spacing "
                                    "1000 m x 1000 m")
    assert facts["sampler default"] == "dpmpp_2m, 10 steps"
    assert f"{n['total'] / 1e6:.2f} M parameters" in facts["networks"]
    assert facts["normalization"] == "cap 7.5 mm/h"
    # S = 1: trained with tile conservation, block at inference by default
    assert facts["mass conservation"] == "trained with 'tile'; default at inference (\"auto\") 'block'"
    assert facts["training data"] == "not recorded" and facts["trained at"] == "2026-11-26T10:00:00Z"
    assert page.tags.get("details") is None  # no card, no scores
    assert "my-model" in model._repr_html_() and "'my-model'" in repr(model)
    assert "time_step='5min'" in repr(model)


def test_repr_html_card_scores_and_escaping(model):
    model.card = {"summary": "<script>alert(1)</script> radar model",
                  "data": {"files": ["a_5min.nc"], "periods": {"a_5min": ["2020-01-01T00:00", "2020-01-01T06:00"]},
                           "crop_km": "160 x 160"},
                  "evaluation": {"description": "212 held-out tiles"},
                  "scores": {"nearest": {"crps": 0.25, "pitd": 0.1, "pe99": 0.65, "lsd": 0.126},
                             "full model": {"crps": 0.2012345, "pitd": 0.05, "pe99": 0.3, "lsd": 0.1}}}
    try:
        text = model._repr_html_()
    finally:
        model.card = None
    page = parse(text)
    assert page.tags.get("script") is None and "&lt;script&gt;" in text
    facts = {r[0]: r[1] for r in page.rows if len(r) == 2}
    assert facts["training data"] == "a_5min (2020-01-01T00:00 .. 2020-01-01T06:00); crop 160 x 160"
    table = [r for r in page.rows if len(r) == 5]
    assert table[0] == ["method", "CRPS", "PITD", "PE99", "LSD"]
    assert table[2] == ["full model", "0.2012", "0.0500", "0.3000", "0.1000"]
    assert "212 held-out tiles" in text


def test_pretrained_models_carry_their_card():
    m = xs.load_model("radar-s10-t3")
    assert m.card is not None and m.card["name"] == "radar-s10-t3"
    page = parse(m._repr_html_())
    methods = [r[0] for r in page.rows if len(r) == 5][1:]
    assert methods == list(m.card["scores"])


def test_card_travels_with_save_and_load(model, tmp_path):
    model.card = {"summary": "a card", "scores": {"nearest": {"crps": 0.3}}}
    try:
        d = model.save(tmp_path / "m")
    finally:
        model.card = None
    assert SRModel.load(d).card == {"summary": "a card", "scores": {"nearest": {"crps": 0.3}}}
    assert SRModel.load(model.save(tmp_path / "plain")).card is None  # no card, no file
    assert not (tmp_path / "plain" / "card.json").exists()
    (d / "card.json").write_text("{not json")
    with pytest.raises(xs.ModelFileError, match="card.json is not valid JSON"):
        SRModel.load(d)
