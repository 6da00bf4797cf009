"""Tests of causalcell.models._conditional.ConditionalGRNRegressor: known answers,
exclusion, clamping, a pgmpy peer check, persistence and errors."""

from __future__ import annotations

import json
import warnings
import zipfile

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import statsmodels.api as sm
from anndata import AnnData
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor

from causalcell.data import Interventions, pseudobulk, split_by_perturbation
from causalcell.datasets import simulate
from causalcell.errors import (
    CausalCellError,
    CausalCellWarning,
    DataFileError,
    NetworkError,
    NotFittedError,
    ParameterError,
    PredictionError,
)
from causalcell.models import ConditionalGRNRegressor

LEVEL = "expression_level_after_perturbation"


def model(**kwargs) -> ConditionalGRNRegressor:
    return ConditionalGRNRegressor(verbose=False, **kwargs)


@pytest.fixture(scope="module")
def small():
    """A small deep-sequenced linear screen (low measurement noise)."""
    return simulate(
        n_genes=40,
        n_tfs=6,
        n_combinations=4,
        n_cells_per_perturbation=30,
        n_control_cells=150,
        library_size=1e5,
        random_state=3,
    )


@pytest.fixture(scope="module")
def fitted(small):
    return model().fit(small.adata, small.network)


def request(rows):
    """A request DataFrame from (label, kind, level) tuples."""
    labels, kinds, levels = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": [k == "control" for k in kinds],
            "perturbation_type": kinds,
            LEVEL: levels,
        },
        index=[f"r{i}" for i in range(len(rows))],
    )


# ---------------------------------------------------------------------------
# known answer
# ---------------------------------------------------------------------------


def changes_pearson(pred, truth, start, x0):
    """Per perturbation: Pearson of predicted vs true change over non-targeted genes
    (``x0``: the true control state, ``start``: the model's)."""
    iv = Interventions.from_obs(truth.obs, truth.var_names, warn_unmeasured=False)
    M = iv.mask.toarray()
    out = []
    for i in range(truth.n_obs):
        keep = ~M[i]
        true = truth.X[i, keep] - x0[keep]
        if np.std(true) < 1e-9:  # a leaf gene's knockdown changes nothing else
            continue
        out.append(np.corrcoef(pred[i, keep] - start[keep], true)[0, 1])
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_known_answer_held_out_perturbations(seed):
    sim = simulate(n_genes=200, n_tfs=20, library_size=1e5, random_state=seed)
    train, test = split_by_perturbation(sim.adata, test_size=0.3, random_state=seed + 10)
    held = set(test.uns["split"]["test_perturbations"])
    truth = sim.truth[sim.truth.obs["perturbation"].astype(str).isin(held).to_numpy()]
    fitted = model().fit(train, sim.network)
    pred = fitted.predict(truth.obs).X
    start = fitted.control_mean_
    x0 = sim.truth.X[0]
    r = changes_pearson(pred, truth, start, x0)
    assert len(r) >= 5
    assert np.median(r) >= 0.9
    # Better than predicting the control mean (no change) ...
    iv = Interventions.from_obs(truth.obs, truth.var_names, warn_unmeasured=False)
    keep = ~iv.mask.toarray()
    err_model = np.mean(((pred - truth.X) ** 2)[keep])
    err_control = np.mean(((start - truth.X) ** 2)[keep])
    assert err_model < 0.5 * err_control
    # ... and than the training mean of the perturbed cells (a non-trivial change).
    perturbed = ~train.obs["is_control"].to_numpy()
    mean_change = np.asarray(train.X[perturbed]).mean(axis=0)
    r_mean = changes_pearson(np.tile(mean_change, (truth.n_obs, 1)), truth, start, x0)
    assert np.median(r) > np.median(r_mean) + 0.2


def test_peer_check_with_pgmpy_linear_gaussian_do():
    from pgmpy.factors.continuous import LinearGaussianCPD
    from pgmpy.models import LinearGaussianBayesianNetwork

    edges = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"), ("D", "E")]
    net = LinearGaussianBayesianNetwork(edges)
    net.add_cpds(
        LinearGaussianCPD("A", [2.0], 0.5),
        LinearGaussianCPD("B", [1.0, 0.8], 0.3, ["A"]),
        LinearGaussianCPD("C", [0.5, -0.6], 0.3, ["A"]),
        LinearGaussianCPD("D", [0.2, 0.7, 0.5], 0.3, ["B", "C"]),
        LinearGaussianCPD("E", [1.0, -0.9], 0.3, ["D"]),
    )
    genes = ["A", "B", "C", "D", "E"]
    parts, obs = [], []
    for label, do in (("control", None), ("A", {"A": 0.5}), ("C", {"C": 2.0}), ("B", {"B": 0.0})):
        df = net.simulate(n_samples=3000, do=do, seed=len(parts) + 1)[genes]
        parts.append(df.to_numpy())
        kind = "control" if do is None else "knockdown"
        level = np.nan if do is None else next(iter(do.values()))
        obs += [(label, do is None, kind, level)] * len(df)
    adata = AnnData(
        X=np.vstack(parts),
        obs=pd.DataFrame(
            obs,
            columns=["perturbation", "is_control", "perturbation_type", LEVEL],
            index=[f"s{i}" for i in range(len(obs))],
        ),
        var=pd.DataFrame(index=genes),
    )
    G = nx.DiGraph(edges)
    fitted = model(alpha=1e-6).fit(adata, G)
    control = parts[0]
    for do in ({"D": 3.0}, {"B": 2.0}, {"A": 1.0, "C": 0.0}):
        label = ",".join(sorted(do))
        lv = ",".join(str(do[g]) for g in sorted(do))
        pred = fitted.predict(request([(label, "knockdown", lv)])).X[0]
        sample = net.simulate(n_samples=20000, do=do, seed=99)[genes].to_numpy()
        mean = sample.mean(axis=0)
        # Monte-Carlo error of the reference plus that of the model's start state
        # (the mean of the control samples; coefficient errors are smaller).
        se = np.sqrt(sample.var(axis=0) / len(sample) + control.var(axis=0) / len(control))
        clamped = [genes.index(g) for g in do]
        assert np.all(pred[clamped] == mean[clamped])
        assert np.all(np.abs(pred - mean) <= 4 * se + 1e-12), (do, (pred - mean) / se)


# ---------------------------------------------------------------------------
# exclusion and clamping
# ---------------------------------------------------------------------------


def test_exclusion_corrupting_a_gene_where_targeted_changes_nothing_of_its_model():
    sim = simulate(n_genes=30, n_tfs=5, n_combinations=3, record_levels=False, random_state=4)
    base = model().fit(sim.adata, sim.network)
    iv = Interventions.from_adata(sim.adata, warn_unmeasured=False)
    for gene in ("TF02", "TF03"):
        where = iv.targeted(gene)
        assert where.any()
        bad = sim.adata.copy()
        j = bad.var_names.get_loc(gene)
        bad.X[where, j] = 50.0 + np.arange(where.sum())
        other = model().fit(bad, sim.network)
        np.testing.assert_array_equal(base.coef_[:, [j]].toarray(), other.coef_[:, [j]].toarray())
        assert base.intercept_[j] == other.intercept_[j]
        assert base.n_samples_[j] == other.n_samples_[j] == (~where).sum()


@pytest.mark.parametrize("steps", ["steady_state", 0, 3])
def test_clamping_is_exact_for_singles_and_combinations(fitted, steps):
    req = request(
        [
            ("TF01", "knockdown", 0.123456789),
            ("TF02,TF04", "knockdown", "0.5,3.25"),
            ("TF03", "knockout", np.nan),
            ("TF05,TF01", "overexpression", "7.5,0.1"),
            ("control", "control", np.nan),
            ("G010", "knockdown", 1e-3),
        ]
    )
    rng = np.random.default_rng(0)
    start = rng.normal(2.0, 1.0, (len(req), fitted.n_features_in_))
    for s in (None, start):
        pred = fitted.predict(req, steps=steps, start=s)
        X = pd.DataFrame(pred.X, index=pred.obs_names, columns=pred.var_names)
        assert X.loc["r0", "TF01"] == 0.123456789
        assert X.loc["r1", "TF02"] == 0.5
        assert X.loc["r1", "TF04"] == 3.25
        assert X.loc["r2", "TF03"] == 0.0
        assert X.loc["r3", "TF05"] == 7.5
        assert X.loc["r3", "TF01"] == 0.1
        assert X.loc["r5", "G010"] == 1e-3
        expected = fitted.control_mean_ if s is None else start[4]
        np.testing.assert_array_equal(X.loc["r4"].to_numpy(), expected)  # control: the start
        assert list(pred.obs_names) == list(req.index)


def test_missing_level_uses_training_mean_level(small, fitted):
    req = request([("TF01", "knockdown", np.nan)])
    pred = fitted.predict(req)
    tl = fitted.target_levels_
    expected = tl.loc[(tl["perturbation"] == "TF01") & (tl["gene"] == "TF01"), "level"].item()
    assert pred.X[0, fitted.genes_.get_loc("TF01")] == expected


def test_steps_reach_the_steady_state_with_feedback_cycles():
    sim = simulate(n_genes=40, n_tfs=8, feedback=True, library_size=1e5, random_state=2)
    assert not nx.is_directed_acyclic_graph(sim.network)
    fitted = model().fit(sim.adata, sim.network)
    steady = fitted.predict(sim.truth.obs).X
    many = fitted.predict(sim.truth.obs, steps=300).X
    np.testing.assert_allclose(many, steady, atol=1e-8)
    one = fitted.predict(sim.truth.obs, steps=1).X
    assert np.abs(one - steady).max() > 1e-3  # propagation beyond one step matters


def test_unstable_regulation_raises_with_advice():
    m = model().fit(*_two_gene_screen())
    # A feedback loop A <-> B with gain 1.2: no steady state unless it is cut.
    m.coef_ = sp.csr_array(np.array([[0.0, 1.2, 0.0], [1.2, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    m._steady = None
    with pytest.raises(PredictionError, match="spectral radius.*alpha.*steps=k"):
        m.predict(request([("C", "knockdown", 0.5)]))
    assert np.isfinite(m.predict(request([("C", "knockdown", 0.5)]), steps=4).X).all()
    m.predict(request([("A", "knockdown", 0.5)]))  # cutting the loop stabilizes it


def _two_gene_screen():
    rng = np.random.default_rng(0)
    X = rng.normal(2.0, 0.3, (60, 3))
    obs = pd.DataFrame(
        {
            "perturbation": ["control"] * 40 + ["A"] * 20,
            "is_control": [True] * 40 + [False] * 20,
            "perturbation_type": ["control"] * 40 + ["knockdown"] * 20,
        },
        index=[f"c{i}" for i in range(60)],
    )
    G = nx.DiGraph([("A", "B"), ("B", "A"), ("B", "C")])
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=["A", "B", "C"])), G


# ---------------------------------------------------------------------------
# regressors
# ---------------------------------------------------------------------------


def test_ols_coef_table_equals_statsmodels(small):
    fitted = model(regressor="ols").fit(small.adata, small.network)
    table = fitted.coef_table()
    assert list(table.columns) == ["regulator", "target", "coef", "se", "t", "p_value", "q_value"]
    assert len(table) == small.network.number_of_edges() - nx.number_of_selfloops(small.network)
    iv = Interventions.from_adata(small.adata, warn_unmeasured=False)
    Z = np.array(small.adata.X, dtype=float)
    rows = np.repeat(np.arange(small.adata.n_obs), np.diff(iv.mask.indptr))
    known = ~np.isnan(iv.levels)
    Z[rows[known], iv.mask.indices[known]] = iv.levels[known]
    for target in ("TF03", "G010", "G020"):
        sub = table[table["target"] == target]
        regs = [small.adata.var_names.get_loc(r) for r in sub["regulator"]]
        keep = ~iv.targeted(target)
        j = small.adata.var_names.get_loc(target)
        res = sm.OLS(
            np.asarray(small.adata.X[keep, j], dtype=float), sm.add_constant(Z[np.ix_(keep, regs)])
        ).fit()
        np.testing.assert_allclose(sub["coef"], res.params[1:], rtol=1e-7)
        np.testing.assert_allclose(sub["se"], res.bse[1:], rtol=1e-7)
        np.testing.assert_allclose(sub["p_value"], res.pvalues[1:], rtol=1e-6, atol=1e-300)
    assert (table["q_value"] >= table["p_value"]).all()


def test_gcv_alpha_and_regulator_list(small):
    tfs = [f"TF0{i}" for i in range(1, 7)] + ["NOT_A_GENE"]
    with pytest.warns(CausalCellWarning, match="1 of the 7 regulators"):
        fitted = model(alpha="gcv", regulators=tfs).fit(small.adata)
    C = fitted.coef_.tocsc()
    j = fitted.genes_.get_loc("G010")
    assert set(fitted.genes_[C[:, [j]].tocoo().row]) == set(tfs[:-1])
    k = fitted.genes_.get_loc("TF02")
    assert set(fitted.genes_[C[:, [k]].tocoo().row]) == set(tfs[:-1]) - {"TF02"}
    assert set(fitted.alpha_) <= set(fitted.alphas)


def test_sklearn_ridge_instance_equals_batched_path(small, fitted):
    generic = model(regressor=Ridge(alpha=1.0)).fit(small.adata, small.network)
    np.testing.assert_allclose(generic.coef_.toarray(), fitted.coef_.toarray(), atol=1e-10)
    np.testing.assert_allclose(generic.intercept_, fitted.intercept_, rtol=1e-10)
    np.testing.assert_allclose(
        generic.predict(small.truth.obs).X, fitted.predict(small.truth.obs).X, atol=1e-9
    )


def test_lasso_is_sparse_and_linear(small):
    fitted = model(regressor="lasso", alpha=0.01).fit(small.adata, small.network)
    assert fitted.coef_ is not None
    assert fitted.estimators_ is None
    assert fitted.network_.number_of_edges() <= fitted.coef_.nnz
    pred = fitted.predict(small.truth.obs)
    assert np.isfinite(pred.X).all()


def test_nonlinear_regressor_parallel_and_quiet(small, capsys):
    kwargs = {"regressor": DecisionTreeRegressor(max_depth=3, random_state=0)}
    one = model(**kwargs).fit(small.adata, small.network)
    two = model(n_jobs=2, **kwargs).fit(small.adata, small.network)
    assert one.coef_ is None
    assert len(one.estimators_) == one.n_features_in_
    req = small.truth.obs.iloc[:6]
    a = one.predict(req, steps=3).X
    np.testing.assert_array_equal(a, two.predict(req, steps=3).X)
    np.testing.assert_array_equal(a[0], one.control_mean_)  # control row
    steady = one.predict(req).X  # converges: the simulated network is a DAG
    assert np.isfinite(steady).all()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    with pytest.raises(ParameterError, match="cannot be saved safely"):
        one.save("unused")


def test_nonlinear_propagation_clamps_targets_at_every_step(small):
    """Per-gene scikit-learn regressors: the targets are re-clamped after every
    step (their own regressor must not move them), as in a naive loop."""
    m = model(regressor=DecisionTreeRegressor(max_depth=3, random_state=0))
    m.fit(small.adata, small.network)
    genes = list(m.genes_)
    # Targets that have regulators and targets of their own in the network.
    regulated = [g for g in genes if small.network.in_degree(g) and small.network.out_degree(g)]
    assert len(regulated) >= 2
    req = request([(regulated[0], "knockdown", 0.25),
                   (f"{regulated[0]},{regulated[1]}", "overexpression", "6.0,5.5")])
    rng = np.random.default_rng(1)
    start = rng.normal(2.0, 0.5, (2, len(genes)))
    parents = [np.sort([genes.index(r) for r in small.network.predecessors(g)])
               for g in genes]
    clamps = [{genes.index(regulated[0]): 0.25},
              {genes.index(regulated[0]): 6.0, genes.index(regulated[1]): 5.5}]
    for steps in (1, 4):
        x = start.copy()
        for i, targets in enumerate(clamps):
            x[i, list(targets)] = list(targets.values())
        base = {g: est.predict(start[:, parents[g]])
                for g, est in enumerate(m.estimators_) if est is not None}
        for _ in range(steps):
            new = start.copy()
            for g, b in base.items():
                new[:, g] += m.estimators_[g].predict(x[:, parents[g]]) - b
            for i, targets in enumerate(clamps):
                new[i, list(targets)] = list(targets.values())
            x = new
        pred = m.predict(req, steps=steps, start=start).X
        np.testing.assert_allclose(pred, x, rtol=1e-12)
        for i, targets in enumerate(clamps):
            for j, level in targets.items():
                assert pred[i, j] == level


def test_quiet_by_default_and_scikit_learn_names(small, capsys):
    fitted = ConditionalGRNRegressor().fit(small.adata, small.network)
    fitted.predict(small.truth.obs)
    assert capsys.readouterr().err == ""  # progress only when asked (verbose=True)
    assert fitted.n_features_in_ == small.adata.n_vars
    assert fitted.feature_names_in_.tolist() == small.adata.var_names.tolist()


def test_fit_on_pseudobulk_rows(small):
    bulk = pseudobulk(small.adata)
    fitted = model(alpha=0.1).fit(bulk, small.network)
    assert fitted.n_samples_.max() == bulk.n_obs
    pred = fitted.predict(small.truth.obs).X
    r = changes_pearson(pred, small.truth, fitted.control_mean_, small.truth.X[0])
    assert np.median(r) > 0.8


def test_start_from_control_cells_equals_their_mean(small, fitted):
    controls = small.adata[small.adata.obs["is_control"].to_numpy()][:20]
    req = small.truth.obs.iloc[:5]
    a = fitted.predict(req, start=controls).X
    b = fitted.predict(req, start=np.asarray(controls.X, dtype=float).mean(axis=0)).X
    np.testing.assert_allclose(a, b, atol=1e-12)


# ---------------------------------------------------------------------------
# estimator conventions, persistence
# ---------------------------------------------------------------------------


def test_clone_and_params():
    m = model(regressor="ols", alpha=2.0, regulators=["A"], n_jobs=2)
    c = clone(m)
    assert c.get_params() == m.get_params()
    assert not hasattr(c, "genes_")


def test_save_load_round_trip(tmp_path, small):
    for kw in ({}, {"regressor": "ols"}, {"alpha": "gcv"}):
        fitted = model(**kw).fit(small.adata, small.network)
        path = fitted.save(tmp_path / "model")
        assert path.suffix == ".npz"
        loaded = ConditionalGRNRegressor.load(path)
        assert loaded.get_params() == fitted.get_params()
        np.testing.assert_array_equal(
            loaded.predict(small.truth.obs).X, fitted.predict(small.truth.obs).X
        )
        # Missing levels resolve from the stored training levels.
        req = request([("TF01", "knockdown", np.nan)])
        np.testing.assert_array_equal(loaded.predict(req).X, fitted.predict(req).X)
        if kw.get("regressor") == "ols":
            pd.testing.assert_frame_equal(loaded.coef_table(), fitted.coef_table())


def test_load_rejects_other_versions_truncated_and_malformed_files(tmp_path, fitted):
    path = fitted.save(tmp_path / "model.npz")
    raw = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError, match="truncated"):
        ConditionalGRNRegressor.load(cut)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["__meta__"]))
    header["format_version"] = 999
    other = dict(arrays, __meta__=np.array(json.dumps(header)))
    np.savez(tmp_path / "future.npz", **other)
    with pytest.raises(DataFileError, match="format 999"):
        ConditionalGRNRegressor.load(tmp_path / "future.npz")
    broken = dict(arrays, intercept=arrays["intercept"][:3])
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(DataFileError, match="intercept.*shape"):
        ConditionalGRNRegressor.load(tmp_path / "broken.npz")
    assert zipfile.is_zipfile(path)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_errors_are_clear(small, fitted):
    with pytest.raises(NotFittedError, match="fit"):
        model().predict(small.truth.obs)
    with pytest.raises(PredictionError, match="unknown to the model: NOPE"):
        fitted.predict(request([("NOPE", "knockout", 0.0)]))
    with pytest.raises(PredictionError, match="G030.*no\\s+training sample"):
        fitted.predict(request([("G030", "knockdown", np.nan)]))
    stranger = nx.DiGraph([("X1", "X2")])
    with pytest.raises(NetworkError, match="shares no gene"):
        model().fit(small.adata, stranger)
    with pytest.raises(NetworkError, match="DiGraph"):
        model().fit(small.adata, nx.Graph([("TF01", "G010")]))
    with pytest.raises(ParameterError, match="regressor"):
        model(regressor="forest").fit(small.adata)
    with pytest.raises(ParameterError, match="alpha"):
        model(alpha=-1).fit(small.adata)
    with pytest.raises(ParameterError, match="start must have shape"):
        fitted.predict(small.truth.obs, start=np.zeros(3))
    with pytest.raises(ParameterError, match="steps"):
        fitted.predict(small.truth.obs, steps=-1)
    for exc in (NotFittedError, PredictionError, NetworkError, ParameterError, DataFileError):
        assert issubclass(exc, CausalCellError)


def test_does_not_mutate_inputs(small):
    adata = small.adata.copy()
    G = small.network.copy()
    before_obs = adata.obs.copy()
    X = np.array(adata.X)
    model().fit(adata, G)
    pd.testing.assert_frame_equal(adata.obs, before_obs)
    np.testing.assert_array_equal(adata.X, X)
    assert nx.utils.graphs_equal(G, small.network)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model().fit(adata, G)  # no warning on clean input


def test_sparse_expression_gives_the_same_model(small, fitted):
    sparse = small.adata.copy()
    sparse.X = sp.csr_matrix(np.where(sparse.X < 1.0, 0.0, sparse.X))
    dense = sparse.copy()
    dense.X = sparse.X.toarray()
    a = model().fit(sparse, small.network)
    b = model().fit(dense, small.network)
    np.testing.assert_allclose(a.coef_.toarray(), b.coef_.toarray(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-9)


def test_linear_fit_prepares_its_pass_buffers_only_for_dense_x_in_memory(small, monkeypatch):
    """ridge / OLS on dense X (or a dense layer) start the pass's work arrays before
    validating the data, bounded by the network's regulators among the genes, and
    the pass takes them; the model is bit for bit the one fitted without them.
    Sparse X, the other regressors and a missing layer (refused by the contract as
    before) start none."""
    from causalcell.data import _moments
    from causalcell.errors import DataContractError
    from causalcell.models import _conditional

    made = []

    class Recorded(_moments.PassBuffers):
        def __init__(self, *shape, **kwargs):
            super().__init__(*shape, **kwargs)
            made.append(self)

    monkeypatch.setattr(_conditional, "PassBuffers", Recorded)
    adata = small.adata.copy()
    adata.layers["log1p"] = adata.X.copy()
    with_buffers = model(regressor="ols").fit(adata, small.network)
    assert len(made) == 1
    assert made[0].shape == (adata.n_obs, adata.n_vars)
    sources = {r for r, t in small.network.edges if r != t and t in set(adata.var_names)}
    assert made[0].regulators >= len(sources)
    assert made[0].take_block(made[0].shape) is None  # the pass took them
    assert made[0].take_work(adata.n_obs, adata.n_vars, 1, 1) is None
    model(layer="log1p").fit(adata, small.network)
    assert len(made) == 2
    sparse = adata.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    model().fit(sparse, small.network)
    model(regressor=DecisionTreeRegressor(max_depth=2)).fit(adata, small.network)
    with pytest.raises(DataContractError, match="nope"):
        model(layer="nope").fit(adata, small.network)
    assert len(made) == 2
    monkeypatch.setattr(_conditional, "_pass_buffers", lambda adata, layer, network: None)
    without = model(regressor="ols").fit(adata, small.network)
    np.testing.assert_array_equal(with_buffers.coef_.toarray(), without.coef_.toarray())
    np.testing.assert_array_equal(with_buffers.intercept_, without.intercept_)
    np.testing.assert_array_equal(with_buffers.stderr_.toarray(), without.stderr_.toarray())
