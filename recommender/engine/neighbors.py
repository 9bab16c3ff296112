"""Item-to-item neighbourhood engines: cosine item-kNN and purchase co-occurrence.

Both keep only the top ``k`` neighbours of every item in a sparse items x items matrix,
computed a block of items at a time, so they scale to ~100k items and 10M interactions.
A user's score for item ``i`` is ``sum_j weight(u, j) * S[j, i]``.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import Cooccurrence
>>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
>>> Cooccurrence().fit(X).similar_items(0, n=1)[0].tolist()   # "customers also bought"
[1]
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from recommender.engine._sparse import column_norms, cosine_neighbours, gram_topk, safe_inverse
from recommender.engine.base import RecommenderBase, check_param

__all__ = ["Cooccurrence", "ItemKNN", "ItemItemRecommender", "capped_reason_order", "varied_reasons"]


class ItemItemRecommender(RecommenderBase):
    """Base of engines that score with a sparse item-item matrix ``similarity_``."""

    def _score_block(self, user_indices, user_items):
        return (user_items @ self.similarity_).toarray()

    def _similarity_row(self, item_index):
        return self.similarity_[item_index].toarray().ravel()

    def _explain_contributions(self, row, item_index):
        col = self.similarity_[:, item_index].toarray().ravel()
        return row.data * col[row.indices]

    def _explain_matrix(self, row, items):
        # rows of the user's items (a fast CSR row slice), then the few wanted columns
        sub = self.similarity_[row.indices][:, items].toarray()
        return row.data[:, None] * sub


class ItemKNN(ItemItemRecommender):
    """Cosine item-to-item nearest neighbours ("similar items").

    Parameters
    ----------
    k : int, default 100
        Neighbours kept per item (>= 1).
    shrinkage : float, default 0.0
        Added to the cosine denominator; damps similarities supported by few users.
    binarize : bool, default False
        Use 0/1 interactions instead of the weights.
    """

    def __init__(self, *, k: int = 100, shrinkage: float = 0.0, binarize: bool = False):
        self.k = k
        self.shrinkage = shrinkage
        self.binarize = binarize

    def _validate_params(self):
        check_param("k", self.k, Integral, 1)
        check_param("shrinkage", self.shrinkage, Real, 0)
        check_param("binarize", self.binarize, bool)

    def _fit(self, X, item_features=None, **kwargs):
        if self.binarize:
            X = X.copy()
            X.data[:] = 1.0
        if not self.shrinkage:
            self.similarity_ = cosine_neighbours(X, self.k)
            return
        norms = column_norms(X)
        shrinkage = self.shrinkage

        def shrunk_cosine(rows, cols, dots):
            # only the non-zero dot products of a block: a zero stays zero whatever the norms
            return dots * safe_inverse(norms[rows] * norms[cols] + shrinkage)
        self.similarity_ = gram_topk(X, self.k, shrunk_cosine)


class Cooccurrence(ItemItemRecommender):
    """"Customers who bought this also bought": normalised co-occurrence counts.

    Parameters
    ----------
    k : int, default 100
        Neighbours kept per item (>= 1).
    similarity : {"jaccard", "cosine", "lift", "conditional", "count"}, default "jaccard"
        How co-counts ``C_ij`` are normalised by item counts ``c_i``: ``C/(c_i+c_j-C)``,
        ``C/sqrt(c_i c_j)``, ``C*n_users/(c_i c_j)``, ``C/c_i`` (P(j | i)) or raw ``C``.
    min_count : int, default 1
        Pairs bought together by fewer users are dropped.
    """

    def __init__(self, *, k: int = 100, similarity: str = "jaccard", min_count: int = 1):
        self.k = k
        self.similarity = similarity
        self.min_count = min_count

    def _validate_params(self):
        check_param("k", self.k, Integral, 1)
        check_param("similarity", self.similarity,
                    options={"jaccard", "cosine", "lift", "conditional", "count"})
        check_param("min_count", self.min_count, Integral, 1)

    def _fit(self, X, item_features=None, **kwargs):
        B = X.copy()
        B.data = (B.data > 0).astype(np.float32)
        B.eliminate_zeros()
        counts = np.asarray(B.sum(axis=0), dtype=np.float64).ravel()
        n_users = max(self.n_users_, 1)
        kind, min_count = self.similarity, self.min_count

        def normalise(rows, cols, co_counts):
            # only the pairs of a block that co-occur at all; float64 like the item counts
            v = co_counts.astype(np.float64)
            v[v < min_count] = 0.0
            ci, cj = counts[rows], counts[cols]
            if kind == "jaccard":
                return v * safe_inverse(ci + cj - v)
            if kind == "cosine":
                return v * safe_inverse(np.sqrt(ci * cj))
            if kind == "lift":
                return v * n_users * safe_inverse(ci * cj)
            if kind == "conditional":
                return v * safe_inverse(ci)
            return v

        self.similarity_ = gram_topk(B, self.k, normalise)


def varied_reasons(contributions: list[list[tuple[int, float]]], tolerance: float = 0.5) -> list[int | None]:
    """One history item per recommended item, in rank order, varied across a block.

    ``contributions`` is :meth:`RecommenderBase.explain_many`'s answer (the top few
    contributing history items of each recommended item, largest first). Each item gets its
    largest contributor, unless another contributor gave at least ``tolerance`` times as
    much and was named fewer times so far in the block; ties keep the larger contribution.

    Example
    -------
    >>> varied_reasons([[(7, 1.0), (3, 0.9)], [(7, 1.0), (3, 0.6)], [(7, 1.0)]])
    [7, 3, 7]
    """
    check_param("tolerance", tolerance, Real, 0, 1)
    named: dict[int, int] = {}
    out = []
    for contrib in contributions:
        if not contrib:
            out.append(None)
            continue
        top = contrib[0][1]
        close = [(item, value) for item, value in contrib if value >= tolerance * top]
        item = min(close, key=lambda pair: (named.get(pair[0], 0), -pair[1]))[0]
        named[item] = named.get(item, 0) + 1
        out.append(int(item))
    return out


def capped_reason_order(reasons: list, n: int, cap: int | None = None) -> list[int]:
    """Positions of a ranked list, reordered so that one reason names at most half of ``n``
    (rounded up; or ``cap``) of the first items while items with other reasons remain.

    ``reasons`` holds each item's reason (a history item) in rank order, None for an item
    that is not capped. Items over the cap keep their order after the others.

    Example
    -------
    >>> capped_reason_order([7, 7, 7, 3, None], 4)
    [0, 1, 3, 4, 2]
    """
    check_param("n", n, Integral, 1)
    cap = -(-n // 2) if cap is None else cap
    kept, later, named = [], [], {}
    for position, reason in enumerate(reasons):
        if reason is not None:
            if named.get(reason, 0) >= cap:
                later.append(position)
                continue
            named[reason] = named.get(reason, 0) + 1
        kept.append(position)
    return kept + later
