"""Tests of the batched exact per-gene solver (causalcell.models._solve), the
design-matrix engine it runs on (causalcell.data._design / _moments) and the linear
propagation (causalcell.models._propagate), against naive scikit-learn / numpy
references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import statsmodels.api as sm
from _helpers import interventions_from_mask as ivs
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, Ridge

from causalcell.data._design import Design
from causalcell.data._moments import moments
from causalcell.errors import ParameterError, PredictionError
from causalcell.models import _propagate, _solve
from causalcell.models._propagate import SteadyState, propagate_linear
from causalcell.models._solve import fit_linear

# ---------------------------------------------------------------------------
# a small design with singles, combinations, knockouts and unknown levels
# ---------------------------------------------------------------------------


def make_problem(seed: int = 0, n: int = 300, p: int = 24, sparse: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.normal(2.0, 0.5, size=(n, p)) + 0.3 * rng.normal(size=(n, 1))
    if sparse:
        X[rng.random((n, p)) < 0.6] = 0.0
    rows, cols = [], []
    for i in range(120):  # singles: gene i % 8, 15 rows each
        rows.append(i)
        cols.append(i % 8)
    for i in range(120, 150):  # combinations (0, 1) and (2, 9)
        pair = (0, 1) if i % 2 else (2, 9)
        rows += [i, i]
        cols += list(pair)
    mask = sp.csr_array((np.ones(len(rows), bool), (rows, cols)), shape=(n, p))
    mask.sort_indices()
    levels = rng.normal(0.5, 0.2, mask.nnz)
    levels[::3] = np.nan  # unknown T: the measured value is used
    levels[1::7] = 0.0  # knockouts
    parents = rng.random((p, p)) < 0.25
    np.fill_diagonal(parents, False)
    parents[:, 5] = False  # an intercept-only gene
    Xin = sp.csr_array(X) if sparse else X
    return Xin, X, mask, levels, parents


def substituted(X, mask, levels):
    Z = np.array(X, dtype=float)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(mask.indptr))
    known = ~np.isnan(levels)
    Z[rows[known], mask.indices[known]] = levels[known]
    return Z


def naive(X, mask, levels, regs_of, alpha):
    """Per-gene scikit-learn loop with explicit exclusion (the GGRN approach)."""
    Z = substituted(X, mask, levels)
    M = mask.toarray()
    out = {}
    for g in range(X.shape[1]):
        regs = regs_of(g)
        keep = ~M[:, g]
        if len(regs) == 0:
            out[g] = (regs, np.zeros(0), X[keep, g].mean())
            continue
        est = LinearRegression() if alpha == 0 else Ridge(alpha=alpha)
        est.fit(Z[np.ix_(keep, regs)], X[keep, g])
        rss = np.sum((X[keep, g] - est.predict(Z[np.ix_(keep, regs)])) ** 2)
        out[g] = (regs, est.coef_, est.intercept_, rss)
    return out


def assert_matches(fit, reference, rtol=1e-9):
    C = fit.coef.toarray()
    for g, (regs, coef, intercept, *rss) in reference.items():
        if rss:  # the residual sum of squares of the fitted equation
            np.testing.assert_allclose(fit.rss[g], rss[0], rtol=1e-8)
        stored = fit.coef[:, [g]].tocoo().row
        np.testing.assert_array_equal(np.sort(stored), np.sort(regs))
        np.testing.assert_allclose(
            C[regs, g], coef, rtol=rtol, atol=rtol * np.abs(coef).max(initial=1.0)
        )
        np.testing.assert_allclose(fit.intercept[g], intercept, rtol=rtol)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("mode", ["network", "pool"])
@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_fit_linear_equals_per_gene_sklearn(sparse, mode, alpha):
    Xin, X, mask, levels, parents = make_problem(sparse=sparse)
    method = "ols" if alpha == 0 else "ridge"
    if mode == "network":
        fit = fit_linear(
            Xin,
            ivs(mask, levels),
            parents=sp.csc_array(parents),
            method=method,
            alpha=alpha,
            block_rows=41,
        )

        def regs_of(g):
            return np.flatnonzero(parents[:, g])
    else:
        pool = np.array([0, 1, 2, 3, 4, 9, 11, 17, 20])
        fit = fit_linear(
            Xin, ivs(mask, levels), pool=pool, method=method, alpha=alpha, block_rows=41
        )

        def regs_of(g):
            return pool[pool != g]

    assert_matches(fit, naive(X, mask, levels, regs_of, alpha))
    M = mask.toarray()
    np.testing.assert_array_equal(fit.n_samples, (~M).sum(axis=0))


def test_dense_and_sparse_input_and_blocks_agree():
    Xin, X, mask, levels, parents = make_problem(sparse=True)
    P = sp.csc_array(parents)
    a = fit_linear(Xin, ivs(mask, levels), parents=P, alpha=1.0)
    b = fit_linear(X, ivs(mask, levels), parents=P, alpha=1.0, block_rows=7)
    c = fit_linear(sp.csr_matrix(X), ivs(mask, levels), parents=P, alpha=1.0, block_rows=1000)
    for other in (b, c):
        np.testing.assert_allclose(other.coef.toarray(), a.coef.toarray(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.intercept, a.intercept, rtol=1e-10)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(12, 60),
    p=st.integers(2, 7),
    alpha=st.floats(0.01, 50.0),
    density=st.floats(0.1, 0.9),
)
def test_property_random_designs_match_sklearn(seed, n, p, alpha, density):
    rng = np.random.default_rng(seed)
    X = rng.normal(1.0, 1.0, size=(n, p))
    # Every sample targets 0-2 random genes; levels known, unknown or knockout.
    M = np.zeros((n, p), dtype=bool)
    for i in range(n):
        if rng.random() < 0.6:
            M[i, rng.choice(p, rng.integers(1, min(2, p) + 1), replace=False)] = True
    mask = sp.csr_array(M)
    levels = rng.normal(size=mask.nnz)
    levels[rng.random(mask.nnz) < 0.3] = np.nan
    parents = rng.random((p, p)) < density
    np.fill_diagonal(parents, False)
    fit = fit_linear(
        X,
        ivs(mask, levels),
        parents=sp.csc_array(parents),
        alpha=alpha,
        block_rows=int(rng.integers(1, n + 1)),
    )
    ref = {}
    Z = substituted(X, mask, levels)
    for g in range(p):
        keep = ~M[:, g]
        regs = np.flatnonzero(parents[:, g])
        if keep.sum() == 0 or len(regs) == 0:
            continue
        est = Ridge(alpha=alpha).fit(Z[np.ix_(keep, regs)], X[keep, g])
        ref[g] = (regs, est.coef_, est.intercept_)
    assert_matches(fit, ref, rtol=1e-7)


# ---------------------------------------------------------------------------
# exclusion is exact: a gene's own values where it is targeted are never read
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("mode", ["network", "pool"])
def test_exclusion_is_bit_exact(sparse, mode):
    Xin, X, mask, levels, parents = make_problem(sparse=sparse)
    levels = np.full(mask.nnz, np.nan)  # unknown T: regulators use measured values
    kwargs = {"parents": sp.csc_array(parents)} if mode == "network" else {"pool": np.arange(12)}
    before = fit_linear(Xin, ivs(mask, levels), alpha=1.0, **kwargs)
    M = mask.toarray()
    changed = 0.0
    for g in (0, 1, 9):  # single, combination member, combination-only target
        corrupted = X.copy()
        corrupted[M[:, g], g] = 1e6 * (1 + np.arange(M[:, g].sum()))
        Xc = sp.csr_array(corrupted) if sparse else corrupted
        after = fit_linear(Xc, ivs(mask, levels), alpha=1.0, **kwargs)
        np.testing.assert_array_equal(before.coef[:, [g]].toarray(), after.coef[:, [g]].toarray())
        assert before.intercept[g] == after.intercept[g]
        # ... while the corruption is visible where g regulates other genes.
        changed = max(changed, np.abs(before.coef.toarray() - after.coef.toarray()).max())
    assert changed > 1e-3


# ---------------------------------------------------------------------------
# GCV and OLS inference
# ---------------------------------------------------------------------------


def brute_gcv(Z, y, alphas):
    n = len(y)
    D = np.column_stack([np.ones(n), Z])
    scores = []
    for a in alphas:
        pen = a * np.eye(D.shape[1])
        pen[0, 0] = 0.0  # intercept not penalized
        H = D @ np.linalg.solve(D.T @ D + pen, D.T)
        res = y - H @ y
        scores.append(n * res @ res / (n - np.trace(H)) ** 2)
    return alphas[int(np.argmin(scores))]


@pytest.mark.parametrize("mode", ["network", "pool", "shared"])
def test_gcv_choice_equals_brute_force(mode):
    _Xin, X, mask, levels, parents = make_problem(seed=3, n=200, p=14)
    rng = np.random.default_rng(5)
    # Different signal-to-noise per gene so that different alphas win.
    X = X + (X[:, :3] @ rng.normal(size=(3, 14))) * np.linspace(0, 0.3, 14)
    alphas = np.array([0.01, 1.0, 10.0, 100.0, 1000.0])
    if mode == "network":
        fit = fit_linear(X, ivs(mask, levels), parents=sp.csc_array(parents), alphas=alphas)

        def regs_of(g):
            return np.flatnonzero(parents[:, g])
    else:
        pool = np.arange(14) if mode == "pool" else np.array([0, 1, 2, 3])
        fit = fit_linear(X, ivs(mask, levels), pool=pool, alphas=alphas)

        def regs_of(g):
            return pool[pool != g]

    Z = substituted(X, mask, levels)
    M = mask.toarray()
    chosen = set()
    for g in range(14):
        regs = regs_of(g)
        if len(regs) == 0:
            continue
        keep = ~M[:, g]
        best = brute_gcv(Z[np.ix_(keep, regs)], X[keep, g], alphas)
        assert fit.alpha[g] == best
        chosen.add(best)
        est = Ridge(alpha=best).fit(Z[np.ix_(keep, regs)], X[keep, g])
        np.testing.assert_allclose(fit.coef.toarray()[regs, g], est.coef_, rtol=1e-8, atol=1e-10)
    assert len(chosen) >= 2  # the test exercises a real choice


@pytest.mark.parametrize("mode", ["network", "pool", "shared"])
def test_ols_inference_equals_statsmodels(mode):
    _Xin, X, mask, levels, parents = make_problem(seed=4)
    if mode == "network":
        fit = fit_linear(
            X, ivs(mask, levels), parents=sp.csc_array(parents), method="ols", inference=True
        )

        def regs_of(g):
            return np.flatnonzero(parents[:, g])
    else:
        pool = np.arange(10) if mode == "pool" else np.array([12, 13, 14])
        fit = fit_linear(X, ivs(mask, levels), pool=pool, method="ols", inference=True)

        def regs_of(g):
            return pool[pool != g]

    Z = substituted(X, mask, levels)
    M = mask.toarray()
    for g in (0, 3, 9, 12, 20):
        regs = regs_of(g)
        keep = ~M[:, g]
        res = sm.OLS(X[keep, g], sm.add_constant(Z[np.ix_(keep, regs)])).fit()
        np.testing.assert_allclose(fit.coef.toarray()[regs, g], res.params[1:], rtol=1e-9)
        np.testing.assert_allclose(fit.stderr.toarray()[regs, g], res.bse[1:], rtol=1e-8)
        assert fit.dof[g] == res.df_resid
        np.testing.assert_allclose(fit.rss[g], res.ssr, rtol=1e-8)


def test_ols_singular_system_raises():
    X = np.random.default_rng(0).normal(size=(50, 3))
    X[:, 1] = X[:, 0]  # collinear regulators of gene 2
    parents = np.zeros((3, 3), bool)
    parents[[0, 1], 2] = True
    mask = sp.csr_array((50, 3), dtype=bool)
    with pytest.raises(ParameterError, match="singular"):
        fit_linear(X, ivs(mask, np.zeros(0)), parents=sp.csc_array(parents), method="ols")


def test_infeasible_size_fails_early(monkeypatch):
    monkeypatch.setattr(_solve, "physical_memory", lambda: 1e6)
    X = np.zeros((10, 30))
    with pytest.raises(ParameterError, match="memory.*network"):
        fit_linear(X, ivs(sp.csr_array((10, 30), dtype=bool)), pool=np.arange(30))


def test_bad_arguments():
    X = np.zeros((5, 3))
    mask = sp.csr_array((5, 3), dtype=bool)
    with pytest.raises(ParameterError, match="exactly one"):
        fit_linear(X, ivs(mask, np.zeros(0)))
    with pytest.raises(ParameterError, match="alpha"):
        fit_linear(X, ivs(mask, np.zeros(0)), pool=np.arange(3), alpha=-1.0)
    with pytest.raises(ParameterError, match="alphas"):
        fit_linear(X, ivs(mask, np.zeros(0)), pool=np.arange(3), alphas=[])


def test_value_helpers_substitute_known_levels_only():
    Xin, X, mask, levels, _ = make_problem(sparse=True)
    Z = substituted(X, mask, levels)
    rng = np.random.default_rng(1)
    r = rng.integers(0, X.shape[0], 500)
    c = rng.integers(0, X.shape[1], 500)
    design = Design(Xin, ivs(mask, levels))
    np.testing.assert_array_equal(design.values(r, c), Z[r, c])
    rows = np.arange(100, 160)
    cols = np.array([0, 1, 2, 9, 5])
    np.testing.assert_array_equal(design.block(rows, cols), Z[np.ix_(rows, cols)])
    np.testing.assert_array_equal(
        design.with_values(sp.csc_array(X)).block(rows, cols), Z[np.ix_(rows, cols)]
    )


def test_cross_products_match_definition():
    _Xin, X, mask, levels, _ = make_problem()
    U = np.array([0, 1, 3, 9])
    cp = moments(Design(X, ivs(mask, levels)), U, block_rows=50)
    W = substituted(X, mask, levels) - cp.shift
    Y = np.where(mask.toarray(), 0.0, W)
    np.testing.assert_allclose(cp.cross, W[:, U].T @ Y, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(
        cp.gram(np.arange(4)[:, None], np.arange(4)[None, :]),
        W[:, U].T @ W[:, U],
        rtol=1e-10,
        atol=1e-8,
    )
    np.testing.assert_allclose(cp.target_sums, Y.sum(axis=0), atol=1e-8)


# ---------------------------------------------------------------------------
# propagation
# ---------------------------------------------------------------------------


def random_weights(p: int, seed: int, scale: float = 0.3, density: float = 0.3):
    rng = np.random.default_rng(seed)
    W = rng.normal(0, scale, (p, p)) * (rng.random((p, p)) < density)
    np.fill_diagonal(W, 0.0)
    return W


def naive_steady(W, start, targets, values):
    """Solve x = start + W_do^T (x - start) with targets clamped, by linear algebra."""
    p = len(start)
    Wdo = W.copy()
    Wdo[:, targets] = 0.0
    d = np.zeros(p)
    d[targets] = values - start[targets]
    # delta = W_do^T delta + d  (d only on targets, which have no parents)
    delta = np.linalg.solve(np.eye(p) - Wdo.T, d)
    return start + delta


def request(p, sets, values):
    rows, cols, lv = [], [], []
    for i, (tgts, vals) in enumerate(zip(sets, values, strict=True)):
        order = np.argsort(tgts)
        rows += [i] * len(tgts)
        cols += list(np.asarray(tgts)[order])
        lv += list(np.asarray(vals)[order])
    mask = sp.csr_array((np.ones(len(rows), bool), (rows, cols)), shape=(len(sets), p))
    return mask, np.asarray(lv, dtype=float)


def test_steady_state_equals_naive_solve_and_clamps_exactly():
    p = 12
    W = random_weights(p, 0)
    rng = np.random.default_rng(2)
    sets = [[3], [0, 5], [], [7], [0, 5], [2, 4, 11], [3]]
    values = [rng.normal(size=len(s)) for s in sets]
    mask, levels = request(p, sets, values)
    start = rng.normal(2.0, 0.3, (len(sets), p))
    out = propagate_linear(sp.csr_array(W), ivs(mask, levels), start, "steady_state")
    for i, (tgts, vals) in enumerate(zip(sets, values, strict=True)):
        np.testing.assert_allclose(
            out[i], naive_steady(W, start[i], tgts, vals), rtol=1e-10, atol=1e-12
        )
        assert np.all(out[i, tgts] == vals)  # exact float equality
    np.testing.assert_array_equal(out[2], start[2])  # control row: the start state exactly


def test_steps_converge_to_steady_state_and_steps_zero_is_the_clamp():
    p = 10
    W = sp.csr_array(random_weights(p, 1))
    mask, levels = request(p, [[1], [2, 6]], [[0.0], [3.0, -1.0]])
    start = np.full((2, p), 2.0)
    steady = propagate_linear(W, ivs(mask, levels), start, "steady_state")
    many = propagate_linear(W, ivs(mask, levels), start, 400)
    np.testing.assert_allclose(many, steady, atol=1e-10)
    zero = propagate_linear(W, ivs(mask, levels), start, 0)
    expected = start.copy()
    expected[0, 1] = 0.0
    expected[1, [2, 6]] = [3.0, -1.0]
    np.testing.assert_array_equal(zero, expected)
    one = propagate_linear(W, ivs(mask, levels), start, 1)
    delta = zero - start
    np.testing.assert_allclose(one[0], start[0] + (W.T @ delta[0]) * (np.arange(p) != 1) + delta[0])


def test_unstable_feedback_raises_and_intervention_can_stabilize():
    # 0 -> 1 -> 2 -> 0 with gain 1.5: unstable unless a cycle member is targeted.
    W = np.zeros((4, 4))
    W[0, 1] = W[1, 2] = W[2, 0] = 1.5
    W[2, 3] = 1.0
    steady = SteadyState(sp.csr_array(W), names=["A", "B", "C", "D"])
    W, start = sp.csr_array(W), np.ones((1, 4))
    downstream = ivs(*request(4, [[3]], [[0.0]]))
    with pytest.raises(PredictionError, match="spectral radius.*steps=k"):
        propagate_linear(W, downstream, start, "steady_state", steady)
    out = propagate_linear(W, ivs(*request(4, [[1]], [[0.0]])), start, "steady_state", steady)
    np.testing.assert_allclose(out[0], naive_steady(W.toarray(), np.ones(4), [1], [0.0]))
    # Finite steps are always allowed.
    assert np.isfinite(propagate_linear(W, downstream, start, 5)).all()


def test_spectral_radius_large_and_perron_bound():
    rng = np.random.default_rng(0)
    A = sp.random(400, 400, density=0.02, random_state=1, format="csr") * 0.9
    A = sp.csr_array(A - sp.diags(A.diagonal()))
    signed = sp.csr_array(A.multiply(np.where(rng.random(A.shape) < 0.5, -1.0, 1.0)))
    exact = np.max(np.abs(np.linalg.eigvals(signed.toarray())))
    assert _propagate._spectral_radius(signed) == pytest.approx(exact, rel=1e-6)
    bound = _propagate._perron_bound(abs(signed))
    assert bound >= np.max(np.abs(np.linalg.eigvals(abs(signed).toarray()))) - 1e-9
    assert _propagate._perron_bound(sp.csr_array(0.1 * abs(signed))) < 1.0


@pytest.mark.parametrize(("scale", "stable"), [(0.3, True), (0.8, True), (1.3, False)])
def test_stability_of_large_dense_models(scale, stable):
    # Circular law: a p x p matrix of N(0, s^2 / p) entries has spectral radius ~ s and
    # spectral norm ~ 2 s, while its absolute values have spectral radius ~ 0.8 s sqrt(p):
    # s = 0.3 is certified by the norm, s = 0.8 only by the exact radius.
    p = 300
    rng = np.random.default_rng(0)
    W = rng.normal(0.0, scale / np.sqrt(p), (p, p))
    np.fill_diagonal(W, 0.0)
    mask, levels = request(p, [[3], [5, 7]], [[0.0], [1.0, 2.0]])
    start = np.full((2, p), 1.0)
    if not stable:
        with pytest.raises(PredictionError, match="spectral radius"):
            propagate_linear(sp.csr_array(W), ivs(mask, levels), start, "steady_state")
        return
    out = propagate_linear(sp.csr_array(W), ivs(mask, levels), start, "steady_state")
    np.testing.assert_allclose(out[0], naive_steady(W, start[0], [3], [0.0]), atol=1e-9)
    np.testing.assert_allclose(out[1], naive_steady(W, start[1], [5, 7], [1.0, 2.0]), atol=1e-9)


def test_ols_with_too_few_samples_names_the_gene():
    X = np.random.default_rng(0).normal(size=(4, 6))
    mask = sp.csr_array((4, 6), dtype=bool)
    with pytest.raises(ParameterError, match="gene 'g0' has 5 regulators but only 4 samples"):
        fit_linear(
            X,
            ivs(mask, np.zeros(0)),
            pool=np.arange(6),
            method="ols",
            inference=True,
            names=[f"g{i}" for i in range(6)],
        )


@pytest.mark.parametrize("mode", ["network", "pool", "shared"])
def test_gcv_counts_the_intercept_at_small_n(mode):
    """With ~15 samples the intercept's degree of freedom moves the GCV choice:
    the batched choice must equal brute force with the intercept in the hat matrix."""
    rng = np.random.default_rng(11)
    n, p = 15, 8
    X = rng.normal(size=(n, p))
    X[:, 4:] += X[:, :4] @ rng.normal(0.0, 0.6, size=(4, 4))
    M = np.zeros((n, p), dtype=bool)
    M[[0, 1], 0] = M[2, 5] = True  # a few targeted samples (downdates)
    mask = sp.csr_array(M)
    levels = np.array([0.0, np.nan, 0.3])
    alphas = np.geomspace(0.05, 50.0, 25)
    parents = np.zeros((p, p), dtype=bool)
    parents[:4, 4:] = True
    parents[[1, 2], 0] = parents[[0, 3], 1] = True
    if mode == "network":
        fit = fit_linear(X, ivs(mask, levels), parents=sp.csc_array(parents), alphas=alphas)

        def regs_of(g):
            return np.flatnonzero(parents[:, g])
    else:
        pool = np.arange(p) if mode == "pool" else np.arange(3)
        fit = fit_linear(X, ivs(mask, levels), pool=pool, alphas=alphas)

        def regs_of(g):
            return pool[pool != g]

    Z = substituted(X, mask, levels)
    checked = 0
    for g in range(p):
        regs = regs_of(g)
        if len(regs) == 0:
            continue
        keep = ~M[:, g]
        assert fit.alpha[g] == brute_gcv(Z[np.ix_(keep, regs)], X[keep, g], alphas)
        checked += 1
    assert checked >= 4


def test_singular_loop_cut_by_the_intervention_is_solved():
    # 0 -> 1 -> 2 -> 0 with gains 1: I - W^T is singular (eigenvalue 1), but a
    # knockout of a loop member cuts the loop, and the intervention graph has a
    # unique steady state: solve on it, not on the full I - W^T.
    W = np.zeros((5, 5))
    W[0, 1] = W[1, 2] = W[2, 0] = 1.0
    W[2, 3] = 0.5
    W[3, 4] = -2.0
    W = sp.csr_array(W)
    start = np.full((3, 5), 2.0)
    mask, levels = request(5, [[1], [0, 3], [2]], [[0.0], [1.0, 4.0], [5.0]])
    out = propagate_linear(W, ivs(mask, levels), start, "steady_state")
    np.testing.assert_allclose(out[0], naive_steady(W.toarray(), start[0], [1], [0.0]),
                               atol=1e-12)
    np.testing.assert_allclose(out[1], naive_steady(W.toarray(), start[1], [0, 3], [1.0, 4.0]),
                               atol=1e-12)
    np.testing.assert_allclose(out[2], naive_steady(W.toarray(), start[2], [2], [5.0]),
                               atol=1e-12)
    # Perturbing only a gene downstream of the loop leaves the loop intact:
    # the error names the loop's genes.
    down = ivs(*request(5, [[4]], [[0.0]]))
    steady = SteadyState(W, names=["A", "B", "C", "D", "E"])
    with pytest.raises(PredictionError, match=r"A, B, C.*steps=k.*regressor='iv'"):
        propagate_linear(W, down, start[:1], "steady_state", steady)
