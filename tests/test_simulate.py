"""Tests of the ground-truth simulator causalcell.datasets.simulate.

Known answers are recomputed here independently: the linear truth by a dense
solve on the intervention graph built with networkx, the expected knockdown
level by scipy.stats.beta.expect, pseudobulk changes with plain numpy.
"""

from __future__ import annotations

import json
import math
import warnings

import anndata as ad
import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from causalcell.data.contract import (
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    parse_levels,
    split_label,
    validate,
)
from causalcell.datasets.simulation import Simulation, simulate
from causalcell.errors import (
    CausalCellError,
    CausalCellWarning,
    DataContractError,
    ParameterError,
)

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def default_sim() -> Simulation:
    return simulate()


def weight_matrix(graph: nx.DiGraph, names: list[str]) -> np.ndarray:
    """W[p, g] = weight of edge p -> g."""
    return nx.to_numpy_array(graph, nodelist=names, weight="weight")


def truth_levels(sim: Simulation, row: str) -> tuple[float, ...]:
    obs = sim.truth.obs
    return parse_levels(obs.loc[row, LEVEL], len(split_label(obs.loc[row, PERTURBATION])))


def naive_linear_state(sim: Simulation, targets: list[str], levels: list[float]) -> np.ndarray:
    """Solve (I - W_do^T) x = b_do on the intervention graph (incoming edges cut)."""
    names = list(sim.adata.var_names)
    x0 = sim.truth.X[0]
    basal = x0 - weight_matrix(sim.network, names).T @ x0
    cut = sim.network.copy()
    cut.remove_edges_from(list(cut.in_edges(targets)))
    w_do = weight_matrix(cut, names)
    b_do = basal.copy()
    for gene, level in zip(targets, levels, strict=True):
        b_do[names.index(gene)] = level
    return np.linalg.solve(np.eye(len(names)) - w_do.T, b_do)


def hill(x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """The documented saturating regulation h(x) = 2 x0 u^2 / (1 + u^2), u = x / x0."""
    u = np.maximum(x, 0) / x0
    return 2 * x0 * u**2 / (1 + u**2)


def pseudobulk_change(sim: Simulation, label: str, kind: str | None = None) -> np.ndarray:
    obs = sim.adata.obs
    X = np.asarray(sim.adata.X, dtype=np.float64)
    chosen = (obs[PERTURBATION] == label).to_numpy()
    if kind is not None:
        chosen &= (obs[PERTURBATION_TYPE] == kind).to_numpy()
    control = obs[IS_CONTROL].to_numpy()
    return X[chosen].mean(axis=0) - X[control].mean(axis=0)


def single_rows(sim: Simulation) -> list[str]:
    obs = sim.truth.obs
    return [r for r in obs.index[1:] if len(split_label(obs.loc[r, PERTURBATION])) == 1]


# --------------------------------------------------------------------------- output


def test_default_output_follows_contract(default_sim: Simulation, tmp_path) -> None:
    sim = default_sim
    adata, truth = sim.adata, sim.truth
    validate(adata)
    validate(truth)
    # 20 TFs + 10 pairs + 5 non-TF genes, 50 cells each, 300 controls.
    assert adata.shape == (300 + 35 * 50, 200)
    assert truth.shape == (36, 200)
    assert adata.var_names[:2].tolist() == ["TF01", "TF02"]
    assert adata.var_names[19:21].tolist() == ["TF20", "G001"]
    assert adata.var_names[-1] == "G180"
    assert adata.var["is_tf"].dtype == bool
    assert int(adata.var["is_tf"].sum()) == 20
    assert adata.obs_names.is_unique
    assert adata.obs_names[0] == "cell0000"
    assert set(sim.network.nodes) == set(adata.var_names)
    assert all(not sim.network.nodes[v]["is_tf"] for _, v in sim.network.out_edges("G001"))
    assert all(sim.network.nodes[u]["is_tf"] for u, _ in sim.network.edges)

    assert adata.X.dtype == np.float32
    counts = adata.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer)
    assert counts.min() >= 0
    total = adata.obs["total_counts"].to_numpy()[:, None]
    np.testing.assert_allclose(adata.X, np.log1p(counts / total * 1e4), rtol=1e-5, atol=1e-6)
    # The library sizes vary around library_size.
    assert 8_000 < np.median(total) < 12_000
    assert total.std() > 1_000

    obs = adata.obs
    control = obs[IS_CONTROL].to_numpy()
    assert control.sum() == 300
    assert set(obs.loc[control, PERTURBATION]) == {"control"}
    assert set(obs.loc[control, PERTURBATION_TYPE]) == {"control"}
    assert set(obs.loc[~control, PERTURBATION_TYPE]) == {"knockdown"}
    assert (obs.loc[control, LEVEL] == "nan").all()
    assert (truth.obs["n_cells"].to_numpy() == [300] + [50] * 35).all()
    assert truth.obs_names[0] == "control"
    np.testing.assert_allclose(truth.X[0], adata.var["control_level"].to_numpy())

    json.dumps(adata.uns["simulation"])
    # Write copies: anndata turns string columns into categoricals in place.
    path = tmp_path / "sim.h5ad"
    adata.copy().write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X, adata.X)
    validate(back)
    truth.copy().write_h5ad(tmp_path / "truth.h5ad")
    validate(ad.read_h5ad(tmp_path / "truth.h5ad"))


def test_recorded_levels_match_the_knockdown_model(default_sim: Simulation) -> None:
    """Per-cell levels imply efficiencies with the requested mean and sd."""
    obs = default_sim.adata.obs
    x0 = default_sim.adata.var["control_level"]
    singles = obs[~obs[IS_CONTROL] & ~obs[PERTURBATION].str.contains(",")]
    level = singles[LEVEL].astype(float).to_numpy()
    x0_t = x0[singles[PERTURBATION].astype(str)].to_numpy()
    efficiency = 1 - np.expm1(level) / np.expm1(x0_t)
    assert np.all((efficiency > 0) & (efficiency < 1))
    assert abs(efficiency.mean() - 0.8) < 0.01
    assert abs(efficiency.std() - 0.1) < 0.01
    combos = obs[obs[PERTURBATION].str.contains(",")]
    parts = combos[LEVEL].str.split(",")
    assert (parts.str.len() == 2).all()
    # Two independent efficiencies per cell: the levels are not identical.
    assert (parts.str[0] != parts.str[1]).mean() > 0.9


def test_levels_column_dtype_and_record_levels() -> None:
    singles = simulate(perturbations=["TF01", "G001"], n_cells_per_perturbation=5)
    assert singles.adata.obs[LEVEL].dtype == np.float64
    assert singles.adata.obs[LEVEL].isna().sum() == 300
    without = simulate(perturbations=["TF01,TF02"], record_levels=False)
    assert LEVEL not in without.adata.obs
    validate(without.adata)
    assert LEVEL in without.truth.obs


def test_reproducible_with_seed() -> None:
    a = simulate(random_state=5)
    b = simulate(random_state=5)
    c = simulate(random_state=6)
    np.testing.assert_array_equal(a.adata.X, b.adata.X)
    np.testing.assert_array_equal(a.truth.X, b.truth.X)
    assert nx.utils.graphs_equal(a.network, b.network)
    assert a.adata.obs.equals(b.adata.obs)
    assert not np.array_equal(a.adata.X, c.adata.X)
    assert not np.allclose(a.truth.X, c.truth.X)
    assert set(a.network.edges) != set(c.network.edges)
    # The network does not depend on the design or the number of cells.
    d = simulate(random_state=5, perturbations=["TF03"], n_cells_per_perturbation=3,
                 n_control_cells=3)
    assert nx.utils.graphs_equal(a.network, d.network)
    np.testing.assert_array_equal(a.truth.X[0], d.truth.X[0])
    fresh = simulate(n_genes=20, n_tfs=4, random_state=None, n_cells_per_perturbation=2)
    again = simulate(n_genes=20, n_tfs=4, random_state=fresh.params["random_state"],
                     n_cells_per_perturbation=2)
    np.testing.assert_array_equal(fresh.adata.X, again.adata.X)
    # The old name works for one release, with a FutureWarning naming the new one.
    with pytest.warns(FutureWarning, match="seed= is renamed random_state="):
        old = simulate(n_genes=20, n_tfs=4, seed=fresh.params["random_state"],
                       n_cells_per_perturbation=2)
    np.testing.assert_array_equal(old.adata.X, again.adata.X)


def test_repr_and_params(default_sim: Simulation) -> None:
    text = repr(default_sim)
    assert "2050 cells x 200 genes" in text
    assert "35 perturbations" in text
    assert default_sim.params["n_tfs"] == 20
    assert default_sim.params["perturbations"] is None
    mixed = simulate(n_genes=10, n_tfs=3, perturbations=["TF01", ("TF02", "knockout")])
    assert mixed.params["perturbations"] == [("TF01", "knockdown"), ("TF02", "knockout")]


def test_empty_design_gives_controls_only() -> None:
    sim = simulate(perturbations=[], n_control_cells=20)
    validate(sim.adata)
    assert sim.adata.n_obs == 20
    assert sim.adata.obs[IS_CONTROL].all()
    assert sim.truth.n_obs == 1


# --------------------------------------------------------------------------- key property


@pytest.mark.parametrize("seed", [0, 1])
def test_knocked_down_gene_has_the_largest_change(seed: int) -> None:
    sim = simulate(random_state=seed)
    names = list(sim.adata.var_names)
    first_cells, first_truth = [], []
    for row in single_rows(sim):
        gene = names.index(row)
        change = pseudobulk_change(sim, row)
        true_change = sim.truth[row].X[0] - sim.truth.X[0]
        first_cells.append(np.argmax(np.abs(change)) == gene)
        first_truth.append(np.argmax(np.abs(true_change)) == gene)
    assert len(first_cells) == 25
    assert np.mean(first_cells) >= 0.95
    assert all(first_truth)


def test_pseudobulk_approaches_truth(default_sim: Simulation) -> None:
    """With many cells the empirical changes of non-targeted genes match the truth."""
    out_degree = dict(default_sim.network.out_degree(default_sim.adata.var_names[:20]))
    hubs = sorted(out_degree, key=out_degree.get, reverse=True)[:4]
    sim = simulate(perturbations=hubs, n_cells_per_perturbation=1500, n_control_cells=3000)
    names = list(sim.adata.var_names)
    for tf in hubs:
        keep = np.arange(len(names)) != names.index(tf)
        change = pseudobulk_change(sim, tf)
        true_change = sim.truth[tf].X[0] - sim.truth.X[0]
        assert np.count_nonzero(np.abs(true_change[keep]) > 0.1) >= 5
        assert np.corrcoef(change[keep], true_change[keep])[0, 1] > 0.9
        assert change[~keep][0] < -0.5


# --------------------------------------------------------------------------- truth


MIXED = [
    "TF01",
    ("TF02", "knockout"),
    ("TF03", "overexpression"),
    "TF04,TF05",
    ("TF06,G001", "knockout"),
    ("TF07,TF08", "overexpression"),
    ("G002", "overexpression"),
    ("TF09", "knockout"),
    ("TF09", "knockdown"),
]


@pytest.mark.parametrize("feedback", [False, True])
def test_linear_truth_equals_naive_solve(feedback: bool) -> None:
    sim = simulate(perturbations=MIXED, feedback=feedback, n_cells_per_perturbation=2,
                   random_state=2)
    obs = sim.truth.obs
    x0 = sim.truth.X[0]
    names = list(sim.adata.var_names)
    assert obs.index.is_unique
    assert {"TF09_knockout", "TF09_knockdown"} <= set(obs.index)
    beta_a = 0.8 * (0.8 * 0.2 / 0.1**2 - 1)
    beta_b = 0.2 * (0.8 * 0.2 / 0.1**2 - 1)
    for row in obs.index[1:]:
        targets = list(split_label(obs.loc[row, PERTURBATION]))
        kind = obs.loc[row, PERTURBATION_TYPE]
        levels = truth_levels(sim, row)
        idx = [names.index(t) for t in targets]
        for i, level in zip(idx, levels, strict=True):
            if kind == "knockdown":
                expected = stats.beta(beta_a, beta_b).expect(
                    lambda e, i=i: np.log1p((1 - e) * np.expm1(x0[i]))
                )
                assert level == pytest.approx(expected, abs=1e-8)
            elif kind == "knockout":
                assert level == 0.0
            else:
                assert level == pytest.approx(np.log1p(4 * np.expm1(x0[i])), abs=1e-12)
        expected_state = naive_linear_state(sim, targets, list(levels))
        if kind == "knockout":
            expected_state[idx] = np.log1p(0.3 * np.expm1(x0[idx]))
        np.testing.assert_allclose(sim.truth[row].X[0], expected_state, rtol=0, atol=1e-10)


def test_knockout_downstream_sees_zero_but_transcript_remains() -> None:
    base = simulate(n_cells_per_perturbation=2)
    names = list(base.adata.var_names)
    tf = max(names[:20], key=lambda g: base.network.out_degree(g))
    sim = simulate(perturbations=[tf], kind="knockout", n_cells_per_perturbation=400)
    x0 = sim.truth.X[0]
    t = names.index(tf)
    truth = sim.truth[tf].X[0]
    residual = np.log1p(0.3 * np.expm1(x0[t]))
    assert truth[t] == pytest.approx(residual)
    # Downstream genes respond to T = 0, not to the residual transcript.
    at_zero = naive_linear_state(sim, [tf], [0.0])
    at_residual = naive_linear_state(sim, [tf], [residual])
    downstream = [names.index(g) for g in sim.network.successors(tf)]
    np.testing.assert_allclose(truth[downstream], at_zero[downstream], atol=1e-10)
    assert np.max(np.abs(truth[downstream] - at_residual[downstream])) > 0.05
    # Cells: levels 0 and the measured transcript keeps ~30 % of its expression.
    obs = sim.adata.obs
    assert (obs.loc[~obs[IS_CONTROL], LEVEL] == 0).all()
    expression = np.expm1(np.asarray(sim.adata.X[:, t], dtype=np.float64))
    ko = (obs[PERTURBATION] == tf).to_numpy()
    ratio = expression[ko].mean() / expression[obs[IS_CONTROL].to_numpy()].mean()
    assert ratio == pytest.approx(0.3, abs=0.05)


def test_overexpression_raises_the_target() -> None:
    sim = simulate(kind="overexpression", n_cells_per_perturbation=30)
    names = list(sim.adata.var_names)
    for row in single_rows(sim):
        t = names.index(row)
        true_change = sim.truth[row].X[0] - sim.truth.X[0]
        assert true_change[t] > 0.5
        assert np.argmax(np.abs(true_change)) == t
        assert pseudobulk_change(sim, row)[t] > 0.3
    assert sim.truth.X.min() >= 0


def test_combination_clamps_both_targets_and_adds_up() -> None:
    base = simulate(n_cells_per_perturbation=2)
    graph = base.network
    tfs = list(base.adata.var_names[:20])
    # Two TFs that do not reach each other: in the linear model their effects add.
    a, b = next(
        (u, v)
        for u in tfs
        for v in tfs
        if u < v
        and graph.out_degree(u) > 3
        and graph.out_degree(v) > 3
        and not nx.has_path(graph, u, v)
        and not nx.has_path(graph, v, u)
    )
    sim = simulate(perturbations=[a, b, f"{a},{b}"], n_cells_per_perturbation=100)
    names = list(sim.adata.var_names)
    ia, ib = names.index(a), names.index(b)
    combo = sim.truth[f"{a},{b}"].X[0]
    level_a, level_b = truth_levels(sim, f"{a},{b}")
    assert combo[ia] == pytest.approx(level_a, abs=1e-12)
    assert combo[ib] == pytest.approx(level_b, abs=1e-12)
    x0 = sim.truth.X[0]
    additive = (sim.truth[a].X[0] - x0) + (sim.truth[b].X[0] - x0)
    np.testing.assert_allclose(combo - x0, additive, atol=1e-10)
    change = pseudobulk_change(sim, f"{a},{b}")
    assert change[ia] < -0.3
    assert change[ib] < -0.3
    recorded = sim.adata.obs.loc[sim.adata.obs[PERTURBATION] == f"{a},{b}", LEVEL]
    levels = np.array([parse_levels(v, 2) for v in recorded])
    assert np.all(levels < x0[[ia, ib]])


@pytest.mark.parametrize("feedback", [False, True])
def test_saturating_truth_is_a_fixed_point(feedback: bool) -> None:
    sim = simulate(regulation="saturating", feedback=feedback, perturbations=MIXED, random_state=3)
    names = list(sim.adata.var_names)
    n_tfs = 20
    W = weight_matrix(sim.network, names)
    x0 = sim.truth.X[0]
    basal = x0 - W.T @ x0
    linear = simulate(feedback=feedback, perturbations=MIXED, random_state=3,
                      n_cells_per_perturbation=2)
    assert np.all(np.isfinite(sim.adata.X))
    for row in sim.truth.obs_names[1:]:
        x = sim.truth[row].X[0]
        targets = [names.index(g) for g in split_label(sim.truth.obs.loc[row, PERTURBATION])]
        free = np.ones(len(names), dtype=bool)
        free[targets] = False
        # Regulators act through their level T (0 for a knockout), not through
        # the residual transcript reported for a knocked-out gene.
        active = x.copy()
        active[targets] = truth_levels(sim, row)
        regulated = basal + W[:n_tfs].T @ hill(active[:n_tfs], x0[:n_tfs])
        np.testing.assert_allclose(x[free], regulated[free], atol=1e-9)
        assert np.all(x >= 0)
    # Saturation changes the answer away from the control state.
    assert np.max(np.abs(sim.truth.X - linear.truth.X)) > 0.01


def test_feedback_creates_cycles_with_a_finite_steady_state() -> None:
    dag = simulate(n_cells_per_perturbation=2)
    assert nx.is_directed_acyclic_graph(dag.network)
    sim = simulate(feedback=True, n_cells_per_perturbation=20)
    assert not nx.is_directed_acyclic_graph(sim.network)
    cycle = nx.find_cycle(sim.network)
    assert all(sim.network.nodes[u]["is_tf"] for u, _ in cycle)
    # Same seed: the feedback network is the DAG plus back edges.
    assert set(dag.network.edges) < set(sim.network.edges)
    names = list(sim.adata.var_names)
    w_tf = weight_matrix(sim.network, names)[:20, :20]
    assert np.max(np.abs(np.linalg.eigvals(w_tf))) < 0.8
    assert np.all(np.isfinite(sim.truth.X))
    assert sim.truth.X.min() >= 0
    validate(sim.adata)


@pytest.mark.parametrize("kind", ["knockdown", "knockout", "overexpression"])
def test_default_designs_keep_states_positive(kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = simulate(kind=kind, feedback=True, n_cells_per_perturbation=2)
    # The weight scaling keeps every expected state strictly positive.
    assert sim.truth.X.min() > 0.05


def test_extreme_overexpression_warns_and_clips() -> None:
    with pytest.warns(CausalCellWarning, match="overexpression_fold"):
        sim = simulate(kind="overexpression", overexpression_fold=1e6, n_cells_per_perturbation=2)
    assert sim.truth.X.min() == 0.0


# --------------------------------------------------------------------------- property


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_genes=st.integers(3, 40),
    tf_share=st.floats(0.05, 1.0),
    kind=st.sampled_from(["knockdown", "overexpression"]),
    regulation=st.sampled_from(["linear", "saturating"]),
    feedback=st.booleans(),
    mean_regulators=st.floats(0.0, 4.0),
    seed=st.integers(0, 2**31),
)
def test_truth_properties_on_random_networks(
    n_genes, tf_share, kind, regulation, feedback, mean_regulators, seed
) -> None:
    n_tfs = max(2 if feedback else 1, min(n_genes, round(tf_share * n_genes)))
    sim = simulate(
        n_genes,
        n_tfs,
        kind=kind,
        regulation=regulation,
        feedback=feedback,
        mean_regulators=mean_regulators,
        n_cells_per_perturbation=2,
        n_control_cells=2,
        random_state=seed,
    )
    validate(sim.adata)
    truth = sim.truth.X
    assert np.all(np.isfinite(truth))
    assert truth.min() > 0
    names = list(sim.adata.var_names)
    for row in single_rows(sim):
        change = truth[sim.truth.obs_names.get_loc(row)] - truth[0]
        t = names.index(row)
        assert np.all(np.abs(np.delete(change, t)) < np.abs(change[t]))
        if regulation == "linear":
            state = naive_linear_state(sim, [row], list(truth_levels(sim, row)))
            np.testing.assert_allclose(change + truth[0], state, atol=1e-9)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_tfs": 0}, "n_tfs"),
        ({"n_genes": 10, "n_tfs": 11}, "n_tfs"),
        ({"n_genes": 2.5}, "n_genes"),
        ({"n_cells_per_perturbation": 0}, "n_cells_per_perturbation"),
        ({"n_control_cells": -1}, "n_control_cells"),
        ({"n_combinations": -2}, "n_combinations"),
        ({"kind": "crispri"}, "kind"),
        ({"regulation": "hill"}, "regulation"),
        ({"feedback": "yes"}, "feedback"),
        ({"feedback": True, "n_genes": 5, "n_tfs": 1}, "n_tfs"),
        ({"knockdown_efficiency": 1.0}, "knockdown_efficiency"),
        ({"efficiency_sd": 0.5}, "efficiency_sd"),
        ({"knockout_residual": 1.5}, "knockout_residual"),
        ({"overexpression_fold": 0.5}, "overexpression_fold"),
        ({"noise_sd": -0.1}, "noise_sd"),
        ({"mean_regulators": math.nan}, "mean_regulators"),
        ({"library_size": 0}, "library_size"),
        ({"random_state": -1}, "random_state"),
        ({"perturbations": "TF01"}, "perturbations"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError, match=name) as info:
        simulate(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CausalCellError)
    assert "must be" in str(info.value)


@pytest.mark.parametrize(
    ("perturbations", "pattern"),
    [
        (["TF01,TF99"], r"TF99.*TF01"),
        (["control"], "control"),
        (["TF01,TF01"], "twice"),
        (["TF02", "TF02"], "twice"),
        ([("TF01", "crispri")], "crispri"),
        ([42], "42"),
        ([" , "], "names no gene"),
    ],
)
def test_bad_perturbations_are_reported(perturbations: list, pattern: str) -> None:
    with pytest.raises(DataContractError, match=pattern):
        simulate(perturbations=perturbations)


def test_record_states_stores_the_state_behind_the_counts() -> None:
    """layers["state"] is the state the counts were drawn from: same cells, same X
    (recording draws no random numbers), and the counts' Poisson mean is
    library * expm1(state) / 1e4, so at a large library log1p(CP10k) approaches it."""
    plain = simulate(n_genes=20, n_tfs=4, random_state=3)
    sim = simulate(n_genes=20, n_tfs=4, random_state=3, record_states=True)
    assert "state" not in plain.adata.layers
    np.testing.assert_array_equal(sim.adata.X, plain.adata.X)
    state = sim.adata.layers["state"]
    assert state.shape == sim.adata.shape
    assert state.dtype == np.float32
    assert state.min() >= 0
    deep = simulate(n_genes=20, n_tfs=4, random_state=3, record_states=True, library_size=1e7)
    errors = np.abs(np.asarray(deep.adata.X) - deep.adata.layers["state"])
    shallow = np.abs(np.asarray(sim.adata.X) - state)
    assert errors.mean() < shallow.mean() / 10
    assert np.median(errors) < 0.01
    with pytest.raises(ParameterError, match="record_states"):
        simulate(n_genes=20, n_tfs=4, record_states="yes")
