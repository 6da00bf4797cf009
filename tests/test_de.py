"""Differential expression: Welch t, Mann-Whitney U and BH q-values against scipy / statsmodels."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

import causalcell as cc
from causalcell.data import _stats as stats_module
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._de import (
    DEResult,
    bh_qvalues,
    differential_expression,
    rank_sum_test,
    welch_ttest,
)


def _design(rng: np.random.Generator, n_cells: int, n_groups: int):
    """Group codes with controls (-1, control=True) and a few ignored cells."""
    groups = rng.integers(0, n_groups, size=n_cells)
    control = rng.random(n_cells) < 0.35
    ignored = ~control & (rng.random(n_cells) < 0.1)
    groups[control | ignored] = -1
    # Every group and the controls keep at least two cells.
    for k in range(n_groups):
        groups[2 * k : 2 * k + 2] = k
        control[2 * k : 2 * k + 2] = False
    control[-2:] = True
    groups[-2:] = -1
    return groups, control


def _data(rng: np.random.Generator, n_cells: int, n_genes: int) -> np.ndarray:
    """Log-normalized-like values: many zeros, ties, a negative column."""
    counts = rng.poisson(0.8, size=(n_cells, n_genes)).astype(float)
    X = np.log1p(counts * rng.choice([1.0, 2.0], size=(n_cells, n_genes)))
    X[:, 0] = -X[:, 0]  # negative values: implicit zeros are not the minimum
    X[:, 1] = 0.0  # all tied
    X[: n_cells // 2, 2] = 1.5  # a constant block
    return X


def _reference(X: np.ndarray, groups, control, test):
    n_groups = groups.max() + 1
    return [test(X[groups == k], X[control]) for k in range(n_groups)]


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_welch_equals_scipy(fmt):
    rng = np.random.default_rng(1)
    X = _data(rng, 160, 25)
    groups, control = _design(rng, 160, 5)
    data = X if fmt == "dense" else getattr(sp, f"{fmt}_array")(X)
    t, p, diff = welch_ttest(data, groups, control)
    with np.errstate(all="ignore"):
        expected = _reference(X, groups, control,
                              lambda a, b: stats.ttest_ind(a, b, equal_var=False))
    for k, res in enumerate(expected):
        np.testing.assert_allclose(t[k], res.statistic, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p[k], res.pvalue, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(diff[k], X[groups == k].mean(0) - X[control].mean(0),
                                   atol=1e-12)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
@given(
    seed=st.integers(0, 2**32 - 1),
    n_cells=st.integers(8, 60),
    n_genes=st.integers(1, 6),
    n_groups=st.integers(1, 3),
    sparse=st.booleans(),
)
def test_welch_and_ranksum_equal_scipy_property(seed, n_cells, n_genes, n_groups, sparse):
    rng = np.random.default_rng(seed)
    # Few distinct values: ties everywhere, constant groups now and then.
    X = rng.choice([0.0, 0.0, 0.5, 1.0, 2.5, -1.0], size=(n_cells, n_genes))
    groups, control = _design(rng, n_cells, n_groups)
    data = sp.csr_array(X) if sparse else X
    t, p, _ = welch_ttest(data, groups, control)
    u, _z, pu = rank_sum_test(data, groups, control)
    with np.errstate(all="ignore"):
        for k in range(n_groups):
            a, b = X[groups == k], X[control]
            ref = stats.ttest_ind(a, b, equal_var=False)
            np.testing.assert_allclose(t[k], ref.statistic, rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(p[k], ref.pvalue, rtol=1e-7, atol=1e-12)
            mw = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True)
            np.testing.assert_array_equal(u[k], mw.statistic)
            np.testing.assert_allclose(pu[k], mw.pvalue, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_ranksum_equals_scipy(fmt):
    rng = np.random.default_rng(2)
    X = _data(rng, 150, 20)
    groups, control = _design(rng, 150, 4)
    data = X if fmt == "dense" else getattr(sp, f"{fmt}_array")(X)
    u, z, p = rank_sum_test(data, groups, control)
    expected = _reference(X, groups, control, lambda a, b: stats.mannwhitneyu(
        a, b, method="asymptotic", use_continuity=True))
    for k, res in enumerate(expected):
        np.testing.assert_array_equal(u[k], res.statistic)
        np.testing.assert_allclose(p[k], res.pvalue, rtol=1e-9)
    # z is signed: positive where the group is higher, NaN where all values tie.
    n1 = (groups == 0).sum()
    assert np.all(np.sign(z[0][2:]) == np.sign(u[0][2:] - n1 * control.sum() / 2))
    assert np.isnan(z[:, 1]).all()


def test_sparse_explicit_zeros_and_blocks(monkeypatch):
    """Stored zeros count as zeros, and gene / row blocking and threads do not change
    results."""
    rng = np.random.default_rng(3)
    X = _data(rng, 120, 30)
    groups, control = _design(rng, 120, 3)
    csr = sp.csr_array(X)
    stored = sp.csr_array((csr.data.copy(), csr.indices.copy(), csr.indptr.copy()),
                          shape=csr.shape)
    stored.data[::3] = 0.0  # explicit zeros in the structure
    dense = stored.toarray()
    monkeypatch.setattr(stats_module, "_threads", lambda bytes_per_thread=0: 1)
    u_ref, _, p_ref = rank_sum_test(dense, groups, control)
    t_ref, _tp_ref, _ = welch_ttest(dense, groups, control)
    monkeypatch.setattr(stats_module, "_RANK_BLOCK_ENTRIES", 50)
    monkeypatch.setattr(stats_module, "_DENSE_BLOCK_ENTRIES", 100)
    monkeypatch.setattr(stats_module, "_KEY_LIMIT", 0)  # the lexsort path
    # blocks on two threads
    monkeypatch.setattr(stats_module, "_threads", lambda bytes_per_thread=0: 2)
    for data in (stored, dense):
        u, _, p = rank_sum_test(data, groups, control)
        np.testing.assert_array_equal(u, u_ref)
        np.testing.assert_allclose(p, p_ref, rtol=1e-12)
        t, _tp, _ = welch_ttest(data, groups, control)
        np.testing.assert_allclose(t, t_ref, rtol=1e-12, equal_nan=True)
    assert stored.nnz == csr.nnz  # the caller's matrix is not modified


def test_welch_degenerate_cases_follow_scipy():
    control = np.array([True, True, True, False, False, False, False])
    groups = np.array([-1, -1, -1, 0, 0, 1, 1])
    X = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 3.0], [1.0, 3.0],
                  [2.0, 2.0], [2.0, 2.0]])
    t, p, _ = welch_ttest(X, groups, control)
    # Constant and equal: NaN; constant and different: +-inf with p = 0.
    assert np.isnan(t[0, 0])
    assert np.isnan(p[0, 0])
    assert t[0, 1] == np.inf
    assert p[0, 1] == 0.0
    assert t[1, 0] == np.inf
    assert p[1, 0] == 0.0


def test_bh_equals_statsmodels_per_row():
    rng = np.random.default_rng(4)
    p = rng.random((6, 50)) ** 3
    p[2, [3, 7]] = np.nan
    q = bh_qvalues(p)
    for i in range(6):
        keep = ~np.isnan(p[i])
        np.testing.assert_allclose(q[i, keep], multipletests(p[i, keep], method="fdr_bh")[1])
    assert np.isnan(q[2, [3, 7]]).all()
    assert np.isnan(bh_qvalues(np.full((2, 3), np.nan))).all()


def test_bad_groups_are_rejected():
    X = np.zeros((4, 2))
    with pytest.raises(ParameterError, match="one code per cell"):
        welch_ttest(X, np.array([0, 1]), np.array([True, False, False, False]))
    with pytest.raises(ParameterError, match="both a control and a member"):
        welch_ttest(X, np.array([0, 0, 1, 1]), np.array([True, False, False, False]))
    with pytest.raises(DataContractError, match="No control cell"):
        rank_sum_test(X, np.array([0, 0, 1, 1]), np.zeros(4, dtype=bool))


# ------------------------------------------------------------------ AnnData level


@pytest.fixture(scope="module")
def sim():
    return cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=5)


@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_differential_expression_on_simulation(sim, method):
    adata = sim.adata
    result = differential_expression(adata, method=method)
    iv = cc.Interventions.from_adata(adata)
    perturbed = iv.conditions[~iv.conditions["is_control"]]
    assert isinstance(result, DEResult)
    assert set(result.perturbations) == set(perturbed.index)
    assert result.statistic.shape == (len(perturbed), adata.n_vars)
    assert result.n_control == int(iv.is_control.sum())
    # A knocked-down TF is strongly and significantly lower in its own cells.
    row = result.perturbations.get_loc("TF01")
    col = adata.var_names.get_loc("TF01")
    assert result.score[row, col] < 0
    assert result.mean_difference[row, col] < -0.3
    assert result.qvalue[row, col] < 1e-6
    assert result.significant(0.05)[row, col]
    with pytest.warns(FutureWarning, match="alpha= is renamed fdr="):
        old_name = result.significant(alpha=0.05)
    np.testing.assert_array_equal(old_name, result.significant(fdr=0.05))
    # Each row is the test of that perturbation's cells against the controls.
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    X = X.astype(np.float64)  # scipy computes in the input precision
    cells = X[(adata.obs["perturbation"] == "TF01").to_numpy()]
    controls = X[iv.is_control]
    if method == "t-test":
        ref = stats.ttest_ind(cells, controls, equal_var=False).statistic
    else:
        ref = stats.mannwhitneyu(cells, controls, method="asymptotic").statistic
    np.testing.assert_allclose(result.statistic[row], ref, rtol=1e-9)


def test_de_frame_and_select(sim):
    result = differential_expression(sim.adata)
    frame = result.to_frame()
    assert len(frame) == result.statistic.size
    assert list(frame.columns) == ["perturbation", "perturbation_type", "gene", "statistic",
                                   "score", "mean_difference", "pvalue", "qvalue"]
    picked = result.select(["TF02", "TF01"], ["G001", "TF01"])
    assert picked.statistic.shape == (2, 2)
    assert picked.statistic[1, 1] == result.statistic[result.perturbations.get_loc("TF01"),
                                                      result.genes.get_loc("TF01")]
    with pytest.raises(DataContractError, match="no perturbation"):
        result.select(["NOPE"], ["G001"])


def test_de_control_label(sim):
    adata = sim.adata.copy()
    labels = adata.obs["perturbation"].astype(str).to_numpy().copy()
    controls = np.flatnonzero(adata.obs["is_control"].to_numpy())
    labels[controls[: len(controls) // 2]] = "safe-targeting"
    adata.obs["perturbation"] = labels
    both = differential_expression(adata)
    some = differential_expression(adata, control_label="safe-targeting")
    assert both.n_control == len(controls)
    assert some.n_control == len(controls) // 2
    with pytest.raises(DataContractError,
                       match="control_label='non-targeting' names no control.*safe-targeting"):
        differential_expression(adata, control_label="non-targeting")


def test_de_bad_input(sim):
    with pytest.raises(ParameterError, match="method='limma'"):
        differential_expression(sim.adata, method="limma")
    with pytest.raises(DataContractError, match="pseudobulk"):
        differential_expression(cc.data.pseudobulk(sim.adata))
    no_control = sim.adata[~sim.adata.obs["is_control"].to_numpy()].copy()
    with pytest.raises(DataContractError, match="No control sample"):
        differential_expression(no_control)
    with pytest.raises(DataContractError, match="Layer 'raw' not found"):
        differential_expression(sim.adata, layer="raw")
    only_controls = ad.AnnData(
        np.ones((3, 2)),
        obs=pd.DataFrame({"perturbation": "control", "is_control": True,
                          "perturbation_type": "control"}, index=["a", "b", "c"]),
    )
    with pytest.raises(DataContractError, match="No perturbed cell"):
        differential_expression(only_controls)
