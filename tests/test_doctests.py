"""The docstring examples of the public entry points run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: modules whose docstrings carry examples (``Examples`` sections with ``>>>``)
MODULES = ["xsuperres.coarsen", "xsuperres.interpolate", "xsuperres.scoring", "xsuperres.metrics",
           "xsuperres.temporal", "xsuperres.config", "xsuperres.pretrained"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
