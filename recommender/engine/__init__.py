"""Pure numpy/scipy/scikit-learn recommendation engines (no Django, no TensorFlow at import).

Every engine follows :class:`RecommenderBase`: ``fit(interactions)`` on a users x items
CSR matrix, then ``recommend`` / ``recommend_batch`` / ``similar_items`` / ``explain``,
``save(path)`` and ``load(path)``. Indices are matrix rows/columns, never database ids.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import build_engine
>>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype="float32")
>>> model = build_engine("itemknn", k=50).fit(X)
>>> model.recommend(0, X[0], n=1)[0].tolist()
[2]
"""

from __future__ import annotations

import importlib

from recommender.engine.als import ALS
from recommender.engine.base import NotFittedError, RecommenderBase
from recommender.engine.complements import Complements
from recommender.engine.content import ContentBased, ItemContentVectorizer
from recommender.engine.data import build_interaction_matrix
from recommender.engine.ease import EASE, TemporalEASE
from recommender.engine.hybrid import Hybrid
from recommender.engine.neighbors import Cooccurrence, ItemKNN
from recommender.engine.popular import Popular, Trending
from recommender.engine.similar import SimilarItems

__all__ = [
    "ALS", "EASE", "ENGINES", "Complements", "Cooccurrence", "ContentBased", "Hybrid",
    "ItemContentVectorizer", "ItemKNN", "NotFittedError", "Popular", "RecommenderBase", "SimilarItems",
    "TemporalEASE", "TwoTower", "Trending", "build_engine", "build_interaction_matrix", "get_engine_class",
]

#: Registry of engine names -> dotted class paths (the deep engine is imported lazily).
ENGINES = {
    "popular": "recommender.engine.popular.Popular",
    "trending": "recommender.engine.popular.Trending",
    "itemknn": "recommender.engine.neighbors.ItemKNN",
    "cooccurrence": "recommender.engine.neighbors.Cooccurrence",
    "similar": "recommender.engine.similar.SimilarItems",
    "complements": "recommender.engine.complements.Complements",
    "ease": "recommender.engine.ease.EASE",
    "temporal_ease": "recommender.engine.ease.TemporalEASE",
    "als": "recommender.engine.als.ALS",
    "content": "recommender.engine.content.ContentBased",
    "two_tower": "recommender.engine.deep.TwoTower",
    "sequence": "recommender.engine.sequence.SequenceModel",
    "hybrid": "recommender.engine.hybrid.Hybrid",
}


def get_engine_class(name: str) -> type[RecommenderBase]:
    """Return the engine class registered as ``name`` or given as a dotted path.

    Parameters
    ----------
    name : str
        A key of :data:`ENGINES` (case-insensitive) or ``"package.module.Class"``.

    Returns
    -------
    type
        A subclass of :class:`RecommenderBase`.
    """
    path = ENGINES.get(str(name).lower(), name)
    module, _, cls_name = str(path).rpartition(".")
    if not module:
        raise ValueError(f"Unknown engine {name!r}; choose one of {sorted(ENGINES)} "
                         "or give a dotted class path.")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"Cannot import engine {name!r} ({path}): {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, RecommenderBase)):
        raise ValueError(f"{path} is not a RecommenderBase subclass.")
    return cls


def build_engine(name: str, **params) -> RecommenderBase:
    """Instantiate the engine registered as ``name`` with keyword hyperparameters."""
    return get_engine_class(name)(**params)


def __getattr__(name: str):
    # TwoTower lives in the deep module; importing it does not import TensorFlow either,
    # but keep it lazy so ``import recommender.engine`` stays light.
    if name == "TwoTower":
        return get_engine_class("two_tower")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
