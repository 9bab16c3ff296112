"""Offline evaluation: per-user temporal splits, full-ranking top-K metrics, tables.

Every metric ranks the whole catalog (no sampled negatives) with each user's training
items filtered out, and averages over users that have test items.

Example
-------
>>> import numpy as np
>>> from recommender.engine.evaluation import ranking_metrics
>>> recs = np.array([[3, 1, 2]])
>>> import scipy.sparse as sp
>>> test = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 4))
>>> round(ranking_metrics(recs, test, k=3)["ndcg"], 4)   # hit at rank 2: 1/log2(3)
0.6309
"""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import RecommenderBase, check_interactions, check_param

__all__ = ["METRICS", "evaluate_csv", "evaluate_engine", "evaluate_engines", "format_table", "latest_times",
           "ranking_metrics", "split_interactions", "split_matrix"]

METRICS = ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "coverage", "novelty")


def _holdout_mask(rows: np.ndarray, order_key: np.ndarray, n_rows: int, test_fraction: float,
                  min_interactions: int) -> np.ndarray:
    """Mark the last ``test_fraction`` (by ``order_key``) of each row's events."""
    check_param("test_fraction", test_fraction, Real, 0, 1, low_open=True, high_open=True)
    check_param("min_interactions", min_interactions, Integral, 2)
    order = np.lexsort((np.arange(len(rows)), order_key, rows))
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    sorted_rows = rows[order]
    pos = np.arange(len(rows)) - starts[sorted_rows]
    n_test = np.where(counts >= min_interactions,
                      np.maximum(1, np.floor(counts * test_fraction).astype(np.int64)), 0)
    mask = np.zeros(len(rows), dtype=bool)
    mask[order] = pos >= counts[sorted_rows] - n_test[sorted_rows]
    return mask


def split_interactions(user_idx, timestamps, test_fraction: float = 0.2,
                       min_interactions: int = 5) -> np.ndarray:
    """Per-user temporal split of an event list.

    Parameters
    ----------
    user_idx : array-like of int, shape (n_events,)
        User index of every event (deduplicate (user, item) pairs first for binary
        evaluation).
    timestamps : array-like of float
        Event times; ties keep the input order.
    test_fraction : float, default 0.2
        Share of each user's latest events held out (at least one).
    min_interactions : int, default 5
        Users with fewer events stay entirely in training.

    Returns
    -------
    ndarray of bool
        True for test events.
    """
    users = np.asarray(user_idx, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.float64)
    n_rows = int(users.max()) + 1 if len(users) else 0
    return _holdout_mask(users, ts, n_rows, test_fraction, min_interactions)


def latest_times(timestamps) -> np.ndarray:
    """Each row's latest timestamp (NaN for an empty row): the request time of each user
    when a time-aware engine is replayed (``RecommenderBase.replay_at``)."""
    T = sp.csr_matrix(timestamps, dtype=np.float64)
    out = np.full(T.shape[0], np.nan)
    has = np.diff(T.indptr) > 0
    out[has] = np.maximum.reduceat(T.data, T.indptr[:-1][has])
    return out


def split_matrix(X: sp.csr_matrix, test_fraction: float = 0.2, timestamps=None,
                 min_interactions: int = 5, random_state: int = 0):
    """Split a matrix per user into ``(train, test)`` of the same shape.

    The latest ``test_fraction`` of each row's cells (by ``timestamps``, a CSR matrix with
    the same pattern) are held out; without timestamps a random share is held out.
    """
    X = check_interactions(X)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    if timestamps is not None:
        T = sp.csr_matrix(timestamps, dtype=np.float64)
        T.sort_indices()
        if T.shape != X.shape or not np.array_equal(T.indices, X.indices):
            raise ValueError("timestamps must have the same shape and pattern as X.")
        key = T.data
    else:
        key = np.random.default_rng(random_state).random(X.nnz)
    mask = _holdout_mask(rows, key, X.shape[0], test_fraction, min_interactions)
    cols = X.indices
    make = lambda m: sp.csr_matrix((X.data[m], (rows[m], cols[m])), shape=X.shape,  # noqa: E731
                                   dtype=np.float32)
    return make(~mask), make(mask)


def ranking_metrics(recommended: np.ndarray, test: sp.csr_matrix, k: int = 10,
                    item_popularity=None, n_train_users: int | None = None) -> dict:
    """Top-``k`` metrics of recommendation lists against held-out items.

    Parameters
    ----------
    recommended : ndarray of shape (n_users, >= k)
        Item indices per evaluated user, best first; ``-1`` pads.
    test : scipy.sparse matrix of shape (n_users, n_items)
        Held-out items of the same users (rows aligned with ``recommended``).
    k : int
        Cut-off.
    item_popularity : array-like, optional
        Number of training users per item, for novelty.
    n_train_users : int, optional
        Number of training users (novelty's denominator).

    Returns
    -------
    dict
        precision, recall, f1, ndcg, map, hit_rate (means over users with test items),
        coverage (share of the catalog recommended to anyone), novelty (mean
        ``-log2(users(i) / n_train_users)`` of recommended items, a count of 0 taken as 1)
        and users (number evaluated).
    """
    test = sp.csr_matrix(test)
    recs = np.asarray(recommended)[:, :k]
    n_items = test.shape[1]
    has_test = np.diff(test.indptr) > 0
    recs, test = recs[has_test], test[has_test]
    n_users = recs.shape[0]
    if n_users == 0:
        return {m: 0.0 for m in METRICS} | {"users": 0}
    valid = recs >= 0
    rows = np.repeat(np.arange(n_users), k)
    hits = np.zeros((n_users, k), dtype=bool)
    flat = recs.reshape(-1)
    ok = flat >= 0
    hits_flat = np.zeros(len(flat), dtype=bool)
    hits_flat[ok] = np.asarray(test[rows[ok], flat[ok]]).ravel() != 0
    hits = hits_flat.reshape(n_users, k) & valid
    n_rel = np.diff(test.indptr).astype(np.float64)
    n_hits = hits.sum(axis=1)
    precision = n_hits / k
    recall = n_hits / n_rel
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k).astype(int) - 1]
    prec_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (prec_at * hits).sum(axis=1) / np.minimum(n_rel, k)
    out = {"precision": precision.mean(), "recall": recall.mean(), "f1": f1.mean(),
           "ndcg": (dcg / ideal).mean(), "map": ap.mean(), "hit_rate": (n_hits > 0).mean(),
           "coverage": len(np.unique(recs[valid])) / max(n_items, 1)}
    if item_popularity is not None and valid.any():
        pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
        total = float(n_train_users or pop.max())
        out["novelty"] = float(np.mean(-np.log2(pop[recs[valid]] / total)))
    else:
        out["novelty"] = 0.0
    return {m: float(v) for m, v in out.items()} | {"users": int(n_users)}


def evaluate_engine(model: RecommenderBase, train: sp.csr_matrix, test: sp.csr_matrix,
                    k: int = 10, users=None, filter_items=None, items=None) -> dict:
    """Metrics of a fitted engine: full ranking with each user's train items filtered."""
    train = check_interactions(train)
    test = check_interactions(test, "test")
    if users is None:
        users = np.flatnonzero(np.diff(test.indptr) > 0)
    users = np.asarray(users, dtype=np.int64)
    start = time.perf_counter()
    recs, _ = model.recommend_batch(users, train[users], n=k, filter_seen=True,
                                    filter_items=filter_items, items=items)
    seconds = time.perf_counter() - start
    metrics = ranking_metrics(recs, test[users], k, train.getnnz(axis=0), train.shape[0])
    return metrics | {"recommend_seconds": seconds}


def evaluate_engines(engines: dict, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10,
                     fit_kwargs: dict | None = None, item_features=None) -> list[dict]:
    """Fit and evaluate several engines on the same split.

    Parameters
    ----------
    engines : dict of name -> unfitted engine
        Each is fitted on ``train`` (``item_features`` and ``fit_kwargs`` passed along).
    train, test : scipy.sparse.csr_matrix
        Same shape; rows are users.
    k : int
        Cut-off.

    Returns
    -------
    list of dict
        One row per engine: ``algorithm``, every metric and ``fit_seconds``.
    """
    table = []
    for name, model in engines.items():
        start = time.perf_counter()
        model.fit(train, item_features=item_features, **(fit_kwargs or {}))
        fit_seconds = time.perf_counter() - start
        row = {"algorithm": name} | evaluate_engine(model, train, test, k)
        row["fit_seconds"] = fit_seconds
        table.append(row)
    return table


def format_table(rows: list[dict], columns=None, digits: int = 4) -> str:
    """Plain-text (Markdown-compatible) table of ``rows``."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    fmt = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep] + [line(r) for r in cells])


def _positive(u, i, w, n_items):
    """Events that make a (user, item) pair a positive, as in training: the pair's weights
    add up to more than 0 (an impression weighs 0, a cart removal takes an add back) and
    the event itself weighs more than 0."""
    key = u * n_items + i
    _cells, cell = np.unique(key, return_inverse=True)
    total = np.bincount(cell, weights=w) if len(w) else np.zeros(0)
    return (w > 0) & (total[cell] > 0)


def evaluate_csv(interactions_path, test_path=None, items_path=None, k: int = 10,
                 algorithms=("popular", "itemknn", "ease", "als"), event_weights=None,
                 test_fraction: float = 0.2, min_interactions: int = 5,
                 binary: bool = True, params: dict | None = None, tz=None) -> list[dict]:
    """Evaluate engines on CSV files (see :mod:`recommender.engine.data` for formats).

    Only positives count, as in training: a (user, item) pair whose event weights add up
    to more than 0, through its events of positive weight (impressions and cart removals
    are never positives). Without ``test_path`` these are split per user by time (last
    ``test_fraction`` held out). ``binary=True`` counts each pair once at its first time;
    otherwise event weights are summed. ``params`` maps algorithm name to constructor
    keyword arguments; ``tz`` is the time zone of naive timestamps (default UTC).

    Returns
    -------
    list of dict
        The table of :func:`evaluate_engines`.
    """
    from recommender.engine import build_engine
    from recommender.engine.data import read_interactions_csv, read_items_csv

    zone = {} if tz is None else {"tz": tz}
    train_ev = read_interactions_csv(interactions_path, event_weights, **zone)
    test_ev = read_interactions_csv(test_path, event_weights, **zone) if test_path else None
    user_ids = np.unique(np.r_[train_ev["user_ids"], test_ev["user_ids"] if test_ev else []])
    items = read_items_csv(items_path) if items_path else None
    known = [train_ev["item_ids"]] + ([test_ev["item_ids"]] if test_ev else [])
    item_ids = np.unique(np.concatenate(known + ([items["item_ids"]] if items else [])))

    def events(ev):
        u = np.searchsorted(user_ids, ev["user_ids"])
        i = np.searchsorted(item_ids, ev["item_ids"])
        ts = np.nan_to_num(ev["timestamps"], nan=0.0)
        return u, i, ev["weights"], ts

    u, i, w, ts = events(train_ev)
    keep = _positive(u, i, w, len(item_ids))
    u, i, w, ts = u[keep], i[keep], w[keep], ts[keep]
    if binary:
        key = u * len(item_ids) + i
        order = np.lexsort((ts, key))
        first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
        u, i, ts, w = u[first], i[first], ts[first], np.ones(len(first))
    shape = (len(user_ids), len(item_ids))
    if test_ev is None:
        mask = split_interactions(u, ts, test_fraction, min_interactions)
        tu, ti, tw = u[mask], i[mask], w[mask]
        u, i, w, ts = u[~mask], i[~mask], w[~mask], ts[~mask]
    else:
        tu, ti, tw, _ = events(test_ev)
        keep = _positive(tu, ti, tw, len(item_ids))
        tu, ti, tw = tu[keep], ti[keep], tw[keep]
    from recommender.engine.data import build_interaction_matrix

    train, stamps = build_interaction_matrix(u, i, w, ts, n_users=shape[0], n_items=shape[1],
                                             return_timestamps=True)
    if binary:
        train.data[:] = 1.0
    test = sp.csr_matrix((np.ones(len(tu)), (tu, ti)), shape=shape, dtype=np.float32)
    test = test - test.multiply(train > 0)  # items already in train are not test targets
    test.eliminate_zeros()
    features = None
    if items:
        pos = {iid: n for n, iid in enumerate(items["item_ids"])}
        features = {f: [items[f][pos[iid]] if iid in pos else "" for iid in item_ids]
                    for f in ("title", "description", "category", "tags")}
    engines = {}
    for name in algorithms:
        if name in ("content", "two_tower") and features is None:
            continue
        engines[name] = build_engine(name, **((params or {}).get(name, {})))
    fit_kwargs = {"timestamps": stamps, "reference_time": float(ts.max()) if len(ts) else None}
    return evaluate_engines(engines, train, test, k, fit_kwargs=fit_kwargs,
                            item_features=features)
