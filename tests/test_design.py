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


class _PoisonedBuffers:
    """A PassBuffers stand-in whose block, regulator columns and product are NaN (a
    pass that read their old contents anywhere would carry NaN into its statistics)
    and whose cross sums are zeros, as PassBuffers hands them out."""

    def __init__(self, shape, regulators):
        rows, p = shape
        self.block = np.full(shape, np.nan)
        self.regulators = regulators
        self.columns = np.full((rows, regulators + 2), np.nan)
        self.product = np.full((regulators + 2, p), np.nan)
        self.sums = np.zeros((regulators, p))
        self.asked: list[tuple] = []

    def take_block(self, shape):
        self.asked.append(tuple(shape))
        return self.block if self.block.shape == tuple(shape) else None

    def take_work(self, rows, p, u, extra):
        self.asked.append((rows, p, u, extra))
        if (rows, p) != self.block.shape or u != self.regulators:
            return None
        partial = u < p
        columns = self.columns[:, : u + extra] if partial else None
        product = self.product[: u + extra] if partial else self.product[:u]
        return columns, product, self.sums


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(6, 60), block_rows=st.integers(1, 70),
       weighted=st.booleans(), wrong_shape=st.booleans(), every_gene=st.booleans())
def test_pass_with_prepared_buffers_is_bit_identical(seed, n, block_rows, weighted,
                                                     wrong_shape, every_gene):
    """The work arrays handed to the pass (made on a helper thread before a fit's
    setup) change nothing: with arrays of the pass's shapes, whatever the block, the
    regulator columns and the product hold (NaN here), every statistic equals the
    pass's own bit for bit, and they were used; arrays of other shapes are left
    alone."""
    design, _X, _Z, _M, rng = random_design(seed, n, 6, sparse=False)
    regulators = np.arange(6) if every_gene else np.array([0, 2, 3])
    row_weights = rng.random(n) if weighted else None
    plain = moments(design, regulators, block_rows=block_rows, row_weights=row_weights)
    rows = min(block_rows, n)
    prepared = _PoisonedBuffers((rows + (1 if wrong_shape else 0), 6), len(regulators))
    got = moments(design, regulators, block_rows=block_rows, row_weights=row_weights,
                  prepared=prepared)
    extra = 1 + weighted
    assert prepared.asked == [(rows, 6), (rows, 6, len(regulators), extra)]
    assert np.isnan(prepared.block).all() == wrong_shape  # written only when taken
    assert np.isnan(prepared.product[: len(regulators)]).all() == wrong_shape
    assert (got.cross is prepared.sums) != wrong_shape  # the running sums, when taken
    for name in ("shift", "regulator_sums", "target_sums", "target_squares", "cross",
                 "targeted_gram", "n_included"):
        np.testing.assert_array_equal(getattr(got, name), getattr(plain, name), err_msg=name)
    if weighted:
        np.testing.assert_array_equal(got.weighted_sum, plain.weighted_sum)


def test_pass_buffers_fit_the_pass_and_are_taken_once():
    """PassBuffers has the pass's default block shape (all rows when fewer); its
    block and work arrays are zero-filled by its thread and handed out once, only
    when they fit: the block of its own shape, the work arrays for at most its
    regulator bound and two extra columns; a bound whose arrays exceed the budget
    prepares the block only."""
    from causalcell.data._moments import _PREPARED_WORK_VALUES, BLOCK_VALUES, PassBuffers

    small = PassBuffers(10, 7)
    assert small.shape == (10, 7)
    assert small.take_block((9, 7)) is None  # another shape: not handed out ...
    assert small.take_block((10, 7)) is None  # ... and the take was its one take
    assert small.take_work(10, 7, 3, 1) is None  # no regulator bound: no work arrays
    assert PassBuffers(100, 4, block_rows=30).shape == (30, 4)
    big = PassBuffers(10**6, 500, regulators=40)
    assert big.shape == (BLOCK_VALUES // 500, 500)
    block = big.take_block(big.shape)
    assert block.shape == big.shape
    assert not block.any()
    assert big.take_block(big.shape) is None
    columns, product, sums = big.take_work(big.shape[0], 500, 30, 2)
    assert columns.shape == (big.shape[0], 32)
    assert product.shape == (32, 500)
    assert sums.shape == (30, 500)
    assert columns.flags.c_contiguous
    assert product.flags.c_contiguous
    assert not np.shares_memory(columns, product)
    for array in (columns, product, sums):
        assert not array.any()
    assert big.take_work(big.shape[0], 500, 30, 2) is None  # once
    for u, extra in ((41, 1), (30, 3)):  # beyond the bound, or more extra columns
        assert PassBuffers(100, 50, regulators=40).take_work(100, 50, u, extra) is None
    every = PassBuffers(100, 50, regulators=50).take_work(100, 50, 50, 2)
    assert every[0] is None  # U is every gene: no regulator columns
    assert every[1].shape == every[2].shape == (50, 50)
    p = 4000
    assert PassBuffers(10**5, p, regulators=p).regulators is None  # over the budget
    assert 2 * p * p > _PREPARED_WORK_VALUES
