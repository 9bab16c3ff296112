"""Content-based engine: TF-IDF over item texts and categorical fields (scikit-learn).

Latin text is split into words; Chinese/Japanese/Korean text, which has no spaces, is cut
into character 1-2-grams, so no segmenter is needed. Categorical fields (category, brand)
become one token per value and tags one token per tag. A user's profile is the weighted
sum of the vectors of the items they touched; items nobody interacted with yet get scores
too (cold start).

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import ContentBased
>>> items = {"title": ["红色 T恤 cotton", "蓝色 T恤 cotton", "无线耳机 earbuds"],
...          "category": ["服装", "服装", "电子产品"]}
>>> X = sp.csr_matrix([[1, 0, 0], [0, 0, 1]], dtype="float32")
>>> ContentBased().fit(X, item_features=items).recommend(0, X[0], n=1)[0].tolist()
[1]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from recommender.engine.base import RecommenderBase, check_param

__all__ = ["ContentBased", "ItemContentVectorizer"]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SPLIT_TAGS = re.compile(r"[,;|，；、]+")

#: Fields treated as one token per value (or per tag) rather than free text.
CATEGORICAL_FIELDS = ("category", "brand")
LIST_FIELDS = ("tags",)
DEFAULT_FIELD_WEIGHTS = {"title": 1.0, "description": 0.5, "category": 0.7, "brand": 0.5,
                         "tags": 0.7}


def mixed_analyzer(text: str) -> list[str]:
    """Words of Latin-script text plus character 1-2-grams of CJK runs."""
    text = text.lower()
    tokens = []
    for match in _CJK.finditer(text):
        run = match.group()
        tokens.extend(run)
        tokens.extend(run[i:i + 2] for i in range(len(run) - 1))
    for word in _WORD.findall(_CJK.sub(" ", text)):
        if len(word) > 1 or word.isdigit():
            tokens.append(word)
    return tokens


def value_analyzer(text: str) -> list[str]:
    """A categorical value as one token, plus its parents for paths like ``a > b``."""
    parts = [p.strip().lower() for p in re.split(r"\s*[>/]\s*", text) if p.strip()]
    return [" > ".join(parts[:i + 1]) for i in range(len(parts))]


def tags_analyzer(text: str) -> list[str]:
    """Comma/semicolon/pipe separated tags, one token each."""
    return [t.strip().lower() for t in _SPLIT_TAGS.split(text) if t.strip()]


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    return str(value)


class ItemContentVectorizer:
    """Turn item fields into one L2-normalised sparse TF-IDF matrix (items x features).

    Parameters
    ----------
    field_weights : dict, optional
        Relative weight of each field (default :data:`DEFAULT_FIELD_WEIGHTS`; other
        fields get 0.5).
    min_df : int, default 1
        Ignore terms present in fewer items.
    max_features : int or None, default 200000
        Vocabulary cap per field.
    """

    def __init__(self, *, field_weights: dict | None = None, min_df: int = 1,
                 max_features: int | None = 200_000):
        self.field_weights = field_weights
        self.min_df = min_df
        self.max_features = max_features

    @staticmethod
    def _fields(item_features) -> dict[str, list[str]]:
        if isinstance(item_features, Mapping):
            fields = {k: [_as_text(v) for v in vals] for k, vals in item_features.items()
                      if k not in ("item_ids", "item_id", "id")}
        elif isinstance(item_features, Sequence) and not isinstance(item_features, str):
            fields = {"title": [_as_text(v) for v in item_features]}
        else:
            raise ValueError("item_features must be a dict of field -> list of strings, a "
                             f"list of strings or a sparse matrix; got {type(item_features)}.")
        lengths = {len(v) for v in fields.values()}
        if len(lengths) > 1:
            raise ValueError(f"item_features fields have different lengths: {sorted(lengths)}.")
        return fields

    def fit_transform(self, item_features) -> sp.csr_matrix:
        """Learn the vocabularies and return the item matrix."""
        weights = DEFAULT_FIELD_WEIGHTS | (self.field_weights or {})
        self.vectorizers_ = {}
        blocks = []
        for name, texts in self._fields(item_features).items():
            analyzer = (value_analyzer if name in CATEGORICAL_FIELDS else
                        tags_analyzer if name in LIST_FIELDS else mixed_analyzer)
            vec = TfidfVectorizer(analyzer=analyzer, min_df=self.min_df,
                                  max_features=self.max_features, sublinear_tf=True,
                                  dtype=np.float32)
            try:
                M = vec.fit_transform(texts)
            except ValueError:  # empty vocabulary (field blank everywhere)
                continue
            self.vectorizers_[name] = vec
            blocks.append(M * np.float32(weights.get(name, 0.5)))
        return self._stack(blocks, len(next(iter(self._fields(item_features).values()), [])))

    def transform(self, item_features) -> sp.csr_matrix:
        """Vectorise (new) items with the learned vocabularies."""
        fields = self._fields(item_features)
        weights = DEFAULT_FIELD_WEIGHTS | (self.field_weights or {})
        n = len(next(iter(fields.values()), []))
        blocks = [vec.transform(fields.get(name, [""] * n)) * np.float32(weights.get(name, 0.5))
                  for name, vec in self.vectorizers_.items()]
        return self._stack(blocks, n)

    @staticmethod
    def _stack(blocks, n) -> sp.csr_matrix:
        if not blocks:
            return sp.csr_matrix((n, 0), dtype=np.float32)
        return sp.csr_matrix(normalize(sp.hstack(blocks, format="csr"), norm="l2"),
                             dtype=np.float32)


def item_feature_matrix(item_features, n_items: int, field_weights=None, min_df: int = 1):
    """Return ``(features, vectorizer or None)`` for sparse/dense/dict/list inputs."""
    if item_features is None:
        raise ValueError("item_features is required: a dict of field -> list of strings "
                         "(title, description, category, tags, brand) or a matrix.")
    if sp.issparse(item_features) or isinstance(item_features, np.ndarray):
        F = sp.csr_matrix(normalize(sp.csr_matrix(item_features, dtype=np.float32)))
        vec = None
    else:
        vec = ItemContentVectorizer(field_weights=field_weights, min_df=min_df)
        F = vec.fit_transform(item_features)
    if F.shape[0] != n_items:
        raise ValueError(f"item_features describes {F.shape[0]} items but interactions have "
                         f"{n_items} item columns.")
    return F, vec


class ContentBased(RecommenderBase):
    """Recommend items whose content resembles what the user interacted with.

    Parameters
    ----------
    field_weights : dict or None, default None
        Relative weight of each text field (see :class:`ItemContentVectorizer`).
    min_df : int, default 1
        Ignore terms present in fewer items.
    normalize_profile : bool, default True
        Divide each user's weights by their sum so heavy users do not dominate.
    popularity_weight : float, default 0.0
        Adds ``popularity_weight * log1p(item popularity) / log1p(max popularity)``
        to break ties between equally similar items (0 keeps pure content).
    """

    handles_cold_items = True

    def __init__(self, *, field_weights: dict | None = None, min_df: int = 1,
                 normalize_profile: bool = True, popularity_weight: float = 0.0):
        self.field_weights = field_weights
        self.min_df = min_df
        self.normalize_profile = normalize_profile
        self.popularity_weight = popularity_weight

    def _validate_params(self):
        check_param("min_df", self.min_df, Integral, 1)
        check_param("normalize_profile", self.normalize_profile, bool)
        check_param("popularity_weight", self.popularity_weight, Real, 0)
        if self.field_weights is not None and not isinstance(self.field_weights, dict):
            raise ValueError(f"field_weights must be a dict or None; got {self.field_weights!r}.")

    def _fit(self, X, item_features=None, **kwargs):
        F, vec = item_feature_matrix(item_features, self.n_items_, self.field_weights,
                                     self.min_df)
        self.item_vectors_ = F
        self._item_vectors_t = None
        self.vectorizer_ = vec
        pop = np.log1p(self.item_popularity_.astype(np.float64))
        self.prior_ = (pop / max(pop.max(), 1e-12)).astype(np.float32)

    def _score_block(self, user_indices, user_items):
        R = user_items
        if self.normalize_profile:
            sums = np.asarray(abs(R).sum(axis=1)).ravel()
            R = sp.diags(1.0 / np.maximum(sums, 1e-12)).astype(np.float32) @ R
        profiles = R @ self.item_vectors_
        scores = (profiles @ self._vectors_t()).toarray()
        if self.popularity_weight:
            scores += self.popularity_weight * self.prior_
        return scores

    def _vectors_t(self) -> sp.csr_matrix:
        """Cached CSR transpose of the item vectors (derived, so not saved)."""
        cached = getattr(self, "_item_vectors_t", None)
        if cached is None or cached.shape[1] != self.item_vectors_.shape[0]:
            cached = self._item_vectors_t = sp.csr_matrix(self.item_vectors_.T)
        return cached

    def _similarity_row(self, item_index):
        return (self.item_vectors_[item_index] @ self._vectors_t()).toarray().ravel()

    def _explain_contributions(self, row, item_index):
        sims = (self.item_vectors_[row.indices] @ self.item_vectors_[item_index].T)
        return row.data * sims.toarray().ravel()

    def _explain_matrix(self, row, items):
        sims = (self.item_vectors_[row.indices] @ self.item_vectors_[items].T).toarray()
        return row.data[:, None] * sims
