"""EASE: embarrassingly shallow autoencoder (Steck, 2019), closed form.

``B = I - P / diag(P)`` with ``P = (X^T X + regularization * I)^-1`` and a zero diagonal.
The strongest "recommended for you" model on catalogs up to ~20k items; it needs a dense
items x items matrix (8 bytes x n_items^2 while fitting: 0.8 GB at 10k items, 3.2 GB at
20k), so it refuses catalogs above ``max_items``.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import EASE
>>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype="float32")
>>> EASE(regularization=1.0).fit(X).recommend(0, X[0], n=1)[0].tolist()
[2]
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.linalg

from recommender.engine.base import RecommenderBase, check_param

__all__ = ["EASE", "TemporalEASE"]


def _ease_weights(X, lam: float) -> np.ndarray:
    """Dense EASE weights for a matrix whose rows and columns are all non-empty."""
    n_users, n = X.shape
    if n_users < n:
        # Woodbury: P = (I - X^T (lam I + X X^T)^-1 X) / lam needs only a users x users
        # inverse, far cheaper than an items x items one when users are fewer.
        K = (X @ X.T).toarray().astype(np.float64)
        K[np.diag_indices(n_users)] += lam
        L = np.linalg.cholesky(np.linalg.inv(K))
        Z = np.asarray(X.T @ L)                          # items x users
        Q = Z @ Z.T                                       # I - lam * P
        diag = 1.0 - np.diag(Q).copy()                    # lam * diag(P)
        B = Q / diag[None, :]                             # -P_ij / P_jj off the diagonal
        B[np.diag_indices(n)] = 0.0
        return B.astype(np.float32)
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices(n)] += lam
    # Cholesky-based inverse: about half the flops of a general LU inverse.
    c, info = scipy.linalg.lapack.dpotrf(G, lower=True, overwrite_a=True)
    if info != 0:
        raise ValueError(f"EASE Gram matrix is not positive definite (info={info}); "
                         "increase regularization.")
    P, info = scipy.linalg.lapack.dpotri(c, lower=True, overwrite_c=True)
    del c
    for s in range(0, n, 1024):  # dpotri fills the lower triangle only
        e = min(s + 1024, n)
        blk = P[s:e, s:e]
        P[s:e, s:e] = np.tril(blk) + np.tril(blk, -1).T
        P[s:e, e:] = P[e:, s:e].T
    diag = np.diag(P).copy()
    B = P / (-diag[None, :])
    B[np.diag_indices(n)] = 0.0
    return B.astype(np.float32)


class EASE(RecommenderBase):
    """Closed-form linear item-item autoencoder.

    Parameters
    ----------
    regularization : float, default 200.0
        L2 penalty lambda (> 0); larger for denser data. Tune on a validation split
        (``bench/engine/accuracy.py`` chose 200 on ml-latest-small and 500 on
        online-retail).
    max_items : int, default 20000
        Refuse to fit catalogs with more items (memory grows with n_items^2).
    binarize : bool, default True
        Build the Gram matrix from 0/1 interactions (recommended) instead of weights.
        User rows passed to ``recommend`` keep their weights either way.
    """

    def __init__(self, *, regularization: float = 200.0, max_items: int = 20_000,
                 binarize: bool = True):
        self.regularization = regularization
        self.max_items = max_items
        self.binarize = binarize

    def _validate_params(self):
        check_param("regularization", self.regularization, Real, 0, low_open=True)
        check_param("max_items", self.max_items, Integral, 1)
        check_param("binarize", self.binarize, bool)

    def _fit(self, X, item_features=None, **kwargs):
        n = self.n_items_
        if n > self.max_items:
            gb = 8 * n * n / 1e9
            raise ValueError(f"EASE needs a dense {n} x {n} matrix (~{gb:.1f} GB): n_items={n} "
                             f"exceeds max_items={self.max_items}. Use ALS or ItemKNN for "
                             "large catalogs, or raise max_items.")
        if self.binarize:
            X = X.copy()
            X.data = (X.data != 0).astype(np.float32)
        active = np.flatnonzero(X.getnnz(axis=0) > 0)  # empty columns get zero weights
        Xa = X[:, active]
        Xa = Xa[np.diff(Xa.indptr) > 0]
        B = _ease_weights(Xa, float(self.regularization))
        W = np.zeros((n, n), dtype=np.float32)
        W[np.ix_(active, active)] = B
        self.item_weights_ = W

    def _score_block(self, user_indices, user_items):
        return np.asarray(user_items @ self.item_weights_)

    def _similarity_row(self, item_index):
        return self.item_weights_[item_index]

    def _explain_contributions(self, row, item_index):
        return row.data * self.item_weights_[row.indices, item_index]

    def _explain_matrix(self, row, items):
        return row.data[:, None] * self.item_weights_[np.ix_(row.indices, items)]


class TemporalEASE(EASE):
    """EASE trained to predict each user's whole history from its earlier part.

    The training matrix is split per user by time: the earlier ``1 - holdout_fraction``
    of each user's interactions form ``A``; the target is ``later + past_weight * A``. The
    closed-form ridge solution ``W = (A^T A + lambda I)^-1 A^T target`` learns which items
    come *after* others, which the time-agnostic EASE cannot. That suits "what next"
    recommendations and temporal evaluation. It needs ``timestamps=`` in ``fit`` (a CSR
    matrix with the interactions' pattern); without them it holds out a random share,
    which makes it a denoising variant of EASE.

    Parameters
    ----------
    regularization : float, default 200.0
        L2 penalty lambda (> 0).
    max_items : int, default 20000
        Refuse larger catalogs (dense items x items weights).
    binarize : bool, default True
        Learn from 0/1 interactions.
    holdout_fraction : float, default 0.2
        Share of each user's latest interactions used as the "later" part, in (0, 1).
    past_weight : float, default 1.0
        Weight of the earlier part in the target (>= 0); 1 means "the whole history".
    """

    def __init__(self, *, regularization: float = 200.0, max_items: int = 20_000,
                 binarize: bool = True, holdout_fraction: float = 0.2,
                 past_weight: float = 1.0):
        super().__init__(regularization=regularization, max_items=max_items,
                         binarize=binarize)
        self.holdout_fraction = holdout_fraction
        self.past_weight = past_weight

    def _validate_params(self):
        super()._validate_params()
        check_param("holdout_fraction", self.holdout_fraction, Real, 0, 1, low_open=True,
                    high_open=True)
        check_param("past_weight", self.past_weight, Real, 0)

    def _fit(self, X, item_features=None, timestamps=None, **kwargs):
        from recommender.engine.evaluation import split_matrix

        n = self.n_items_
        if n > self.max_items:
            return super()._fit(X)  # raises the max_items error
        if self.binarize:
            X = X.copy()
            X.data = (X.data != 0).astype(np.float32)
        A, later = split_matrix(X, self.holdout_fraction, timestamps=timestamps,
                                min_interactions=2)
        Y = later + self.past_weight * A
        active = np.flatnonzero(X.getnnz(axis=0) > 0)
        keep = np.diff(A.indptr) > 0
        A, Y = A[keep][:, active], Y[keep][:, active]
        lam = float(self.regularization)
        if A.shape[0] < A.shape[1]:
            # W = A^T (A A^T + lam I)^-1 Y: a users x users inverse when users are fewer
            K = (A @ A.T).toarray().astype(np.float64)
            K[np.diag_indices_from(K)] += lam
            W = np.asarray(A.T @ scipy.linalg.solve(K, Y.toarray(), assume_a="pos"))
        else:
            G = (A.T @ A).toarray().astype(np.float64)
            G[np.diag_indices_from(G)] += lam
            W = scipy.linalg.solve(G, (A.T @ Y).toarray(), assume_a="pos")
        full = np.zeros((n, n), dtype=np.float32)
        full[np.ix_(active, active)] = W
        self.item_weights_ = full
