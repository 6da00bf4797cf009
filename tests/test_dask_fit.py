"""Out-of-core fitting: ConditionalGRNRegressor on Dask arrays equals the in-memory fit.

Runs on a distributed LocalCluster (as a user's cluster would) and on Dask's
threaded scheduler; data read lazily from zarr and h5ad; errors for layouts
that cannot be processed in row blocks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from causalcell.data import read_lazy  # noqa: E402
from causalcell.data.lazy import (  # noqa: E402
    active_client,
    check_row_chunks,
    map_row_blocks,
    row_blocks,
)
from causalcell.datasets import simulate  # noqa: E402
from causalcell.errors import (  # noqa: E402
    CausalCellError,
    DataContractError,
    DataFileError,
    ParameterError,
)
from causalcell.models import ConditionalGRNRegressor  # noqa: E402

TOL = 1e-8


@pytest.fixture(scope="module")
def sim():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate(n_genes=80, n_tfs=10, n_cells_per_perturbation=40, random_state=3)


def dense(adata) -> np.ndarray:
    X = adata.X
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def lazy_copy(adata, chunks, sparse: bool = False):
    out = adata.copy()
    X = dense(adata)
    out.X = da.from_array(sp.csr_matrix(X) if sparse else X, chunks=(chunks, -1))
    return out


def fit(adata, network, **kwargs) -> ConditionalGRNRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ConditionalGRNRegressor(verbose=False, **kwargs).fit(adata, network)


def assert_same_fit(a: ConditionalGRNRegressor, b: ConditionalGRNRegressor) -> None:
    assert (a.coef_ != b.coef_).nnz == 0 or np.abs((a.coef_ - b.coef_).toarray()).max() < TOL
    assert a.coef_.nnz == b.coef_.nnz
    np.testing.assert_allclose(a.intercept_, b.intercept_, atol=TOL, rtol=0)
    np.testing.assert_array_equal(a.n_samples_, b.n_samples_)
    np.testing.assert_allclose(a.alpha_, b.alpha_, rtol=1e-12)
    np.testing.assert_allclose(a.control_mean_, b.control_mean_, atol=TOL, rtol=0)
    pd.testing.assert_frame_equal(a.target_levels_, b.target_levels_, atol=TOL)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize(
    "params",
    [{}, {"alpha": "gcv"}, {"regressor": "ols"}],
    ids=["ridge", "gcv", "ols"],
)
def test_network_fit_on_cluster_equals_memory(dask_client, sim, sparse, params):
    reference = fit(sim.adata, sim.network, **params)
    with distributed.get_task_stream(dask_client) as stream:
        lazy = fit(lazy_copy(sim.adata, 97, sparse), sim.network, **params)
    assert_same_fit(reference, lazy)
    if "regressor" in params:
        np.testing.assert_allclose(
            reference.stderr_.toarray(), lazy.stderr_.toarray(), atol=TOL, rtol=0
        )
    # The cluster did the work: one task per block (17) ran on its workers.
    assert len({t["key"] for t in stream.data}) >= len(lazy_copy(sim.adata, 97).X.chunks[0])


def test_pool_fit_threaded_equals_memory(sim):
    # No client: Dask's threaded scheduler. Regulator-list mode (all TFs).
    assert active_client() is None
    adata = sim.adata
    tfs = adata.var_names[adata.var["is_tf"].to_numpy()].tolist()
    reference = fit(adata, None, regulators=tfs)
    lazy = fit(lazy_copy(adata, 250), None, regulators=tfs)
    assert_same_fit(reference, lazy)


def test_predictions_equal(dask_client, sim):
    adata = sim.adata
    request = adata.obs.drop_duplicates("perturbation")
    a = fit(adata, sim.network).predict(request)
    b = fit(lazy_copy(adata, 128), sim.network).predict(request)
    np.testing.assert_allclose(dense(a), dense(b), atol=TOL, rtol=0)


@pytest.mark.parametrize("fmt", ["zarr", "h5ad"])
def test_fit_from_store_read_lazily(tmp_path, sim, fmt):
    adata = sim.adata.copy()
    adata.X = dense(adata).astype(np.float32)
    path = tmp_path / f"screen.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's zarr-format notice
        (adata.write_zarr if fmt == "zarr" else adata.write_h5ad)(path)
    lazy = read_lazy(path, chunk_rows=300)
    assert lazy.X.chunks[0][0] == 300
    assert len(lazy.X.chunks[1]) == 1
    pd.testing.assert_frame_equal(lazy.obs, adata.obs)
    assert_same_fit(fit(adata, sim.network), fit(lazy, sim.network))


def test_read_lazy_layer(tmp_path, sim):
    path = tmp_path / "screen.h5ad"
    sim.adata.write_h5ad(path)
    lazy = read_lazy(path, layer="counts")
    np.testing.assert_array_equal(lazy.X.compute(), dense_layer(sim.adata, "counts"))
    with pytest.raises(DataFileError, match="no layer 'nope'.*counts"):
        read_lazy(path, layer="nope")


def dense_layer(adata, layer):
    X = adata.layers[layer]
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(DataFileError, match="Store not found.*missing.zarr.*write_zarr"):
        read_lazy(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="not a zarr store|not an AnnData store"):
        read_lazy(tmp_path / "empty")
    text = tmp_path / "notes.txt"
    text.write_text("not data")
    with pytest.raises(DataFileError, match="neither a zarr store"):
        read_lazy(text)
    with pytest.raises(ParameterError, match="chunk_rows"):
        read_lazy(text, chunk_rows=0)


def test_gene_chunks_are_refused_with_the_fix(sim):
    adata = sim.adata.copy()
    adata.X = da.from_array(dense(sim.adata), chunks=(500, 30))
    with pytest.raises(DataContractError, match=r"chunked along genes.*rechunk") as info:
        fit(adata, sim.network)
    assert isinstance(info.value, CausalCellError)


def test_non_finite_block_is_named(sim):
    X = dense(sim.adata).copy()
    X[700, 5] = np.nan
    adata = sim.adata.copy()
    adata.X = da.from_array(X, chunks=(300, -1))
    with pytest.raises(DataContractError, match="NaN or infinite.*sample 700"):
        fit(adata, sim.network)


def test_generic_regressor_needs_memory(sim):
    with pytest.raises(ParameterError, match="needs X in memory.*ridge"):
        fit(lazy_copy(sim.adata, 500), sim.network, regressor="lasso", alpha=0.1)


def test_caller_data_untouched(sim):
    adata = lazy_copy(sim.adata, 400)
    before = adata.X.compute().copy()
    obs = adata.obs.copy()
    fit(adata, sim.network)
    np.testing.assert_array_equal(adata.X.compute(), before)
    pd.testing.assert_frame_equal(adata.obs, obs)


@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    ordered=st.booleans(),
)
def test_map_row_blocks_folds_every_row_once_in_order(sizes, ordered):
    n = sum(sizes)
    X = da.from_array(np.arange(n * 3, dtype=float).reshape(n, 3), chunks=(tuple(sizes), 3))
    assert row_blocks(X)[-1][1] == n
    if ordered:
        parts = map_row_blocks(lambda b, start, stop: (start, stop, b.sum()), X)
        assert [p[:2] for p in parts] == row_blocks(X)
    total = map_row_blocks(
        lambda b, start, stop, w: w @ b, X,
        block_args=lambda start, stop: (np.arange(start, stop, dtype=float),),
        combine=np.add,
    )
    np.testing.assert_allclose(total, np.arange(n) @ X.compute())


def test_check_row_chunks_shape():
    with pytest.raises(DataContractError, match="2-D"):
        check_row_chunks(da.zeros(5))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_learn_network_out_of_core_equals_in_memory(sim, sparse, monkeypatch):
    """A Dask X is read in blocks (one pass, plus one per stability half): the same
    network, weights and interventional q-values as in memory."""
    from causalcell.data import _moments
    from causalcell.graph import learn_network

    tfs = [g for g in sim.adata.var_names if g.startswith("TF")]
    in_memory = sim.adata.copy()
    if sparse:
        in_memory.X = sp.csr_matrix(dense(sim.adata))
    for kwargs in ({"method": "lasso"}, {"method": "stability", "n_bootstrap": 4}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            memory = learn_network(in_memory, regulators=tfs, verbose=False, **kwargs)
            out_of_core = learn_network(lazy_copy(sim.adata, 300, sparse), regulators=tfs,
                                        verbose=False, **kwargs)
        assert set(memory.edges) == set(out_of_core.edges)
        assert memory.number_of_edges() > 10
        for u, v, d in memory.edges(data=True):
            other = out_of_core.edges[u, v]
            assert other["weight"] == pytest.approx(d["weight"], rel=1e-8, abs=1e-12)
            assert other["intervention_q"] == pytest.approx(d["intervention_q"], rel=1e-8,
                                                            nan_ok=True)
    # A machine too small for the leave-out values: a clear error, not a crash.
    monkeypatch.setattr(_moments, "physical_memory", lambda: 1e3)
    with pytest.raises(ParameterError, match=r"learn_network: the samples that target a gene"):
        learn_network(lazy_copy(sim.adata, 300), regulators=tfs, verbose=False)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_cross_products_gather_and_weights_same_in_memory_and_lazy(sim, sparse):
    from causalcell.data import Interventions
    from causalcell.data._design import Design
    from causalcell.data._moments import moments

    adata = sim.adata
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    X = sp.csr_matrix(dense(adata)) if sparse else dense(adata)
    regulators = np.flatnonzero(adata.var["is_tf"].to_numpy())
    rng = np.random.default_rng(0)
    gather = sp.csr_array(sp.random(*X.shape, density=0.05, random_state=1, format="csr") > 0)
    weights = rng.random(X.shape[0])
    memory = moments(Design(X, iv), regulators, gather=gather, row_weights=weights)
    lazy = moments(Design(da.from_array(X, chunks=(211, -1)), iv), regulators, gather=gather,
                   row_weights=weights)
    # Gathered values are the measured entries, bit for bit; sums agree to rounding.
    np.testing.assert_array_equal(memory.gathered.indices, gather.indices)
    np.testing.assert_array_equal(memory.gathered.data, lazy.gathered.data)
    np.testing.assert_array_equal(memory.gathered.data, dense(adata)[gather.nonzero()])
    np.testing.assert_allclose(memory.weighted_sum, weights @ dense(adata), rtol=1e-12)
    np.testing.assert_allclose(lazy.weighted_sum, memory.weighted_sum, rtol=1e-12)
    # The paths may centre on different shifts; the scatter matrix about the mean
    # does not depend on the shift.
    positions = np.arange(len(regulators))

    def scatter(cp):
        s_r = cp.regulator_sums
        return cp.gram(positions[:, None], positions[None, :]) - np.outer(s_r, s_r) / cp.n

    np.testing.assert_allclose(scatter(memory), scatter(lazy), rtol=1e-9, atol=1e-9)
