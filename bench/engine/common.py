"""Shared benchmark helpers: dataset loaders, the temporal split and the peer baselines.

Datasets are read from ``datasets/`` in the repository (never from ``../shared``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommender.engine.evaluation import split_interactions

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT / "datasets"


def _dedupe_first(users, items, ts):
    """Keep each (user, item) pair once, at its first timestamp."""
    key = users.astype(np.int64) * (items.max() + 1) + items
    order = np.lexsort((ts, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    first.sort()
    return users[first], items[first], ts[first]


def load_movielens(path=DATASETS / "ml-latest-small"):
    """All ratings as binary interactions, plus titles, genres and tags per movie."""
    path = Path(path)
    with open(path / "ratings.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    u_raw = np.array([int(r[0]) for r in rows])
    i_raw = np.array([int(r[1]) for r in rows])
    ts = np.array([float(r[3]) for r in rows])
    titles, genres = {}, {}
    with open(path / "movies.csv", encoding="utf-8", newline="") as fh:
        for r in list(csv.reader(fh))[1:]:
            titles[int(r[0])] = r[1]
            genres[int(r[0])] = r[2].replace("|", ",") if r[2] != "(no genres listed)" else ""
    tags: dict = {}
    with open(path / "tags.csv", encoding="utf-8", newline="") as fh:
        for r in list(csv.reader(fh))[1:]:
            tags.setdefault(int(r[1]), []).append(r[2])
    item_ids = np.array(sorted(set(titles) | set(i_raw.tolist())))
    users = np.unique(u_raw, return_inverse=True)[1]
    items = np.searchsorted(item_ids, i_raw)
    features = {"title": [titles.get(i, "") for i in item_ids],
                "category": [genres.get(i, "") for i in item_ids],
                "tags": [",".join(tags.get(i, [])) for i in item_ids]}
    # genres are a list: treat them as tags so each genre is its own token
    features["tags"] = [",".join(filter(None, (g, t))) for g, t in
                        zip(features.pop("category"), features["tags"], strict=True)]
    return _dedupe_first(users, items, ts) + (len(item_ids), features)


def load_online_retail(path=DATASETS / "online-retail" / "online_retail.csv.gz"):
    """Purchases of identified customers (no cancellations, quantity > 0), binary."""
    users, items, ts, desc = [], [], [], {}
    with io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for r in reader:
            if not r["CustomerID"] or r["InvoiceNo"].startswith("C") or int(r["Quantity"]) <= 0:
                continue
            users.append(int(r["CustomerID"]))
            items.append(r["StockCode"])
            when = datetime.strptime(r["InvoiceDate"], "%Y-%m-%d %H:%M")
            ts.append(when.replace(tzinfo=UTC).timestamp())
            if r["Description"] and r["StockCode"] not in desc:
                desc[r["StockCode"]] = r["Description"]
    item_ids, items = np.unique(np.array(items), return_inverse=True)
    users = np.unique(np.array(users), return_inverse=True)[1]
    features = {"title": [desc.get(i, "") for i in item_ids]}
    return _dedupe_first(users, items, np.array(ts)) + (len(item_ids), features)


LOADERS = {"ml-latest-small": load_movielens, "online-retail": load_online_retail}

#: ``--smoke``: users and items kept of each dataset, and TwoTower settings that fit in a second.
SMOKE_USERS, SMOKE_ITEMS = 300, 300
SMOKE_DEEP = {"epochs": 2, "patience": 1, "embedding_dim": 16, "hidden_dim": 32, "content_dim": 16,
              "wide_neighbours": 20}
SMOKE_SEQUENCE = {"epochs": 2, "patience": 1, "embedding_dim": 16, "max_length": 10, "wide_neighbours": 20}


def subsample(users, items, ts, n_items, features, max_users, max_items):
    """The first ``max_users`` users and, of their items, the ``max_items`` most frequent (re-indexed)."""
    keep = users < max_users
    users, items, ts = users[keep], items[keep], ts[keep]
    top = np.sort(np.argsort(-np.bincount(items, minlength=n_items), kind="stable")[:max_items])
    keep = np.isin(items, top)
    users, items, ts = np.unique(users[keep], return_inverse=True)[1], np.searchsorted(top, items[keep]), ts[keep]
    return users, items, ts, len(top), {key: [values[j] for j in top] for key, values in features.items()}


def load_dataset(name, args):
    """``(users, items, timestamps, n_items, features)`` of dataset ``name``; a small part with ``--smoke``."""
    path = args.data_dir / name
    if name == "online-retail":
        path = path / "online_retail.csv.gz"
    data = LOADERS[name](path)
    return subsample(*data, SMOKE_USERS, SMOKE_ITEMS) if args.smoke else data


def have_implicit(what):
    """True if the ``implicit`` library is installed; else print that ``what`` is skipped."""
    from importlib.util import find_spec

    if find_spec("implicit") is not None:
        return True
    print(f"  SKIPPED: {what}: implicit is not installed (pip install -r bench/requirements-bench.txt)", flush=True)
    return False


def temporal_split(users, items, ts, n_items, test_fraction=0.2, min_interactions=5):
    """Per-user temporal split -> (train, test, train_timestamps) CSR matrices."""
    mask = split_interactions(users, ts, test_fraction, min_interactions)
    shape = (int(users.max()) + 1, n_items)
    make = lambda m, v: sp.csr_matrix((v, (users[m], items[m])), shape=shape)  # noqa: E731
    train = make(~mask, np.ones((~mask).sum(), np.float32)).astype(np.float32)
    test = make(mask, np.ones(mask.sum(), np.float32)).astype(np.float32)
    T = make(~mask, ts[~mask]).astype(np.float64)
    for M in (train, test, T):
        M.sort_indices()
    return train, test, T


# -- peers --------------------------------------------------------------------------
class PeerEASE:
    """Textbook numpy EASE (Steck 2019), the strongest peer."""

    def __init__(self, lam=300.0):
        self.lam = lam

    def fit(self, X):
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        self.B = (P / -np.diag(P)).astype(np.float32)
        np.fill_diagonal(self.B, 0.0)
        return self

    def recommend_batch(self, users, rows, n):
        scores = np.asarray(rows @ self.B)
        r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        scores[r, rows.indices] = -np.inf
        top = np.argpartition(-scores, n, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)


class PeerImplicit:
    """Wrapper over the `implicit` library (ALS or cosine item-kNN)."""

    def __init__(self, kind="als", **params):
        self.kind, self.params = kind, params

    def fit(self, X):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender

        if self.kind == "als":
            self.model = AlternatingLeastSquares(**self.params, num_threads=2)
        else:
            self.model = CosineRecommender(**self.params, num_threads=2)
        self.model.fit(sp.csr_matrix(X), show_progress=False)
        return self

    def recommend_batch(self, users, rows, n):
        ids, _ = self.model.recommend(np.asarray(users), sp.csr_matrix(rows), N=n,
                                      filter_already_liked_items=True)
        return np.asarray(ids)


class PeerPopular:
    def fit(self, X):
        self.pop = X.getnnz(axis=0).astype(np.float32)
        return self

    def recommend_batch(self, users, rows, n):
        scores = np.tile(self.pop, (rows.shape[0], 1))
        r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        scores[r, rows.indices] = -np.inf
        return np.argsort(-scores, axis=1, kind="stable")[:, :n]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def base_parser(description):
    """The options both engine benchmarks take: datasets, data folder, k, seeds, TwoTower
    parameters and a JSON output file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", nargs="+", default=["ml-latest-small", "online-retail"],
                        choices=sorted(LOADERS))
    parser.add_argument("--data-dir", type=Path, default=DATASETS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--deep-params", type=json.loads, default={},
                        help='JSON dict of TwoTower parameters, e.g. \'{"epochs": 30}\'')
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the first {SMOKE_USERS} users and {SMOKE_ITEMS} items of each dataset, one seed, "
                             "one point of each tuning grid, a tiny TwoTower: seconds, through the same code")
    return parser


def apply_smoke(args):
    """With ``--smoke``: one seed and tiny TwoTower / SequenceModel settings (``--deep-params`` and
    ``--seq-params`` still win)."""
    if args.smoke:
        args.seeds = 1
        args.deep_params = SMOKE_DEEP | args.deep_params
        if hasattr(args, "seq_params"):
            args.seq_params = SMOKE_SEQUENCE | args.seq_params
    return args
