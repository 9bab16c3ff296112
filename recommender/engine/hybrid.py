"""Hybrid engine: a weighted blend of component engines' per-user normalised scores.

Weights are chosen on a validation split carved from the training data (the latest
``validation_fraction`` of each user's interactions when ``timestamps`` are given, a
random share otherwise, or an explicit ``validation`` matrix), by coordinate ascent on
NDCG@``k``; then every component is refitted on all the data.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import Hybrid
>>> X = sp.random(60, 30, density=0.2, format="csr", random_state=0)
>>> model = Hybrid(components=["itemknn", "popular"]).fit(X)
>>> len(model.weights_)
2
"""

from __future__ import annotations

from importlib.util import find_spec
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import RecommenderBase, check_interactions, check_param

__all__ = ["Hybrid"]

#: The deep model of the default components: the one validation ranked first on both
#: benchmark datasets with engine defaults (docs/benchmarks-engine.md).
DEEP_COMPONENT = "sequence"

_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


def _spec(component) -> tuple[str, dict]:
    if isinstance(component, str):
        return component, {}
    if isinstance(component, dict) and "engine" in component:
        return component["engine"], dict(component.get("params", {}))
    raise ValueError("components entries must be an engine name or "
                     f"{{'engine': name, 'params': {{...}}}}; got {component!r}.")


def _normalise(scores: np.ndarray, how: str) -> np.ndarray:
    scores = scores.astype(np.float32, copy=False)
    if how == "zscore":
        mean = scores.mean(axis=1, keepdims=True)
        std = scores.std(axis=1, keepdims=True)
        return (scores - mean) / np.where(std > 0, std, 1.0)
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return (scores - low) / np.where(span > 0, span, 1.0)


def _ndcg(scores: np.ndarray, seen: sp.csr_matrix, target: sp.csr_matrix, k: int) -> float:
    scores = scores.copy()
    r = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[r, seen.indices] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    hits = np.asarray(target[np.repeat(np.arange(top.shape[0]), k), top.ravel()]).reshape(
        top.shape) != 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(disc)[np.minimum(np.diff(target.indptr), k) - 1]
    return float(((hits * disc).sum(axis=1) / ideal).mean())


class Hybrid(RecommenderBase):
    """Blend of several engines with weights tuned on held-out data.

    Parameters
    ----------
    components : list or None, default None
        Engine names or ``{"engine": name, "params": {...}}`` dicts. ``None`` picks
        EASE (plus TemporalEASE when ``timestamps=`` are given; ALS instead above 20,000
        items), ItemKNN, ContentBased when ``item_features`` are given, and the deep
        model (``sequence``, :class:`~recommender.engine.sequence.SequenceModel`) when
        TensorFlow is installed and at least ``deep_min_users`` users have interactions.
    deep_min_users : int or None, default 1000
        Users with interactions needed before the default components include the deep
        model; ``None`` leaves it out. The blend weights decide how much it counts: a
        component that validation gives weight 0 is not refitted.
    weights : list of float or None, default None
        Fixed blend weights, one per component; ``None`` tunes them on a validation split.
        A component given weight 0 is not fitted and is left out of the fitted blend
        (``component_names_``, ``weights_`` and ``engines_`` hold the others).
    normalization : {"zscore", "minmax"}, default "zscore"
        Per-user normalisation of each component's scores before blending.
    validation_fraction : float, default 0.2
        Share of each user's latest interactions held out for tuning, in (0, 1).
    max_validation_users : int, default 2000
        Users sampled for tuning (bounds time and memory).
    k : int, default 10
        Cut-off of the NDCG used for tuning.
    random_state : int, default 0
        Seed for user sampling and random held-out interactions.
    """

    handles_cold_items = True

    def __init__(self, *, components: list | None = None, weights: list | None = None,
                 normalization: str = "zscore", validation_fraction: float = 0.2,
                 max_validation_users: int = 2000, k: int = 10, random_state: int = 0,
                 deep_min_users: int | None = 1000):
        self.components = components
        self.weights = weights
        self.normalization = normalization
        self.validation_fraction = validation_fraction
        self.max_validation_users = max_validation_users
        self.k = k
        self.random_state = random_state
        self.deep_min_users = deep_min_users

    def _validate_params(self):
        check_param("normalization", self.normalization, options={"zscore", "minmax"})
        check_param("validation_fraction", self.validation_fraction, Real, 0, 1,
                    low_open=True, high_open=True)
        check_param("max_validation_users", self.max_validation_users, Integral, 1)
        check_param("k", self.k, Integral, 1)
        check_param("random_state", self.random_state, Integral, 0)
        check_param("deep_min_users", self.deep_min_users, Integral, 0, allow_none=True)
        if self.components is not None and not isinstance(self.components, (list, tuple)):
            raise ValueError(f"components must be a list or None; got {self.components!r}.")
        if self.components is not None:
            for c in self.components:
                _spec(c)

    def _specs(self, n_items: int, item_features, timestamps=None, n_users: int = 0) -> list[tuple[str, dict]]:
        if self.components is not None:
            return [_spec(c) for c in self.components]
        if n_items > 20_000:
            specs = [("als", {})]
        else:
            specs = [("ease", {})] + ([("temporal_ease", {})] if timestamps is not None else [])
        specs.append(("itemknn", {}))
        if item_features is not None:
            specs.append(("content", {}))
        if (self.deep_min_users is not None and n_users >= self.deep_min_users
                and find_spec("tensorflow") is not None):
            specs.append((DEEP_COMPONENT, {}))
        return specs

    def _build(self, specs):
        from recommender.engine import build_engine
        return [build_engine(name, **params) for name, params in specs]

    def _fit(self, X, item_features=None, timestamps=None, validation=None, **kwargs):
        specs = self._specs(self.n_items_, item_features, timestamps,
                            n_users=int((np.diff(X.indptr) > 0).sum()))
        if self.weights is not None:
            if len(self.weights) != len(specs):
                raise ValueError(f"weights must have one value per component ({len(specs)}); "
                                 f"got {self.weights!r}.")
            weights = np.asarray(self.weights, dtype=np.float32)
            if not weights.any():
                raise ValueError(f"weights must have a non-zero value; got {self.weights!r}.")
            # a component with weight 0 never scores: it is left out of the blend, unfitted
            keep = np.flatnonzero(weights)
            specs = [specs[i] for i in keep]
            self.weights_ = weights[keep]
            self.validation_ndcg_ = None
            tuned = [None] * len(specs)
        else:
            self.weights_, self.validation_ndcg_, tuned = self._tune(
                specs, X, item_features, timestamps, validation, kwargs)
        self.component_names_ = [name for name, _ in specs]
        full = X if validation is None else check_interactions(X + validation)
        fit_kwargs = dict(kwargs)
        if timestamps is not None and validation is None:
            fit_kwargs["timestamps"] = timestamps
        # a component with weight 0 never scores: it keeps its tuning fit instead of a refit
        self.engines_ = [t if t is not None and w == 0 else e.fit(full, item_features=item_features, **fit_kwargs)
                         for w, t, e in zip(self.weights_, tuned, self._build(specs), strict=True)]
        if validation is not None:
            self.item_popularity_ = np.asarray(full.getnnz(axis=0), dtype=np.float32)

    def _tune(self, specs, X, item_features, timestamps, validation, kwargs):
        from recommender.engine.evaluation import latest_times, split_matrix

        if validation is not None:
            train, target = X, check_interactions(validation)
            if target.shape != X.shape:
                raise ValueError(f"validation must have shape {X.shape}; got {target.shape}.")
        else:
            train, target = split_matrix(X, self.validation_fraction, timestamps,
                                         random_state=self.random_state)
        users = np.flatnonzero((np.diff(target.indptr) > 0) & (np.diff(train.indptr) > 0))
        if len(users) == 0 or len(specs) == 1:
            return np.ones(len(specs), dtype=np.float32), None, [None] * len(specs)
        rng = np.random.default_rng(self.random_state)
        cap = min(self.max_validation_users, max(50, 50_000_000 // (len(specs) * self.n_items_)))
        if len(users) > cap:
            users = np.sort(rng.choice(users, cap, replace=False))
        seen, tgt = train[users], target[users]
        fit_kwargs = dict(kwargs)
        if timestamps is not None and validation is None:
            T = sp.csr_matrix(timestamps).multiply(train != 0).tocsr()
            T.sort_indices()
            fit_kwargs["timestamps"] = T
        elif timestamps is not None:
            fit_kwargs["timestamps"] = timestamps
        blocks = []
        engines = self._build(specs)
        for engine in engines:
            engine.fit(train, item_features=item_features, **fit_kwargs)
            if fit_kwargs.get("timestamps") is not None:  # each user as of its latest event, as served then
                engine.replay_at(latest_times(fit_kwargs["timestamps"]))
            blocks.append(_normalise(engine._scores_with_fallback(users, seen),
                                     self.normalization))
        k = min(self.k, self.n_items_)
        single = [_ndcg(b, seen, tgt, k) for b in blocks]
        w = np.zeros(len(blocks), dtype=np.float32)
        w[int(np.argmax(single))] = 1.0
        best = max(single)
        for _ in range(2):  # coordinate ascent over a small grid
            improved = False
            for c in range(len(blocks)):
                for g in _GRID:
                    if g == w[c]:
                        continue
                    trial = w.copy()
                    trial[c] = g
                    if not trial.any():
                        continue
                    score = _ndcg(sum(t * b for t, b in zip(trial, blocks, strict=True) if t), seen, tgt, k)
                    if score > best + 1e-6:
                        best, w, improved = score, trial, True
            if not improved:
                break
        return w, best, engines

    def replay_at(self, request_times) -> Hybrid:
        """Replays each component that has a time input (see ``RecommenderBase.replay_at``)."""
        for engine in getattr(self, "engines_", []):
            engine.replay_at(request_times)
        return self

    def _score_block(self, user_indices, user_items):
        total = None
        for w, engine in zip(self.weights_, self.engines_, strict=True):
            if w == 0:
                continue
            part = w * _normalise(engine._scores_with_fallback(user_indices, user_items),
                                  self.normalization)
            total = part if total is None else total + part
        return total

    def _similarity_row(self, item_index):
        for _w, engine in sorted(zip(self.weights_, self.engines_, strict=True), key=lambda p: -p[0]):
            try:
                return engine._similarity_row(item_index)
            except NotImplementedError:
                continue
        return np.zeros(self.n_items_, dtype=np.float32)

    def _explain_contributions(self, row, item_index):
        return self._explain_matrix(row, np.array([item_index]))[:, 0]

    def _explain_matrix(self, row, items):
        # each component's contributions scaled to [-1, 1] per recommended item, then blended
        total = np.zeros((row.nnz, len(items)), dtype=np.float32)
        for w, engine in zip(self.weights_, self.engines_, strict=True):
            if w:
                c = np.asarray(engine._explain_matrix(row, items), np.float32).reshape(row.nnz, len(items))
                scale = np.abs(c).max(axis=0)
                total += w * np.divide(c, scale, out=np.zeros_like(c), where=scale > 0)
        return total
