"""One rule for "finite values": ``_validation.nonfinite_rows`` and its users."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from causalcell._validation import nonfinite_rows
from causalcell.data import validate
from causalcell.data.lazy import check_finite_block
from causalcell.datasets import simulate
from causalcell.errors import DataContractError

_values = st.sampled_from([0.0, 1.5, -2.0, 1e308, -1e308, np.nan, np.inf, -np.inf])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 6), st.integers(1, 5)), elements=_values))
def test_nonfinite_rows_equals_the_naive_test(values):
    """Rows whose sum overflows (1e308 + 1e308) are finite and must not be reported."""
    expected = np.flatnonzero(~np.isfinite(values).all(axis=1))
    np.testing.assert_array_equal(nonfinite_rows(values), expected)


@pytest.mark.parametrize("sparse", [False, True])
def test_check_finite_block_names_the_first_bad_row(sparse):
    block = np.ones((5, 4))
    block[0] = 1e308  # overflowing sum, finite values
    block[3, 2] = np.nan
    block[4, 0] = np.inf
    with pytest.raises(DataContractError, match="first in sample 13 "):
        check_finite_block(sp.csr_matrix(block) if sparse else block, 10)
    block[3, 2] = block[4, 0] = 1.0
    check_finite_block(sp.csr_matrix(block) if sparse else block, 10)


def test_validate_counts_the_bad_values_of_the_first_bad_block():
    adata = simulate(n_genes=12, n_tfs=3, n_combinations=0, n_cells_per_perturbation=5,
                     n_control_cells=10, random_state=0).adata
    X = np.asarray(adata.X, dtype=np.float64).copy()
    X[2] = 1e308  # a finite row whose sum overflows: not an error
    X[7, [1, 4]] = np.nan
    adata.X = X
    with pytest.raises(DataContractError, match=r"2\+ NaN or infinite value\(s\), first in row "
                       + repr(adata.obs_names[7])):
        validate(adata)
