"""Block-wise top-k on sparse similarity matrices against a brute-force dense reference.

The fast path never densifies a row: it pre-filters long rows with chunk maxima and cuts
them to ``k`` in padded groups, so these tests aim at its edges: ties, negative and zero
values, empty rows, rows with fewer than ``k`` entries, rows long enough for the
pre-filter (in sorted order too, its worst case), blocks of one row, and the diagonal.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import Cooccurrence, ItemKNN
from recommender.engine._sparse import (
    blockwise_topk,
    cosine_neighbours,
    gram_row_nnz,
    gram_topk,
    topk_csr_rows,
)


def random_matrix(seed: int, n_rows: int = 60, n_cols: int = 80, ties: bool = True) -> np.ndarray:
    """Dense float32 matrix whose rows range from empty to full; small integer values
    (ties, negatives) or continuous ones."""
    rng = np.random.default_rng(seed)
    density = rng.permutation(np.linspace(0.0, 1.0, n_rows))[:, None]
    mask = rng.random((n_rows, n_cols)) < density
    values = rng.integers(-3, 6, (n_rows, n_cols)) if ties else rng.normal(size=(n_rows, n_cols))
    return (mask * values).astype(np.float32)


def assert_topk(S: sp.csr_matrix, D: np.ndarray, k: int, exclude_diagonal: bool = True,
                start: int = 0):
    """``S`` holds, in every row, ``k`` of the largest positive entries of ``D`` (any of
    them where values tie) at their true values, sorted by column, diagonal excluded."""
    assert S.shape == D.shape and S.dtype == np.float32 and S.has_sorted_indices
    for i in range(D.shape[0]):
        cols = S.indices[S.indptr[i]:S.indptr[i + 1]]
        vals = S.data[S.indptr[i]:S.indptr[i + 1]]
        allowed = D[i] > 0
        if exclude_diagonal and start + i < D.shape[1]:
            allowed[start + i] = False
        assert np.all(allowed[cols]), f"row {i}: kept a non-positive or diagonal entry"
        np.testing.assert_array_equal(vals, D[i, cols])
        expected = np.sort(D[i, allowed])[::-1][:k]
        np.testing.assert_array_equal(np.sort(vals)[::-1], expected, err_msg=f"row {i}")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 10, 200])
@pytest.mark.parametrize("ties", [True, False])
def test_topk_csr_rows_matches_dense_reference(seed, k, ties):
    D = random_matrix(seed, ties=ties)
    P = np.where(D > 0, D, 0)  # topk_csr_rows expects positive values only
    S = topk_csr_rows(sp.csr_matrix(P), k)  # a copy of P: the input is consumed
    S.sort_indices()
    assert_topk(S, P, k, exclude_diagonal=False)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_prefilter_is_safe_when_rows_are_sorted_by_value(order):
    """In a sorted row the top entries crowd into the same few pieces, the worst case of
    the chunk-maxima pre-filter: its floor must still let the true top ``k`` through."""
    rng = np.random.default_rng(0)
    values = np.sort(rng.random((5, 500)).astype(np.float32) + 0.01, axis=1)
    if order == "descending":
        values = values[:, ::-1]
    cols = np.tile(np.arange(500), 5)
    S = sp.csr_matrix((values.ravel().copy(), cols, np.arange(0, 2501, 500)), shape=(5, 500))
    S = topk_csr_rows(S, 7, chunks_per_k=4)
    S.sort_indices()
    assert_topk(S, values, 7, exclude_diagonal=False)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("block_nnz", [1, 50, 10**6])
@pytest.mark.parametrize("shape", [(60, 80), (80, 60), (60, 60)])
@pytest.mark.parametrize("threads", [1, 3])
def test_blockwise_topk_matches_dense_reference(dense, block_nnz, shape, threads):
    D = random_matrix(7, *shape)

    def compute(start, stop):
        return D[start:stop] if dense else sp.csr_matrix(D[start:stop])

    row_nnz = np.count_nonzero(D, axis=1)
    for k in (1, 5, 100):
        S = blockwise_topk(compute, *shape, k, row_nnz=row_nnz, block_nnz=block_nnz,
                           threads=threads)
        assert_topk(S, D, k)
    assert_topk(blockwise_topk(compute, *shape, 5, exclude_diagonal=False), D, 5,
                exclude_diagonal=False)


def test_blockwise_topk_of_no_rows_is_empty():
    S = blockwise_topk(lambda start, stop: np.zeros((stop - start, 4)), 0, 4, 3)
    assert S.shape == (0, 4) and S.nnz == 0


def interactions(seed: int = 3, n_users: int = 300, n_items: int = 50) -> sp.csr_matrix:
    """Skewed users x items weights (a few popular items), with an unused item."""
    rng = np.random.default_rng(seed)
    popularity = np.linspace(1.0, 0.02, n_items) ** 2
    X = (rng.random((n_users, n_items)) < popularity) * rng.integers(1, 4, (n_users, n_items))
    X[:, -1] = 0
    return sp.csr_matrix(X.astype(np.float32))


def test_gram_row_nnz_bounds_the_product():
    X = interactions()
    bound = gram_row_nnz(X)
    assert np.all(bound >= (X.T @ X).getnnz(axis=1)) and np.all(bound <= X.shape[1])


@pytest.mark.parametrize("block_nnz", [1, 200, 10**6])
def test_gram_topk_and_cosine_match_dense_reference(block_nnz):
    X = interactions()
    G = (X.T @ X).toarray()
    norms = np.outer(*2 * [np.linalg.norm(X.toarray(), axis=0)])
    cosine = np.divide(G, norms, out=np.zeros_like(G), where=norms > 0).astype(np.float32)

    def weigh(rows, cols, values):
        return values - 30.0 * (rows % 2)  # negatives appear and must be dropped
    shifted = np.where(G != 0, G - 30.0 * (np.arange(G.shape[0]) % 2)[:, None], 0)
    assert_topk(gram_topk(X, 4, weigh, block_nnz=block_nnz), shifted.astype(np.float32), 4)
    S = cosine_neighbours(X, 6, block_nnz=block_nnz)
    np.testing.assert_allclose(S.toarray()[S.toarray() > 0], cosine[S.toarray() > 0], rtol=1e-6)
    for i in range(X.shape[1]):
        got = np.sort(S.data[S.indptr[i]:S.indptr[i + 1]])[::-1]
        row = np.delete(cosine[i], i)
        np.testing.assert_allclose(got, np.sort(row[row > 0])[::-1][:6], rtol=1e-6)


@pytest.mark.parametrize("kind", ["jaccard", "cosine", "lift", "conditional", "count"])
def test_cooccurrence_matches_dense_formulas(kind):
    X = interactions()
    B = (X.toarray() > 0).astype(np.float64)
    C, c = B.T @ B, B.sum(axis=0)
    C[C < 2] = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = {"jaccard": C / (c[:, None] + c[None, :] - C),
                     "cosine": C / np.sqrt(np.outer(c, c)),
                     "lift": C * X.shape[0] / np.outer(c, c),
                     "conditional": C / c[:, None], "count": C}[kind]
    reference = np.nan_to_num(reference).astype(np.float32)
    S = Cooccurrence(k=5, similarity=kind, min_count=2).fit(X).similarity_
    np.testing.assert_allclose(S.data, reference[S.nonzero()], rtol=1e-6)
    for i in range(X.shape[1]):
        row = np.delete(reference[i], i)
        np.testing.assert_allclose(np.sort(S.data[S.indptr[i]:S.indptr[i + 1]])[::-1],
                                   np.sort(row[row > 0])[::-1][:5], rtol=1e-6)


def test_itemknn_shrinkage_matches_dense_formula():
    X = interactions()
    G = (X.T @ X).toarray()
    norms = np.linalg.norm(X.toarray(), axis=0)
    reference = (G / (np.outer(norms, norms) + 10.0)).astype(np.float32)
    S = ItemKNN(k=5, shrinkage=10.0).fit(X).similarity_
    np.testing.assert_allclose(S.data, reference[S.nonzero()], rtol=1e-6)
    for i in range(X.shape[1]):
        row = np.delete(reference[i], i)
        np.testing.assert_allclose(np.sort(S.data[S.indptr[i]:S.indptr[i + 1]])[::-1],
                                   np.sort(row[row > 0])[::-1][:5], rtol=1e-6)
