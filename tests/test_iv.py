"""The feedback-consistent fit, ``ConditionalGRNRegressor(regressor="iv")``.

Known answers: a per-gene two-stage least squares (statsmodels' IV2SLS) on
the gene's own samples, and the exact coefficients and interventional means
of a linear model with feedback loops (``_linear_scm``).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _linear_scm import (
    exact_mean,
    exact_sd,
    network,
    random_feedback,
    request,
    sample,
)

from causalcell.data import Interventions
from causalcell.errors import CausalCellWarning
from causalcell.models import ConditionalGRNRegressor


def _naive_2sls(adata, network_or_pool, genes):
    """Per gene: statsmodels IV2SLS of x_g on [1, x_R] (targeted regulators at T),
    instruments the indicators of the conditions present in g's samples."""
    from statsmodels.sandbox.regression.gmm import IV2SLS

    iv = Interventions.from_adata(adata)
    X = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    Z = np.array(X, dtype=float)
    known = ~np.isnan(iv.levels)
    Z[iv.entry_rows[known], iv.mask.indices[known]] = iv.levels[known]
    targeted = iv.mask.toarray()
    coef = {}
    for g, name in enumerate(genes):
        if isinstance(network_or_pool, nx.DiGraph):
            regs = sorted(genes.get_loc(r) for r in network_or_pool.predecessors(name))
        else:
            regs = [r for r in network_or_pool if r != g]
        if not regs:
            continue
        keep = ~targeted[:, g]
        codes = iv.codes[keep]
        present = np.unique(codes)
        instruments = (codes[:, None] == present[None, :]).astype(float)
        exog = np.column_stack([np.ones(keep.sum()), Z[keep][:, regs]])
        res = IV2SLS(Z[keep, g], exog, instrument=instruments).fit()
        coef[g] = (regs, res.params, res.bse, res.ssr, res.df_resid)
    return coef


def _small_data(rng, sparse=False):
    p = 6
    W = random_feedback(p, rng, radius=0.7, density=0.4)
    mu = np.full(p, 4.0)
    conds = [(), (0,), (1,), (2,), (3,), (4,), (5,), (0, 3), (1, 4)]
    ad = sample(W, mu, conds, 150, rng, n_controls=200)
    # A knockdown of unknown level (the measured value enters) next to knockouts.
    ad.obs["perturbation_type"] = ad.obs["perturbation_type"].astype(object)
    ad.obs.loc[ad.obs["perturbation"] == "G2", "perturbation_type"] = "knockdown"
    # Knockouts: T = 0 by convention; the knockdown's level is unknown (NaN).
    ad.obs["expression_level_after_perturbation"] = np.nan
    lowered = (ad.obs["perturbation"] == "G2").to_numpy()
    ad.X[lowered, 2] = 1.0 + 0.3 * rng.normal(size=lowered.sum())
    if sparse:
        ad.X = sp.csr_matrix(ad.X)
    return ad, W


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("mode", ["network", "pool"])
def test_iv_equals_statsmodels_2sls(mode, sparse):
    rng = np.random.default_rng(1)
    ad, W = _small_data(rng, sparse)
    genes = pd.Index(ad.var_names)
    if mode == "network":
        structure = network(W)
        model = ConditionalGRNRegressor("iv").fit(ad, structure)
    else:
        structure = [0, 1, 3, 4]
        model = ConditionalGRNRegressor("iv", regulators=list(genes[structure])).fit(ad)
    assert model.iv_unidentified_.empty  # strong instruments: every edge is fitted
    naive = _naive_2sls(ad, structure, genes)
    C = model.coef_.toarray()
    assert naive
    S = model.stderr_.toarray()
    for g, (regs, params, bse, ssr, df_resid) in naive.items():
        np.testing.assert_allclose(model.intercept_[g], params[0], atol=1e-8, rtol=1e-8)
        np.testing.assert_allclose(C[regs, g], params[1:], atol=1e-8, rtol=1e-8)
        # Inference: the structural residuals (measured regulators), 2SLS covariance.
        np.testing.assert_allclose(model.rss_[g], ssr, rtol=1e-8)
        np.testing.assert_allclose(S[regs, g], bse[1:], atol=1e-10, rtol=1e-8)
        assert model.dof_[g] == df_resid
    iv = Interventions.from_adata(ad)
    np.testing.assert_array_equal(model.n_samples_, ad.n_obs - iv.mask.toarray().sum(axis=0))
    # coef_table carries the same inference as for regressor="ols".
    table = model.coef_table()
    assert {"se", "t", "p_value", "q_value"} <= set(table.columns)
    np.testing.assert_allclose(table["t"], table["coef"] / table["se"])


def test_iv_on_dask_equals_in_memory():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(2)
    ad, W = _small_data(rng)
    ref = ConditionalGRNRegressor("iv").fit(ad, network(W))
    lazy = ad.copy()
    lazy.X = da.from_array(np.asarray(ad.X), chunks=(50, -1))
    got = ConditionalGRNRegressor("iv").fit(lazy, network(W))
    np.testing.assert_allclose(got.coef_.toarray(), ref.coef_.toarray(), atol=1e-12)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, atol=1e-12)
    np.testing.assert_allclose(got.rss_, ref.rss_, rtol=1e-10)
    np.testing.assert_allclose(got.stderr_.toarray(), ref.stderr_.toarray(), rtol=1e-10)
    np.testing.assert_allclose(got.control_mean_, ref.control_mean_, rtol=1e-12)


def _errors(n_cells, regressor, rng):
    """Coefficient and worst prediction error (in control sd) on a feedback model."""
    p = 10
    W = random_feedback(p, np.random.default_rng(7), radius=0.7)
    assert abs(np.max(np.abs(np.linalg.eigvals(W))) - 0.7) < 1e-9
    mu = np.full(p, 5.0)
    # Every gene but G9 is knocked out somewhere: "most genes intervened on".
    conds = [()] + [(j,) for j in range(p - 1)]
    ad = sample(W, mu, conds, n_cells, rng)
    model = ConditionalGRNRegressor(regressor, alpha=0.0).fit(ad, network(W))
    held = [(0, 4), (2, 7), (5, 8), (1, 6)]  # unseen combinations
    asked = [(j,) for j in range(p - 1)] + held
    truth = np.array([exact_mean(W, mu, c) for c in asked])
    pred = model.predict(request(asked, p)).X
    coef_error = np.max(np.abs(model.coef_.toarray() - W)[W != 0])
    return coef_error, float(np.max(np.abs(pred - truth) / exact_sd(W, 1.0)))


def test_iv_is_consistent_under_feedback_and_per_gene_fit_is_not():
    rng = np.random.default_rng(3)
    iv = [_errors(n, "iv", rng) for n in (100, 1000, 10000)]
    ridge = [_errors(n, "ridge", rng) for n in (100, 1000, 10000)]
    coef_iv, pred_iv = np.array(iv).T
    coef_ridge, pred_ridge = np.array(ridge).T
    # IV: both errors shrink with the cells per perturbation (about 1/sqrt(n)).
    assert coef_iv[2] < coef_iv[1] < coef_iv[0]
    assert pred_iv[2] < pred_iv[1] < pred_iv[0]
    assert pred_iv[2] <= 0.1
    assert coef_iv[2] <= 0.05
    # The per-gene fit's bias stays: no better at 10,000 cells than at 1,000.
    assert pred_ridge[2] > 0.3
    assert pred_ridge[2] > 0.7 * pred_ridge[1]
    assert coef_ridge[2] > 0.15


def test_iv_leaves_out_and_names_unidentified_edges():
    """G3 and G4 are never perturbed and G4 has 4 regulators but only 4
    conditions keep it: the rank condition fails. The edges into G4 that the
    conditions cannot identify are left out (iv_fallback='drop'), named in a
    warning and in iv_unidentified_; the identified genes are fitted as usual."""
    rng = np.random.default_rng(4)
    p = 5
    W = random_feedback(p, rng)
    conds = [(), (0,), (1,), (2,)]
    ad = sample(W, np.full(p, 4.0), conds, 300, rng)
    G = network(W)
    for r in ("G0", "G1", "G2", "G3"):
        G.add_edge(r, "G4", weight=0.1)
    with pytest.warns(CausalCellWarning, match=r"cannot identify .*G3 -> G4"):
        model = ConditionalGRNRegressor("iv", iv_fallback="drop").fit(ad, G)
    lost = set(map(tuple, model.iv_unidentified_.to_numpy()))
    assert ("G3", "G4") in lost
    assert all(target in ("G3", "G4") for _, target in lost)
    for r, g in lost:
        assert model.coef_[ad.var_names.get_loc(r), ad.var_names.get_loc(g)] == 0
    # Every regulator that remains for G4 is moved clearly by some condition.
    kept = model.coef_.toarray()[:, 4] != 0
    assert kept.any()


def test_iv_gene_without_regulators_gets_its_mean():
    rng = np.random.default_rng(5)
    ad, _W = _small_data(rng)
    G = nx.DiGraph([("G0", "G1")])
    model = ConditionalGRNRegressor("iv").fit(ad, G)
    iv = Interventions.from_adata(ad)
    keep = ~iv.mask.toarray()[:, 3]
    np.testing.assert_allclose(model.intercept_[3], np.asarray(ad.X)[keep, 3].mean(), atol=1e-10)


def _unperturbed_root(n_cells: int = 400, seed: int = 6):
    """G0 -> G2 <- G1, G2 -> G3, G3 <-> G4 (a loop); G1, G2, G3, G4 knocked out,
    G0 never: the conditions cannot identify G0 -> G2."""
    rng = np.random.default_rng(seed)
    W = np.zeros((5, 5))
    W[0, 2], W[1, 2], W[2, 3], W[3, 4], W[4, 3] = 0.8, -0.6, 0.7, 0.5, 0.4
    conds = [(), (1,), (2,), (3,), (4,)]
    return sample(W, np.full(5, 4.0), conds, n_cells, rng), W


@pytest.mark.parametrize("alpha", [1.0, "gcv"])
def test_iv_fallback_ridge_equals_the_ridge_fit_and_leaves_identified_genes(alpha):
    """G2's regulator G0 is never perturbed: G2 gets exactly the column of the
    regressor='ridge' model (same alpha); every other gene keeps the 2SLS fit of
    iv_fallback='drop'. An unidentified gene on a loop keeps the drop behaviour
    (the per-gene fit is biased there)."""
    ad, W = _unperturbed_root()
    G = network(W)
    G.add_edge("G0", "G4", weight=0.0)  # G4 is on the G3 <-> G4 loop
    with pytest.warns(CausalCellWarning, match=r"G0 -> G2.*per-gene ridge fit.*edges into 1 "
                                               r"gene\(s\) are left out .*on a loop"):
        got = ConditionalGRNRegressor("iv", alpha=alpha).fit(ad, G)
    drop = ConditionalGRNRegressor("iv", alpha=alpha, iv_fallback="drop")
    with pytest.warns(CausalCellWarning, match=r"left out of the fit"):
        drop.fit(ad, G)
    ridge = ConditionalGRNRegressor("ridge", alpha=alpha).fit(ad, G)
    assert set(map(tuple, got.iv_unidentified_.to_numpy())) == {("G0", "G2"), ("G0", "G4")}
    assert list(got.iv_fallback_genes_) == ["G2"]
    assert drop.iv_fallback_genes_.empty
    C, D, R = got.coef_.toarray(), drop.coef_.toarray(), ridge.coef_.toarray()
    np.testing.assert_allclose(C[:, 2], R[:, 2], rtol=1e-10, atol=1e-12)
    assert got.intercept_[2] == pytest.approx(ridge.intercept_[2], rel=1e-10)
    assert got.alpha_[2] == ridge.alpha_[2]
    assert C[0, 2] != 0
    assert D[0, 2] == 0
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(C[:, others], D[:, others])
    np.testing.assert_array_equal(got.intercept_[others], drop.intercept_[others])
    np.testing.assert_array_equal(got.alpha_[others], 0.0)


def test_iv_fallback_is_checked():
    from causalcell.errors import ParameterError

    ad, W = _unperturbed_root(n_cells=50)
    with pytest.raises(ParameterError, match="iv_fallback must be one of"):
        ConditionalGRNRegressor("iv", iv_fallback="ols").fit(ad, network(W))


def test_iv_fallback_in_pool_mode_equals_the_ridge_fit():
    """Every gene regressed on the pool {G0, G1}; G0 is never perturbed, so no
    gene's G0 edge is identified. Genes outside the pool get exactly the ridge
    fit; the pool members regress on each other (a loop): edges left out."""
    ad, _W = _unperturbed_root()
    pool = ["G0", "G1"]
    with pytest.warns(CausalCellWarning, match=r"ridge fit.*left out"):
        got = ConditionalGRNRegressor("iv", regulators=pool).fit(ad)
    ridge = ConditionalGRNRegressor("ridge", regulators=pool).fit(ad)
    assert list(got.iv_fallback_genes_) == ["G2", "G3", "G4"]
    C, R = got.coef_.toarray(), ridge.coef_.toarray()
    np.testing.assert_allclose(C[:, 2:], R[:, 2:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.intercept_[2:], ridge.intercept_[2:], rtol=1e-10)
    # G1 -> G0 is identified (G1 is perturbed), G0 -> G1 is not and G1 is on the loop.
    with pytest.warns(CausalCellWarning, match="left out"):
        drop = ConditionalGRNRegressor("iv", regulators=pool, iv_fallback="drop").fit(ad)
    np.testing.assert_array_equal(C[:, :2], drop.coef_.toarray()[:, :2])
    assert C[0, 1] == 0
    assert C[1, 0] != 0


def test_iv_fallback_on_dask_and_saved():
    """The ridge fallback runs on Dask like the rest of the fit; iv_fallback is
    stored with the model's parameters."""
    da = pytest.importorskip("dask.array")
    ad, W = _unperturbed_root()
    with pytest.warns(CausalCellWarning, match="per-gene ridge fit"):
        ref = ConditionalGRNRegressor("iv").fit(ad, network(W))
    lazy = ad.copy()
    lazy.X = da.from_array(np.asarray(ad.X), chunks=(300, -1))
    with pytest.warns(CausalCellWarning, match="per-gene ridge fit"):
        got = ConditionalGRNRegressor("iv").fit(lazy, network(W))
    assert list(got.iv_fallback_genes_) == ["G2"]
    np.testing.assert_allclose(got.coef_.toarray(), ref.coef_.toarray(), atol=1e-10)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, atol=1e-10)


def test_iv_fallback_is_saved(tmp_path):
    ad, W = _unperturbed_root(n_cells=100)
    with pytest.warns(CausalCellWarning, match="left out"):
        model = ConditionalGRNRegressor("iv", iv_fallback="drop").fit(ad, network(W))
    loaded = ConditionalGRNRegressor.load(model.save(tmp_path / "model"))
    assert loaded.iv_fallback == "drop"
    np.testing.assert_array_equal(loaded.coef_.toarray(), model.coef_.toarray())


def test_iv_inspection_survives_save_and_load(tmp_path):
    """iv_unidentified_, iv_fallback_genes_ and the 2SLS inference (stderr_, rss_,
    dof_; NaN standard errors for the ridge-refitted gene, whose rss_ is the ridge
    fit's) are written by save() and restored by load()."""
    ad, W = _unperturbed_root(n_cells=200)
    G = network(W)
    G.add_edge("G0", "G4", weight=0.0)  # unidentified on the loop: left out
    with pytest.warns(CausalCellWarning, match="per-gene ridge fit"):
        model = ConditionalGRNRegressor("iv").fit(ad, G)
    ridge = ConditionalGRNRegressor("ridge").fit(ad, G)
    assert list(model.iv_fallback_genes_) == ["G2"]
    S = model.stderr_.toarray()
    assert np.isnan(S[[0, 1], 2]).all()  # the ridge-fitted gene: no standard errors
    # G2's rss_: its ridge fit's residuals over the samples that keep it (knockouts at 0).
    X = np.asarray(ad.X)
    keep = (ad.obs["perturbation"] != "G2").to_numpy()
    fitted = ridge.intercept_[2] + X[keep] @ ridge.coef_.toarray()[:, 2]
    assert model.rss_[2] == pytest.approx(np.sum((X[keep, 2] - fitted) ** 2), rel=1e-8)
    assert np.isfinite(S[2, 3])
    assert S[2, 3] > 0
    loaded = ConditionalGRNRegressor.load(model.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.iv_unidentified_, model.iv_unidentified_)
    pd.testing.assert_index_equal(loaded.iv_fallback_genes_, model.iv_fallback_genes_)
    np.testing.assert_array_equal(loaded.stderr_.toarray(), S)
    np.testing.assert_array_equal(loaded.rss_, model.rss_)
    np.testing.assert_array_equal(loaded.dof_, model.dof_)
    pd.testing.assert_frame_equal(loaded.coef_table(), model.coef_table())
    # A model without an IV fit has none of these after loading.
    plain = ConditionalGRNRegressor.load(ridge.save(tmp_path / "ridge"))
    assert not hasattr(plain, "iv_unidentified_")
    assert not hasattr(plain, "iv_fallback_genes_")


def test_first_stage_check_equals_the_smallest_eigenvalues():
    """The batched Cholesky check decides as the eigenvalues do, chunk by chunk,
    whether or not a chunk holds a failing matrix."""
    from causalcell.models._iv import _CHECK_CHUNK, _smallest_eigenvalue_above

    rng = np.random.default_rng(0)
    m, r = 3 * _CHECK_CHUNK + 5, 6
    A = rng.normal(size=(m, r, r))
    A = A @ A.transpose(0, 2, 1) + 0.05 * np.eye(r)
    low = np.linalg.eigvalsh(A)[:, 0]
    threshold = float(np.quantile(low, 0.1))  # about one matrix in ten fails
    A[: _CHECK_CHUNK] += 2 * threshold * np.eye(r)  # a first chunk without failure
    low = np.linalg.eigvalsh(A)[:, 0]
    keep = np.abs(low - threshold) > 1e-9  # no tie at rounding level
    got = _smallest_eigenvalue_above(A, threshold)
    np.testing.assert_array_equal(got[keep], (low > threshold)[keep])
    assert got[:_CHECK_CHUNK].all()
    assert not got.all()


def test_iv_fallback_reuses_the_pass_over_the_samples(monkeypatch):
    """The ridge fallback is solved from the IV fit's own pass over the samples (its
    regulators include the fallback genes'): one pass of moments, not two."""
    from causalcell.data import _moments
    from causalcell.models import _iv, _solve

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return _moments.moments(*args, **kwargs)

    monkeypatch.setattr(_iv, "moments", counting)
    monkeypatch.setattr(_solve, "moments", counting)
    ad, W = _unperturbed_root()
    with pytest.warns(CausalCellWarning, match="per-gene ridge fit"):
        got = ConditionalGRNRegressor("iv").fit(ad, network(W))
    assert list(got.iv_fallback_genes_) == ["G2"]
    assert len(calls) == 1
