"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with a vectorised conjugate-gradient solver.

Confidence ``c_ui = 1 + alpha * weight``; every half-iteration runs ``cg_steps`` conjugate
gradient steps (Takacs et al. 2011, as in ``implicit``) for a whole block of users at once,
so there is no Python loop per user. The work is memory-bound, so the layout is built for
the caches: rows are sorted by length (once per fit), a block stacks rows of one (padded)
length so their cells' factors form a dense ``(rows, length, k)`` array of about 1 MB that
is gathered once and stays in L2 through every CG pass, each pass being two batched
products over it. Blocks run on one thread per CPU (numpy releases the GIL inside them),
with BLAS held to one thread. Memory is ``O((n_users + n_items) * factors + nnz)`` plus
one block per thread; it scales to 1M users x 100k items and 10M interactions.

Example
-------
>>> import scipy.sparse as sp
>>> from recommender.engine import ALS
>>> X = sp.random(50, 20, density=0.2, format="csr", random_state=0)
>>> model = ALS(factors=8, iterations=5).fit(X)
>>> model.user_factors_.shape, model.item_factors_.shape
((50, 8), (20, 8))
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recommender.engine.base import RecommenderBase, check_param, cpu_count

__all__ = ["ALS"]

_BLOCK_VALUES = 262_144  # padded cells x factors float32 per block: ~1 MB, stays in L2
_MATMUL_MIN_LENGTH = 6  # shorter rows: einsum beats one tiny BLAS call per row
_CHUNK_ROWS = 65_536  # factor rows per chunk of Y^T Y and of the random start


class _Block(NamedTuple):
    """Rows ``start:start + len(lengths)`` (in layout order) padded to one length.

    ``cols`` and ``conf_m1`` are ``(rows, length)``: the other side's row of every cell
    and its ``c - 1 = alpha * weight``; padding cells repeat a column with ``conf_m1 = 0``
    and lie beyond ``lengths``, so they add nothing to any product.
    """

    start: int
    cols: np.ndarray
    conf_m1: np.ndarray
    lengths: np.ndarray


def _padded_lengths(lengths: np.ndarray) -> np.ndarray:
    """Row lengths rounded up to a coarse grid: exact up to 15, then at most 1/8 padding.

    Rows of one padded length are stacked as a dense ``(rows, length, k)`` array, so a
    handful of grid values (instead of every distinct length) keeps blocks full.
    """
    step = np.left_shift(1, np.maximum(np.log2(np.maximum(lengths, 1)).astype(int) - 3, 0))
    return -(-lengths // step) * step


def _row_order(lengths: np.ndarray) -> np.ndarray:
    """Rows by decreasing padded length: the layout order of a side.

    Longest first, so the last blocks a thread picks up are short ones.
    """
    return np.argsort(-_padded_lengths(lengths), kind="stable")


def _layout(X: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
    """``X`` with rows taken in ``users`` order and columns renumbered by ``items`` order.

    Its transpose is then the item side in layout order too, and the columns of every
    row come sorted, so gathers of the other side's factors run forward through memory.
    """
    renumbered = sp.csr_matrix((X.data, _inverse(items)[X.indices], X.indptr), shape=X.shape)
    C = renumbered[users]
    C.sort_indices()
    return C


def _blocks(C: sp.csr_matrix, alpha: float, k: int) -> list[_Block]:
    """Cut the rows of ``C`` (in layout order, see :func:`_row_order`) into blocks.

    A block holds consecutive rows of one padded length and about ``_BLOCK_VALUES``
    gathered floats, so every CG pass over it runs in cache; a longer row is a block
    alone. Empty rows still take their CG steps (on ``A0`` alone), as in ``implicit``.
    Built once per fit, so the index work is not repeated in every half-iteration. The
    blocks are views of two arrays for the whole side: freed at once, back to the OS.
    """
    lengths = np.diff(C.indptr)
    padded = _padded_lengths(lengths)
    bounds = np.flatnonzero(np.diff(padded)) + 1
    spans = []
    for first, stop in zip(np.r_[0, bounds], np.r_[bounds, C.shape[0]], strict=True):
        length = int(padded[first])
        per_block = max(_BLOCK_VALUES // (max(length, 1) * k), 1)
        spans += [(start, min(start + per_block, stop), length) for start in range(first, stop, per_block)]
    cols = np.empty(int(padded.sum()), np.int32)
    conf_m1 = np.empty(len(cols), np.float32)
    blocks, offset = [], 0
    for start, stop, length in spans:
        shape = (stop - start, length)
        size = shape[0] * length
        block = _Block(start, cols[offset:offset + size].reshape(shape),
                       conf_m1[offset:offset + size].reshape(shape), lengths[start:stop])
        _fill(C, block, alpha)
        blocks.append(block)
        offset += size
    return blocks


def _fill(C: sp.csr_matrix, block: _Block, alpha: float) -> None:
    """Write the cells of ``block``'s rows, padded to its length (see :class:`_Block`)."""
    first = C.indptr[block.start:block.start + len(block.lengths)]
    valid = np.arange(block.cols.shape[1]) < block.lengths[:, None]
    cells = np.where(valid, first[:, None] + np.arange(block.cols.shape[1]), first[:, None])
    block.cols[...] = C.indices[cells]
    block.conf_m1[...] = np.where(valid, np.float32(alpha) * C.data[cells], np.float32(0))


def _gram(Y: np.ndarray, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """``Y^T Y`` in float64, summed over float32 chunks of rows (on ``pool`` if given).

    Casting all of ``Y`` to float64 first would copy it (512 MB for 1M x 64 users) on
    every half-iteration; the float32 chunk products lose nothing that matters.
    """
    chunks = [Y[start:start + _CHUNK_ROWS] for start in range(0, len(Y), _CHUNK_ROWS)]
    grams = (pool.map if pool else map)(lambda chunk: chunk.T @ chunk, chunks)
    return sum(grams, np.zeros((Y.shape[1], Y.shape[1])))


def _rowdot(factors: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``y_ui . p_u`` for every cell: ``(n, length, k) x (n, k) -> (n, length)``."""
    if factors.shape[1] >= _MATMUL_MIN_LENGTH:
        return np.matmul(factors, P[:, :, None])[:, :, 0]
    return np.einsum("ulk,uk->ul", factors, P)


def _backproject(factors: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``sum_i s_ui y_ui`` per row: ``(n, length, k) x (n, length) -> (n, k)``."""
    if factors.shape[1] >= _MATMUL_MIN_LENGTH:
        return np.matmul(s[:, None, :], factors)[:, 0, :]
    return np.einsum("ulk,ul->uk", factors, s)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` per row, 0 where ``den`` vanishes (a row whose CG has converged)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-20)


def _cg_block(block: _Block, Y: np.ndarray, A0: np.ndarray, X: np.ndarray, steps: int) -> None:
    """Run ``steps`` CG steps on the rows of one block, updating them in ``X`` in place.

    Solves ``(A0 + Y^T (C_u - I) Y) x_u = Y^T C_u p_u`` with ``A0 = Y^T Y + reg I``
    (the Hu-Koren-Volinsky normal equations) from the current ``x_u``, as ``implicit``
    does. The cells' factors are gathered once into a ``(rows, length, k)`` array that
    stays in cache, so the first residual and each step cost two batched products over
    it and no further gather. A row too long for a block goes to :func:`_cg_long_row`.
    """
    x = X[block.start:block.start + len(block.lengths)]
    if block.cols.size * Y.shape[1] > _BLOCK_VALUES:  # only ever a single row
        _cg_long_row(block, Y, A0, x, steps)
        return
    factors = np.take(Y, block.cols.ravel(), axis=0).reshape(*block.cols.shape, Y.shape[1])
    conf_m1 = block.conf_m1
    valid = np.arange(conf_m1.shape[1]) < block.lengths[:, None]
    r = _backproject(factors, conf_m1 * (1.0 - _rowdot(factors, x)) + valid)
    r -= x @ A0
    _cg(x, r, lambda P: P @ A0 + _backproject(factors, conf_m1 * _rowdot(factors, P)), steps)


def _cg_long_row(block: _Block, Y: np.ndarray, A0: np.ndarray, x: np.ndarray, steps: int) -> None:
    """CG for one row longer than a block (an item bought by a large share of users).

    Its system ``A_u = A0 + Y_u^T (C_u - I) Y_u`` is formed explicitly, gathering a
    block's worth of cells at a time: memory stays at one block however long the row
    (1M cells x 64 factors would be 256 MB per thread), and the ``length x k x k``
    products run at BLAS speed, about as fast as the matrix-free passes. The CG steps
    are the same.
    """
    length = int(block.lengths[0])
    chunk = max(_BLOCK_VALUES // Y.shape[1], 1)
    A, b = A0.copy(), np.zeros(Y.shape[1], np.float32)
    for start in range(0, length, chunk):
        factors = np.take(Y, block.cols[0, start:min(start + chunk, length)], axis=0)
        conf_m1 = block.conf_m1[0, start:start + len(factors)]
        A += factors.T @ (conf_m1[:, None] * factors)
        b += (1.0 + conf_m1) @ factors
    _cg(x, b - x @ A, lambda P: P @ A, steps)


def _cg(x: np.ndarray, r: np.ndarray, matvec, steps: int) -> None:
    """``steps`` conjugate-gradient steps for the rows of ``x`` (in place) from residual ``r``.

    ``matvec(P)`` applies each row's (symmetric) system matrix to the rows of ``P``.
    """
    p = r.copy()
    rs_old = np.einsum("ij,ij->i", r, r)
    for step in range(steps):
        Ap = matvec(p)
        a = _ratio(rs_old, np.einsum("ij,ij->i", p, Ap))[:, None]
        x += a * p
        if step + 1 == steps:
            break
        r -= a * Ap
        rs_new = np.einsum("ij,ij->i", r, r)
        p *= _ratio(rs_new, rs_old)[:, None]
        p += r
        rs_old = rs_new


def _solve_all(blocks: list[_Block], Y: np.ndarray, X: np.ndarray, regularization: float,
               steps: int, pool: ThreadPoolExecutor | None = None) -> None:
    """Update the factors ``X`` of every block's rows in place (on ``pool``'s threads)."""
    A0 = (_gram(Y, pool) + regularization * np.eye(Y.shape[1])).astype(np.float32)
    list((pool.map if pool else map)(lambda block: _cg_block(block, Y, A0, X, steps), blocks))


def _inverse(order: np.ndarray) -> np.ndarray:
    """Position of every row in ``order``."""
    position = np.empty(len(order), np.int32)
    position[order] = np.arange(len(order), dtype=np.int32)
    return position


def _random_factors(rng: np.random.Generator, position: np.ndarray, k: int) -> np.ndarray:
    """Small random start factors, row ``i`` stored at ``position[i]``.

    Drawn as float64 in chunks of rows (the same numbers as one big draw) so that no
    float64 copy of the whole matrix (512 MB for 1M x 64) ever exists.
    """
    out = np.empty((len(position), k), np.float32)
    for start in range(0, len(position), _CHUNK_ROWS):
        rows = position[start:start + _CHUNK_ROWS]
        out[rows] = rng.standard_normal((len(rows), k)) * 0.01
    return out


def _unpermute(F: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows of ``F`` (in ``order``) back in their original order."""
    out = np.empty_like(F)
    out[order] = F
    return out


class ALS(RecommenderBase):
    """Matrix factorisation for implicit feedback, fitted by alternating least squares.

    Parameters
    ----------
    factors : int, default 64
        Latent dimensions (>= 1).
    regularization : float, default 0.05
        L2 penalty on the factors (>= 0).
    alpha : float, default 2.0
        Confidence scale: ``c = 1 + alpha * weight`` (> 0).
    iterations : int, default 15
        Alternating sweeps (>= 1).
    cg_steps : int, default 3
        Conjugate-gradient steps per sweep (>= 1).
    random_state : int, default 0
        Seed of the initial factors.
    """

    def __init__(self, *, factors: int = 64, regularization: float = 0.05,
                 alpha: float = 2.0, iterations: int = 15, cg_steps: int = 3,
                 random_state: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.cg_steps = cg_steps
        self.random_state = random_state

    def _validate_params(self):
        check_param("factors", self.factors, Integral, 1)
        check_param("regularization", self.regularization, Real, 0)
        check_param("alpha", self.alpha, Real, 0, low_open=True)
        check_param("iterations", self.iterations, Integral, 1)
        check_param("cg_steps", self.cg_steps, Integral, 1)
        check_param("random_state", self.random_state, Integral, 0)

    def _fit(self, X, item_features=None, **kwargs):
        # Both sides live in layout order (rows grouped by length, see _blocks), so a
        # block's factors are one contiguous slice, updated in place.
        users = _row_order(np.diff(X.indptr))
        items = _row_order(X.getnnz(axis=0))
        C = _layout(X, users, items)
        user_blocks = _blocks(C, self.alpha, self.factors)
        C = sp.csr_matrix(C.T)
        item_blocks = _blocks(C, self.alpha, self.factors)
        del C
        rng = np.random.default_rng(self.random_state)
        U = _random_factors(rng, _inverse(users), self.factors)
        V = _random_factors(rng, _inverse(items), self.factors)
        # Blocks run on our own threads, so BLAS must not start its own on top: its thread
        # hand-off on every small block product costs more than the product (threadpoolctl
        # comes with scikit-learn).
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(cpu_count()) as pool:
            for _ in range(self.iterations):
                _solve_all(user_blocks, V, U, self.regularization, self.cg_steps, pool)
                _solve_all(item_blocks, U, V, self.regularization, self.cg_steps, pool)
        del user_blocks, item_blocks
        self.user_factors_ = _unpermute(U, users)
        del U
        self.item_factors_ = _unpermute(V, items)
        # rows without data keep only their shrunk random start: zero them so they never match
        self.user_factors_[np.diff(X.indptr) == 0] = 0.0
        self.item_factors_[self.item_popularity_ == 0] = 0.0

    def _user_vectors(self, user_indices, user_items):
        """Stored factors for training users; folded in from ``user_items`` for new ones."""
        users = np.asarray(user_indices)
        known = (users >= 0) & (users < self.n_users_)
        out = np.zeros((len(users), self.factors), dtype=np.float32)
        out[known] = self.user_factors_[users[known]]
        if (~known).any():
            rows = user_items[np.flatnonzero(~known)]
            order = _row_order(np.diff(rows.indptr))
            folded = np.zeros((len(order), self.factors), dtype=np.float32)
            _solve_all(_blocks(rows[order], self.alpha, self.factors), self.item_factors_,
                       folded, self.regularization, max(self.cg_steps, self.factors))
            out[~known] = _unpermute(folded, order)
        return out

    def _score_block(self, user_indices, user_items):
        return self._user_vectors(user_indices, user_items) @ self.item_factors_.T

    def _similarity_row(self, item_index):
        V = self.item_factors_
        norms = np.linalg.norm(V, axis=1)
        norms[norms == 0] = 1.0
        return (V @ V[item_index]) / (norms * norms[item_index])

    def _explain_contributions(self, row, item_index):
        # score_i = sum_j c_uj * y_i^T W_u y_j with W_u = (Y^T C_u Y + reg I)^-1 (exact
        # for a folded-in user, as in implicit's explain).
        V = self.item_factors_.astype(np.float64)
        Yu = V[row.indices]
        conf = 1.0 + self.alpha * row.data.astype(np.float64)
        A = V.T @ V + Yu.T @ ((conf - 1.0)[:, None] * Yu)
        A[np.diag_indices_from(A)] += self.regularization
        w = np.linalg.solve(A, V[item_index])
        return (conf * (Yu @ w)).astype(np.float32)
