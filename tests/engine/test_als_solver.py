"""The blocked conjugate-gradient solver of ALS against a plain per-user reference."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.engine import ALS, als
from tests.engine.conftest import make_interactions

K = 8
ALPHA = 2.0
REG = 0.1


def _rows_of_many_lengths(n_items: int = 400, seed: int = 0) -> sp.csr_matrix:
    """Rows of length 0 to 40 (both einsum and matmul paths, padded and exact) plus one
    row of 300 cells, longer than a whole block once ``_BLOCK_VALUES`` is lowered."""
    rng = np.random.default_rng(seed)
    lengths = [*range(41), *range(1, 41, 3), 300]
    rows, cols = [], []
    for u, length in enumerate(lengths):
        rows += [u] * length
        cols += rng.choice(n_items, length, replace=False).tolist()
    weights = rng.choice(np.array([1.0, 2.0, 5.0], np.float32), len(rows))
    return sp.csr_matrix((weights, (rows, cols)), shape=(len(lengths), n_items))


def _factors(n: int, seed: int, scale: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, K)) * scale).astype(np.float32)


def _blocked_solve(C, Y, X0, steps, pool=None):
    """``als._solve_all`` on ``C``'s rows in their original order."""
    order = als._row_order(np.diff(C.indptr))
    X = X0[order]
    als._solve_all(als._blocks(C[order], ALPHA, K), Y, X, REG, steps, pool)
    return als._unpermute(X, order)


def _normal_equations(C, Y, u):
    """``A_u``, ``b_u`` of user ``u`` in float64: ``(Y^T C_u Y + reg I) x = Y^T C_u p_u``."""
    Y = Y.astype(np.float64)
    row = C[u]
    Yu = Y[row.indices]
    conf_m1 = ALPHA * row.data.astype(np.float64)
    A = Y.T @ Y + Yu.T @ (conf_m1[:, None] * Yu) + REG * np.eye(K)
    return A, Yu.T @ (1.0 + conf_m1)


def _reference_cg(A, b, x, steps):
    """Textbook CG from ``x``, one user at a time (what ``implicit`` runs per user)."""
    x = x.astype(np.float64)
    r = b - A @ x
    p = r.copy()
    rs_old = r @ r
    for _ in range(steps):
        Ap = A @ p
        step = rs_old / (p @ Ap)
        x = x + step * p
        r = r - step * Ap
        rs_new = r @ r
        p = r + rs_new / rs_old * p
        rs_old = rs_new
    return x


@pytest.fixture(params=[als._BLOCK_VALUES, 2048], ids=["default-blocks", "tiny-blocks"])
def block_values(request, monkeypatch):
    """Default blocks, and blocks so small that the 300-cell row exceeds one by itself."""
    monkeypatch.setattr(als, "_BLOCK_VALUES", request.param)
    return request.param


@pytest.mark.parametrize("steps", [1, 3])
def test_block_cg_takes_the_same_steps_as_per_user_cg(block_values, steps):
    C = _rows_of_many_lengths()
    Y, X0 = _factors(C.shape[1], 1), _factors(C.shape[0], 2)
    got = _blocked_solve(C, Y, X0, steps)
    for u in range(C.shape[0]):
        A, b = _normal_equations(C, Y, u)
        expected = _reference_cg(A, b, X0[u], steps)
        np.testing.assert_allclose(got[u], expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_block_cg_converges_to_the_exact_solution(block_values):
    C = _rows_of_many_lengths()
    Y, X0 = _factors(C.shape[1], 3), _factors(C.shape[0], 4)
    got = _blocked_solve(C, Y, X0, steps=4 * K)
    for u in range(C.shape[0]):
        A, b = _normal_equations(C, Y, u)
        exact = np.linalg.solve(A, b)
        np.testing.assert_allclose(got[u], exact, atol=1e-4 * max(np.abs(exact).max(), 1.0))


def test_threads_give_the_same_factors_as_one_thread(block_values):
    C = _rows_of_many_lengths()
    Y, X0 = _factors(C.shape[1], 5), _factors(C.shape[0], 6)
    with ThreadPoolExecutor(3) as pool:
        threaded = _blocked_solve(C, Y, X0, 3, pool)
    np.testing.assert_array_equal(threaded, _blocked_solve(C, Y, X0, 3))


def test_blocks_cover_every_row_once_in_bounded_blocks(block_values):
    C = _rows_of_many_lengths()
    order = als._row_order(np.diff(C.indptr))
    blocks = als._blocks(C[order], ALPHA, K)
    covered = np.concatenate([order[b.start:b.start + len(b.lengths)] for b in blocks])
    np.testing.assert_array_equal(np.sort(covered), np.arange(C.shape[0]))
    for b in blocks:
        rows, length = b.cols.shape
        assert rows == 1 or rows * max(length, 1) * K <= block_values
        assert np.all(b.lengths <= length) and np.all(b.conf_m1[np.arange(length) >= b.lengths[:, None]] == 0)
    long_rows = [b for b in blocks if b.cols.size * K > block_values]  # solved by _cg_long_row
    assert len(long_rows) == (1 if block_values < 300 * K else 0)


def test_padding_is_exact_for_short_rows_and_at_most_an_eighth_beyond():
    lengths = np.arange(100_000)
    padded = als._padded_lengths(lengths)
    assert np.array_equal(padded[:16], lengths[:16])
    assert np.all(padded >= lengths) and np.all(padded <= lengths * 9 / 8)
    assert len(np.unique(padded)) < 150  # few distinct lengths: full blocks


def test_fit_zeroes_empty_users_and_cold_items_and_keeps_user_order():
    X, _ = make_interactions()
    X = sp.vstack([X, sp.csr_matrix((1, X.shape[1]), dtype=np.float32)]).tocsr()
    model = ALS(factors=4, iterations=5).fit(X)
    assert np.all(model.user_factors_[-1] == 0)
    assert np.all(model.item_factors_[10] == 0)  # the cold item
    scores = model.user_factors_[:40] @ model.item_factors_.T
    electronics = scores[:, :5].mean(axis=1) > scores[:, 5:10].mean(axis=1)
    np.testing.assert_array_equal(electronics, np.arange(40) < 20)  # users 0-19 buy electronics


def test_fold_in_of_a_batch_matches_one_user_at_a_time():
    X, _ = make_interactions()
    model = ALS(factors=4, iterations=10).fit(X)
    rows = sp.csr_matrix(np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],  # lengths 4, 1, 2:
                                   [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],  # the solver reorders
                                   [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]], np.float32))
    batch = model._user_vectors(np.full(3, 10_000), rows)
    for i in range(3):
        np.testing.assert_allclose(batch[i], model._user_vectors(np.array([10_000]), rows[i])[0], atol=1e-6)
