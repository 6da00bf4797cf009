"""The shared statistics (causalcell.data._stats) against scipy / statsmodels / loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection

from causalcell.data._stats import (
    bh_qvalues,
    group_moments,
    significant,
    weighted_column_sums,
    weighted_mean,
    welch,
)


@given(
    n=st.integers(1, 30),
    p=st.integers(1, 6),
    n_groups=st.integers(1, 4),
    sparse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_group_moments_equal_a_loop(n, p, n_groups, sparse, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[rng.random((n, p)) < 0.4] = 0.0
    codes = rng.integers(-1, n_groups, size=n)
    weights = rng.random(n)
    got = group_moments(sp.csr_matrix(X) if sparse else X.astype(np.float32), codes, n_groups,
                        weights=weights, squares=True)
    values = X if sparse else X.astype(np.float32).astype(np.float64)
    for k in range(n_groups):
        rows = codes == k
        assert got.count[k] == rows.sum()
        np.testing.assert_allclose(got.sums[k], weights[rows] @ values[rows], atol=1e-12)
        np.testing.assert_allclose(got.squares[k], weights[rows] @ values[rows] ** 2, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    p=st.integers(1, 6),
    n_groups=st.integers(1, 30),  # many groups: a block's sums stay sparse
    sparse=st.booleans(),
    chunk=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_group_moments_of_dask_blocks_equal_a_loop(n, p, n_groups, sparse, chunk, seed):
    """Row blocks of a Dask X (sparse blocks' sums stay sparse and are added into
    the running sums in place; blocks with no counted row; one block) give the
    loop's sums."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[rng.random((n, p)) < 0.5] = 0.0
    codes = rng.integers(-1, n_groups, size=n)
    codes[: min(n, chunk)] = -1  # the first block counts no row
    weights = rng.random(n)
    lazy = da.from_array(X, chunks=(chunk, p))
    if sparse:
        lazy = lazy.map_blocks(sp.csr_matrix, dtype=X.dtype)
    got = group_moments(lazy, codes, n_groups, weights=weights, squares=True)
    assert isinstance(got.sums, np.ndarray)
    assert isinstance(got.squares, np.ndarray)
    for k in range(n_groups):
        rows = codes == k
        np.testing.assert_allclose(got.sums[k], weights[rows] @ X[rows], atol=1e-12)
        np.testing.assert_allclose(got.squares[k], weights[rows] @ X[rows] ** 2, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_weighted_means_read_only_weighted_rows(sparse):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    w = np.where(rng.random(40) < 0.3, rng.random(40), 0.0)
    Xin = sp.csr_matrix(X) if sparse else X
    np.testing.assert_allclose(weighted_column_sums(Xin, w), w @ X, rtol=1e-12)
    np.testing.assert_allclose(weighted_mean(Xin, w), (w / w.sum()) @ X, rtol=1e-12)


def test_welch_zero_variance_rule_is_scipys():
    """Constant groups: inf (p = 0) when the constants differ, NaN when they are
    equal; one sample on a side: NaN. The same rule for DE and learn_network."""
    cases = [
        (np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0])),  # constant, different
        (np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0])),  # constant, equal
        (np.array([1.0]), np.array([1.0, 2.0, 3.0])),  # one sample
        (np.array([0.1, 0.5, 0.2]), np.array([1.0, 1.3, 0.7, 0.9])),  # ordinary
    ]
    for a, b in cases:
        t, p = welch(
            np.array(a.mean() - b.mean()),
            np.array(a.var(ddof=1) if len(a) > 1 else np.nan),
            np.array(float(len(a))),
            np.array(b.var(ddof=1) if len(b) > 1 else np.nan),
            np.array(float(len(b))),
        )
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about the degenerate cases
            ref = stats.ttest_ind(a, b, equal_var=False)
        np.testing.assert_allclose(t, ref.statistic, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(p, ref.pvalue, rtol=1e-12, equal_nan=True)


@given(st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1, max_size=30))
def test_bh_equals_statsmodels_without_the_nans(values):
    p = np.array(values)
    q = bh_qvalues(p)
    finite = ~np.isnan(p)
    assert np.isnan(q[~finite]).all()
    if finite.any():
        np.testing.assert_allclose(q[finite], fdrcorrection(p[finite])[1], rtol=1e-15)
    # Rows are families: two rows give the two 1-d answers.
    both = bh_qvalues(np.vstack([p, p[::-1]]))
    np.testing.assert_array_equal(both[0], q)
    np.testing.assert_array_equal(both[1], bh_qvalues(p[::-1]))


def test_significant_never_counts_nan():
    q = np.array([0.01, 0.05, np.nan, 0.2])
    np.testing.assert_array_equal(significant(q, 0.05), [True, False, False, False])
