""""Similar items": items like this one, by content and by what visitors viewed together.

The similarity of two items blends the cosine of their content vectors (TF-IDF of title,
description, category and tags, Chinese included: :mod:`recommender.engine.content`) with
the cosine of their view columns (views and clicks, never purchases: buying two things
together makes them complements, not look-alikes, :mod:`recommender.engine.complements`).
A pair's view similarity counts only once at least ``min_support`` distinct visitors viewed
both items, so one visitor's browsing does not define similarity; below that the pair is
compared by content alone. The blend is multiplied by a category factor: 1 in the same
category, ``related_category`` under the same parent category (``a > b`` paths), else
``other_category``.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import SimilarItems
>>> items = {"title": ["red cotton t-shirt", "blue cotton t-shirt", "wireless earbuds"],
...          "category": ["clothes", "clothes", "audio"]}
>>> X = sp.csr_matrix([[1, 0, 1], [0, 1, 1]], dtype="float32")
>>> SimilarItems().fit(X, item_features=items).similar_items(0, n=1)[0].tolist()
[1]
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine._sparse import blockwise_topk
from recommender.engine.base import check_interactions, check_param
from recommender.engine.content import item_feature_matrix, value_analyzer
from recommender.engine.neighbors import ItemItemRecommender

__all__ = ["SimilarItems", "category_factors", "mask_to_pattern"]


def mask_to_pattern(M: sp.csr_matrix, row_users, X: sp.csr_matrix) -> sp.csr_matrix:
    """``M`` (rows = baskets or visitors) with the cells of known users kept only where ``X`` has them.

    ``row_users[r]`` is the row of ``X`` that row ``r`` of ``M`` belongs to, or -1 (an
    anonymous visitor, always kept). A model fitted on a training split thus never sees the
    held-out interactions of a user through its baskets or views.
    """
    M = check_interactions(M, "baskets/views")
    if row_users is None:
        return M
    users = np.asarray(row_users, dtype=np.int64).reshape(-1)
    if len(users) != M.shape[0]:
        raise ValueError(f"row users must have one entry per row ({M.shape[0]}); got {len(users)}.")
    known = (users >= 0) & (users < X.shape[0])
    if not known.any():
        return M
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    owner = users[rows]
    keep = owner < 0
    mine = ~keep & known[rows]
    if mine.any():
        keep[mine] = np.asarray(X[owner[mine], M.indices[mine]]).ravel() != 0
    M = M.copy()
    M.data[~keep] = 0
    M.eliminate_zeros()
    return M


def category_factors(categories, related: float, other: float) -> tuple[np.ndarray, np.ndarray, callable]:
    """``(category codes, parent codes, factor(rows, cols))`` for a list of category strings.

    ``factor`` gives 1 for two items of the same category, ``related`` for the same parent
    (first path element of ``a > b``), ``other`` otherwise; items without a category get 1.
    """
    full, parent = [], []
    for value in categories:
        parts = value_analyzer(str(value or ""))
        full.append(parts[-1] if parts else "")
        parent.append(parts[0] if parts else "")
    _, cat = np.unique(full, return_inverse=True)
    _, par = np.unique(parent, return_inverse=True)
    blank = np.array([not f for f in full])

    def factor(rows, cols):
        rows = np.asarray(rows)
        out = np.full(np.broadcast(rows, cols).shape, other, dtype=np.float32)
        out[par[rows] == par[cols]] = related
        out[cat[rows] == cat[cols]] = 1.0
        out[blank[rows] | blank[cols]] = 1.0
        return out
    return cat, par, factor


class SimilarItems(ItemItemRecommender):
    """Items like this one: content similarity blended with co-viewing, category preferred.

    Parameters
    ----------
    k : int, default 100
        Neighbours kept per item (>= 1).
    content_weight : float, default 1.0
        Weight of the content cosine (>= 0).
    view_weight : float, default 1.0
        Weight of the co-view cosine (>= 0).
    min_support : int, default 3
        Distinct visitors who must have viewed both items before their co-viewing counts.
    related_category : float, default 0.8
        Factor for two items under the same parent category, in [0, 1].
    other_category : float, default 0.5
        Factor for two items of unrelated categories, in [0, 1].
    field_weights : dict or None, default None
        Relative weight of each text field (see :class:`ItemContentVectorizer`).

    Notes
    -----
    ``fit`` takes ``views=``: a visitors x items matrix of view and click events (any row
    order; weights are binarised) and ``view_users=``: the interaction-matrix row of each
    visitor, or -1 for anonymous ones. Without ``views`` the similarity is content alone.
    """

    handles_cold_items = True
    #: extra ``fit`` inputs the training pipeline builds for this engine
    fit_inputs = ("views",)

    def __init__(self, *, k: int = 100, content_weight: float = 1.0, view_weight: float = 1.0,
                 min_support: int = 3, related_category: float = 0.8, other_category: float = 0.5,
                 field_weights: dict | None = None):
        self.k = k
        self.content_weight = content_weight
        self.view_weight = view_weight
        self.min_support = min_support
        self.related_category = related_category
        self.other_category = other_category
        self.field_weights = field_weights

    def _validate_params(self):
        check_param("k", self.k, Integral, 1)
        check_param("content_weight", self.content_weight, Real, 0)
        check_param("view_weight", self.view_weight, Real, 0)
        check_param("min_support", self.min_support, Integral, 1)
        check_param("related_category", self.related_category, Real, 0, 1)
        check_param("other_category", self.other_category, Real, 0, 1)
        if self.field_weights is not None and not isinstance(self.field_weights, dict):
            raise ValueError(f"field_weights must be a dict or None; got {self.field_weights!r}.")

    def _fit(self, X, item_features=None, views=None, view_users=None, **kwargs):
        n = self.n_items_
        F = None
        if item_features is not None and self.content_weight:
            F, _vec = item_feature_matrix(item_features, n, self.field_weights)
        categories = item_features.get("category") if isinstance(item_features, dict) else None
        factor = None
        if categories is not None and len(categories) == n:
            factor = category_factors(categories, self.related_category, self.other_category)[2]
        V = None
        if views is not None and self.view_weight:
            V = mask_to_pattern(views, view_users, X)
            if V.shape[1] != n:
                raise ValueError(f"views must have {n} item columns; got {V.shape[1]}.")
            V.data[:] = 1.0
            V = sp.csc_matrix(V)
        self.n_viewers_ = np.asarray(V.getnnz(axis=0), dtype=np.float32) if V is not None else \
            np.zeros(n, dtype=np.float32)
        FT = sp.csr_matrix(F.T) if F is not None else None
        VT = sp.csr_matrix(V.T) if V is not None else None
        Vc = sp.csr_matrix(V) if V is not None else None
        norms = np.sqrt(self.n_viewers_.astype(np.float64))
        cw, vw, support = np.float32(self.content_weight), np.float32(self.view_weight), self.min_support

        def compute(start, stop):
            block = np.zeros((stop - start, n), dtype=np.float32)
            if F is not None:
                block += cw * (F[start:stop] @ FT).toarray()
            if VT is not None:
                co = (VT[start:stop] @ Vc).toarray()
                co[co < support] = 0.0
                denom = norms[start:stop, None] * norms[None, :]
                block += vw * np.divide(co, denom, out=np.zeros_like(co), where=denom > 0).astype(np.float32)
            if factor is not None:
                block *= factor(np.arange(start, stop)[:, None], np.arange(n)[None, :])
            return block

        self.similarity_ = blockwise_topk(compute, n, n, self.k)
