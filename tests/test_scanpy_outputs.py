"""Outputs scanpy can use as they are: categorical labels, numeric levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import causalcell as cc

sc = pytest.importorskip("scanpy")  # in the dev extra


@pytest.fixture(scope="module")
def replicated():
    """Simulated cells in two replicates, and their pseudobulk per replicate (scanpy's
    rank_genes_groups needs two samples per group)."""
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, n_combinations=2, random_state=0)
    adata = sim.adata.copy()
    adata.obs["replicate"] = np.where(np.arange(adata.n_obs) % 2 == 0, "r1", "r2")
    return sim, adata, cc.data.pseudobulk(adata, groupby="replicate")


def test_rank_genes_groups_on_pseudobulk_and_predictions(replicated):
    sim, _, pb = replicated
    pb = pb.copy()
    assert isinstance(pb.obs["perturbation"].dtype, pd.CategoricalDtype)
    sc.tl.rank_genes_groups(pb, "perturbation", method="t-test")
    assert "rank_genes_groups" in pb.uns
    model = cc.models.ConditionalGRNRegressor().fit(sim.adata, network=sim.network)
    request = pb[~pb.obs["is_control"].to_numpy()]
    pred = model.predict(request)
    assert isinstance(pred.obs["perturbation"].dtype, pd.CategoricalDtype)
    sc.tl.rank_genes_groups(pred, "perturbation", method="wilcoxon")
    names = pd.DataFrame(pred.uns["rank_genes_groups"]["names"])
    assert set(names.columns) == set(request.obs["perturbation"].astype(str))


def test_scanpy_needs_no_rewrite_of_obs(replicated):
    """scanpy converts str columns to categoricals in the caller's object; ours already
    are, so the labels come back as they went in."""
    _, _, pb = replicated
    pb = pb.copy()
    before = pb.obs[["perturbation", "perturbation_type"]].copy()
    sc.tl.rank_genes_groups(pb, "perturbation")
    pd.testing.assert_frame_equal(pb.obs[["perturbation", "perturbation_type"]], before)


def test_levels_are_numeric_for_single_targets(replicated):
    _, adata, _ = replicated
    singles = adata[~adata.obs["perturbation"].astype(str).str.contains(",")].copy()
    pb = cc.data.pseudobulk(singles)
    assert pb.obs["expression_level_after_perturbation"].dtype == np.float64
    combos = cc.data.pseudobulk(adata)  # combinations: one level per gene, as text
    levels = combos.obs["expression_level_after_perturbation"]
    assert levels.dtype == object
    assert levels.str.contains(",").any()
    np.testing.assert_array_equal(
        pb.obs["is_control"].to_numpy(),
        np.isnan(pb.obs["expression_level_after_perturbation"].to_numpy()))
