"""explain_many gives, for every engine, the same answer as explain item by item."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import ENGINES
from tests.engine.conftest import N_ITEMS, fitted_engine


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_explain_many_matches_explain(name, interactions):
    model = fitted_engine(name)
    history = sp.csr_matrix((np.array([1.0, 2.0, 1.0], np.float32), ([0, 0, 0], [0, 1, 6])),
                            shape=(1, N_ITEMS))
    items, _scores = model.recommend(0, history, n=5)
    many = model.explain_many(0, history, items, n=2)
    single = [model.explain(0, history, int(i), n=2) for i in items]
    assert len(many) == len(single)
    for got, want in zip(many, single, strict=True):
        assert [i for i, _c in got] == [i for i, _c in want]
        np.testing.assert_allclose([c for _i, c in got], [c for _i, c in want], rtol=1e-5)


def test_explain_many_of_an_empty_history(interactions):
    model = fitted_engine("itemknn")
    empty = sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    assert model.explain_many(0, empty, [1, 2]) == [[], []]
