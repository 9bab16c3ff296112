"""Sequence engine specifics: numpy serving equals the Keras model, time order is read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine.sequence import SequenceModel
from tests.engine.conftest import make_interactions

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(embedding_dim=8, epochs=2, batch_size=8, max_length=4, random_state=0)


def chains(n_items=12, length=5, repeats=6):
    """Every user walks the items in a cycle, one step a day: after item k comes k + 1."""
    rows, cols, ts = [], [], []
    user = 0
    for _ in range(repeats):
        for start in range(n_items):
            for step in range(length):
                rows.append(user)
                cols.append((start + step) % n_items)
                ts.append(1_700_000_000 + 86_400 * step)
            user += 1
    shape = (user, n_items)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    T = sp.csr_matrix((np.array(ts, float), (rows, cols)), shape=shape)
    X.sort_indices()
    T.sort_indices()
    return X, T


@pytest.mark.parametrize("trend_days", [0, 3])
def test_numpy_scores_equal_the_keras_model(trend_days):
    X, T = make_interactions()
    model = SequenceModel(**(TINY | {"wide_neighbours": 3, "trend_days": trend_days,
                                     "validation_fraction": 0.0})).fit(X, timestamps=T)
    users = np.arange(X.shape[0])
    seq = model._sequences(users, X[:, model.warm_items_])
    hist = X[:, model.warm_items_].toarray()
    hist /= np.linalg.norm(hist, axis=1, keepdims=True)
    inputs = {"sequence": seq, "history": hist}
    if trend_days:
        assert model.trend_gain_ is not None and model.trend_scores_.shape == (len(model.warm_items_),)
        inputs["trend"] = np.tile(model.trend_scores_, (len(users), 1))
    else:
        assert model.trend_gain_ is None
    keras_logits = np.asarray(model._keras_model(inputs, training=False))
    numpy_scores = model._score_block(users, X)
    np.testing.assert_allclose(numpy_scores[:, model.warm_items_], keras_logits, rtol=1e-4, atol=1e-4)
    assert model.wide_weights_ is not None


def test_stored_sequences_follow_the_timestamps():
    X, T = make_interactions()
    T = T.copy()
    T.data = -T.data                     # reverse time: the column order must not be what is read
    model = SequenceModel(**TINY).fit(X, timestamps=T)
    for u in range(X.shape[0]):
        row = model.user_sequences_[u]
        items = model.warm_items_[row[row > 0] - 1]
        stamps = np.asarray(T[u, items].todense()).ravel()
        assert np.all(np.diff(stamps) > 0), (u, items, stamps)
    # scoring reads the stored order, drops items missing from the row, appends new ones last
    seq = model._sequences([0, 100], sp.csr_matrix(X[[0, 0]][:, model.warm_items_]))
    assert (seq[1] > 0).sum() == X[0].nnz            # a new user: its row's items
    kept = model.user_sequences_[0][model.user_sequences_[0] > 0]
    row = sp.csr_matrix(X[0][:, model.warm_items_])
    row.data[0] = 0.0
    row.eliminate_zeros()
    got = model._sequences([0], row)[0]
    assert got[got > 0].tolist() == [i for i in kept.tolist() if i - 1 in row.indices]


def test_it_learns_what_comes_next():
    """Known answer: in the chain data the two items after k, k + 1 are k + 2 and k + 3,
    while k - 1 and k - 2 co-occur with them just as often: only the order tells."""
    X, T = chains()
    model = SequenceModel(embedding_dim=32, max_length=5, epochs=60, batch_size=16, learning_rate=0.01,
                          dropout=0.0, patience=60, validation_fraction=0.0, wide_neighbours=0,
                          random_state=0).fit(X, timestamps=T)
    hits = 0
    for start in range(12):
        # user `start` walked start, ..., start + 4; show the model its first three steps
        seen = [(start + s) % 12 for s in range(3)]
        row = sp.csr_matrix((np.ones(3, np.float32), ([0] * 3, seen)), shape=(1, 12))
        top = model.recommend(start, row, n=2)[0]
        hits += int(set(top.tolist()) == {(start + 3) % 12, (start + 4) % 12})
    assert hits >= 10, hits


def test_history_weight_moves_the_target_from_what_comes_next_to_the_whole_history():
    """In the chain data a target spread over the whole history (``history_weight=1``) teaches
    the model to score the items already shown, at the expense of the next two items."""
    X, T = chains()
    found = {}
    for share in (0.0, 1.0):
        model = SequenceModel(embedding_dim=32, max_length=5, epochs=60, batch_size=16, learning_rate=0.01,
                              dropout=0.0, patience=60, validation_fraction=0.0, wide_neighbours=0,
                              history_weight=share, random_state=0).fit(X, timestamps=T)
        next_two = shown_in_top3 = 0
        for start in range(12):
            seen = [(start + s) % 12 for s in range(3)]
            row = sp.csr_matrix((np.ones(3, np.float32), ([0] * 3, seen)), shape=(1, 12))
            top = model.recommend(start, row, n=3, filter_seen=False)[0].tolist()
            next_two += int(set(top[:2]) == {(start + 3) % 12, (start + 4) % 12})
            shown_in_top3 += len(set(top) & set(seen))
        found[share] = next_two, shown_in_top3
    (next_0, shown_0), (next_1, shown_1) = found[0.0], found[1.0]
    assert next_0 >= 10 and next_1 <= 4, found
    assert shown_1 >= shown_0 + 8, found


def periods(n_users=120, common=3):
    """Each user buys ``common`` of items 0-9 on one day and, the next day, the two items
    that sell in that period: 10 and 11 in days 0-20, 12 and 13 in days 40-60. The first
    items say nothing of the period; only the date does."""
    rng = np.random.default_rng(0)
    rows, cols, ts = [], [], []
    for user in range(n_users):
        day = rng.integers(0, 21) + (40 if user % 2 else 0)
        for item in rng.choice(10, common, replace=False):
            rows.append(user)
            cols.append(item)
            ts.append(86_400.0 * day + 60 * len(ts) % 3600)
        for item in ((12, 13) if user % 2 else (10, 11)):
            rows.append(user)
            cols.append(item)
            ts.append(86_400.0 * (day + 1))
    shape = (n_users, 14)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    T = sp.csr_matrix((np.array(ts), (rows, cols)), shape=shape)
    X.sort_indices()
    T.sort_indices()
    return X, T


def test_the_trend_tells_what_sells_at_the_time_of_the_request():
    """Known answer: with ``trend_days`` the model ranks the items of the request's period
    first, at the end of training (days 40-60) and when replayed at an earlier time (the
    histories alone cannot tell the period)."""
    X, T = periods()
    model = SequenceModel(embedding_dim=16, max_length=5, epochs=40, batch_size=16, learning_rate=0.01,
                          dropout=0.0, patience=40, validation_fraction=0.0, wide_neighbours=0, random_state=0,
                          trend_days=7).fit(X, timestamps=T)
    assert model.trend_gain_ > 0
    new_users = np.arange(X.shape[0], X.shape[0] + 5)
    rows = sp.csr_matrix((np.ones(15, np.float32), (np.repeat(np.arange(5), 3),
                                                    [1, 4, 7, 0, 2, 3, 5, 6, 8, 9, 1, 2, 3, 8, 0])), shape=(5, 14))
    late = model.recommend_batch(new_users, rows, n=2)[0]
    model.replay_at(np.full(X.shape[0] + 5, 86_400.0 * 15))      # day 15: items 10 and 11 sell
    early = model.recommend_batch(new_users, rows, n=2)[0]
    assert [set(r) for r in late.tolist()] == [{12, 13}] * 5, late
    assert [set(r) for r in early.tolist()] == [{10, 11}] * 5, early


def test_the_trend_is_kept_only_where_it_ranks_the_held_out_users_items_higher(monkeypatch):
    X, T = periods(200, common=8)  # cut at 80% of 10 items, the held-out users' inputs are the 8 common ones
    params = dict(embedding_dim=16, max_length=5, epochs=30, batch_size=16, learning_rate=0.01, dropout=0.0,
                  patience=30, validation_fraction=0.25, wide_neighbours=0, random_state=0, trend_days=7)
    model = SequenceModel(**params).fit(X, timestamps=T)
    check = model.trend_check_
    assert check["with"] > check["without"] + 0.1 and model.trend_gain_ is not None, check
    # where the check finds no gain, the model serves without the term
    monkeypatch.setattr(SequenceModel, "_check_trend", lambda self, model, val: {"with": 0.2, "without": 0.2})
    dropped = SequenceModel(**params).fit(X, timestamps=T)
    assert dropped.trend_gain_ is None
    scores = dropped._score_block(np.arange(3), X[:3])
    states = dropped._user_states(dropped._sequences(np.arange(3), X[:3][:, dropped.warm_items_]))
    np.testing.assert_allclose(scores[:, dropped.warm_items_], states @ dropped.output_kernel_ + dropped.output_bias_,
                               rtol=1e-5, atol=1e-5)
    assert dropped.replay_at(np.zeros(X.shape[0])) is dropped


def test_a_saved_trend_scores_as_at_the_end_of_training(tmp_path):
    X, T = periods()
    model = SequenceModel(**(TINY | {"trend_days": 7, "validation_fraction": 0.0})).fit(X, timestamps=T)
    assert model.trend_gain_ is not None
    expected = model.recommend_batch(np.arange(5), X[:5], n=4)
    model.save(tmp_path)
    loaded = SequenceModel.load(tmp_path)
    got = loaded.recommend_batch(np.arange(5), X[:5], n=4)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)
    with pytest.raises(ValueError, match="fitted in this process"):
        loaded.replay_at(np.zeros(X.shape[0]))


def test_a_saved_sequence_model_scores_without_tensorflow(tmp_path):
    X, T = make_interactions()
    model = SequenceModel(**TINY).fit(X, timestamps=T)
    expected = model.recommend_batch(np.arange(5), X[:5], n=3)
    model.save(tmp_path)
    np.save(tmp_path / "expected.npy", expected[0])
    code = ("import sys, numpy as np\n"
            "from recommender.engine.base import RecommenderBase\n"
            "from tests.engine.conftest import make_interactions\n"
            f"m = RecommenderBase.load({str(tmp_path)!r})\n"
            "X, _ = make_interactions()\n"
            "idx, _s = m.recommend_batch(np.arange(5), X[:5], n=3)\n"
            f"assert (idx == np.load({str(tmp_path / 'expected.npy')!r})).all(), idx\n"
            "m.explain_many(0, X[0], idx[0].tolist(), n=1)\n"
            "bad = [k for k in ('tensorflow', 'keras') if k in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name, value", [("embedding_dim", 0), ("dropout", 1.0), ("wide_neighbours", -1),
                                         ("patience", -1), ("wide_regularization", 0.0),
                                         ("history_weight", -0.1), ("history_weight", 1.5),
                                         ("trend_days", -1)])
def test_hyperparameters_are_validated(name, value):
    X, _ = make_interactions()
    with pytest.raises(ValueError, match=name):
        SequenceModel(**{name: value}).fit(X)


def test_latest_times_and_replay_reach_the_hybrids_time_aware_component():
    from recommender.engine.evaluation import latest_times
    from recommender.engine.hybrid import Hybrid

    X, T = periods()
    stamps = latest_times(T)
    assert stamps[0] == max(T[0].data) and np.isnan(latest_times(sp.csr_matrix((2, 3)))).all()
    tiny = TINY | {"trend_days": 7, "validation_fraction": 0.0}
    hybrid = Hybrid(components=["popular", {"engine": "sequence", "params": tiny}], weights=[0.0, 1.0])
    hybrid.fit(X, timestamps=T)
    sequence = hybrid.engines_[0]
    assert isinstance(sequence, SequenceModel) and sequence.trend_gain_ is not None
    rows = X[:4]
    at_end = hybrid.recommend_batch(np.arange(4), rows, n=14, filter_seen=False)[1]
    assert hybrid.replay_at(np.full(X.shape[0], 86_400.0 * 15)) is hybrid
    replayed = hybrid.recommend_batch(np.arange(4), rows, n=14, filter_seen=False)[1]
    assert not np.allclose(at_end, replayed)
    from recommender.engine.popular import Popular
    popular = Popular().fit(X)
    assert popular.replay_at(stamps) is popular  # engines without a time input ignore it
