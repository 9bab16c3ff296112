"""Sparse helpers: block-wise top-K similarity matrices that never go dense in full."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import MAX_BLOCK_CELLS


def topk_dense_rows(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row of ``block``."""
    k = min(k, block.shape[1])
    if k == 0:
        return np.zeros((block.shape[0], 0), np.int64), np.zeros((block.shape[0], 0))
    idx = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else \
        np.tile(np.arange(block.shape[1]), (block.shape[0], 1))
    vals = np.take_along_axis(block, idx, axis=1)
    return idx, vals


def blockwise_topk(compute: Callable[[int, int], np.ndarray | sp.spmatrix], n_rows: int,
                   n_cols: int, k: int, exclude_diagonal: bool = True,
                   block_cells: int = MAX_BLOCK_CELLS) -> sp.csr_matrix:
    """Top-``k`` positive entries per row of a matrix computed a block of rows at a time.

    ``compute(start, stop)`` returns rows ``start:stop`` (dense or sparse) of the full
    ``n_rows x n_cols`` similarity matrix; only ``k`` entries per row are kept, so memory
    stays ``O(n_rows * k)`` plus one block.
    """
    block = max(1, block_cells // max(n_cols, 1))
    indptr = [np.zeros(1, dtype=np.int64)]
    all_idx, all_val = [], []
    total = 0
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        part = compute(start, stop)
        dense = part.toarray() if sp.issparse(part) else np.asarray(part)
        dense = dense.astype(np.float32, copy=False)
        if exclude_diagonal:
            r = np.arange(stop - start)
            c = np.arange(start, stop)
            ok = c < n_cols
            dense[r[ok], c[ok]] = 0.0
        idx, vals = topk_dense_rows(dense, k)
        keep = vals > 0
        counts = keep.sum(axis=1)
        all_idx.append(idx[keep])
        all_val.append(vals[keep])
        indptr.append(total + np.cumsum(counts))
        total += int(counts.sum())
    S = sp.csr_matrix((np.concatenate(all_val) if all_val else np.zeros(0, np.float32),
                       np.concatenate(all_idx) if all_idx else np.zeros(0, np.int64),
                       np.concatenate(indptr)), shape=(n_rows, n_cols), dtype=np.float32)
    S.sort_indices()
    return S


def column_norms(X: sp.spmatrix) -> np.ndarray:
    """Euclidean norm of every column of ``X``."""
    return np.sqrt(np.asarray(X.multiply(X).sum(axis=0), dtype=np.float64).ravel())


def scale_columns(X: sp.spmatrix, factors: np.ndarray) -> sp.csr_matrix:
    """``X @ diag(factors)`` as CSR."""
    return sp.csr_matrix(X @ sp.diags(np.asarray(factors, dtype=np.float64)))


def scale_rows(X: sp.spmatrix, factors: np.ndarray) -> sp.csr_matrix:
    """``diag(factors) @ X`` as CSR."""
    return sp.csr_matrix(sp.diags(np.asarray(factors, dtype=np.float64)) @ X)


def safe_inverse(values: np.ndarray) -> np.ndarray:
    """``1 / values`` with 0 where a value is 0."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    nz = values != 0
    out[nz] = 1.0 / values[nz]
    return out


def cosine_neighbours(X: sp.spmatrix, k: int,
                      block_cells: int = MAX_BLOCK_CELLS) -> sp.csr_matrix:
    """Each column's ``k`` most similar other columns, by cosine of the columns as given
    (binarise ``X`` first for co-occurrence).

    Returns an ``n_cols x n_cols`` CSR matrix whose row ``i`` holds, at the neighbours of
    item ``i``, their cosine similarity (> 0); the diagonal is never kept. Memory stays
    ``O(n_cols * k)`` plus one block (see :func:`blockwise_topk`).
    """
    Xc = scale_columns(X, safe_inverse(column_norms(X)))
    XT = sp.csr_matrix(Xc.T)
    return blockwise_topk(lambda start, stop: XT[start:stop] @ Xc, X.shape[1], X.shape[1],
                          k, block_cells=block_cells)


def neighbourhood_ridge(X: sp.spmatrix, neighbours: sp.csr_matrix, regularization: float,
                        targets: sp.spmatrix | None = None) -> sp.csr_matrix:
    """Sparse item-item regression weights: EASE restricted to each item's neighbours.

    For every item ``j`` with neighbours ``N(j)`` (row ``j`` of ``neighbours``), solves
    the ridge regression of column ``j`` of ``targets`` (default: ``X``) on the
    neighbours' columns of ``X``,
    ``w = (X_N^T X_N + regularization * I)^-1 X_N^T y_j``, and stores it as column ``j``
    of the result (``W[i, j]`` for ``i`` in ``N(j)``; the diagonal stays 0, as in EASE).
    Both matrices are used as given (binarise them first for EASE's 0/1 data). Costs one
    ``k x k`` solve per item, so it scales to catalogs where EASE's dense ``n x n``
    inverse does not; with ``k`` around 100 it scores like EASE on the benchmark
    datasets (docs/benchmarks-engine.md). With ``targets`` = whole histories and ``X``
    their earlier part it is a neighbourhood version of TemporalEASE.
    """
    Xc = sp.csc_matrix(X, dtype=np.float64)
    Yc = Xc if targets is None else sp.csc_matrix(targets, dtype=np.float64)
    N = sp.csr_matrix(neighbours)
    N.sort_indices()
    n = N.shape[0]
    rows, cols, vals = [], [], []
    for j in range(n):
        nb = N.indices[N.indptr[j]:N.indptr[j + 1]]
        if len(nb) == 0:
            continue
        sub = Xc[:, nb]
        lhs = (sub.T @ sub).toarray()
        lhs[np.diag_indices(len(nb))] += regularization
        rhs = (sub.T @ Yc[:, [j]]).toarray().ravel()
        vals.append(np.linalg.solve(lhs, rhs))
        rows.append(nb)
        cols.append(np.full(len(nb), j))
    if not vals:
        return sp.csr_matrix((n, n), dtype=np.float32)
    W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n), dtype=np.float32)
    W.sort_indices()
    return W
