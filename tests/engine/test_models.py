"""Engine-specific behaviour beyond the contract suite."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import ALS, EASE, Cooccurrence, Hybrid, ItemKNN, Popular, TemporalEASE, Trending
from tests.engine.conftest import ITEMS, make_interactions


def _ordered_histories():
    """Every user meets item 0 first, then item 1 (and some other items)."""
    rng = np.random.default_rng(0)
    rows, cols, ts = [], [], []
    for u in range(60):
        extra = rng.choice(np.arange(2, 12), 3, replace=False)
        for t, item in enumerate([0, 1, *extra] if u % 2 else [*extra, 0, 1]):
            rows.append(u)
            cols.append(int(item))
            ts.append(float(t))
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 12))
    T = sp.csr_matrix((np.array(ts), (rows, cols)), shape=(60, 12))
    T.sort_indices()
    return X, T


def test_temporal_ease_learns_what_comes_next():
    X, T = _ordered_histories()
    model = TemporalEASE(regularization=1.0, holdout_fraction=0.2).fit(X, timestamps=T)
    W = model.item_weights_
    assert W[0, 1] > W[1, 0]              # 1 follows 0, never the reverse
    plain = EASE(regularization=1.0).fit(X).item_weights_
    assert plain[0, 1] == pytest.approx(plain[1, 0], rel=0.2)


def test_ease_refuses_large_catalogs_with_a_clear_error():
    X = sp.random(5, 30, density=0.3, format="csr", random_state=0)
    with pytest.raises(ValueError, match="max_items=20"):
        EASE(max_items=20).fit(X)
    assert EASE(max_items=30).fit(X).item_weights_.shape == (30, 30)


def test_ease_woodbury_and_direct_paths_agree():
    from recommender.engine.ease import _ease_weights

    X = sp.csr_matrix((np.random.default_rng(1).random((15, 25)) < 0.3).astype(np.float32))
    X = X[:, np.flatnonzero(X.getnnz(axis=0))]
    X = X[np.diff(X.indptr) > 0]
    wide = _ease_weights(X, 5.0)                         # users < items: Woodbury
    tall = _ease_weights(sp.vstack([X, X]).tocsr(), 10.0)  # users > items: Cholesky
    np.testing.assert_allclose(wide, tall, atol=1e-4)


def test_als_fold_in_matches_stored_user_factors():
    X, _ = make_interactions()
    model = ALS(factors=4, iterations=20, regularization=0.1, cg_steps=4).fit(X)
    stored = model._score_block(np.array([3]), X[3])
    folded = model._score_block(np.array([999]), X[3])
    np.testing.assert_allclose(stored, folded, atol=0.05)


def test_itemknn_keeps_top_k_neighbours_sparse():
    X, _ = make_interactions()
    model = ItemKNN(k=2).fit(X)
    assert model.similarity_.getnnz(axis=1).max() <= 2
    assert ItemKNN(k=2, shrinkage=5.0).fit(X).similarity_.nnz > 0


@pytest.mark.parametrize("kind", ["jaccard", "cosine", "lift", "conditional", "count"])
def test_cooccurrence_similarities(kind):
    X, _ = make_interactions()
    model = Cooccurrence(similarity=kind, min_count=2).fit(X)
    items, _ = model.similar_items(0, n=3)
    assert set(items) <= {1, 2, 3, 4}


def test_trending_prefers_recent_items_and_warns_without_timestamps():
    X = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], np.float32))
    T = sp.csr_matrix(np.array([[0.0, 10 * 86400.0], [0.0, 0], [0, 10 * 86400.0]]))
    T.eliminate_zeros()
    T = sp.csr_matrix((np.r_[1.0, 10 * 86400.0, 1.0, 10 * 86400.0], X.indices, X.indptr),
                      shape=X.shape)
    model = Trending(half_life_days=1.0).fit(X, timestamps=T, reference_time=10 * 86400.0)
    assert model.recommend(9, None, n=1)[0][0] == 1
    with pytest.warns(UserWarning, match="timestamps"):
        Trending().fit(X)
    assert Popular(by="weight").fit(X).scores_.tolist() == [2.0, 2.0]


def test_hybrid_fixed_weights_and_validation_matrix():
    X, T = make_interactions()
    model = Hybrid(components=["ease", "popular"], weights=[1.0, 0.0]).fit(X)
    assert model.validation_ndcg_ is None
    ease = EASE().fit(X)
    np.testing.assert_array_equal(model.recommend(0, X[0], n=3)[0],
                                  ease.recommend(0, X[0], n=3)[0])
    with pytest.raises(ValueError, match="weights"):
        Hybrid(components=["ease"], weights=[1.0, 2.0]).fit(X)
    with pytest.raises(ValueError, match="components"):
        Hybrid(components=[{"name": "ease"}]).fit(X)
    from recommender.engine.evaluation import split_matrix
    train, val = split_matrix(X, 0.25, timestamps=T, min_interactions=2)
    tuned = Hybrid(components=["itemknn", "popular", "content"]).fit(
        train, item_features=ITEMS, validation=val)
    assert tuned.validation_ndcg_ is not None and tuned.weights_.max() > 0
    assert tuned.item_popularity_.sum() == X.nnz
