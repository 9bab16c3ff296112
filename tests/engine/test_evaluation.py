"""Evaluation: splits and metrics checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import EASE, Popular
from recommender.engine.evaluation import (
    evaluate_csv,
    evaluate_engine,
    evaluate_engines,
    format_table,
    ranking_metrics,
    split_interactions,
    split_matrix,
)


def test_metrics_match_hand_computed_values():
    recs = np.array([[3, 1, 2], [0, 2, 4]])
    test = sp.csr_matrix((np.ones(4), ([0, 0, 1, 1], [1, 5, 0, 2])), shape=(2, 6))
    popularity = np.array([4, 2, 1, 0, 8, 1])
    m = ranking_metrics(recs, test, k=3, item_popularity=popularity, n_train_users=8)
    ndcg_user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["precision"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["f1"] == pytest.approx((0.4 + 0.8) / 2)
    assert m["ndcg"] == pytest.approx((ndcg_user0 + 1.0) / 2)
    assert m["map"] == pytest.approx((0.25 + 1.0) / 2)
    assert m["hit_rate"] == 1.0
    assert m["coverage"] == pytest.approx(5 / 6)
    assert m["novelty"] == pytest.approx((3 + 2 + 3 + 1 + 3 + 0) / 6)
    assert m["users"] == 2


def test_metrics_cut_at_k_ignore_padding_and_users_without_test_items():
    recs = np.array([[2, -1, -1], [0, 1, 2]])
    test = sp.csr_matrix((np.ones(1), ([0], [2])), shape=(2, 3))
    m = ranking_metrics(recs, test, k=2)
    assert m["users"] == 1 and m["ndcg"] == 1.0 and m["precision"] == 0.5
    assert m["coverage"] == pytest.approx(1 / 3)
    miss = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix(([1.0], ([0], [2])), shape=(1, 3)), 2)
    assert miss["ndcg"] == 0.0 and miss["hit_rate"] == 0.0 and miss["map"] == 0.0


def test_temporal_split_holds_out_latest_fifth_per_user():
    users = np.array([0] * 10 + [1] * 3 + [2] * 5)
    ts = np.r_[np.arange(10)[::-1], [5, 6, 7], [1, 2, 3, 4, 5]].astype(float)
    mask = split_interactions(users, ts)
    assert mask[:10].sum() == 2 and set(ts[:10][mask[:10]]) == {8.0, 9.0}
    assert not mask[10:13].any()                       # too few interactions
    assert mask[13:].tolist() == [False] * 4 + [True]
    with pytest.raises(ValueError, match="test_fraction"):
        split_interactions(users, ts, test_fraction=1.5)


def test_split_matrix_by_timestamps_and_at_random():
    X = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 1]], np.float32))
    T = sp.csr_matrix(np.array([[5, 4, 3, 2, 1, 0], [1, 0, 0, 0, 0, 2]], float))
    train, test = split_matrix(X, 0.2, timestamps=T)
    assert test[0].indices.tolist() == [0] and test[1].nnz == 0
    assert (train + test != X).nnz == 0
    train, test = split_matrix(X, 0.4, random_state=1)
    assert test[0].nnz == 2 and train[0].nnz == 3


def _toy():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((60, 25)) < 0.3).astype(np.float32))
    return split_matrix(X, 0.2, random_state=0)


def test_evaluate_engines_table_and_formatter():
    train, test = _toy()
    table = evaluate_engines({"popular": Popular(), "ease": EASE(regularization=10.0)},
                             train, test, k=5)
    assert [r["algorithm"] for r in table] == ["popular", "ease"]
    for r in table:
        assert {"precision", "recall", "f1", "ndcg", "map", "hit_rate", "coverage",
                "novelty", "fit_seconds", "users"} <= set(r)
        assert 0 <= r["ndcg"] <= 1
    text = format_table(table, ["algorithm", "ndcg", "users"])
    lines = text.splitlines()
    assert lines[0].startswith("| algorithm") and len(lines) == 4
    assert f"{table[0]['ndcg']:.4f}" in lines[2]
    direct = evaluate_engine(Popular().fit(train), train, test, k=5)
    assert direct["ndcg"] == pytest.approx(table[0]["ndcg"])


def test_evaluate_csv_with_iso_and_unix_timestamps(tmp_path):
    lines = ["user_id,item_id,event,value,timestamp"]
    for u in range(12):
        for j in range(6):
            item = (u + j) % 8
            when = f"2024-01-{j + 1:02d}T10:00:00Z" if u % 2 else str(1_704_103_200 + j * 86400)
            lines.append(f"u{u},i{item},{'purchase' if j % 2 else 'view'},,{when}")
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = ["item_id,title,description,category,tags"] + [
        f"i{i},商品 {i},desc,{'食品' if i < 4 else '服装'},a|b" for i in range(9)]
    (tmp_path / "items.csv").write_text("\n".join(items) + "\n", encoding="utf-8")
    table = evaluate_csv(tmp_path / "events.csv", items_path=tmp_path / "items.csv", k=3,
                         algorithms=["popular", "trending", "itemknn", "temporal_ease", "content"])
    assert [r["algorithm"] for r in table] == ["popular", "trending", "itemknn", "temporal_ease",
                                              "content"]
    assert all(r["users"] == 12 for r in table)
