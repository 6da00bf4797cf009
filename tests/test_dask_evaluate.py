"""Pseudobulk, differential expression and retrieval on Dask arrays equal the in-memory path.

Dense and sparse Dask blocks, uneven row chunks (37 rows), a distributed
LocalCluster (as a user's cluster would be) and Dask's threaded scheduler
(no dask_client), data read lazily from zarr, and the error for arrays chunked
along genes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from causalcell.data import changes, control_mean, pseudobulk, read_lazy  # noqa: E402
from causalcell.datasets import simulate  # noqa: E402
from causalcell.errors import CausalCellError, DataContractError  # noqa: E402
from causalcell.evaluate import differential_expression, pairwise_retrieval  # noqa: E402
from causalcell.evaluate._de import rank_sum_test, welch_ttest  # noqa: E402
from causalcell.evaluate._retrieval_table import retrieval  # noqa: E402

TOL = 1e-8
CHUNK = 37  # does not divide the number of cells: the last block is shorter


@pytest.fixture(scope="module")
def sim():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate(n_genes=60, n_tfs=8, n_cells_per_perturbation=30, random_state=3)
    obs = sim.adata.obs
    # Some unknown levels, so the pseudobulk level means meet NaN too.
    level = obs["expression_level_after_perturbation"].astype(str).to_numpy().copy()
    single = ~obs["is_control"].to_numpy() & ~obs["perturbation"].str.contains(",").to_numpy()
    level[np.flatnonzero(single)[::7]] = "nan"
    # ... and one perturbation whose level is unknown in every cell.
    first = obs["perturbation"].to_numpy()[np.flatnonzero(single)[0]]
    level[obs["perturbation"].to_numpy() == first] = "nan"
    obs["expression_level_after_perturbation"] = level
    return sim


def lazy_copy(adata, chunks=CHUNK, *, sparse: bool = False, layer: str | None = None):
    """A copy of ``adata`` whose X (or layer) is a Dask array of dense or sparse blocks."""
    out = adata.copy()
    X = adata.X if layer is None else adata.layers[layer]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    lazy = da.from_array(sp.csr_matrix(X) if sparse else X, chunks=(chunks, -1))
    if layer is None:
        out.X = lazy
    else:
        out.layers[layer] = lazy
    return out


def assert_same_anndata(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a.X), np.asarray(b.X), atol=TOL, rtol=0)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)


def assert_same_de(a, b) -> None:
    for field in ("statistic", "score", "pvalue", "qvalue", "mean_difference"):
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(x, y, atol=TOL, rtol=TOL, equal_nan=True)
    pd.testing.assert_index_equal(a.perturbations, b.perturbations)
    np.testing.assert_array_equal(a.n_cells, b.n_cells)
    assert a.n_control == b.n_control


def retrieval_inputs(sim):
    observed = changes(sim.adata)
    predicted = observed.X + np.random.default_rng(0).normal(0.0, 0.3, observed.X.shape)
    genes = sim.adata.var_names
    targets = [genes.get_indexer(p.split(",")) for p in observed.obs["perturbation"]]
    return predicted, observed.X, targets


# ---------------------------------------------------------------- no client: threaded scheduler
# These run first, before the module's LocalCluster exists.


def test_no_client_threaded_scheduler(sim):
    with pytest.raises(ValueError, match="No global client"):
        distributed.get_client()  # really no active client: Dask's threaded scheduler
    adata = sim.adata
    lazy = lazy_copy(adata, sparse=True)
    assert_same_anndata(pseudobulk(adata), pseudobulk(lazy))
    np.testing.assert_allclose(control_mean(lazy), control_mean(adata), atol=TOL, rtol=0)
    assert_same_de(differential_expression(adata), differential_expression(lazy))
    predicted, observed, targets = retrieval_inputs(sim)
    serial = pairwise_retrieval(predicted, observed, targets)
    mapped = pairwise_retrieval(predicted, observed, targets, block_size=5, dask=True)
    np.testing.assert_array_equal(serial, mapped)


# ---------------------------------------------------------------- on a LocalCluster


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_pseudobulk_on_cluster(dask_client, sim, sparse):
    adata = sim.adata
    lazy = lazy_copy(adata, sparse=sparse)
    with distributed.get_task_stream(dask_client) as stream:
        result = pseudobulk(lazy)
    assert_same_anndata(pseudobulk(adata), result)
    assert isinstance(result.X, np.ndarray)
    # One task per row block ran on the workers.
    assert len(stream.data) >= len(lazy.X.chunks[0])
    obs = adata.obs.assign(replicate=np.arange(adata.n_obs) % 2)
    assert_same_anndata(
        pseudobulk(AnnData(adata.X, obs=obs, var=adata.var), groupby="replicate",
                   min_cells=20),
        pseudobulk(AnnData(lazy.X, obs=obs, var=lazy.var), groupby="replicate", min_cells=20),
    )


def test_pseudobulk_levels_and_layer(dask_client, sim):
    adata = sim.adata
    lazy = lazy_copy(adata, layer="counts", sparse=True)
    expected = pseudobulk(adata, layer="counts")
    result = pseudobulk(lazy, layer="counts")
    assert_same_anndata(expected, result)
    # The NaN levels of the fixture were met and averaged the same way: the
    # controls and the perturbation without any known level are "nan".
    assert (expected.obs["expression_level_after_perturbation"] == "nan").sum() == 2


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_control_mean_and_changes_on_cluster(dask_client, sim, sparse):
    adata = sim.adata
    lazy = lazy_copy(adata, sparse=sparse)
    np.testing.assert_allclose(control_mean(lazy), control_mean(adata), atol=TOL, rtol=0)
    expected = changes(adata, min_cells=2)
    result = changes(lazy, min_cells=2)
    assert_same_anndata(expected, result)
    np.testing.assert_allclose(result.uns["control_mean"], expected.uns["control_mean"],
                               atol=TOL, rtol=0)
    # Pseudobulk rows held as a Dask array (is_control rows weighted by n_cells).
    pb = pseudobulk(adata)
    pb_lazy = pb.copy()
    pb_lazy.X = da.from_array(pb.X, chunks=(7, -1))
    np.testing.assert_allclose(control_mean(pb_lazy), control_mean(pb), atol=TOL, rtol=0)
    assert_same_anndata(changes(pb), changes(pb_lazy))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("method", ["t-test", "wilcoxon"])
def test_differential_expression_on_cluster(dask_client, sim, method, sparse):
    adata = sim.adata
    expected = differential_expression(adata, method=method)
    with distributed.get_task_stream(dask_client) as stream:
        result = differential_expression(lazy_copy(adata, sparse=sparse), method=method)
    assert_same_de(expected, result)
    assert len(stream.data) > 0  # the blocks were read on the cluster
    assert np.isfinite(result.pvalue).sum() > result.pvalue.size // 2


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_rank_sum_gene_blocks(dask_client, sim, sparse):
    # A budget of 7 genes' columns: 9 slabs (the last one shorter), any chunking.
    adata = sim.adata
    X = adata.X
    control = adata.obs["is_control"].to_numpy()
    groups = np.where(control, -1, pd.factorize(adata.obs["perturbation"])[0] - 1)
    expected = rank_sum_test(X, groups, control)
    budget = 8 * adata.n_obs * 7
    for chunks in ((CHUNK, -1), (CHUNK, 11)):
        lazy = lazy_copy(adata, sparse=sparse).X.rechunk(chunks)
        result = rank_sum_test(lazy, groups, control, memory_budget=budget)
        for a, b in zip(expected, result, strict=True):
            np.testing.assert_allclose(a, b, atol=TOL, rtol=TOL, equal_nan=True)
    t_expected = welch_ttest(X, groups, control)
    t_result = welch_ttest(lazy_copy(adata, sparse=sparse).X, groups, control)
    for a, b in zip(t_expected, t_result, strict=True):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=TOL, equal_nan=True)


@pytest.mark.parametrize(
    ("distance", "exclusion", "orientation"),
    [("euclidean", "targeted", "prediction"), ("pearson", "query", "observed"),
     ("manhattan", "all", "prediction"), ("cosine", "none", "observed")],
)
def test_pairwise_retrieval_on_cluster(dask_client, sim, distance, exclusion, orientation):
    predicted, observed, targets = retrieval_inputs(sim)
    kw = {"distance": distance, "exclude": exclusion, "orientation": orientation}
    serial, matrix = pairwise_retrieval(predicted, observed, targets, block_size=5,
                                        return_matrix=True, **kw)
    with distributed.get_task_stream(dask_client) as stream:
        mapped, mapped_matrix = pairwise_retrieval(predicted, observed, targets, block_size=5,
                                                   return_matrix=True, dask=True, **kw)
    # Same code on the same blocks: the same bits.
    np.testing.assert_array_equal(serial, mapped)
    np.testing.assert_array_equal(matrix, mapped_matrix)
    assert len(stream.data) >= -(-len(serial) // 5)  # one task per query block
    # Dask inputs: computed once, mapped by default; dask=False runs serially.
    lazy_p = da.from_array(predicted, chunks=(CHUNK, -1))
    lazy_o = da.from_array(sp.csr_matrix(observed), chunks=(9, -1))
    np.testing.assert_array_equal(
        serial, pairwise_retrieval(lazy_p, lazy_o, targets, block_size=5, **kw))
    np.testing.assert_array_equal(
        serial, pairwise_retrieval(lazy_p, lazy_o, targets, block_size=5, dask=False, **kw))
    # The default block size (one block here) gives the same ranks too.
    np.testing.assert_allclose(serial, pairwise_retrieval(predicted, observed, targets, **kw),
                               atol=1e-12, rtol=0)


def test_retrieval_table_on_cluster(dask_client, sim):
    kw = {"distance": ["euclidean", "cosine"], "exclude": ["targeted", "query"]}
    expected = retrieval(sim.truth, sim.adata, **kw)
    result = retrieval(sim.truth, lazy_copy(sim.adata, sparse=True), dask=True, **kw)
    pd.testing.assert_frame_equal(expected, result, check_exact=False, atol=TOL, rtol=0)


def test_pseudobulk_from_zarr(tmp_path, dask_client, sim):
    adata = sim.adata.copy()
    path = tmp_path / "screen.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's zarr-format notice
        adata.write_zarr(path)
    lazy = read_lazy(path, chunk_rows=CHUNK)
    assert lazy.X.chunks[0][0] == CHUNK
    assert_same_anndata(pseudobulk(adata), pseudobulk(lazy))
    assert_same_de(differential_expression(adata), differential_expression(lazy))


def test_chunked_along_genes_is_refused(sim):
    lazy = lazy_copy(sim.adata)
    lazy.X = lazy.X.rechunk((CHUNK, 20))
    calls = [
        lambda: pseudobulk(lazy),
        lambda: control_mean(lazy),
        lambda: changes(lazy),
        lambda: differential_expression(lazy),
        lambda: differential_expression(lazy, method="wilcoxon"),
    ]
    for call in calls:
        with pytest.raises(DataContractError, match=r"chunked along genes.*rechunk") as info:
            call()
        assert isinstance(info.value, CausalCellError)
    layered = lazy_copy(sim.adata, layer="counts")
    layered.layers["counts"] = layered.layers["counts"].rechunk((CHUNK, 20))
    with pytest.raises(DataContractError, match=r"layers\['counts'\] is a Dask array"):
        pseudobulk(layered, layer="counts")
