"""The one exclusion rule of the design-matrix engine (causalcell.data._design / _moments).

Gene g's statistics use only the samples that do not target g, with targeted
regulators at their level T where known. Every consumer (the conditional
model's solver, learn_network, the mean baselines) reads them from here, so
the rule is tested once, against explicit row removal.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from _helpers import interventions_from_mask
from hypothesis import given, settings
from hypothesis import strategies as st

from causalcell.data._design import Design
from causalcell.data._moments import left_out, moments


def random_design(seed: int, n: int, p: int, sparse: bool):
    rng = np.random.default_rng(seed)
    X = rng.normal(1.5, 1.0, size=(n, p))
    if sparse:
        X[rng.random((n, p)) < 0.9] = 0.0  # below 15 % density: the sparse kernels
    M = np.zeros((n, p), dtype=bool)
    for i in range(n):
        if rng.random() < 0.5:
            M[i, rng.choice(p, rng.integers(1, min(3, p) + 1), replace=False)] = True
    mask = sp.csr_array(M)
    levels = rng.normal(size=mask.nnz)
    levels[rng.random(mask.nnz) < 0.3] = np.nan  # unknown T: the measured value
    iv = interventions_from_mask(mask, levels)
    Z = X.copy()
    known = ~np.isnan(levels)
    Z[iv.entry_rows[known], iv.mask.indices[known]] = levels[known]
    return Design(sp.csr_array(X) if sparse else X, iv), X, Z, M, rng


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(8, 40),
    p=st.integers(2, 7),
    sparse=st.booleans(),
    block_rows=st.integers(1, 50),
)
def test_left_out_statistics_equal_explicit_row_removal(seed, n, p, sparse, block_rows):
    design, X, Z, M, rng = random_design(seed, n, p, sparse)
    regulators = np.arange(p)
    mom = moments(design, regulators, block_rows=block_rows)
    genes = np.arange(p)
    regs = np.array([[r for r in range(p) if r != g][: p - 1] for g in genes])
    lo = left_out(mom, design, genes, regs)
    for k, g in enumerate(genes):
        keep = ~M[:, g]
        assert lo.n[k] == keep.sum() == design.n_included[g]
        if keep.sum() < 2:
            continue
        R, y = Z[np.ix_(keep, regs[k])], X[keep, g]
        Rc, yc = R - R.mean(axis=0), y - y.mean()
        np.testing.assert_allclose(lo.scatter()[k], Rc.T @ Rc, atol=1e-9)
        np.testing.assert_allclose(lo.target_scatter()[k], Rc.T @ yc, atol=1e-9)
        np.testing.assert_allclose(lo.target_sum_of_squares()[k], yc @ yc, atol=1e-9)
        np.testing.assert_allclose(lo.regulator_sum_of_squares()[k], (Rc**2).sum(axis=0),
                                   atol=1e-9)
        np.testing.assert_allclose(lo.regulator_means()[k], R.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(lo.target_means()[k], y.mean(), atol=1e-12)
    # The same rule for weighted column means (the mean baselines).
    weights = rng.random(n)
    fallback = np.full(p, -7.0)
    means = design.included_means(weights, fallback)
    for g in range(p):
        keep = ~M[:, g]
        want = weights[keep] @ X[keep, g] / weights[keep].sum() if keep.any() else -7.0
        np.testing.assert_allclose(means[g], want, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(6, 40), sparse=st.booleans())
def test_passes_over_subsets_add_up(seed, n, sparse):
    """A pass over a subset of the samples (with the full pass's shift) and the
    full moments without it are the moments of the two halves (stability selection)."""
    design, _X, Z, M, rng = random_design(seed, n, 5, sparse)
    regulators = np.array([0, 2, 3])
    full = moments(design, regulators)
    half = np.flatnonzero(rng.random(n) < 0.5)
    rest = np.setdiff1d(np.arange(n), half)
    part = moments(design, regulators, rows=half, shift=full.shift)
    other = full.without(part)
    for rows, got in ((half, part), (rest, other)):
        W = Z[rows] - full.shift
        Y = np.where(M[rows], 0.0, W)
        assert got.n == len(rows)
        np.testing.assert_array_equal(got.n_included, (~M[rows]).sum(axis=0))
        np.testing.assert_allclose(got.cross, W[:, regulators].T @ Y, atol=1e-9)
        np.testing.assert_allclose(got.target_sums, Y.sum(axis=0), atol=1e-9)
        np.testing.assert_allclose(got.target_squares, (Y**2).sum(axis=0), atol=1e-9)
        np.testing.assert_allclose(got.regulator_sums, W[:, regulators].sum(axis=0), atol=1e-9)
        pos = np.arange(len(regulators))
        np.testing.assert_allclose(got.gram(pos[:, None], pos[None, :]),
                                   W[:, regulators].T @ W[:, regulators], atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(6, 60), k=st.integers(1, 4),
       block_rows=st.integers(1, 70), weighted=st.booleans())
def test_pass_over_trailing_untargeted_regulators_equals_definition(seed, n, k, block_rows,
                                                                    weighted):
    """Regulators that are the last columns and never targeted (a spline basis beside
    the genes) take the pass's symmetric product: the statistics are still the
    definition's, W_U^T Y about the shift."""
    p = 5 + k
    design, X, _, M, rng = random_design(seed, n, p, sparse=False)
    untargeted = np.ones((n, p), dtype=bool)
    untargeted[:, : p - k] = False
    M = M & ~untargeted
    mask = sp.csr_array(M)
    levels = rng.normal(size=mask.nnz)
    iv = interventions_from_mask(mask, levels)
    design = Design(X, iv)
    U = np.arange(p - k, p)
    w = rng.random(n) if weighted else None
    mom = moments(design, U, block_rows=block_rows, row_weights=w)
    Z = X.copy()
    Z[iv.entry_rows, iv.mask.indices] = levels
    Y = np.where(M, 0.0, X - mom.shift)
    W_U = Z[:, U] - mom.shift[U]
    np.testing.assert_allclose(mom.cross, W_U.T @ Y, atol=1e-9)
    np.testing.assert_allclose(mom.target_sums, Y.sum(axis=0), atol=1e-9)
    np.testing.assert_allclose(mom.regulator_sums, W_U.sum(axis=0), atol=1e-9)
    if weighted:
        np.testing.assert_allclose(mom.weighted_sum, w @ X, atol=1e-9)


class _PoisonedBuffer:
    """A BlockBuffer stand-in whose array is NaN: a pass that read the buffer's old
    contents anywhere would carry NaN into its statistics."""

    def __init__(self, shape):
        self.array = np.full(shape, np.nan)
        self.asked: list[tuple[int, int]] = []

    def take(self, shape):
        self.asked.append(tuple(shape))
        return self.array if self.array.shape == tuple(shape) else None


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(6, 60), block_rows=st.integers(1, 70),
       weighted=st.booleans(), wrong_shape=st.booleans())
def test_pass_with_a_prepared_block_buffer_is_bit_identical(seed, n, block_rows, weighted,
                                                            wrong_shape):
    """The block buffer handed to the pass (made on a helper thread before a fit's
    setup) changes nothing: with a buffer of the pass's block shape, whatever it
    holds (NaN here), every statistic equals the pass's own bit for bit, and the
    buffer was used; a buffer of another shape is left alone."""
    design, _X, _Z, _M, rng = random_design(seed, n, 6, sparse=False)
    regulators = np.array([0, 2, 3])
    row_weights = rng.random(n) if weighted else None
    plain = moments(design, regulators, block_rows=block_rows, row_weights=row_weights)
    shape = (min(block_rows, n) + (1 if wrong_shape else 0), 6)
    buffer = _PoisonedBuffer(shape)
    got = moments(design, regulators, block_rows=block_rows, row_weights=row_weights,
                  block_buffer=buffer)
    assert buffer.asked == [(min(block_rows, n), 6)]
    assert np.isnan(buffer.array).all() == wrong_shape  # written only when taken
    for name in ("shift", "regulator_sums", "target_sums", "target_squares", "cross",
                 "targeted_gram", "n_included"):
        np.testing.assert_array_equal(getattr(got, name), getattr(plain, name), err_msg=name)
    if weighted:
        np.testing.assert_array_equal(got.weighted_sum, plain.weighted_sum)


def test_block_buffer_is_the_pass_block_and_is_taken_once():
    """BlockBuffer has the pass's default block shape (all rows when fewer), is
    zero-filled by its thread, and is handed out once, only for its own shape."""
    from causalcell.data._moments import BLOCK_VALUES, BlockBuffer

    small = BlockBuffer(10, 7)
    assert small.shape == (10, 7)
    assert small.take((9, 7)) is None  # another shape: not handed out ...
    assert small.take((10, 7)) is None  # ... and the take was its one take
    big = BlockBuffer(10**6, 500, block_rows=None)
    assert big.shape == (BLOCK_VALUES // 500, 500)
    array = big.take(big.shape)
    assert array.shape == big.shape
    assert not array.any()
    assert big.take(big.shape) is None
    assert BlockBuffer(100, 4, block_rows=30).shape == (30, 4)
