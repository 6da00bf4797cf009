"""Tests of the additive spline regulation (ConditionalGRNRegressor(regressor="spline")):
the basis equals scikit-learn's, the batched fit equals a per-gene SplineTransformer +
Ridge pipeline, the known answer of a saturating screen, non-linear propagation, the
fitted curves and the errors."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from scipy.interpolate import BSpline
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from causalcell.benchmark import cross_predict
from causalcell.data import Interventions
from causalcell.data._design import Design
from causalcell.datasets import simulate
from causalcell.errors import CausalCellError, ParameterError, PredictionError
from causalcell.evaluate import align, perturbation_metrics
from causalcell.graph._io import to_adjacency
from causalcell.models import ConditionalGRNRegressor
from causalcell.models._basis import SplineBasis

LEVEL = "expression_level_after_perturbation"


def spline(**kwargs) -> ConditionalGRNRegressor:
    return ConditionalGRNRegressor("spline", verbose=False, **kwargs)


@pytest.fixture(scope="module")
def screen():
    """A saturating screen with knockdowns (levels recorded for most, missing for one),
    knockouts, combinations and measurement noise."""
    sim = simulate(n_genes=40, n_tfs=6, regulation="saturating", n_combinations=4,
                   n_cells_per_perturbation=30, noise_sd=0.3, random_state=1)
    adata = sim.adata.copy()
    adata.obs[LEVEL] = adata.obs[LEVEL].astype(object)
    unknown = (adata.obs["perturbation"] == "TF02").to_numpy()
    adata.obs.loc[unknown, LEVEL] = "nan"  # per-cell T read from the measured level
    knockout = (adata.obs["perturbation"] == "TF04").to_numpy()
    adata.obs["perturbation_type"] = adata.obs["perturbation_type"].astype(object)
    adata.obs.loc[knockout, "perturbation_type"] = "knockout"
    return sim, adata


# --------------------------------------------------------------------------- the basis
@pytest.mark.parametrize("degree", [2, 3, 4])
@pytest.mark.parametrize("n_knots", [2, 3, 5, 8])
@pytest.mark.parametrize("placement", ["uniform", "quantile"])
def test_basis_equals_scikit_learn_spline_transformer(degree, n_knots, placement):
    rng = np.random.default_rng(degree * 10 + n_knots)
    X = rng.normal(size=(300, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, 2.0, 3.0]
    inside_and_outside = np.vstack([X, rng.normal(size=(100, 4)) * 10])
    reference = SplineTransformer(n_knots=n_knots, degree=degree, knots=placement,
                                  extrapolation="linear", include_bias=False).fit(X)
    ours = SplineBasis.from_values(X, n_knots, degree, placement)
    np.testing.assert_allclose(ours.transform(inside_and_outside),
                               reference.transform(inside_and_outside), rtol=0, atol=1e-12)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_cardinal_pieces_are_the_uniform_b_spline(degree):
    """The polynomial pieces of the uniform path equal scipy's cardinal B-spline: on
    integer knots 0 .. degree + 1, piece r at position u is B(u + degree - r)."""
    from causalcell.models._basis import _cardinal_pieces

    u = np.linspace(0.0, 1.0, 11)
    cardinal = BSpline.basis_element(np.arange(degree + 2.0), extrapolate=False)
    pieces = _cardinal_pieces(degree)
    for r in range(degree + 1):
        ours = np.polynomial.polynomial.polyval(u, pieces[r])
        np.testing.assert_allclose(ours, np.nan_to_num(cardinal(u + degree - r)), atol=1e-13)


def test_degree_one_basis_equals_scikit_learn_per_feature():
    # scikit-learn's linear extrapolation of degree 1 is only right for one feature
    # at a time (it increments `degree` inside its loop over features).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    for f in range(3):
        column = X[:, [f]]
        test = np.vstack([column, rng.normal(size=(50, 1)) * 8])
        reference = SplineTransformer(n_knots=4, degree=1, extrapolation="linear",
                                      include_bias=False).fit(column)
        ours = SplineBasis.from_values(column, 4, 1)
        np.testing.assert_allclose(ours.transform(test), reference.transform(test), atol=1e-12)


@pytest.mark.parametrize("placement", ["uniform", "quantile"])
def test_basis_derivatives_equal_scipy_and_continue_linearly(placement):
    rng = np.random.default_rng(1)
    X = rng.uniform(0.0, 3.0, size=(100, 2))
    basis = SplineBasis.from_values(X, 5, 3, placement)
    t = basis.full_knots()
    x = np.linspace(-2.0, 5.0, 71)
    for j in range(2):
        inside = np.clip(x, basis.low[j], basis.high[j])
        for b in range(basis.n_basis):
            spline_b = BSpline(t[j], np.eye(basis.n_knots + 2)[b], 3, extrapolate=False)
            ours = basis.evaluate(x, np.full(len(x), j), derivative=True)[:, b]
            np.testing.assert_allclose(ours, spline_b(inside, nu=1), atol=1e-10)


# --------------------------------------------------------------------------- the fit
def _per_gene_pipeline(X, iv, model, parents):
    """Coefficients and intercepts of make_pipeline(SplineTransformer, Ridge) per gene."""
    design = Design(X, iv)
    position = {g: i for i, g in enumerate(model.spline_regulators_)}
    genes = model.genes_
    nb = model.n_knots + model.degree - 2
    C = model.spline_coef_.tocsc()
    worst = 0.0
    for g in range(len(genes)):
        regs = parents[g]
        if len(regs) == 0:
            continue
        rows = np.setdiff1d(np.arange(X.shape[0]), design.excluded_rows(g))
        knots = model.spline_knots_[[position[genes[r]] for r in regs]].T
        pipe = make_pipeline(
            SplineTransformer(knots=knots, degree=model.degree, extrapolation="linear",
                              include_bias=False),
            Ridge(alpha=model.alpha_[g]),
        ).fit(design.block(rows, regs), X[rows, g])
        column = C[:, [g]].toarray().ravel()
        ours = np.concatenate([column[position[genes[r]] * nb:(position[genes[r]] + 1) * nb]
                               for r in regs])
        reference = pipe[-1].coef_
        scale = max(np.abs(reference).max(), 1e-12)
        worst = max(worst, np.abs(ours - reference).max() / scale,
                    abs(model.intercept_[g] - pipe[-1].intercept_) / abs(pipe[-1].intercept_))
    return worst


@pytest.mark.parametrize("alpha", [1.0, "gcv"])
@pytest.mark.parametrize("mode", ["network", "regulators"])
def test_fit_equals_per_gene_spline_transformer_ridge_pipeline(screen, alpha, mode):
    sim, adata = screen
    genes = list(adata.var_names)
    tfs = genes[:6]
    if mode == "network":
        model = spline(alpha=alpha, alphas=(0.1, 1.0, 10.0, 100.0)).fit(adata, sim.network)
        P = sp.csc_array(to_adjacency(sim.network, adata.var_names))
        parents = [np.sort(P.indices[P.indptr[g]:P.indptr[g + 1]]) for g in range(len(genes))]
    else:
        model = spline(alpha=alpha, alphas=(0.1, 1.0, 10.0, 100.0), regulators=tfs).fit(adata)
        parents = [np.array([r for r in range(6) if r != g]) for g in range(len(genes))]
    X = np.asarray(adata.X, dtype=np.float64)
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    assert _per_gene_pipeline(X, iv, model, parents) < 1e-6
    if alpha == "gcv":
        assert len(np.unique(model.alpha_)) > 1  # chosen gene by gene


def test_gcv_of_the_grouped_pool_equals_the_per_gene_systems(screen):
    """Regulator list: untargeted regulators share one eigendecomposition (block
    precision identity); the same regressions stacked gene by gene agree."""
    _, adata = screen
    genes = list(adata.var_names)
    alphas = tuple(np.geomspace(1e-3, 1e4, 15))
    pooled = spline(alpha="gcv", alphas=alphas, regulators=genes[:6]).fit(adata)
    others = nx.DiGraph()
    others.add_edges_from((genes[r], g) for g in genes for r in range(6) if genes[r] != g)
    stacked = spline(alpha="gcv", alphas=alphas).fit(adata, others)
    np.testing.assert_array_equal(pooled.alpha_, stacked.alpha_)
    np.testing.assert_allclose(pooled.spline_coef_.toarray(), stacked.spline_coef_.toarray(),
                               atol=1e-10)
    np.testing.assert_allclose(pooled.intercept_, stacked.intercept_, atol=1e-10)


def test_exclusion_corrupting_a_gene_where_targeted_changes_nothing_of_its_model(screen):
    sim, adata = screen
    base = spline().fit(adata, sim.network)
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    where = iv.targeted("TF03")
    bad = adata.copy()
    j = bad.var_names.get_loc("TF03")
    bad.X[where, j] = 50.0 + np.arange(where.sum())
    other = spline().fit(bad, sim.network)
    np.testing.assert_array_equal(base.spline_coef_[:, [j]].toarray(),
                                  other.spline_coef_[:, [j]].toarray())
    assert base.intercept_[j] == other.intercept_[j]


def coef(model: ConditionalGRNRegressor) -> np.ndarray:
    """The fitted coefficients, linear or spline, as a dense array."""
    return (model.coef_ if model.coef_ is not None else model.spline_coef_).toarray()


def test_per_cell_level_is_the_cells_own_measured_level_and_knockouts_are_zero(screen):
    """Item 2 of the issue: a knockdown cell without a recorded level enters training
    at its own measured level of the target (its per-cell dose), not at a
    perturbation mean; a knockout enters at T = 0 whatever is still measured."""
    sim, adata = screen
    X = np.asarray(adata.X, dtype=np.float64)
    for regressor in ("ridge", "spline"):
        fit = ConditionalGRNRegressor(regressor, verbose=False).fit(adata, sim.network)
        # Writing each cell's own measured level gives the same model ...
        per_cell = adata.copy()
        rows = (adata.obs["perturbation"] == "TF02").to_numpy()
        per_cell.obs.loc[rows, LEVEL] = X[rows, adata.var_names.get_loc("TF02")].astype(str)
        same = ConditionalGRNRegressor(regressor, verbose=False).fit(per_cell, sim.network)
        # ... the perturbation's mean level does not.
        mean = adata.copy()
        mean.obs.loc[rows, LEVEL] = str(X[rows, adata.var_names.get_loc("TF02")].mean())
        other = ConditionalGRNRegressor(regressor, verbose=False).fit(mean, sim.network)
        # A knockout's residual transcript is never read: zeroing it changes nothing.
        ko = adata.copy()
        ko_rows = (adata.obs["perturbation"] == "TF04").to_numpy()
        ko.X[ko_rows, adata.var_names.get_loc("TF04")] = 0.0
        zeroed = ConditionalGRNRegressor(regressor, verbose=False).fit(ko, sim.network)
        np.testing.assert_allclose(coef(same), coef(fit), atol=1e-10)
        assert np.abs(coef(other) - coef(fit)).max() > 1e-6
        np.testing.assert_allclose(coef(zeroed), coef(fit), atol=1e-10)


# --------------------------------------------------------------------------- known answers
def _median_pearson(sim, predictions) -> dict[str, float]:
    """Median pearson_delta of each model's held-out predictions against the exact
    expected profile of the simulation (TF perturbations: the others change nothing)."""
    out = {}
    for name, predicted in predictions.items():
        aligned = align(predicted, sim.expected)
        scores = perturbation_metrics(aligned.predicted, aligned.observed, aligned.targets,
                                      top_k=())
        is_tf = np.char.startswith(aligned.labels.astype(str), "TF")
        out[name] = float(np.nanmedian(scores["pearson_delta"].to_numpy()[is_tf]))
    return out


def test_known_answer_switch_like_regulation_spline_beats_ridge():
    """A combinatorial knockdown screen whose regulation is switch-like (Hill
    coefficient 6, half-saturation at 0.3 x the control level) sequenced at 6,000
    counts per cell, true network, 5-fold cross-validation over perturbations,
    scored against Simulation.expected: the spline model >= 0.9 where ridge < 0.8.

    What separates them at this depth is the count noise of the measured regulators
    (errors in variables): a straight line fitted across the noisy control cells and
    the knockdowns' exact T is attenuated, the spline's curve much less (with the
    regulators at their noise-free states both score about 0.92). The depth was
    chosen on seeds 1 and 2 (largest smallest margin to both thresholds among 5,000,
    6,000, 7,000 and 8,000 counts; 10,000 leaves ridge at 0.83-0.89), not on this
    seed. Over seeds 0-6 the acceptance holds on 5: seed 4 leaves ridge at 0.81, seed
    6 the spline at 0.896 (benchmarks/bench_spline_known_answer.py prints the table).
    """
    sim = simulate(n_genes=200, n_tfs=20, regulation="saturating", hill_coefficient=6,
                   half_saturation=0.3, knockdown_efficiency=0.85, n_combinations=60,
                   n_cells_per_perturbation=100, library_size=6_000, random_state=0)
    models = {"ridge": ConditionalGRNRegressor(alpha="gcv"),
              "spline": ConditionalGRNRegressor("spline", alpha="gcv")}
    predicted = cross_predict(models, sim.adata, sim.network, folds=5, verbose=False)
    median = _median_pearson(sim, predicted.predictions)
    assert median["spline"] >= 0.9, median
    assert median["ridge"] < 0.8, median


def test_curve_error_shrinks_as_data_grow():
    """An exact additive model, y = b + h(x1) - h(x2) + noise with a saturating h:
    the fitted response curves approach h as the number of samples grows."""
    def h(x):
        return 2.0 * x**4 / (0.5**4 + x**4)

    def fit_error(n, seed):
        rng = np.random.default_rng(seed)
        x = rng.uniform(0.0, 1.5, size=(n, 2))
        y = 1.0 + h(x[:, 0]) - h(x[:, 1]) + rng.normal(0.0, 0.2, n)
        obs = pd.DataFrame({"perturbation": "control", "is_control": True,
                            "perturbation_type": "control"}, index=[f"c{i}" for i in range(n)])
        adata = AnnData(np.column_stack([x, y]), obs=obs,
                        var=pd.DataFrame(index=["A", "B", "Y"]))
        network = nx.DiGraph([("A", "Y"), ("B", "Y")])
        model = spline(n_knots=6, alpha=1e-3).fit(adata, network)
        grid = np.linspace(0.1, 1.4, 27)
        curves = model.response_curves(targets=["Y"], levels=grid)
        a = curves[curves["regulator"] == "A"]
        reference = model.control_mean_[0]
        truth = h(grid) - h(reference)
        return float(np.sqrt(np.mean((a["response"].to_numpy() - truth) ** 2)))

    errors = [np.mean([fit_error(n, s) for s in range(3)]) for n in (300, 3_000, 30_000)]
    assert errors[0] > errors[1] > errors[2]
    # Noise shrinks as 1 / sqrt(n); what is left at 30,000 samples is the basis's own
    # approximation of h (6 knots), about 1 % of h's range.
    assert errors[2] < errors[0] / 3
    assert errors[2] < 0.02


# --------------------------------------------------------------------------- prediction
def test_propagation_clamps_targets_and_converges_on_the_intervention_graph(screen):
    sim, adata = screen
    model = spline(alpha="gcv").fit(adata, sim.network)
    request = sim.truth.obs.iloc[1:].copy()
    steady = model.predict(request)
    iv = Interventions.from_obs(request, model.genes_, warn_unmeasured=False)
    levels = np.where(np.isnan(iv.levels), 0, iv.levels)
    np.testing.assert_array_equal(steady.X[iv.entry_rows, iv.mask.indices], levels)
    # The network is a DAG: its depth in steps reaches the steady state exactly.
    depth = nx.dag_longest_path_length(nx.DiGraph(list(sim.network.edges())))
    stepped = model.predict(request, steps=depth + 1)
    np.testing.assert_allclose(stepped.X, steady.X, atol=1e-9)
    # The steady state is a fixed point: x = start + f(x) - f(start) off the targets.
    start = np.tile(model.control_mean_, (len(request), 1))
    moved = start + model._spline.predict(steady.X) - model._spline.predict(start)
    free = ~iv.mask.toarray()
    np.testing.assert_allclose(moved[free], steady.X[free], atol=1e-7)


def test_linear_iteration_equals_the_closed_form(screen):
    sim, adata = screen
    ridge = ConditionalGRNRegressor(alpha=1.0).fit(adata, sim.network)
    request = sim.truth.obs.iloc[1:]
    np.testing.assert_allclose(ridge.predict(request, method="iteration").X,
                               ridge.predict(request).X, atol=1e-7)


def test_a_closed_form_steady_state_of_a_spline_model_is_refused(screen):
    sim, adata = screen
    model = spline().fit(adata, sim.network)
    with pytest.raises(PredictionError, match="no closed-form steady") as info:
        model.predict(sim.truth.obs, method="closed_form")
    assert isinstance(info.value, CausalCellError)
    with pytest.raises(ParameterError, match="method must be one of"):
        model.predict(sim.truth.obs, method="newton")


def test_divergent_loop_is_named():
    """A fitted two-gene loop with slopes above 1: the iteration cannot converge and
    the error names the loop and its spectral radius."""
    rng = np.random.default_rng(0)
    n = 400
    a = rng.normal(1.0, 0.3, n)
    b = 1.5 * a + rng.normal(0.0, 0.05, n)
    c = rng.normal(1.0, 0.3, n)
    obs = pd.DataFrame({"perturbation": "control", "is_control": True,
                        "perturbation_type": "control"}, index=[f"c{i}" for i in range(n)])
    adata = AnnData(np.column_stack([a, b, c]), obs=obs,
                    var=pd.DataFrame(index=["A", "B", "C"]))
    network = nx.DiGraph([("A", "B"), ("B", "A"), ("C", "A")])
    model = spline(alpha=1e-6, max_iter=200).fit(adata, network)
    request = pd.DataFrame({"perturbation": ["C"], "is_control": [False],
                            "perturbation_type": ["knockdown"], LEVEL: [0.2]}, index=["r"])
    with pytest.raises(PredictionError, match="spectral radius") as info:
        model.predict(request)
    assert "A, B" in str(info.value)
    assert model.predict(request, steps=3).shape == (1, 3)  # finite steps still work


# --------------------------------------------------------------------------- outputs
def test_response_curves_are_the_fitted_contributions(screen):
    sim, adata = screen
    model = spline(alpha="gcv").fit(adata, sim.network)
    curves = model.response_curves()
    edges = set(zip(curves["regulator"], curves["target"], strict=True))
    assert edges == set(model.network_.edges)
    assert set(curves.columns) == {"regulator", "target", "level", "response",
                                   "control_level", "in_range"}
    # Moving one regulator, the others at their control level: the model's own f.
    row = curves.iloc[7]
    r, g = model.genes_.get_loc(row["regulator"]), model.genes_.get_loc(row["target"])
    state = model.control_mean_.copy()
    moved = state.copy()
    moved[r] = row["level"]
    f = model._spline.predict(np.vstack([state, moved]))
    assert f[1, g] - f[0, g] == pytest.approx(row["response"], abs=1e-10)
    assert curves.groupby(["regulator", "target"]).size().eq(50).all()
    # A linear model's curves are its straight lines.
    ridge = ConditionalGRNRegressor().fit(adata, sim.network)
    lines = ridge.response_curves(regulators=["TF01"], levels=[0.0, 1.0, 2.0])
    coef = ridge.coef_table().set_index(["regulator", "target"])["coef"]
    first = lines.iloc[0]
    expected = coef[(first["regulator"], first["target"])] * (0.0 - first["control_level"])
    assert first["response"] == pytest.approx(expected)
    assert lines["in_range"].all()


def test_save_load_round_trip_and_clone(screen, tmp_path):
    sim, adata = screen
    model = spline(alpha="gcv", n_knots=5, knots="quantile").fit(adata, sim.network)
    path = model.save(tmp_path / "spline")
    loaded = ConditionalGRNRegressor.load(path)
    assert (loaded.regressor, loaded.n_knots, loaded.knots) == ("spline", 5, "quantile")
    np.testing.assert_array_equal(loaded.predict(sim.truth.obs).X, model.predict(sim.truth.obs).X)
    np.testing.assert_array_equal(loaded.spline_knots_, model.spline_knots_)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "spline_coef_")


def test_refit_as_ridge_drops_the_spline_state(screen):
    sim, adata = screen
    model = spline().fit(adata, sim.network)
    model.set_params(regressor="ridge").fit(adata, sim.network)
    assert model.coef_ is not None
    assert not hasattr(model, "spline_coef_")
    assert model.predict(sim.truth.obs).shape == sim.truth.shape


@pytest.mark.parametrize(
    ("params", "word"),
    [({"n_knots": 1}, "n_knots"), ({"n_knots": 2.5}, "n_knots"), ({"degree": 0}, "degree"),
     ({"knots": "random"}, "knots"), ({"alpha": -1.0}, "alpha")],
)
def test_bad_spline_parameters_are_named(screen, params, word):
    sim, adata = screen
    with pytest.raises(ParameterError, match=word):
        spline(**params).fit(adata, sim.network)


def test_coef_table_points_to_the_curves(screen):
    sim, adata = screen
    model = spline().fit(adata, sim.network)
    with pytest.raises(ParameterError, match="response_curves"):
        model.coef_table()


def test_sparse_expression_gives_the_same_spline_model(screen):
    sim, adata = screen
    dense = spline(alpha="gcv").fit(adata, sim.network)
    sparse = adata.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    other = spline(alpha="gcv").fit(sparse, sim.network)
    np.testing.assert_allclose(other.spline_coef_.toarray(), dense.spline_coef_.toarray(),
                               atol=1e-12)
    np.testing.assert_allclose(other.intercept_, dense.intercept_, atol=1e-12)


def test_large_fixed_penalty_systems_solved_by_cholesky_equal_the_stacked_lu():
    """Systems of >= _CHOLESKY_SYSTEMS regulators (a spline basis of a few dozen
    regulators) are solved one Cholesky factorization each; the result is the LU's,
    and a symmetric system that is not positive definite still gets its solution."""
    from causalcell.models._solve import _CHOLESKY_SYSTEMS, _solve_symmetric

    rng = np.random.default_rng(0)
    m, r = 4, _CHOLESKY_SYSTEMS + 20
    M = rng.normal(size=(m, r, r + 30))
    A = M @ M.transpose(0, 2, 1) + 0.1 * np.eye(r)
    A[1] = np.diag(np.where(np.arange(r) % 2 == 0, 1.0, -2.0))  # symmetric, indefinite
    # Indefinite with a dense triangle: the factorization fails after overwriting
    # a part of it (in place), and the LU must still see the original system.
    B = rng.normal(size=(r, r))
    A[2] = B + B.T
    b = rng.normal(size=(m, r))
    expected = np.linalg.solve(A, b[..., None])[..., 0]
    original = A.copy()
    np.testing.assert_allclose(_solve_symmetric(A, b), expected, rtol=1e-9, atol=1e-12)
    A = original  # the factorizations overwrite the stack (the caller's to give up)
    small = A[:, :10, :10] + np.eye(10)
    np.testing.assert_array_equal(_solve_symmetric(small.copy(), b[:, :10]),
                                  np.linalg.solve(small, b[:, :10, None])[..., 0])


def test_residual_sum_of_squares_of_large_ridge_systems():
    """The RSS of a fixed-penalty ridge system, from beta^T S beta = beta.b -
    alpha |beta|^2 (the factorizations overwrite S), equals the direct formula."""
    from causalcell.models._solve import _CHOLESKY_SYSTEMS, _solve_systems, _Solver

    rng = np.random.default_rng(1)
    m, r, alpha = 3, _CHOLESKY_SYSTEMS + 10, 2.5
    M = rng.normal(size=(m, r, 3 * r))
    S = M @ M.transpose(0, 2, 1)
    b = rng.normal(size=(m, r)) * 10
    syy = np.full(m, 1e4)
    solver = _Solver(method="ridge", alpha=alpha, alphas=None, inference=False)
    beta, _, rss, _ = _solve_systems(S.copy(), b, syy, np.full(m, 3.0 * r), solver)
    np.testing.assert_allclose(beta, np.linalg.solve(S + alpha * np.eye(r), b[..., None])[..., 0],
                               rtol=1e-9)
    direct = syy - 2 * np.einsum("mi,mi->m", beta, b) + np.einsum("mi,mij,mj->m", beta, S, beta)
    np.testing.assert_allclose(rss, direct, rtol=1e-10)
