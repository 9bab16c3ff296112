"""Sparse helpers: block-wise top-K similarity matrices that never go dense in full."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from recommender.engine.base import MAX_BLOCK_CELLS, cpu_count

#: Non-zeros of the similarity matrix in flight at a time (over all threads' blocks).
#: Each one costs several arrays (value, column, row, float64 temporaries of the
#: normalisation: ~50 bytes), so a quarter of the dense cell budget stays near 100 MB;
#: larger blocks are no faster.
BLOCK_NNZ = MAX_BLOCK_CELLS // 4


def gram_row_nnz(X: sp.spmatrix) -> np.ndarray:
    """Upper bound on the non-zeros of every row of ``X.T @ X``.

    Row ``i`` of the product gets at most one entry per item of every user of item ``i``
    (and at most one per column), so this bounds the product's size before computing
    it. :func:`blockwise_topk` uses it to cut blocks of about equal size: rows of popular
    items are nearly dense, tail items' rows hold a few hundred entries.
    """
    X = sp.csr_matrix(X)
    per_user = np.diff(X.indptr).astype(np.float64)
    reach = np.bincount(X.indices, weights=np.repeat(per_user, np.diff(X.indptr)),
                        minlength=X.shape[1])
    return np.minimum(reach, X.shape[1]).astype(np.int64)


def _row_blocks(row_nnz: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive rows whose ``row_nnz`` add up to about ``budget``
    (at least one row each)."""
    ends = np.cumsum(row_nnz)
    start, n = 0, len(row_nnz)
    while start < n:
        before = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + budget, side="right")))
        yield start, min(stop, n)
        start = stop


def _positive_part(part, start: int, exclude_diagonal: bool) -> sp.csr_matrix:
    """``part`` (rows ``start:...`` of the full matrix) as float32 CSR with only its
    positive entries, off the diagonal if asked; only those can be kept as neighbours.

    Always a copy, which the top-k then edits in place: ``part`` may be the caller's.
    (Not ``part.astype``: that first sorts every row to sum duplicates, which products
    never have, and the sort would cost more than the whole selection.)
    """
    part = sp.csr_matrix(part)
    part = sp.csr_matrix((part.data.astype(np.float32), part.indices.copy(), part.indptr.copy()),
                         shape=part.shape)
    drop = part.data <= 0
    if exclude_diagonal:
        rows = np.repeat(np.arange(start, start + part.shape[0], dtype=part.indices.dtype),
                         np.diff(part.indptr))
        drop |= part.indices == rows
    part.data[drop] = 0.0
    part.eliminate_zeros()
    return part


def _keep_entries(S: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """``S`` (positive values, modified in place) with only the entries where ``keep``:
    zeroing the others and letting scipy compact them is cheaper than rebuilding."""
    S.data[~keep] = 0.0
    S.eliminate_zeros()
    return S


def _segment_positions(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """For the ragged segments ``starts[r] : starts[r] + lengths[r]`` of a flat array:
    each element's segment number, offset in its segment and flat position."""
    seg = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(len(seg)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return seg, offset, starts[seg] + offset


def _topk_of_long_rows(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                       k: int) -> np.ndarray:
    """Flat positions in ``data`` of the ``k`` largest of every segment (all > ``k``
    long, all values positive).

    Segments of similar length (same power of two) are padded with zeros into one dense
    ``rows x width`` array and partitioned together, so the work is linear in the
    segments' total length (at most twice it with the padding) and there is no Python
    loop per row, unlike densifying every row to the full number of columns.
    """
    width = 2 ** np.ceil(np.log2(lengths)).astype(np.int64)
    chosen = []
    for w in np.unique(width):
        rows = np.flatnonzero(width == w)
        seg, offset, flat = _segment_positions(starts[rows], lengths[rows])
        padded = np.zeros((len(rows), w), dtype=data.dtype)
        padded[seg, offset] = data[flat]
        top = np.argpartition(padded, w - k, axis=1)[:, w - k:]
        chosen.append((starts[rows][:, None] + top).ravel())
    return np.concatenate(chosen)


def _chunk_max_floors(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, k: int,
                      chunks: int) -> np.ndarray:
    """For every segment (each at least ``chunks`` long), a value that at least ``k`` of
    its entries reach: the ``k``-th largest of the maxima of ``chunks`` disjoint pieces.

    Those ``k`` maxima are ``k`` distinct entries, so the bound is safe whatever the
    order of the entries; with ``chunks`` well above ``k`` few of a row's top entries
    share a piece, so little more than ``k`` entries reach it. One ``reduceat`` over the
    data finds every maximum: the work is linear in the non-zeros.
    """
    bounds = starts[:, None] + lengths[:, None] * np.arange(chunks) // chunks
    ends = starts + lengths
    # Each segment's end is a cut too, so its last piece stops there; the maxima of the
    # gaps between segments are dropped. The last end would lie past the data, so it is
    # left out and its slot filled with any value before the reshape.
    cuts = np.column_stack([bounds, ends]).ravel()[:-1]
    maxima = np.append(np.maximum.reduceat(data[:ends[-1]], cuts), data[:1])
    maxima = maxima.reshape(len(starts), chunks + 1)[:, :chunks]
    return np.partition(maxima, chunks - k, axis=1)[:, chunks - k]


def _drop_below_floors(S: sp.csr_matrix, k: int, chunks: int) -> sp.csr_matrix:
    """``S`` without entries that cannot be in their row's top ``k`` (all values
    positive), by :func:`_chunk_max_floors` on the rows longer than ``chunks``."""
    lengths = np.diff(S.indptr)
    long = np.flatnonzero(lengths >= chunks)
    if not len(long):
        return S
    floors = np.zeros(S.shape[0], dtype=S.data.dtype)
    floors[long] = _chunk_max_floors(S.data, S.indptr[long], lengths[long], k, chunks)
    return _keep_entries(S, S.data >= np.repeat(floors, lengths))


def topk_csr_rows(S: sp.csr_matrix, k: int, chunks_per_k: int = 4) -> sp.csr_matrix:
    """The ``k`` largest entries of every row of ``S`` (whose values are all positive);
    ``S`` is consumed (its arrays are reused).

    Rows with at most ``k`` entries are kept whole. The others are first cut to a few
    more than ``k`` candidates by a cheap linear pass (:func:`_drop_below_floors`), then
    to exactly ``k`` in bulk by :func:`_topk_of_long_rows`: the cost follows the
    non-zeros, not ``n_cols``, and has no Python loop per row.
    """
    S = _drop_below_floors(S, k, chunks_per_k * k)
    lengths = np.diff(S.indptr)
    long = np.flatnonzero(lengths > k)
    if not len(long):
        return S
    keep = np.repeat(lengths <= k, lengths)
    keep[_topk_of_long_rows(S.data, S.indptr[long], lengths[long], k)] = True
    return _keep_entries(S, keep)


def blockwise_topk(compute: Callable[[int, int], np.ndarray | sp.spmatrix], n_rows: int,
                   n_cols: int, k: int, exclude_diagonal: bool = True,
                   row_nnz: np.ndarray | None = None, block_nnz: int = BLOCK_NNZ,
                   threads: int | None = None) -> sp.csr_matrix:
    """Top-``k`` positive entries per row of a matrix computed a block of rows at a time.

    ``compute(start, stop)`` returns rows ``start:stop`` (dense, or sparse without
    duplicate entries) of the full ``n_rows x n_cols`` similarity matrix; only ``k``
    entries per row are kept, so memory stays ``O(n_rows * k)`` plus the blocks in
    flight. Blocks run on ``threads`` threads (default: every CPU; scipy's sparse
    product and numpy's selection release the GIL, so ``compute`` must be safe to call
    concurrently) and together hold about ``block_nnz`` entries according to
    ``row_nnz``, an upper bound on each row's non-zeros (default: dense rows;
    :func:`gram_row_nnz` for ``X.T @ X``). The top ``k`` is taken on each block's
    non-zeros only.
    """
    if row_nnz is None:
        row_nnz = np.full(n_rows, n_cols, dtype=np.int64)
    threads = threads or cpu_count()

    def block_topk(rows):
        start, stop = rows
        top = topk_csr_rows(_positive_part(compute(start, stop), start, exclude_diagonal), k)
        top.sort_indices()  # here, on the threads, rather than once on the whole result
        return top

    with ThreadPoolExecutor(threads) as pool:
        blocks = list(pool.map(block_topk, _row_blocks(row_nnz, max(1, block_nnz // threads))))
    S = sp.vstack(blocks, format="csr", dtype=np.float32) if blocks else \
        sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    S.sort_indices()
    return S


def column_norms(X: sp.spmatrix) -> np.ndarray:
    """Euclidean norm of every column of ``X``."""
    return np.sqrt(np.asarray(X.multiply(X).sum(axis=0), dtype=np.float64).ravel())


def scale_columns(X: sp.spmatrix, factors: np.ndarray) -> sp.csr_matrix:
    """``X @ diag(factors)`` as float64 CSR, scaling a copy of the non-zeros directly (a
    product with a diagonal matrix would cost a full sparse matmul)."""
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.data *= np.asarray(factors, dtype=np.float64)[X.indices]
    return X


def safe_inverse(values: np.ndarray) -> np.ndarray:
    """``1 / values`` with 0 where a value is 0."""
    values = np.asarray(values, dtype=np.float64)
    return np.divide(1.0, values, out=np.zeros_like(values), where=values != 0)


def gram_topk(X: sp.spmatrix, k: int,
              weigh: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
              block_nnz: int = BLOCK_NNZ) -> sp.csr_matrix:
    """Top-``k`` positive off-diagonal entries per row of the item-item matrix ``X.T @ X``.

    ``weigh(rows, cols, values)`` turns the products at the non-zeros (``rows`` and
    ``cols`` are item indices) into similarities, e.g. normalised co-counts; by default
    the products are kept. Only non-zeros are ever formed, a block of rows at a time (see
    :func:`blockwise_topk`), so memory stays ``O(n_items * k)`` plus the blocks in
    flight.
    """
    X = sp.csr_matrix(X)
    XT = sp.csr_matrix(X.T)

    def compute(start, stop):
        block = XT[start:stop] @ X
        if weigh is None:
            return block
        rows = np.repeat(np.arange(start, stop), np.diff(block.indptr))
        return sp.csr_matrix((weigh(rows, block.indices, block.data), block.indices,
                              block.indptr), shape=block.shape)

    n = X.shape[1]
    return blockwise_topk(compute, n, n, k, row_nnz=gram_row_nnz(X), block_nnz=block_nnz)


def cosine_neighbours(X: sp.spmatrix, k: int,
                      block_nnz: int = BLOCK_NNZ) -> sp.csr_matrix:
    """Each column's ``k`` most similar other columns, by cosine of the columns as given
    (binarise ``X`` first for co-occurrence).

    Returns an ``n_cols x n_cols`` CSR matrix whose row ``i`` holds, at the neighbours of
    item ``i``, their cosine similarity (> 0); the diagonal is never kept. Memory stays
    ``O(n_cols * k)`` plus the blocks in flight (see :func:`gram_topk`).
    """
    return gram_topk(scale_columns(X, safe_inverse(column_norms(X))), k, block_nnz=block_nnz)


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
