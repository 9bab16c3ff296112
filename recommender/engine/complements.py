""""Customers also bought": complements bought in the same basket, ranked by significance.

A basket is one order or visit (the training pipeline groups purchases by anonymous session,
or by user and day; see ``recommender.training.dataset.basket_matrix``). For items ``i``
and ``j`` bought in ``c_i`` and ``c_j`` of ``N`` baskets, ``c_ij`` of them together, a pair
counts only when ``c_ij >= min_support`` and the items co-occur more often than chance
(``c_ij N > c_i c_j``); it is then scored by

* ``"llr"``: Dunning's log-likelihood ratio G² of the 2x2 basket table (how surely the
  items go together, which favours pairs seen often), or
* ``"lift"``: ``c_ij N / (c_i c_j)`` (how much more often than chance, which favours
  rare pairs).

Near-duplicates of an item are never its complements:

* other colours of the same product (titles equal once colour words are removed);
* items whose title vectors have a cosine of at least ``duplicate_similarity``;
* other designs of the same product line: items of the same category whose titles start
  with the same ``line_words`` words once colour words, numbers and a leading "set of",
  "pack of" (and the like) are removed ("Hand Warmer Owl Design" and "Hand Warmer Red
  Love Heart"; Latin-script titles only).

Of several colours or designs of one complement, only the best-scored one is kept.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import Complements
>>> baskets = sp.csr_matrix([[1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype="float32")
>>> items = {"title": ["Teapot", "Tea Cup", "Alarm Clock Red", "Alarm Clock Blue"]}
>>> model = Complements(min_support=2).fit(baskets, item_features=items)
>>> model.similar_items(0, n=3)[0].tolist()
[1]
"""

from __future__ import annotations

import re
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from recommender.engine._sparse import gram_topk
from recommender.engine.base import check_param
from recommender.engine.content import ItemContentVectorizer, mixed_analyzer
from recommender.engine.neighbors import ItemItemRecommender
from recommender.engine.similar import mask_to_pattern

__all__ = ["COLOUR_WORDS", "Complements", "colour_free_keys", "log_likelihood_ratio",
           "product_line_keys"]

#: Words that name a colour (or a finish) in titles: English and Chinese.
COLOUR_WORDS = (
    "red", "blue", "green", "yellow", "orange", "purple", "violet", "pink", "black", "white",
    "grey", "gray", "brown", "beige", "ivory", "cream", "gold", "golden", "silver", "copper",
    "bronze", "turquoise", "teal", "aqua", "navy", "lilac", "lavender", "mint", "peach", "coral",
    "chocolate", "burgundy", "magenta", "fuchsia", "khaki", "natural", "clear", "multicolour",
    "multicolor", "pastel", "dark", "light", "bright", "pale", "colour", "color",
    "红色", "蓝色", "绿色", "黄色", "橙色", "紫色", "粉色", "黑色", "白色", "灰色", "棕色", "米色",
    "金色", "银色", "红", "蓝", "绿", "黄", "橙", "紫", "粉", "黑", "白", "灰", "棕",
)
_LATIN = re.compile(r"[a-z\u00c0-\u024f]+")  # Latin-script words of a lowercased title
_COLOUR_RE = re.compile(
    "|".join(sorted((re.escape(w) for w in COLOUR_WORDS if not w.isascii()), key=len, reverse=True)))
_COLOURS_ASCII = frozenset(w for w in COLOUR_WORDS if w.isascii())


def colour_free_keys(titles) -> np.ndarray:
    """One integer per title: equal for titles that differ only by colour words (-1: no title)."""
    keys = []
    for title in titles:
        text = _COLOUR_RE.sub(" ", str(title or "").lower())
        words = [w for w in mixed_analyzer(text) if w not in _COLOURS_ASCII]
        keys.append(" ".join(words))
    return _codes(keys)


def _codes(keys) -> np.ndarray:
    """One integer per string key, equal for equal keys; -1 for an empty key."""
    _, codes = np.unique(keys, return_inverse=True)
    codes = codes.astype(np.int64)
    codes[np.array([not k for k in keys], dtype=bool)] = -1
    return codes


#: Leading words of a title that name a quantity, not the product ("Set of 3 Cake Tins").
_QUANTITY_WORDS = frozenset(("set", "sets", "pack", "packs", "box", "boxes", "bag", "bags", "tin",
                             "tins", "jar", "jars", "roll", "rolls", "pair", "pairs", "string",
                             "strings", "bundle", "bundles", "sheet", "sheets", "card", "cards"))


def product_line_keys(titles, categories=None, words: int = 2) -> np.ndarray:
    """One integer per title: equal for titles of one category that start with the same
    ``words`` Latin-script words once colour words, numbers and a leading quantity phrase
    ("set of 3", "pack of 12") are removed; -1 where a title has fewer such words (or none:
    CJK titles), or ``words`` is 0."""
    return _codes([line_key(title, None if categories is None else categories[position], words) or ""
                   for position, title in enumerate(titles)])


def line_key(title, category=None, words: int = 2) -> str | None:
    """The product line of one title, as a string (see :func:`product_line_keys`); None
    where the title has fewer than ``words`` such words, or ``words`` is 0."""
    found = [w for w in _LATIN.findall(str(title or "").lower()) if w not in _COLOURS_ASCII]
    if len(found) > 1 and found[0] in _QUANTITY_WORDS and found[1] == "of":
        found = found[2:]
    if not words or len(found) < words:
        return None
    return str(category or "").lower() + "\x00" + " ".join(found[:words])


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.maximum(x, 1e-300)), 0.0)


def log_likelihood_ratio(k11, k12, k21, k22) -> np.ndarray:
    """Dunning's G² of 2x2 tables (arrays of cell counts), as in Mahout's ``LogLikelihood``."""
    k11, k12, k21, k22 = (np.asarray(a, dtype=np.float64) for a in (k11, k12, k21, k22))
    row = _xlogx(k11 + k12) + _xlogx(k21 + k22)
    col = _xlogx(k11 + k21) + _xlogx(k12 + k22)
    total = _xlogx(k11 + k12 + k21 + k22)
    cells = _xlogx(k11) + _xlogx(k12) + _xlogx(k21) + _xlogx(k22)
    return np.maximum(2.0 * (cells + total - row - col), 0.0)


class Complements(ItemItemRecommender):
    """Items bought in the same baskets more often than chance, near-duplicates excluded.

    Parameters
    ----------
    k : int, default 100
        Complements kept per item (>= 1).
    measure : {"llr", "lift"}, default "llr"
        Score of a pair (see the module docstring).
    min_support : int, default 3
        Baskets that must hold both items before the pair counts (>= 1).
    duplicate_similarity : float, default 0.8
        Pairs whose title cosine reaches this are near-duplicates, in (0, 1]; 1 keeps
        only the colour rule.
    line_words : int, default 2
        Leading title words that name a product line (see the module docstring); 0 turns
        the product-line rule off.

    Notes
    -----
    ``fit`` takes ``baskets=``: a baskets x items matrix (weights are binarised) and
    ``basket_users=``: the interaction-matrix row of each basket's buyer, or -1 for
    anonymous ones. Without ``baskets`` each user's row of ``interactions`` is one basket.
    """

    fit_inputs = ("baskets",)

    def __init__(self, *, k: int = 100, measure: str = "llr", min_support: int = 3,
                 duplicate_similarity: float = 0.8, line_words: int = 2):
        self.k = k
        self.measure = measure
        self.min_support = min_support
        self.duplicate_similarity = duplicate_similarity
        self.line_words = line_words

    def _validate_params(self):
        check_param("k", self.k, Integral, 1)
        check_param("measure", self.measure, options={"llr", "lift"})
        check_param("min_support", self.min_support, Integral, 1)
        check_param("duplicate_similarity", self.duplicate_similarity, Real, 0, 1, low_open=True)
        check_param("line_words", self.line_words, Integral, 0)

    def _fit(self, X, item_features=None, baskets=None, basket_users=None, **kwargs):
        n = self.n_items_
        B = X if baskets is None else mask_to_pattern(baskets, basket_users, X)
        if B.shape[1] != n:
            raise ValueError(f"baskets must have {n} item columns; got {B.shape[1]}.")
        B = B.copy()
        B.data[:] = 1.0
        counts = np.asarray(B.getnnz(axis=0), dtype=np.float64)
        total = float(max(B.shape[0], 1))
        self.n_baskets_ = int(B.shape[0])
        titles = _column(item_features, "title", n)
        keys = colour_free_keys(titles) if titles is not None else None
        lines = None
        if titles is not None and self.line_words:
            lines = product_line_keys(titles, _column(item_features, "category", n), self.line_words)
            if not (lines >= 0).any():
                lines = None
        T = None
        if titles is not None and self.duplicate_similarity < 1:
            try:
                T = ItemContentVectorizer().fit_transform({"title": titles})
                T = sp.csr_matrix(normalize(T), dtype=np.float32)
            except ValueError:
                T = None
        support, measure, threshold = self.min_support, self.measure, self.duplicate_similarity

        def score(rows, cols, co):
            co = co.astype(np.float64)
            ci, cj = counts[rows], counts[cols]
            ok = (co >= support) & (co * total > ci * cj)
            if keys is not None:
                ok &= ~((keys[rows] == keys[cols]) & (keys[rows] >= 0))
            if lines is not None:
                ok &= ~((lines[rows] == lines[cols]) & (lines[rows] >= 0))
            if T is not None and ok.any():
                pos = np.flatnonzero(ok)
                same = np.asarray(T[rows[pos]].multiply(T[cols[pos]]).sum(axis=1)).ravel()
                ok[pos[same >= threshold]] = False
            out = np.zeros(len(co))
            if not ok.any():
                return out
            c, a, b = co[ok], ci[ok], cj[ok]
            if measure == "lift":
                out[ok] = c * total / (a * b)
            else:
                out[ok] = log_likelihood_ratio(c, a - c, b - c, total - a - b + c)
            return out

        S = gram_topk(B, self.k, score)
        if keys is not None:
            S = _one_per_key(S, keys)
        if lines is not None:
            S = _one_per_key(S, lines)
        self.similarity_ = S


def _one_per_key(S: sp.csr_matrix, keys: np.ndarray) -> sp.csr_matrix:
    """``S`` with, in each row, only the best entry of each key (one colour of a product, or
    one design of a product line); entries whose key is -1 are all kept."""
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    k = keys[S.indices]
    order = np.lexsort((-S.data, k, rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (rows[order][1:] != rows[order][:-1]) | (k[order][1:] != k[order][:-1])
    keep = np.zeros(len(order), dtype=bool)
    keep[order[first | (k[order] < 0)]] = True
    S = S.copy()
    S.data[~keep] = 0
    S.eliminate_zeros()
    return S


def _column(item_features, name, n):
    """The ``name`` field of ``item_features`` as ``n`` strings, or None. A plain list or
    tuple counts as the titles."""
    if isinstance(item_features, dict):
        values = item_features.get(name)
    elif isinstance(item_features, (list, tuple)) and name == "title":
        values = item_features
    else:
        values = None
    return [str(v or "") for v in values] if values is not None and len(values) == n else None
