"""Simulation.expected: the exact expected observed profile of every perturbation."""

from __future__ import annotations

import numpy as np
import pytest

import causalcell as cc
import causalcell.datasets.simulation as simulation

DESIGN = ["TF01", "TF02,TF03", ("TF04", "knockout"), ("TF05", "overexpression"), "G001"]


def _errors(sim):
    """Pseudobulk minus expected, and the standard error of each pseudobulk mean."""
    pb = cc.data.pseudobulk(sim.adata)
    codes = cc.data.Interventions.from_adata(sim.adata).condition_of()
    X = np.asarray(sim.adata.X, dtype=np.float64)
    rows = list(pb.obs_names)
    sd = np.vstack([X[codes == key].std(axis=0, ddof=1) for key in rows])
    n = pb.obs["n_cells"].to_numpy()[:, None]
    expected = sim.expected[rows]
    return np.asarray(pb.X) - expected.X, sd / np.sqrt(n)


@pytest.mark.parametrize("regulation", ["linear", "saturating"])
def test_pseudobulk_converges_to_expected(regulation):
    """The mean of the simulated cells is an unbiased estimate of `expected`: its
    errors are those of a mean (z-scores ~ N(0, 1)) and shrink as 1/sqrt(cells);
    `truth` (the expected state) is off by far more."""
    errors = {}
    for n in (500, 20_000):
        sim = cc.datasets.simulate(n_genes=40, n_tfs=6, perturbations=DESIGN,
                                   n_cells_per_perturbation=n, n_control_cells=n,
                                   regulation=regulation, random_state=4)
        diff, se = _errors(sim)
        if regulation == "saturating":  # Monte-Carlo error of `expected` itself
            se = np.sqrt(se**2 + sim.expected[list(sim.truth.obs_names)].layers[
                "standard_error"] ** 2)
        z = diff[se > 0] / se[se > 0]
        assert np.abs(z).max() < 5.0
        assert abs(z.mean()) < 0.15
        assert 0.8 < z.std() < 1.2
        errors[n] = np.abs(diff).mean()
        bias = np.abs(np.asarray(cc.data.pseudobulk(sim.adata)[sim.truth.obs_names].X)
                      - sim.truth.X).mean()
        assert bias > 3 * errors[n]
    ratio = errors[500] / errors[20_000]
    assert np.sqrt(40) / 1.5 < ratio < np.sqrt(40) * 1.5  # errors of a mean: 1/sqrt(n)


def test_expected_is_converged_in_its_quadrature(monkeypatch):
    sim = cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=1)
    base = sim.expected.X.copy()
    for name, value in (("_EFFICIENCY_NODES", 24), ("_STATE_NODES", 96),
                        ("_LIBRARY_NODES", 32), ("_GRID_STEP", 0.005),
                        ("_POISSON_SPAN", 12.0), ("_NORMAL_SPAN", 11.0)):
        with monkeypatch.context() as patch:
            patch.setattr(simulation, name, value)
            finer = cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=1)
            np.testing.assert_allclose(finer.expected.X, base, atol=1e-8, err_msg=name)


def test_expected_rows_and_metadata():
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    expected = sim.expected
    assert expected is sim.expected  # computed once
    assert list(expected.obs_names) == list(sim.truth.obs_names)
    assert list(expected.var_names) == list(sim.truth.var_names)
    assert expected.uns["expected"]["method"] == "quadrature"
    assert "standard_error" not in expected.layers
    # The control row: no target, the state noise and the counts only.
    assert np.all(np.isfinite(expected.X))
    assert np.all(expected.X >= 0)
    saturating = cc.datasets.simulate(n_genes=30, n_tfs=5, regulation="saturating", random_state=0)
    assert saturating.expected.uns["expected"]["method"] == "monte-carlo"
    assert (saturating.expected.layers["standard_error"] >= 0).all()
