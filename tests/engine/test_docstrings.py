"""The usage examples in the engine's module docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["recommender.engine", "recommender.engine.base", "recommender.engine.data",
           "recommender.engine.popular", "recommender.engine.neighbors",
           "recommender.engine.ease", "recommender.engine.als", "recommender.engine.content",
           "recommender.engine.hybrid", "recommender.engine.evaluation",
           "recommender.engine.deep"]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
