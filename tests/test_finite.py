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


def _screen():
    """A small screen with knockdowns at known levels (so the pass replaces their
    targeted entries by T and never sums the measured values there)."""
    sim = simulate(n_genes=12, n_tfs=4, n_combinations=0, n_cells_per_perturbation=6,
                   n_control_cells=20, random_state=1)
    adata = sim.adata.copy()
    adata.X = np.asarray(adata.X, dtype=np.float64).copy()
    return adata, sim.network


def _targeted_entry(adata):
    """(row, gene index) of a targeted entry of a perturbed cell."""
    from causalcell.data import Interventions

    iv = Interventions.from_adata(adata)
    row = int(np.flatnonzero(~iv.is_control)[0])
    return row, int(iv.mask[[row]].indices[0])


@pytest.mark.parametrize("where", ["untargeted", "targeted", "regulator"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("layer", [None, "log1p"])
@pytest.mark.parametrize("regressor", ["ridge", "ols"])
def test_the_fit_pass_refuses_nonfinite_values_it_did_not_scan_before(where, sparse, layer,
                                                                      regressor):
    """The ridge / OLS fit skips the contract's scan and lets its pass prove X finite:
    a NaN anywhere (a targeted entry too, which the pass replaces by T) still gives the
    contract's error, naming the matrix and the first sample at fault."""
    from causalcell.models import ConditionalGRNRegressor

    adata, network = _screen()
    X = adata.X
    row, gene = _targeted_entry(adata)
    regulator = adata.var_names.get_loc(next(iter(network.edges))[0])
    bad_row, bad_col = {"untargeted": (3, 5), "targeted": (row, gene),
                        "regulator": (row + 1, regulator)}[where]
    X[bad_row, bad_col] = np.inf if where == "regulator" else np.nan
    if sparse:
        X = sp.csr_matrix(X)
    if layer is None:
        adata.X = X
    else:
        adata.layers[layer] = X
    name = "X" if layer is None else f"layer {layer!r}"
    with pytest.raises(DataContractError, match=rf"{name} contains 1\+ NaN or infinite value\(s\), "
                       rf"first in row {adata.obs_names[bad_row]!r}"):
        ConditionalGRNRegressor(regressor, layer=layer).fit(adata, network)


def test_the_ridge_fit_reads_finite_x_once(monkeypatch):
    """No scan of X before the pass (the contract's scan would be a second read)."""
    import causalcell.data.contract as contract
    from causalcell.models import ConditionalGRNRegressor

    adata, network = _screen()
    calls = []
    monkeypatch.setattr(contract, "nonfinite_rows", lambda v: calls.append(v) or np.zeros(0, int))
    ConditionalGRNRegressor(alpha=1.0).fit(adata, network)
    assert calls == []


@pytest.mark.parametrize("sparse", [False, True])
def test_the_pass_refuses_nonfinite_values_at_the_first_block_holding_them(sparse, monkeypatch):
    """The pass's running sums are checked after every block: a NaN in the first rows
    is refused before the rest of X is read (as the contract's scan would, up front)."""
    import causalcell.data._moments as moments_module
    from causalcell.data import Interventions
    from causalcell.data._design import Design

    adata, _network = _screen()
    X = adata.X
    X[1, 4] = np.nan
    X = sp.csr_matrix(X) if sparse else X
    blocks = []
    for name in ("_dense_sums", "_sparse_sums"):
        original = getattr(moments_module, name)
        monkeypatch.setattr(moments_module, name,
                            lambda *a, _f=original, **k: blocks.append(1) or _f(*a, **k))
    design = Design(X, Interventions.from_adata(adata))
    with pytest.raises(DataContractError, match=repr(adata.obs_names[1])):
        moments_module.moments(design, np.arange(4), block_rows=10)
    assert len(blocks) == 1 < adata.n_obs // 10
