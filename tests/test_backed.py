"""Backed AnnData (``read_h5ad(path, backed=True)``): X stays in its file.

Every public function that takes an AnnData gives on a backed file what it gives
on the same data in memory (X is read in row blocks, through the same passes
as a Dask X), and the conditional model's fit equals the in-memory fit to
1e-10 for dense and CSR files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import causalcell as cc
import causalcell.plot
from causalcell.data import lazy
from causalcell.evaluate import DEResult
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

SIM = cc.datasets.simulate(n_genes=20, n_tfs=4, n_cells_per_perturbation=12,
                           n_control_cells=60, n_combinations=3, random_state=3)
ROWS_PER_BLOCK = 37  # several row blocks, the last one short


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backed")
    dense = SIM.adata.copy()
    csr = SIM.adata.copy()
    csr.X = sp.csr_matrix(csr.X)
    paths = {"dense": root / "dense.h5ad", "csr": root / "csr.h5ad"}
    dense.write_h5ad(paths["dense"])
    csr.write_h5ad(paths["csr"])
    return paths


@pytest.fixture
def small_blocks(monkeypatch):
    """Backed files are read in blocks of ROWS_PER_BLOCK rows (many blocks on tiny data)."""
    monkeypatch.setattr(lazy, "_BLOCK_VALUES", ROWS_PER_BLOCK * SIM.adata.n_vars)


def _pair(files: dict[str, Path], layout: str) -> tuple[ad.AnnData, ad.AnnData]:
    return (cc.data.read_h5ad(files[layout]),
            cc.data.read_h5ad(files[layout], backed=True))


def test_backed_x_is_read_in_row_blocks(files, small_blocks):
    for layout in ("dense", "csr"):
        backed = cc.data.read_h5ad(files[layout], backed=True)
        X = cc.data.contract.expression_matrix(backed)
        assert lazy.is_dask_array(X)
        assert X.chunks[0][0] == ROWS_PER_BLOCK
        assert len(X.chunks[0]) == -(-backed.n_obs // ROWS_PER_BLOCK)
        assert len(X.chunks[1]) == 1  # every block holds all genes
        assert sp.issparse(X._meta) == (layout == "csr")


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("params", [{}, {"regressor": "ols"}, {"alpha": "gcv"}],
                         ids=["ridge", "ols", "gcv"])
def test_fit_on_backed_file_equals_fit_in_memory(files, small_blocks, layout, params):
    memory, backed = _pair(files, layout)
    expected = ConditionalGRNRegressor(**params).fit(memory, SIM.network)
    model = ConditionalGRNRegressor(**params).fit(backed, SIM.network)
    assert (abs(model.coef_ - expected.coef_)).max() <= 1e-10
    np.testing.assert_allclose(model.intercept_, expected.intercept_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.control_mean_, expected.control_mean_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(model.n_samples_, expected.n_samples_)
    np.testing.assert_array_equal(model.alpha_, expected.alpha_)
    pd.testing.assert_frame_equal(model.target_levels_, expected.target_levels_,
                                  check_exact=False, atol=1e-10, rtol=0)
    if params.get("regressor") == "ols":
        assert (abs(model.stderr_ - expected.stderr_)).max() <= 1e-10
    assert backed.isbacked  # the file stays open and backed


# --------------------------------------------------------------------------- every function
def _predictions(model: Any) -> np.ndarray:
    return np.asarray(model.predict(SIM.truth.obs).X)


def _same(a: Any, b: Any) -> None:
    """Equal up to 1e-10 (results of one computation read in another order)."""
    if isinstance(a, ad.AnnData):
        pd.testing.assert_frame_equal(a.obs, b.obs)
        pd.testing.assert_index_equal(a.var_names, b.var_names)
        _same(a.X, b.X)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-10, rtol=0)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=False, atol=1e-10, rtol=0)
    elif isinstance(a, DEResult):
        for name in ("statistic", "pvalue", "mean_difference"):
            _same(getattr(a, name), getattr(b, name))
    elif isinstance(a, nx.DiGraph):
        assert sorted(a.edges) == sorted(b.edges)
    elif isinstance(a, cc.Interventions):
        assert (a.mask != b.mask).nnz == 0
        _same(a.levels, b.levels)
    elif isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif sp.issparse(a) or sp.issparse(b):
        _same(a.toarray() if sp.issparse(a) else a, b.toarray() if sp.issparse(b) else b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(np.asarray(b, dtype=float), a.astype(float), rtol=0,
                                   atol=1e-10, equal_nan=True)
    else:
        assert a == b


def _controls(adata: ad.AnnData) -> ad.AnnData:
    return adata[adata.obs["is_control"].to_numpy()]


PREDICTED = MeanBaseline().fit(SIM.adata).predict(SIM.truth.obs)
CALLS: dict[str, Callable[[ad.AnnData], Any]] = {
    "validate": lambda a: cc.data.validate(a),
    "Interventions": lambda a: cc.Interventions.from_adata(a),
    "pseudobulk": lambda a: cc.data.pseudobulk(a),
    "control_mean": lambda a: cc.data.control_mean(a),
    "changes": lambda a: cc.data.changes(a),
    "split_by_perturbation": lambda a: cc.data.split_by_perturbation(a, random_state=1),
    "standardize": lambda a: cc.data.standardize(a, "causalcell"),
    "to_convention": lambda a: cc.data.to_convention(a, "cell-eval"),
    "sample_cells": lambda a: cc.data.sample_cells(PREDICTED, a, random_state=0),
    "learn_network": lambda a: cc.graph.learn_network(a, regulators=["TF01", "TF02"]),
    "learn_pc": lambda a: cc.graph.learn_pc(a, genes=list(SIM.adata.var_names[:6])),
    "conditional": lambda a: _predictions(ConditionalGRNRegressor().fit(a, SIM.network)),
    "conditional_start_cells": lambda a: np.asarray(
        ConditionalGRNRegressor().fit(SIM.adata, SIM.network)
        .predict(SIM.truth.obs, start=_controls(a)).X),
    "control_baseline": lambda a: _predictions(ControlBaseline().fit(a)),
    "mean_baseline": lambda a: _predictions(MeanBaseline(over="perturbations").fit(a)),
    "target_only": lambda a: _predictions(TargetOnlyBaseline(start="mean").fit(a)),
    "linear_embedding": lambda a: _predictions(LinearEmbeddingBaseline(n_components=3).fit(a)),
    "evaluate_observed": lambda a: cc.evaluate.evaluate(PREDICTED, a, top_k=[5]),
    "evaluate_predicted": lambda a: cc.evaluate.evaluate(
        a, SIM.adata, aggregate_predicted=True, top_k=[5], join="inner"),
    "align": lambda a: cc.evaluate.align(PREDICTED, a).observed,
    "compare": lambda a: cc.evaluate.compare({"mean": PREDICTED}, a, n_resamples=20),
    "replicate_ceiling": lambda a: cc.evaluate.replicate_ceiling(a, n_splits=2, top_k=[5]),
    "retrieval": lambda a: cc.evaluate.retrieval(PREDICTED, a),
    "edistance": lambda a: cc.evaluate.edistance(PREDICTED, a, max_cells=5),
    "target_effect": lambda a: cc.evaluate.target_effect(a),
    "t_test": lambda a: cc.evaluate.differential_expression(a),
    "wilcoxon": lambda a: cc.evaluate.differential_expression(a, method="wilcoxon"),
    "cross_validate": lambda a: cc.benchmark.cross_validate(
        {"mean": MeanBaseline(), "grn": ConditionalGRNRegressor()}, a, SIM.network, folds=2,
        n_resamples=20, ceiling_splits=2, top_k=[5], verbose=False).table,
    "observed_request": lambda a: cc.benchmark.observed_request(a),
    "perturbation_folds": lambda a: cc.benchmark.perturbation_folds(a, 2),
    "plot_target_effect": lambda a: cc.plot.target_effect(a).get_ylim(),
    "plot_rank_matrix": lambda a: cc.plot.pairwise_rank_matrix(PREDICTED, a).get_title(),
    "plot_predicted_vs_observed": lambda a: cc.plot.predicted_vs_observed(
        PREDICTED, a, "TF01").get_title(),
    "select": lambda a: _predictions(cc.benchmark.select(
        {"ridge 1": ConditionalGRNRegressor(alpha=1.0),
         "ridge 100": ConditionalGRNRegressor(alpha=100.0)}, folds=2).fit(a, SIM.network)),
}


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("name", list(CALLS))
def test_public_function_on_backed_file_equals_in_memory(files, small_blocks, name, layout):
    memory, backed = _pair(files, layout)
    call = CALLS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = call(memory)
        result = call(backed)
    _same(expected, result)
    assert backed.isbacked


def test_write_h5ad_of_backed_file(files, tmp_path):
    memory, backed = _pair(files, "csr")
    out = cc.data.write_h5ad(backed, tmp_path / "copy.h5ad")
    _same(ad.read_h5ad(out).X, memory.X)


def test_backed_without_dask_says_to_load_in_memory(files, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith("dask."):
            raise ImportError("No module named 'dask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    backed = cc.data.read_h5ad(files["dense"], backed=True)
    with pytest.raises(cc.errors.DataContractError, match=r"to_memory\(\)"):
        cc.data.pseudobulk(backed)
