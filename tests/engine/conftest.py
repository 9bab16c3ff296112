"""Fixtures for the engine tests: a small synthetic catalog whose right answers are known.

Items 0-4 are earbuds/phones (电子产品), items 5-9 are clothes (服装); item 10 is a new
earphone nobody has interacted with (a cold item). Users 0-19 each bought four of the
five electronics, users 20-39 four of the five clothes. A user who owns items 0-3 should
be offered item 4 (or the cold earphone 10 by content-aware engines).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

N_ITEMS = 11
COLD_ITEM = 10

ITEMS = {
    "title": ["无线耳机 蓝牙 earbuds", "蓝牙耳机 降噪 headphones", "智能手机 5G phone",
              "手机壳 phone case", "充电器 快充 charger",
              "纯棉T恤 cotton t-shirt", "牛仔裤 jeans", "连衣裙 summer dress",
              "羊毛衫 wool sweater", "运动袜 sport socks",
              "新款 无线耳机 蓝牙 earbuds pro"],
    "category": ["电子产品"] * 5 + ["服装"] * 5 + ["电子产品"],
    "tags": ["音频,蓝牙", "音频,蓝牙", "手机", "手机,配件", "配件",
             "夏季", "裤子", "夏季", "冬季", "运动", "音频,蓝牙"],
    "brand": ["Sony", "Sony", "Apple", "Apple", "Anker", "Uniqlo", "Levi's", "Zara",
              "Uniqlo", "Nike", "Sony"],
}


def make_interactions() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(interactions, timestamps) with 40 users; item 10 has no interactions."""
    rows, cols, ts = [], [], []
    for u in range(40):
        base = 0 if u < 20 else 5
        skip = base + u % 5
        for j, item in enumerate(range(base, base + 5)):
            if item != skip:
                rows.append(u)
                cols.append(item)
                ts.append(1_700_000_000 + 86_400 * (u + j))
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(40, N_ITEMS))
    T = sp.csr_matrix((np.array(ts, float), (rows, cols)), shape=(40, N_ITEMS))
    X.sort_indices()
    T.sort_indices()
    return X, T


ENGINE_PARAMS = {
    "popular": {},
    "trending": {"half_life_days": 30.0},
    "itemknn": {"k": 20},
    "cooccurrence": {"k": 20},
    "similar": {"k": 20},
    "complements": {"k": 20, "min_support": 2},
    "ease": {"regularization": 1.0},
    "temporal_ease": {"regularization": 1.0},
    "als": {"factors": 4, "iterations": 10, "regularization": 0.01, "random_state": 1},
    "content": {},
    "two_tower": {"embedding_dim": 16, "hidden_dim": 32, "content_dim": 8, "epochs": 40,
                  "batch_size": 8, "learning_rate": 0.01, "patience": 40, "dropout": 0.2,
                  "validation_fraction": 0.1},
    "sequence": {"embedding_dim": 16, "epochs": 40, "batch_size": 8, "learning_rate": 0.01,
                 "patience": 40, "dropout": 0.0, "validation_fraction": 0.1},
    "hybrid": {"components": ["ease", "itemknn", "content"]},
}

#: a bad value per engine; the error must name the parameter
BAD_PARAMS = {
    "popular": ("by", "likes"),
    "trending": ("half_life_days", -1.0),
    "itemknn": ("k", 0),
    "cooccurrence": ("similarity", "magic"),
    "similar": ("min_support", 0),
    "complements": ("measure", "count"),
    "ease": ("regularization", 0.0),
    "temporal_ease": ("holdout_fraction", 1.0),
    "als": ("factors", -3),
    "content": ("min_df", 0),
    "two_tower": ("dropout", 1.5),
    "sequence": ("max_length", 0),
    "hybrid": ("normalization", "softmax"),
}

NON_PERSONALISED = {"popular", "trending"}
CONTENT_AWARE = {"content", "two_tower", "hybrid", "similar"}

_CACHE: dict = {}


@pytest.fixture(scope="session")
def interactions():
    return make_interactions()


def fitted_engine(name: str):
    """Fit each engine once per test session (the deep one is the slow one)."""
    if name not in _CACHE:
        from recommender.engine import build_engine

        X, T = make_interactions()
        model = build_engine(name, **ENGINE_PARAMS[name])
        model.fit(X, item_features=ITEMS, timestamps=T, reference_time=1_700_000_000 + 86_400 * 50)
        _CACHE[name] = model
    return _CACHE[name]
