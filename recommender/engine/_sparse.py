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
