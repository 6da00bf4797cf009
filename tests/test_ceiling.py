"""replicate_ceiling: split-half scores, their half-size corrections, bad input."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import causalcell as cc
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError
from causalcell.evaluate import evaluate, replicate_ceiling
from causalcell.evaluate._ceiling import _halves


def _gaussian_screen(n_cells: int, sd: float, seed: int = 0, n_pert: int = 30, g: int = 400):
    """Cells = a known profile per perturbation + Gaussian noise of known sd."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(1.0, 3.0, g)
    effects = rng.normal(0, 0.3, (n_pert, g)) * (rng.random((n_pert, g)) < 0.3)
    truth = np.vstack([base, base + effects])
    labels = ["control"] + [f"G{i:03d}" for i in range(n_pert)]
    n_ctrl = 4 * n_cells
    row_of = np.r_[np.zeros(n_ctrl, int), np.repeat(np.arange(1, n_pert + 1), n_cells)]
    X = truth[row_of] + rng.normal(0, sd, (len(row_of), g))
    obs = pd.DataFrame({
        "perturbation": np.array(labels)[row_of],
        "is_control": row_of == 0,
        "perturbation_type": np.where(row_of == 0, "control", "knockdown"),
    }, index=[f"c{i}" for i in range(len(row_of))])
    genes = [f"G{i:03d}" for i in range(g)]
    cells = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    profiles = ad.AnnData(X=truth[1:], obs=obs.drop_duplicates("perturbation").iloc[1:]
                          .set_index("perturbation", drop=False),
                          var=pd.DataFrame(index=genes))
    return cells, profiles


def test_halves_split_every_group_in_two():
    rng = np.random.default_rng(0)
    codes = rng.permutation(np.repeat(np.arange(4), [2, 3, 10, 7]))
    half = _halves(codes, rng)
    np.testing.assert_array_equal(np.bincount(codes[half], minlength=4), [1, 1, 5, 3])
    assert not np.array_equal(half, _halves(codes, rng))  # a new split each call


@pytest.mark.parametrize("n_cells", [20, 80])
def test_ceiling_is_the_score_of_the_noise_free_profile(n_cells):
    """Corrected for half size, the split-half score is what the exact profile
    scores against all the cells (the best any model can do)."""
    cells, profiles = _gaussian_screen(n_cells, sd=0.8)
    options = {"top_k": [20], "retrieval": False, "exclude": "targeted"}
    truth = evaluate(profiles, cells, **options)
    ceiling = replicate_ceiling(cells, n_splits=8, **options)
    for metric, rtol in (("mse", 0.03), ("mae", 0.03), ("pearson_delta", 0.03),
                         ("cosine_delta", 0.03), ("de_pearson_top20", 0.05)):
        want = truth.loc[truth["metric"] == metric, "value"].mean()
        got = ceiling.loc[ceiling["metric"] == metric, "value"].mean()
        raw = ceiling.loc[ceiling["metric"] == metric, "raw"].mean()
        assert got == pytest.approx(want, rel=rtol), metric
        assert abs(raw - want) > 3 * abs(got - want), metric  # the correction matters
    mse = ceiling[ceiling["metric"] == "mse"]
    assert (mse["correction"] == "n1*n2/n^2").all()
    assert (mse["n_cells"] == n_cells).all()
    overlap = ceiling[ceiling["metric"] == "de_overlap_top20"]
    assert (overlap["correction"] == "none").all()
    assert (overlap["value"] == overlap["raw"]).all()


def test_ceiling_matches_models_rows_and_settings():
    sim = cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=2)
    ceiling = replicate_ceiling(sim.adata, n_splits=2, top_k=[5])
    scored = evaluate(sim.truth, sim.adata, top_k=[5])
    key = ["perturbation", "perturbation_type", "exclude", "metric"]
    pd.testing.assert_frame_equal(
        ceiling[key].sort_values(key).reset_index(drop=True),
        scored[key].sort_values(key).reset_index(drop=True))
    assert ceiling.attrs["n_splits"] == 2
    assert ceiling.attrs["skipped"] == []
    again = replicate_ceiling(sim.adata, n_splits=2, top_k=[5])
    pd.testing.assert_frame_equal(ceiling, again)  # seeded


def test_ceiling_bad_input():
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, n_cells_per_perturbation=4, random_state=0)
    with pytest.raises(DataContractError, match="needs the observed cells.*pseudobulk"):
        replicate_ceiling(cc.data.pseudobulk(sim.adata))
    with pytest.raises(ParameterError, match="n_splits=0"):
        replicate_ceiling(sim.adata, n_splits=0)
    # One cell for TF02: skipped with a warning naming it.
    cells = sim.adata
    tf02 = np.flatnonzero(cells.obs["perturbation"].to_numpy() == "TF02")
    keep = np.setdiff1d(np.arange(cells.n_obs), tf02[1:])
    with pytest.warns(CausalCellWarning, match="fewer than 2 cells.*TF02"):
        ceiling = replicate_ceiling(cells[keep].copy(), n_splits=1, top_k=[5])
    assert "TF02" not in set(ceiling["perturbation"])
    assert ceiling.attrs["skipped"] == ["TF02"]
    perturbed = np.flatnonzero(~cells.obs["is_control"].to_numpy())
    first = cells.obs["perturbation"].to_numpy()[perturbed]
    single = np.r_[np.flatnonzero(cells.obs["is_control"].to_numpy()),
                   perturbed[np.unique(first, return_index=True)[1]]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalCellWarning)
        with pytest.raises(DataContractError, match="at least 2 cells"):
            replicate_ceiling(cells[np.sort(single)].copy())
