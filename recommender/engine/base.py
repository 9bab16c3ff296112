"""The engine contract: an abstract base class shared by every recommender.

The interface follows the ``implicit`` library (``fit`` / ``recommend`` /
``recommend_batch`` / ``similar_items`` / ``explain`` / ``save`` / ``load``) and
scikit-learn's estimator rules (constructors only store keyword hyperparameters,
learned state ends in ``_``, using an unfitted model raises :class:`NotFittedError`).

Throughout, *index* means a row (user) or column (item) of the interaction matrix;
database ids never reach the engine.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import ItemKNN
>>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype="float32")
>>> model = ItemKNN().fit(X)
>>> items, scores = model.recommend(0, X[0], n=1)
>>> items.tolist()
[2]
"""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

__all__ = ["NotFittedError", "RecommenderBase", "check_interactions", "check_param"]

#: Dense score blocks are limited to about this many cells (float32) at a time.
MAX_BLOCK_CELLS = 8_000_000


def cpu_count() -> int:
    """CPUs this process may run on: the worker threads of the engines' block loops."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class NotFittedError(ValueError, AttributeError):
    """Raised when an engine is used before :meth:`RecommenderBase.fit`."""


def check_param(name: str, value: Any, kind: type | tuple = Real, low=None, high=None,
                *, low_open: bool = False, high_open: bool = False, options=None,
                allow_none: bool = False) -> Any:
    """Validate one hyperparameter and return it.

    Raises ``ValueError`` naming the parameter, the allowed range and the value received.
    """
    if value is None and allow_none:
        return value
    if options is not None:
        if value not in options:
            raise ValueError(f"{name} must be one of {sorted(options)!r}; got {value!r}.")
        return value
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else (
        isinstance(value, (bool, np.bool_)))
    if ok and isinstance(value, Real) and not np.isfinite(value):
        ok = False
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        kind_name = "an integer" if kind is Integral else (
            "a boolean" if kind is bool else "a number")
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        rng = " and ".join(p for p in (lo, hi) if p)
        rng = f" {rng}" if rng else ""
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {kind_name}{rng}{none}; got {value!r}.")
    return value


def check_interactions(interactions, name: str = "interactions") -> sp.csr_matrix:
    """Return ``interactions`` as a float32 CSR matrix with sorted, summed indices."""
    if not sp.issparse(interactions):
        if isinstance(interactions, np.ndarray) and interactions.ndim == 2:
            interactions = sp.csr_matrix(interactions)
        else:
            raise ValueError(f"{name} must be a scipy.sparse matrix (users x items); "
                             f"got {type(interactions).__name__}.")
    X = sp.csr_matrix(interactions, dtype=np.float32)
    X.sum_duplicates()
    X.eliminate_zeros()  # a stored zero is no interaction (and must not count as seen)
    X.sort_indices()
    if X.nnz and not np.all(np.isfinite(X.data)):
        raise ValueError(f"{name} contains NaN or infinite weights.")
    return X


class RecommenderBase(abc.ABC):
    """Abstract base class of every engine.

    Subclasses implement :meth:`_fit` and :meth:`_score_block` (dense scores for a block
    of users) and, for item similarity, :meth:`_similarity_row`.
    """

    #: whether the engine can score items that have no interactions (content-aware)
    handles_cold_items = False

    # -- scikit-learn style parameter handling ---------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Return the constructor hyperparameters as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set hyperparameters (validated at the next :meth:`fit`)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}; "
                                 f"valid parameters: {sorted(valid)}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:  # noqa: B027  (a hook: engines without parameters keep it)
        """Check hyperparameters; overridden by engines that have any."""

    # -- fitting ----------------------------------------------------------------
    def fit(self, interactions: sp.csr_matrix, item_features: Any = None, **kwargs: Any) -> Self:
        """Learn from a users x items matrix of (already weighted) interactions.

        Parameters
        ----------
        interactions : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Interaction weights; items with an empty column are cold items.
        item_features : optional
            Item content (used by content-aware engines, ignored by others).
        **kwargs
            Engine-specific extras (e.g. ``timestamps`` for trending).

        Returns
        -------
        self
        """
        self._validate_params()
        X = check_interactions(interactions)
        self.n_users_, self.n_items_ = (int(s) for s in X.shape)
        self.item_popularity_ = np.asarray(X.getnnz(axis=0), dtype=np.float32)
        self._fit(X, item_features=item_features, **kwargs)
        return self

    @abc.abstractmethod
    def _fit(self, X: sp.csr_matrix, item_features=None, **kwargs) -> None:
        """Engine-specific learning."""

    @abc.abstractmethod
    def _score_block(self, user_indices: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores of shape (len(user_indices), n_items)."""

    def _similarity_row(self, item_index: int) -> np.ndarray:
        """Dense similarity of ``item_index`` to every item (used by similar_items/explain)."""
        raise NotImplementedError(f"{type(self).__name__} does not support item similarity.")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with appropriate arguments before using it.")

    def _check_item(self, item_index, name: str = "item_index") -> int:
        if not isinstance(item_index, (Integral, np.integer)) or not (
                0 <= item_index < self.n_items_):
            raise ValueError(f"{name} must be an integer in [0, {self.n_items_ - 1}]; "
                             f"got {item_index!r}.")
        return int(item_index)

    def _check_user_items(self, user_items, n_rows: int) -> sp.csr_matrix:
        if user_items is None:
            return sp.csr_matrix((n_rows, self.n_items_), dtype=np.float32)
        X = check_interactions(user_items, "user_items")
        if X.shape != (n_rows, self.n_items_):
            raise ValueError(f"user_items must have shape ({n_rows}, {self.n_items_}) "
                             f"(one row per user); got {X.shape}.")
        return X

    # -- recommending -----------------------------------------------------------
    def _fallback_scores(self) -> np.ndarray:
        """Scores for users with no history: item popularity in the training data."""
        return self.item_popularity_

    def _scores_with_fallback(self, users: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray(self._score_block(users, rows), dtype=np.float32)
        empty = np.diff(rows.indptr) == 0
        if empty.any():
            scores[empty] = self._fallback_scores()
        return scores

    def recommend_batch(self, user_indices: ArrayLike, user_items: sp.csr_matrix | None, n: int = 10,
                        filter_seen: bool = True, filter_items: ArrayLike | None = None,
                        items: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for many users, computed a block of users at a time.

        Parameters
        ----------
        user_indices : array-like of int
            Rows of the training matrix (an index >= ``n_users_`` is a new user).
        user_items : scipy.sparse.csr_matrix of shape (len(user_indices), n_items)
            The users' interactions, one row per entry of ``user_indices``.
        n : int
            Number of items per user.
        filter_seen : bool
            Drop the items present in each user's row.
        filter_items : array-like of int, optional
            Item indices never to return (e.g. unavailable items).
        items : array-like of int, optional
            Restrict candidates to these item indices.

        Returns
        -------
        indices : ndarray of shape (n_users, n), int64
            Item indices, best first; ``-1`` pads rows with fewer than ``n`` candidates.
        scores : ndarray of shape (n_users, n), float32
            Matching scores; ``-inf`` where the index is ``-1``.
        """
        self._check_fitted()
        users = np.asarray(user_indices, dtype=np.int64).reshape(-1)
        check_param("n", n, Integral, 1)
        X = self._check_user_items(user_items, len(users))
        banned = np.zeros(self.n_items_, dtype=bool)
        if filter_items is not None:
            fi = np.asarray(filter_items, dtype=np.int64).reshape(-1)
            banned[fi[(fi >= 0) & (fi < self.n_items_)]] = True
        if items is not None:
            allowed = np.zeros(self.n_items_, dtype=bool)
            it = np.asarray(items, dtype=np.int64).reshape(-1)
            allowed[it[(it >= 0) & (it < self.n_items_)]] = True
            banned |= ~allowed
        k = min(n, self.n_items_)
        out_idx = np.full((len(users), n), -1, dtype=np.int64)
        out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        block = max(1, MAX_BLOCK_CELLS // max(self.n_items_, 1))
        for start in range(0, len(users), block):
            stop = min(start + block, len(users))
            rows = X[start:stop]
            scores = self._scores_with_fallback(users[start:stop], rows)
            scores[~np.isfinite(scores)] = np.finfo(np.float32).min
            if banned.any():
                scores[:, banned] = -np.inf
            if filter_seen and rows.nnz:
                r = np.repeat(np.arange(stop - start), np.diff(rows.indptr))
                scores[r, rows.indices] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < self.n_items_ else \
                np.tile(np.arange(self.n_items_), (stop - start, 1))
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            top[~np.isfinite(top_scores)] = -1
            out_idx[start:stop, :k] = top
            out_scores[start:stop, :k] = top_scores
        return out_idx, out_scores

    def recommend(self, user_index: int, user_items: sp.csr_matrix | None, n: int = 10,
                  filter_seen: bool = True, filter_items: ArrayLike | None = None,
                  items: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for one user.

        Parameters
        ----------
        user_index : int
            Row of the training matrix (any index >= ``n_users_`` is a new user).
        user_items : scipy.sparse.csr_matrix of shape (1, n_items)
            The user's interactions (may be empty: popularity is then used).
        n, filter_seen, filter_items, items
            As in :meth:`recommend_batch`.

        Returns
        -------
        indices : ndarray of int64
            Up to ``n`` item indices, best first.
        scores : ndarray of float32
            Their scores.
        """
        self._check_fitted()
        if user_items is not None and sp.issparse(user_items) and user_items.shape[0] != 1:
            raise ValueError("user_items must be a single row of shape (1, n_items); "
                             f"got {user_items.shape}.")
        idx, scores = self.recommend_batch([user_index], user_items, n=n,
                                           filter_seen=filter_seen,
                                           filter_items=filter_items, items=items)
        keep = idx[0] >= 0
        return idx[0][keep], scores[0][keep]

    def similar_items(self, item_index: int, n: int = 10,
                      filter_items: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to ``item_index`` (the item itself excluded).

        Parameters
        ----------
        item_index : int
            Column of the interaction matrix.
        n : int
            Number of items to return.
        filter_items : array-like of int, optional
            Item indices never to return.

        Returns
        -------
        indices : ndarray of int64
            Up to ``n`` item indices, most similar first (only positive similarities).
        scores : ndarray of float32
            Their similarities.
        """
        self._check_fitted()
        i = self._check_item(item_index)
        check_param("n", n, Integral, 1)
        sims = np.array(self._similarity_row(i), dtype=np.float32).reshape(-1)
        sims[i] = -np.inf
        if filter_items is not None:
            fi = np.asarray(filter_items, dtype=np.int64).reshape(-1)
            sims[fi[(fi >= 0) & (fi < self.n_items_)]] = -np.inf
        sims[~(sims > 0)] = -np.inf
        k = min(n, self.n_items_)
        top = np.argpartition(-sims, k - 1)[:k] if k < self.n_items_ else np.arange(k)
        top = top[np.argsort(-sims[top], kind="stable")]
        top = top[np.isfinite(sims[top])]
        return top.astype(np.int64), sims[top]

    def explain(self, user_index: int, user_items: sp.csr_matrix, item_index: int,
                n: int = 3) -> list[tuple[int, float]]:
        """Which of the user's items contributed most to ``item_index`` being recommended.

        The contribution of a history item ``j`` is ``weight(u, j) * sim(j, item)``, exact
        for item-based engines (kNN, EASE, co-occurrence, content) and an approximation
        for factor models.

        Parameters
        ----------
        user_index : int
            Row of the training matrix.
        user_items : scipy.sparse.csr_matrix of shape (1, n_items)
            The user's interactions.
        item_index : int
            The recommended item to explain.
        n : int
            Number of contributing items to return.

        Returns
        -------
        list of (int, float)
            ``(history item index, contribution)``, largest first; only positive ones.
        """
        self._check_fitted()
        i = self._check_item(item_index)
        row = self._check_user_items(user_items, 1)
        if row.nnz == 0:
            return []
        contrib = self._explain_contributions(row, i)
        order = np.argsort(-contrib, kind="stable")[:n]
        return [(int(row.indices[o]), float(contrib[o])) for o in order if contrib[o] > 0]

    def explain_many(self, user_index: int, user_items: sp.csr_matrix, item_indices: ArrayLike,
                     n: int = 1) -> list[list[tuple[int, float]]]:
        """:meth:`explain` for several recommended items of one user at once.

        Item-based engines compute all contributions with one slice of their item-item
        matrix, which is what refreshing served lists for millions of users needs.

        Returns
        -------
        list of lists of (int, float)
            One :meth:`explain` answer per item of ``item_indices``.
        """
        self._check_fitted()
        items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        for i in items:
            self._check_item(int(i))
        row = self._check_user_items(user_items, 1)
        if row.nnz == 0 or not len(items):
            return [[] for _i in items]
        C = np.asarray(self._explain_matrix(row, items), dtype=np.float64).reshape(row.nnz, len(items))
        out = []
        for col in range(len(items)):
            contrib = C[:, col]
            order = np.argsort(-contrib, kind="stable")[:n]
            out.append([(int(row.indices[o]), float(contrib[o])) for o in order if contrib[o] > 0])
        return out

    def _explain_matrix(self, row: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """Contributions of the row's items (rows) to each of ``items`` (columns)."""
        return np.column_stack([self._explain_contributions(row, int(i)) for i in items])

    def _explain_contributions(self, row: sp.csr_matrix, item_index: int) -> np.ndarray:
        sims = np.asarray(self._similarity_row(item_index), dtype=np.float32).reshape(-1)
        return row.data * sims[row.indices]

    def replay_at(self, request_times) -> Self:
        """Offline evaluation: score user ``u`` as of ``request_times[u]`` (seconds since
        the epoch; NaN: the end of training) where the engine has an input that depends on
        the time of the request (``SequenceModel(trend_days=...)``); other engines ignore
        it. Returns ``self``."""
        return self

    # -- persistence ------------------------------------------------------------
    def _state(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted engine into the directory ``path`` (created if needed).

        Arrays go to ``arrays.npz``, sparse matrices to ``<name>.npz`` (scipy format),
        hyperparameters and scalars to ``model.json`` and other objects (scikit-learn
        transformers) to ``<name>.joblib``.
        """
        self._check_fitted()
        from recommender.engine._persist import save_engine
        save_engine(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, allowed: Iterable[str] = ()) -> Self:
        """Load an engine saved by :meth:`save` (class read from ``model.json``).

        Engine classes outside ``recommender.engine`` load only when named in
        ``allowed`` (dotted paths) or when ``cls`` is that class itself.
        """
        from recommender.engine._persist import load_engine
        allowed = frozenset(allowed) | {f"{cls.__module__}.{cls.__qualname__}"}
        model = load_engine(path, allowed)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}.")
        return model

