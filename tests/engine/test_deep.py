"""Deep engine specifics: progress hook, Keras file, validation early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine._deep_batches import batch_maker, time_positions
from recommender.engine.deep import KERAS_FILE, TwoTower
from tests.engine.conftest import COLD_ITEM, ITEMS, make_interactions


def test_progress_callback_and_early_stopping(tmp_path):
    X, _ = make_interactions()
    calls = []
    model = TwoTower(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=3, batch_size=16,
                     random_state=3)
    model.fit(X, item_features=ITEMS,
              progress_callback=lambda epoch, total, logs: calls.append((epoch, total, logs)))
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 3 for c in calls)
    assert "loss" in calls[0][2] and "val_loss" in calls[0][2]
    assert model.epochs_trained_ == 3
    model.save(tmp_path)
    assert (tmp_path / KERAS_FILE).exists()
    keras_model = TwoTower.load(tmp_path).keras_model(tmp_path)
    assert keras_model.get_layer("item_tower").n_items == X.shape[1] - 1   # warm items only


def test_same_seed_same_model():
    X, _ = make_interactions()
    params = dict(embedding_dim=8, hidden_dim=8, epochs=2, batch_size=16, random_state=5,
                  validation_fraction=0.0)
    a = TwoTower(**params).fit(X)
    b = TwoTower(**params).fit(X)
    np.testing.assert_allclose(a.item_vectors_, b.item_vectors_, rtol=1e-4, atol=1e-5)


def test_without_content_is_a_denoising_autoencoder():
    X, _ = make_interactions()
    model = TwoTower(embedding_dim=8, hidden_dim=16, epochs=30, batch_size=8,
                     learning_rate=0.01, dropout=0.2, patience=30).fit(X)
    row = sp.csr_matrix((np.ones(4, np.float32), ([0] * 4, [5, 6, 7, 8])), shape=(1, 11))
    assert model.recommend(0, row, n=1)[0][0] == 9
    assert not model.content_vectors_.any()


def test_validation_ndcg_drives_early_stopping():
    X, T = make_interactions()
    model = TwoTower(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=3, batch_size=16,
                     patience=3, validation_fraction=0.3, half_life_days=30.0,
                     monitor="ndcg")
    model.fit(X, item_features=ITEMS, timestamps=T)
    assert len(model.history_["val_ndcg"]) == model.epochs_trained_
    assert all(0.0 <= v <= 1.0 for v in model.history_["val_ndcg"])
    assert 1 <= model.best_epoch_ <= model.epochs_trained_


def test_batches_cut_histories_in_time_and_weight_inputs_by_recency():
    day = 86_400.0
    X = sp.csr_matrix(np.ones((1, 5), np.float32))
    T = sp.csr_matrix(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]) * 10 * day)
    position, stamps = time_positions(X, T, np.arange(5))
    make = batch_maker(X, position, stamps, half_life_days=10.0, past_weight=0.5)
    x, y, later = make(np.array([0]), None)
    assert later[0].tolist() == [False, False, False, False, True]   # cut at 80%
    assert x[0, 4] == 0 and np.all(np.diff(x[0, :4]) > 0)            # older = lighter
    np.testing.assert_allclose(x[0, :4] / x[0, 3], [0.125, 0.25, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 0.5, 0.5, 1.0])


@pytest.mark.parametrize("name, value", [("half_life_days", 0.0), ("past_weight", -1.0),
                                         ("monitor", "auc"), ("item_bias", "yes"),
                                         ("wide_neighbours", -1), ("wide_max_items", 0),
                                         ("wide_regularization", 0.0),
                                         ("wide_trainable", 1), ("wide_l2", -0.1)])
def test_new_hyperparameters_are_validated(name, value):
    X, _ = make_interactions()
    with pytest.raises(ValueError, match=name):
        TwoTower(**{name: value}).fit(X)


# -- the wide (item-item) part ----------------------------------------------------------

WIDE = dict(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=3, batch_size=8,
            learning_rate=0.01, validation_fraction=0.1, random_state=1)


def _dense_binary(n_users=60, n_items=8, density=0.6, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))
    assert (X.T @ X).toarray().all()            # every pair co-occurs: full neighbourhoods
    return X


def test_cosine_neighbours_are_the_top_k_other_items():
    from recommender.engine._sparse import cosine_neighbours

    X = _dense_binary(seed=2)
    N = cosine_neighbours(X, 3)
    B = X.toarray()
    cos = (B.T @ B) / np.outer(np.linalg.norm(B, axis=0), np.linalg.norm(B, axis=0))
    np.fill_diagonal(cos, -np.inf)
    for i in range(X.shape[1]):
        got = set(N.indices[N.indptr[i]:N.indptr[i + 1]].tolist())
        assert i not in got and len(got) == 3
        assert got == set(np.argsort(-cos[i])[:3].tolist())


def test_neighbourhood_ridge_with_full_neighbourhoods_is_ease():
    """Known answer: EASE's zero-diagonal solution is, column by column, the ridge
    regression of item j on all other items; with every item as a neighbour the sparse
    version must reproduce it."""
    from recommender.engine import EASE
    from recommender.engine._sparse import cosine_neighbours, neighbourhood_ridge

    X = _dense_binary()
    n = X.shape[1]
    N = cosine_neighbours(X, n - 1)
    assert N.nnz == n * (n - 1)
    W = neighbourhood_ridge(X, N, 5.0).toarray()
    np.testing.assert_allclose(W, EASE(regularization=5.0).fit(X).item_weights_,
                               rtol=1e-4, atol=1e-5)
    # fewer neighbours: only the pattern is filled, the diagonal never
    W2 = neighbourhood_ridge(X, cosine_neighbours(X, 2), 5.0)
    assert (W2.getnnz(axis=0) <= 2).all() and not W2.diagonal().any()


def test_wide_part_round_trips_and_leaves_cold_items_to_the_towers(tmp_path):
    X, T = make_interactions()
    model = TwoTower(wide_neighbours=2, **WIDE).fit(X, item_features=ITEMS, timestamps=T)
    W = model.wide_weights_
    warm = model.warm_items_
    assert COLD_ITEM not in warm and W.shape == (len(warm), len(warm))
    assert (W.getnnz(axis=0) <= 2).all() and not W.diagonal().any()
    assert W.nnz > 0 and model.wide_initial_gain_ > 0
    wide = model.wide_scores(X)
    assert np.abs(wide).sum() > 0 and not wide[:, COLD_ITEM].any()
    # scores = towers + wide part, the cold item from the towers alone
    towers = model.user_vectors(X) @ model.item_vectors_.T + model.item_bias_
    np.testing.assert_allclose(model._score_block(np.arange(40), X), towers + wide,
                               rtol=1e-5, atol=1e-5)
    cold_scores = model.recommend_batch(np.arange(40), X, n=1, items=[COLD_ITEM])[1]
    assert np.isfinite(cold_scores).all()
    model.save(tmp_path)
    loaded = TwoTower.load(tmp_path)
    assert sp.issparse(loaded.wide_weights_)
    assert (loaded.wide_weights_ != W).nnz == 0
    a, b = model.recommend_batch(np.arange(40), X, n=5), loaded.recommend_batch(
        np.arange(40), X, n=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert loaded.keras_model(tmp_path).get_layer("wide").nnz == W.nnz


def test_wide_part_is_switched_off_above_wide_max_items():
    X, _ = make_interactions()
    model = TwoTower(wide_neighbours=3, wide_max_items=5, **WIDE).fit(X, item_features=ITEMS)
    assert model.wide_weights_ is None
    assert not model.wide_scores(X).any()
    assert model.recommend(0, X[0], n=3)[0].shape == (3,)
    assert TwoTower(wide_neighbours=0, **WIDE).fit(X).wide_weights_ is None


def test_wide_start_alone_recommends_the_missing_item():
    """With towers untrained (lr ~ 0), the closed-form wide part decides: a user owning
    electronics 0-3 gets item 4, the one electronics item they miss."""
    X, _ = make_interactions()
    model = TwoTower(wide_neighbours=4, wide_regularization=1.0, embedding_dim=4,
                     hidden_dim=4, epochs=1, learning_rate=1e-9, item_bias=False,
                     validation_fraction=0.0, random_state=0).fit(X)
    row = sp.csr_matrix((np.ones(4, np.float32), ([0] * 4, [0, 1, 2, 3])), shape=(1, 11))
    assert model.wide_scores(row)[0].argmax() == 4
    assert model.recommend(0, row, n=1)[0][0] == 4


def test_wide_part_needs_co_occurrences():
    X = sp.csr_matrix(np.eye(12, 11, dtype=np.float32))     # one item per user
    model = TwoTower(**WIDE).fit(X)
    assert model.wide_weights_ is None
    assert model.recommend(0, X[0], n=2)[0].shape == (2,)


def test_trainable_wide_weights_move_away_from_the_closed_form_start():
    X, T = make_interactions()
    params = WIDE | dict(wide_neighbours=3, epochs=5, learning_rate=0.05,
                         validation_fraction=0.0)
    frozen = TwoTower(**params).fit(X, timestamps=T).wide_weights_
    trained = TwoTower(wide_trainable=True, **params).fit(X, timestamps=T).wide_weights_
    np.testing.assert_array_equal(frozen.indptr, trained.indptr)   # same stored pattern
    np.testing.assert_array_equal(frozen.indices, trained.indices)
    # a frozen W only changes by its gain, a trained one does not stay proportional
    nz = frozen.data != 0
    ratio = trained.data[nz] / frozen.data[nz]
    assert ratio.std() / abs(ratio.mean()) > 1e-3


# -- serving a saved deep model: numpy only, one product per chunk ------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TINY = dict(embedding_dim=8, hidden_dim=8, content_dim=4, epochs=2, batch_size=16, random_state=0)


def test_explanations_and_similar_items_normalise_the_item_vectors_once(monkeypatch):
    """A refresh chunk explains ~10 items per user: the cosines must come from one
    cached set of unit vectors, not from all items' norms recomputed per explained item."""
    X, _ = make_interactions()
    model = TwoTower(**TINY).fit(X, item_features=ITEMS)
    V = model.item_vectors_
    cos = (V @ V.T) / np.outer(np.linalg.norm(V, axis=1), np.linalg.norm(V, axis=1))
    calls = []
    real_norm = np.linalg.norm
    monkeypatch.setattr(np.linalg, "norm", lambda *a, **k: calls.append(1) or real_norm(*a, **k))
    items = [4, 9, COLD_ITEM]
    for user in range(10):
        got = model.explain_many(user, X[user], items, n=3)
        row = X[user]
        for item, reasons in zip(items, got, strict=True):
            expected = row.data * cos[row.indices, item]
            order = np.argsort(-expected, kind="stable")[:3]
            want = [(int(row.indices[o]), float(expected[o])) for o in order if expected[o] > 0]
            assert [r[0] for r in reasons] == [w[0] for w in want]
            np.testing.assert_allclose([r[1] for r in reasons], [w[1] for w in want], rtol=1e-4)
    for item in range(X.shape[1]):
        idx, sims = model.similar_items(item, n=3)
        np.testing.assert_allclose(sims, cos[item, idx], rtol=1e-4)
    assert len(calls) <= 1


def test_a_refresh_loads_and_scores_a_saved_deep_hybrid_without_tensorflow(tmp_path, monkeypatch):
    """What recommender/training/refresh.py does with an artifact: load it with
    artifacts.load, recommend_batch, explain_many, similar_items; TensorFlow stays out."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from recommender.engine import Hybrid
    from recommender.training import artifacts

    X, T = make_interactions()
    model = Hybrid(components=["ease", {"engine": "two_tower", "params": TINY}],
                   weights=[1.0, 1.0]).fit(X, item_features=ITEMS, timestamps=T)
    monkeypatch.setattr(artifacts, "root", lambda: tmp_path)
    data = SimpleNamespace(user_ids=np.arange(X.shape[0]) + 100, item_ids=np.arange(X.shape[1]) + 500)
    path, _size = artifacts.write("hybrid", 1, model, data, X)
    code = ("import sys, django, numpy as np\n"
            "django.setup()\n"
            "from recommender.training import artifacts\n"
            f"model, users, items, X = artifacts.load({path!r})\n"
            "idx, scores = model.recommend_batch(np.arange(40), X[:40], n=5)\n"
            "assert (idx >= 0).all() and np.isfinite(scores).all()\n"
            "assert model.explain_many(0, X[0], idx[0].tolist(), n=1)[0]\n"
            "assert len(model.similar_items(0, n=3)[0])\n"
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = {**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr


def test_training_leaves_no_cuda_error_lines_in_the_log():
    """On a machine without a GPU, TensorFlow logs "failed call to cuInit" as an error
    unless its C++ log level is 3 before it is imported (the engine sets it)."""
    import os
    import subprocess
    import sys

    code = ("from recommender.engine.deep import TwoTower\n"
            "from tests.engine.conftest import make_interactions\n"
            "X, _ = make_interactions()\n"
            "TwoTower(embedding_dim=4, hidden_dim=4, epochs=1).fit(X)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if "cuInit" in line or "CUDA error" in line]
    assert not errors, errors
    # absl writes these at import whatever TF_CPP_MIN_LOG_LEVEL says; the engine filters them
    info = [line for line in result.stderr.splitlines()
            if "Could not find cuda drivers" in line or "oneDNN custom operations" in line
            or "absl::InitializeLog" in line]
    assert not info, info


def test_the_import_filter_keeps_other_stderr_lines():
    """Only TensorFlow's informational import lines are dropped: anything else written to
    file descriptor 2 during the import (a warning, a C library's message) still arrives."""
    import os
    import subprocess
    import sys

    code = ("import os\n"
            "from recommender.engine._keras import _without_info_lines\n"
            "with _without_info_lines():\n"
            "    os.write(2, b'I0000 00:00:1796409444.002719    6001 cudart_stub.cc:31] Could not find cuda\\n')\n"
            "    os.write(2, b'W0000 00:00:1796409444.002719    6001 foo.cc:1] a real warning\\n')\n"
            "    os.write(2, b'plain line\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["W0000 00:00:1796409444.002719    6001 foo.cc:1] a real warning",
                                          "plain line"]


# -- the deep model in the default hybrid ------------------------------------------------

def test_default_hybrid_includes_the_deep_model_from_deep_min_users():
    from recommender.engine import Hybrid

    X, T = make_interactions()
    with_deep = Hybrid(weights=[1, 1, 1, 1, 1], deep_min_users=40)
    assert with_deep._specs(X.shape[1], ITEMS, T, n_users=40)[-1][0] == "sequence"
    assert "sequence" not in [n for n, _ in with_deep._specs(X.shape[1], ITEMS, T, n_users=39)]
    off = Hybrid(deep_min_users=None)
    assert "sequence" not in [n for n, _ in off._specs(X.shape[1], ITEMS, T, n_users=10**6)]
    with pytest.raises(ValueError, match="deep_min_users"):
        Hybrid(deep_min_users=-1).fit(X)


def test_hybrid_does_not_refit_components_that_validation_weighs_zero(monkeypatch):
    from recommender.engine import Hybrid

    X = _dense_binary(density=0.8)             # users with >= 5 items get validation targets
    model = Hybrid(components=["ease", "popular"])
    real_tune = model._tune
    kept = {}

    def tune(*args):
        w, best, engines = real_tune(*args)
        kept["engines"] = engines
        return np.array([1.0, 0.0], np.float32), best, engines

    monkeypatch.setattr(model, "_tune", tune)
    model.fit(X)
    assert model.engines_[1] is kept["engines"][1]          # weight 0: its tuning fit is kept
    assert model.engines_[0] is not kept["engines"][0]      # weight 1: refitted on all data
    assert model.engines_[0].item_weights_.shape == (X.shape[1], X.shape[1])


def test_train_all_trains_the_three_families_by_default():
    from recommender.conf import DEFAULTS

    names = DEFAULTS["TRAIN_ALGORITHMS"]
    assert {"ease", "content", "sequence", "hybrid"} <= set(names)    # TensorFlow is installed here
    assert names[-1] == "hybrid" and set(names) <= set(DEFAULTS["ALGORITHMS"])


def test_similar_items_compute_a_block_of_rows_per_matrix_product(monkeypatch):
    """Consecutive similar-item lists (what a refresh asks for) share one matrix product
    per block of rows, and the block is dropped when the model is refitted."""
    import recommender.engine.deep as deep

    X, _ = make_interactions()
    model = TwoTower(**TINY).fit(X, item_features=ITEMS)
    monkeypatch.setattr(deep, "SIMILARITY_BLOCK", 4)
    U = model._unit_item_vectors()
    rows = [model._similarity_row(i) for i in range(X.shape[1])]
    np.testing.assert_allclose(np.array(rows), U @ U.T, rtol=1e-5, atol=1e-6)
    assert model._similarity_block[0] == 8                   # blocks 0-3, 4-7, 8-10
    model.fit(X)                                             # no content: other vectors
    U2 = model._unit_item_vectors()
    np.testing.assert_allclose(model._similarity_row(9), U2 @ U2[9], rtol=1e-5, atol=1e-6)
