"""Non-personalised engines: all-time popularity and time-decayed trending.

They answer for users with no history and serve as fallbacks in the hybrid.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import Popular
>>> X = sp.csr_matrix([[1, 0, 1], [0, 0, 1]], dtype="float32")
>>> Popular().fit(X).recommend(5, None, n=2)[0].tolist()
[2, 0]
"""

from __future__ import annotations

import time
import warnings
from numbers import Real

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import RecommenderBase, check_param
from recommender.engine.data import SECONDS_PER_DAY

__all__ = ["Popular", "Trending"]


class _NonPersonalised(RecommenderBase):
    def _score_block(self, user_indices, user_items):
        return np.broadcast_to(self.scores_, (len(user_indices), self.n_items_)).copy()

    def _fallback_scores(self):
        return self.scores_

    def _similarity_row(self, item_index):
        return np.zeros(self.n_items_, dtype=np.float32)

    def _explain_contributions(self, row, item_index):
        return np.zeros(row.nnz, dtype=np.float32)


class Popular(_NonPersonalised):
    """Most popular items, the same for everyone.

    Parameters
    ----------
    by : {"users", "weight"}, default "users"
        Count distinct users per item, or sum the interaction weights.
    """

    def __init__(self, *, by: str = "users"):
        self.by = by

    def _validate_params(self):
        check_param("by", self.by, options={"users", "weight"})

    def _fit(self, X, item_features=None, **kwargs):
        if self.by == "users":
            scores = X.getnnz(axis=0).astype(np.float32)
        else:
            scores = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
        self.scores_ = scores


class Trending(_NonPersonalised):
    """Popularity with exponential time decay: recent interactions count more.

    Parameters
    ----------
    half_life_days : float, default 7.0
        An interaction loses half its weight every ``half_life_days``.

    Notes
    -----
    ``fit`` takes the timestamps as ``timestamps=`` (a CSR matrix with the same pattern as
    the interactions, holding each cell's latest unix time, as returned by
    :func:`recommender.engine.data.build_interaction_matrix` with
    ``return_timestamps=True``) and an optional ``reference_time=`` (unix seconds,
    default the current time). Without timestamps it falls back to plain popularity.
    """

    def __init__(self, *, half_life_days: float = 7.0):
        self.half_life_days = half_life_days

    def _validate_params(self):
        check_param("half_life_days", self.half_life_days, Real, 0, low_open=True)

    def _fit(self, X, item_features=None, timestamps=None, reference_time=None, **kwargs):
        if timestamps is None:
            warnings.warn("Trending.fit got no timestamps; using plain popularity.",
                          stacklevel=3)
            self.scores_ = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
            self.reference_time_ = None
            return
        T = sp.csr_matrix(timestamps, dtype=np.float64)
        T.sort_indices()
        if T.shape != X.shape or T.nnz != X.nnz or not (
                np.array_equal(T.indices, X.indices) and np.array_equal(T.indptr, X.indptr)):
            raise ValueError("timestamps must be a sparse matrix with the same shape and "
                             "non-zero pattern as interactions.")
        ref = time.time() if reference_time is None else float(reference_time)
        age_days = np.maximum(ref - T.data, 0.0) / SECONDS_PER_DAY
        D = X.copy()
        D.data = (X.data * np.power(0.5, age_days / self.half_life_days)).astype(np.float32)
        self.scores_ = np.asarray(D.sum(axis=0), dtype=np.float32).ravel()
        self.reference_time_ = ref
