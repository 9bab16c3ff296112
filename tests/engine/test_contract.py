"""One contract suite, parametrized over every engine (after implicit's recommender_base_test)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import ENGINES, NotFittedError, build_engine, get_engine_class
from tests.engine.conftest import (
    BAD_PARAMS,
    COLD_ITEM,
    CONTENT_AWARE,
    ENGINE_PARAMS,
    ITEMS,
    N_ITEMS,
    NON_PERSONALISED,
    fitted_engine,
)

ALL = sorted(ENGINES)


def row(items, n_items=N_ITEMS, weights=None):
    items = list(items)
    data = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
    return sp.csr_matrix((data, ([0] * len(items), items)), shape=(1, n_items))


def test_every_engine_has_params():
    assert set(ALL) == set(ENGINE_PARAMS) == set(BAD_PARAMS)


@pytest.mark.parametrize("name", ALL)
def test_registry_builds_class(name):
    cls = get_engine_class(name)
    assert isinstance(build_engine(name), cls)
    assert get_engine_class(f"{cls.__module__}.{cls.__name__}") is cls


def test_unknown_engine_name():
    with pytest.raises(ValueError, match="Unknown engine"):
        get_engine_class("magic")


@pytest.mark.parametrize("name", ALL)
def test_obvious_top_item(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    items, scores = model.recommend(0, row([0, 1, 2, 3]), n=3)
    assert len(items) == 3 and np.all(np.diff(scores) <= 1e-6)
    if name in NON_PERSONALISED:
        unseen = np.setdiff1d(np.arange(N_ITEMS), [0, 1, 2, 3])
        assert model.scores_[items[0]] == model.scores_[unseen].max()
    elif name in CONTENT_AWARE:
        assert items[0] in (4, COLD_ITEM)
    else:
        assert items[0] == 4
    # the clothes buyer gets clothes
    items, _ = model.recommend(20, row([6, 7, 8, 9]), n=1)
    if name not in NON_PERSONALISED:
        assert items[0] == 5


@pytest.mark.parametrize("name", ALL)
def test_batch_equals_single(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    users = np.array([0, 7, 21, 39, 45])           # 45 is a new user
    rows = sp.vstack([X[[0, 7, 21, 39]], row([5, 6])]).tocsr()
    idx, scores = model.recommend_batch(users, rows, n=4)
    assert idx.shape == scores.shape == (5, 4)
    for pos, u in enumerate(users):
        single, single_scores = model.recommend(u, rows[pos], n=4)
        np.testing.assert_array_equal(single, idx[pos][idx[pos] >= 0])
        np.testing.assert_allclose(single_scores, scores[pos][idx[pos] >= 0], rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_seen_items_filtered(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    items, _ = model.recommend(3, X[3], n=N_ITEMS)
    assert not set(items) & set(X[3].indices)
    assert len(items) == N_ITEMS - X[3].nnz
    kept, _ = model.recommend(3, X[3], n=N_ITEMS, filter_seen=False)
    assert set(X[3].indices) <= set(kept)


@pytest.mark.parametrize("name", ALL)
def test_filter_items_and_candidates(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    items, _ = model.recommend(0, X[0], n=5, filter_items=[4, COLD_ITEM, 5])
    assert not {4, COLD_ITEM, 5} & set(items)
    items, _ = model.recommend(0, X[0], n=5, items=[7, 8, 1])
    assert set(items) <= {7, 8} and len(items) == 2        # item 1 is seen
    idx, scores = model.recommend_batch([0, 1], X[[0, 1]], n=3, items=[9])
    assert (idx[:, 0] == 9).all() and (idx[:, 1:] == -1).all()
    assert np.isneginf(scores[:, 1:]).all()


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name, interactions, tmp_path):
    X, _ = interactions
    model = fitted_engine(name)
    model.save(tmp_path / name)
    loaded = type(model).load(tmp_path / name)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    users = np.arange(40)
    a = model.recommend_batch(users, X, n=5)
    b = loaded.recommend_batch(users, X, n=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    from recommender.engine.base import RecommenderBase
    assert type(RecommenderBase.load(tmp_path / name)) is type(model)


def test_a_parameter_of_a_newer_version_is_refused_by_name(interactions, tmp_path):
    """A process not yet upgraded reads a model trained by a newer version: a clear error."""
    import json

    import recommender
    from recommender.engine.base import RecommenderBase

    model = fitted_engine("itemknn")
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["version"] == recommender.__version__
    meta["params"]["line_words"], meta["version"] = 2, "9.9"
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"saved by recommender 9\.9 with parameters that this process's "
                                         r"recommender .* does not know: line_words\. Upgrade this process"):
        RecommenderBase.load(tmp_path / "m")


@pytest.mark.parametrize("name", ALL)
def test_not_fitted_error(name, interactions):
    X, _ = interactions
    model = build_engine(name, **ENGINE_PARAMS[name])
    for call in (lambda: model.recommend(0, X[0]), lambda: model.similar_items(0),
                 lambda: model.recommend_batch([0], X[[0]]), lambda: model.save("unused"),
                 lambda: model.explain(0, X[0], 4)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("name", ALL)
def test_bad_parameter_is_named(name, interactions):
    X, _ = interactions
    param, value = BAD_PARAMS[name]
    model = build_engine(name, **(ENGINE_PARAMS[name] | {param: value}))
    with pytest.raises(ValueError, match=param) as info:
        model.fit(X, item_features=ITEMS)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_user_without_history(name):
    model = fitted_engine(name)
    empty = sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    for user in (0, 1000):
        items, scores = model.recommend(user, empty, n=3)
        assert len(items) == 3 and np.isfinite(scores).all()
    items, _ = model.recommend(1000, None, n=3)
    assert len(items) == 3
    assert model.explain(1000, empty, 4) == []


@pytest.mark.parametrize("name", sorted(set(ALL) - NON_PERSONALISED))
def test_similar_items_and_explain(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    items, scores = model.similar_items(1, n=3)
    assert 1 not in items and len(items) >= 1
    assert items[0] in range(0, 5) or (name in CONTENT_AWARE and items[0] == COLD_ITEM)
    assert np.all(np.diff(scores) <= 1e-6)
    assert 0 not in model.similar_items(1, n=3, filter_items=[0])[0]
    reasons = model.explain(0, row([0, 1, 2, 5]), 3, n=2)
    assert 1 <= len(reasons) <= 2
    assert reasons[0][0] in (0, 1, 2) and reasons[0][1] > 0


@pytest.mark.parametrize("name", ALL)
def test_shape_and_argument_errors(name, interactions):
    X, _ = interactions
    model = fitted_engine(name)
    with pytest.raises(ValueError, match="user_items"):
        model.recommend_batch([0, 1], X[[0]], n=2)
    with pytest.raises(ValueError, match="n must be"):
        model.recommend(0, X[0], n=0)
    with pytest.raises(ValueError, match="item_index"):
        model.explain(0, X[0], N_ITEMS + 3)
    with pytest.raises(ValueError, match="interactions"):
        build_engine(name).fit([[1, 0]])


def test_fit_returns_self_and_repr(interactions):
    X, _ = interactions
    model = build_engine("itemknn", k=7)
    assert model.fit(X) is model
    assert repr(model) == "ItemKNN(k=7, shrinkage=0.0, binarize=False)"
    assert model.set_params(k=3).k == 3
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(K=3)


def test_recommend_batch_is_blockwise(interactions, monkeypatch):
    import recommender.engine.base as base

    X, _ = interactions
    model = fitted_engine("ease")
    full = model.recommend_batch(np.arange(40), X, n=4)
    monkeypatch.setattr(base, "MAX_BLOCK_CELLS", 3 * N_ITEMS)   # three users per block
    blocked = model.recommend_batch(np.arange(40), X, n=4)
    np.testing.assert_array_equal(full[0], blocked[0])
