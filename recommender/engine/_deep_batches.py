"""Numpy side of the deep engine's training: content features, time positions, batches and
the closed-form start of the wide part. No TensorFlow here (see ``_keras.py``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recommender.engine._sparse import cosine_neighbours, neighbourhood_ridge
from recommender.engine.base import MAX_BLOCK_CELLS

#: A batch maker: ``make(users, rng) -> (inputs, targets, later_mask)`` (dense float32).
BatchMaker = Callable[[np.ndarray, "np.random.Generator | None"],
                      tuple[np.ndarray, np.ndarray, np.ndarray]]


def l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt((x * x).sum(axis=1, keepdims=True)), 1e-12)


def content_matrix(item_features, n_items: int, dim: int, seed: int):
    """Dense, standardised content features (n_items x <=dim), the vectorizer and the SVD;
    three Nones without features."""
    if item_features is None:
        return None, None, None
    from sklearn.decomposition import TruncatedSVD

    from recommender.engine.content import item_feature_matrix

    F, vec = item_feature_matrix(item_features, n_items)
    dim = min(dim, max(1, min(F.shape) - 1))
    if F.shape[1] <= dim:
        dense = F.toarray()
        svd = None
    else:
        svd = TruncatedSVD(n_components=dim, random_state=seed)
        dense = svd.fit_transform(F)
    dense = dense.astype(np.float32)
    scale = dense.std() or 1.0
    return dense / scale, vec, svd


def time_positions(Xw: sp.csr_matrix, timestamps, warm: np.ndarray):
    """Relative time position (0 = first, 1 = last) of each cell within its row, and the
    timestamps restricted to the ``warm`` columns (both CSR with ``Xw``'s pattern)."""
    T = sp.csr_matrix(timestamps, dtype=np.float64)[:, warm]
    T.sort_indices()
    if T.shape != Xw.shape or not np.array_equal(T.indptr, Xw.indptr):
        raise ValueError("timestamps must have the same shape and pattern as interactions.")
    rows = np.repeat(np.arange(Xw.shape[0]), np.diff(Xw.indptr))
    order = np.lexsort((T.data, rows))
    counts = np.diff(Xw.indptr)
    rank = np.empty(len(rows), dtype=np.float64)
    rank[order] = np.arange(len(rows)) - Xw.indptr[rows[order]]
    P = T.copy()
    P.data = ((rank + 0.5) / counts[rows]).astype(np.float32)
    return P, T


def batch_maker(Xw: sp.csr_matrix, position, stamps, *, half_life_days: float | None = None,
                past_weight: float = 0.0, random_state: int = 0) -> BatchMaker:
    """Function building (input, target, later-mask) dense arrays for a batch of users.

    With positions (time order known), each row is cut at a random point between 50%
    and 90% of the user's history (at 80% for validation, ``rng=None``): the input is
    the earlier part, re-weighted by recency when ``half_life_days`` is set; the target
    is the later part plus ``past_weight`` times the earlier part. Without positions
    the row is reconstructed (dropout corrupts the input inside the model), and
    validation rows hold out a fixed random 20% of their cells instead.
    """
    past_weight = float(past_weight)
    random_position = None
    if position is None:  # validation holds out a fixed random 20% of each row
        random_position = Xw.copy()
        random_position.data = np.random.default_rng(random_state).random(
            Xw.nnz).astype(np.float32)

    def make(batch, rng):
        x = Xw[batch].toarray()
        if position is None and rng is not None:
            return l2_rows(x), x, x != 0
        nz = x != 0
        pos = (position if position is not None else random_position)[batch].toarray()
        cut = (rng.uniform(0.5, 0.9, (len(batch), 1)) if rng is not None
               else np.full((len(batch), 1), 0.8))
        later = (pos >= cut) & nz
        n_later = later.sum(axis=1)
        ok = (n_later > 0) & (n_later < nz.sum(axis=1))
        later &= ok[:, None]
        earlier = nz & ~later
        y = np.where(later, x, past_weight * x * earlier)
        y[~ok] = x[~ok]
        inp = np.where(earlier, x, 0.0)
        if half_life_days is not None and stamps is not None:
            t = stamps[batch].toarray()
            ref = np.where(earlier, t, -np.inf).max(axis=1, keepdims=True)
            age = np.maximum(ref - t, 0.0) / 86_400.0
            inp = inp * np.where(earlier, np.power(0.5, age / half_life_days), 0.0)
        return l2_rows(inp.astype(np.float32)), y.astype(np.float32), later

    return make


def wide_start(Xw: sp.csr_matrix, users: np.ndarray, make_batch: BatchMaker,
               rng: np.random.Generator, position, *, neighbours: int,
               regularization: float, sample: int = 2000) -> tuple[sp.csr_matrix, float]:
    """Closed-form start of the wide part: (W over the warm items, softmax gain).

    ``W`` is the neighbourhood ridge regression on the training ``users``' 0/1 rows: the
    whole rows from themselves (EASE) or, with time order, from their earlier 80%
    (TemporalEASE with ``past_weight=1``). The gain scales ``x @ W`` (``x`` = the
    model's L2-normalised input rows) into logits: it minimises the softmax
    cross-entropy of up to ``sample`` training users' held-out items (the
    validation-style cut of :func:`batch_maker`), by golden-section search over
    log-gain.
    """
    X = sp.csr_matrix(Xw[users], dtype=np.float32)
    X.data[:] = 1.0
    A = X
    if position is not None:  # same pattern as X: keep the cells before the 80% cut
        A = sp.csr_matrix(position[users], dtype=np.float32, copy=True)
        A.data = (A.data < 0.8).astype(np.float32)
        A.eliminate_zeros()
    W = neighbourhood_ridge(A, cosine_neighbours(X, neighbours), regularization, targets=X)
    sample = max(1, min(sample, MAX_BLOCK_CELLS // W.shape[0]))
    picked = users if len(users) <= sample else np.sort(rng.choice(users, sample,
                                                                   replace=False))
    x, y, _ = make_batch(picked, None)
    S = (sp.csr_matrix(x) @ W).toarray().astype(np.float64)
    y = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)

    def loss(log_gain):
        z = S * np.exp(log_gain)
        z -= z.max(axis=1, keepdims=True)
        return float(-(y * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum())

    lo, hi = np.log(1e-2), np.log(1e4)
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return W, float(np.exp((lo + hi) / 2))
