"""``evaluate`` and ``compare`` read the observed cells once.

The observed profiles (pseudobulk means) and the DE test of the same cells
come from one pass over X: the per-condition sums (and sums of squares, for
Welch's test) are merged into the test's groups (each perturbed condition;
the controls pooled) instead of read again. Each result is checked against
the previous path, computed explicitly (``align`` + ``differential_expression``
on X + ``score_aligned``), to 1e-12, and the reads of X are counted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st

from causalcell.data import Interventions, pseudobulk
from causalcell.data._stats import group_moments
from causalcell.datasets import simulate
from causalcell.evaluate import align, compare, differential_expression, evaluate
from causalcell.evaluate._exclude import METRIC_EXCLUDES
from causalcell.evaluate._metrics import DEFAULT_TOP_K
from causalcell.evaluate._report import score_aligned

da = pytest.importorskip("dask.array")

TOL = 1e-12
CHUNK = 53  # does not divide the number of cells: the last block is shorter


@pytest.fixture(scope="module")
def screen() -> AnnData:
    """A simulated screen with two kinds of controls (so control_label matters) and
    the expression in a layer too (X then holds something else)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate(n_genes=40, n_tfs=6, n_cells_per_perturbation=25, random_state=7)
    adata = sim.adata.copy()
    labels = adata.obs["perturbation"].astype(str).to_numpy().copy()
    control = np.flatnonzero(adata.obs["is_control"].to_numpy(dtype=bool))
    labels[control[::3]] = "safe-targeting"  # a second kind of control, interleaved
    adata.obs["perturbation"] = labels
    X = np.asarray(adata.X, dtype=np.float64)
    adata.X = X
    adata.layers["logged"] = X.copy()
    return adata


def prediction(observed: AnnData, seed: int = 0) -> AnnData:
    """Noisy per-perturbation profiles of ``observed`` (any predictor would do)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pb = pseudobulk(observed)
    pb = pb[~pb.obs["is_control"].to_numpy(dtype=bool)].copy()
    noise = np.random.default_rng(seed).normal(0.0, 0.2, pb.shape)
    pb.X = np.asarray(pb.X) + noise
    del pb.obs["n_cells"]
    return pb


def previous_evaluate(predicted: AnnData, observed: AnnData, *, de_method: str = "t-test",
                      **options) -> pd.DataFrame:
    """evaluate() the way it was: align, then a DE test that reads X again, then score."""
    aligned = align(predicted, observed, **options)
    de = differential_expression(observed, method=de_method, layer=options.get("layer"),
                                 control_label=options.get("control_label"))
    return score_aligned(aligned, de, exclude=METRIC_EXCLUDES, top_k=DEFAULT_TOP_K,
                         alpha=0.05, retrieval=True, distance="euclidean")


def assert_same_table(new: pd.DataFrame, old: pd.DataFrame, attrs: bool = True) -> None:
    assert len(new) == len(old) > 0
    keys = [c for c in new.columns if c != "value"]
    pd.testing.assert_frame_equal(new[keys], old[keys])
    np.testing.assert_allclose(new["value"].to_numpy(), old["value"].to_numpy(),
                               rtol=TOL, atol=TOL, equal_nan=True)
    np.testing.assert_array_equal(new["value"].isna(), old["value"].isna())
    if attrs:
        assert new.attrs == old.attrs


def with_matrix(adata: AnnData, kind: str, layer: str | None = None) -> AnnData:
    """A copy of ``adata`` whose X (or layer) is dense, CSR or a Dask array of dense
    or CSR row blocks."""
    out = adata.copy()
    X = np.asarray(adata.X if layer is None else adata.layers[layer])
    if kind == "sparse":
        X = sp.csr_matrix(X)
    elif kind == "dask":
        X = da.from_array(X, chunks=(CHUNK, -1))
    elif kind == "dask-sparse":
        X = da.from_array(sp.csr_matrix(X), chunks=(CHUNK, -1))
    if layer is None:
        out.X = X
    else:
        out.layers[layer] = X
    return out


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- results unchanged
@pytest.mark.parametrize("kind", ["dense", "sparse", "dask", "dask-sparse"])
@pytest.mark.parametrize("options", [
    {},
    {"control_label": "control"},
    {"layer": "logged"},
    {"reference": "perturbed_mean", "control_label": "safe-targeting"},
], ids=["defaults", "control_label", "layer", "perturbed_mean"])
def test_evaluate_equals_the_previous_path(screen, kind, options):
    observed = screen.copy()
    if "layer" in options:
        # X is not the expression: a result read from X instead of the layer differs.
        observed.X = np.asarray(observed.X)[:, ::-1].copy()
    observed = with_matrix(observed, kind, options.get("layer"))
    predicted = prediction(screen)
    old = quiet(previous_evaluate, predicted, observed, **options)
    new = quiet(evaluate, predicted, observed, **options)
    assert_same_table(new, old)


@pytest.mark.parametrize("kind", ["sparse", "dask"])
def test_wilcoxon_equals_the_previous_path(screen, kind):
    observed = with_matrix(screen, kind)
    predicted = prediction(screen)
    options = {"control_label": "control"}
    old = quiet(previous_evaluate, predicted, observed, de_method="wilcoxon", **options)
    new = quiet(evaluate, predicted, observed, de_method="wilcoxon", **options)
    assert_same_table(new, old)


def test_test_data_equals_the_previous_path():
    """The shipped Papalexi et al. (2021) screen: real sparse counts, log-normalized."""
    from causalcell.datasets import load_papalexi2021

    observed = quiet(load_papalexi2021)
    predicted = prediction(observed, seed=1)
    old = quiet(previous_evaluate, predicted, observed)
    new = quiet(evaluate, predicted, observed)
    assert_same_table(new, old)


def test_compare_equals_the_previous_path(screen):
    observed = with_matrix(screen, "sparse")
    predictions = {"a": prediction(screen, 1), "b": prediction(screen, 2)}
    _, long = quiet(compare, predictions, observed, baseline=None, n_resamples=10,
                    details=True)
    for name, predicted in predictions.items():
        old = quiet(previous_evaluate, predicted, observed)
        new = long[long["model"] == name].drop(columns=["model", "scored"])
        assert_same_table(new.reset_index(drop=True), old, attrs=False)


def test_pseudobulk_means_equal_the_weighted_sums(screen):
    """pseudobulk's means (group sums / n) equal the previous arithmetic (the sums of
    the rows weighted 1 / n), and each group's mean over its cells."""
    for kind in ("dense", "sparse", "dask"):
        adata = with_matrix(screen, kind)
        pb = quiet(pseudobulk, adata)
        codes, _ = pd.factorize(Interventions.from_adata(screen, warn_unmeasured=False).codes)
        n = np.bincount(codes)
        previous = group_moments(adata.X, codes, len(n), weights=1.0 / n[codes]).sums
        np.testing.assert_allclose(pb.X, previous, rtol=TOL, atol=TOL)
        X = np.asarray(screen.X)
        naive = np.stack([X[codes == g].mean(axis=0) for g in range(len(n))])
        np.testing.assert_allclose(pb.X, naive, rtol=TOL, atol=TOL)


@settings(max_examples=40, deadline=None)
@given(n_rows=st.integers(1, 60), n_fine=st.integers(1, 9), n_coarse=st.integers(1, 4),
       sparse=st.booleans(), seed=st.integers(0, 2**16))
def test_merged_moments_equal_a_pass_at_the_coarse_grouping(n_rows, n_fine, n_coarse, sparse,
                                                            seed):
    """Sums of groups add up: merging fine groups (some left out) gives the moments of a
    pass at the coarse grouping, rows of no group included."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, 5)) * (rng.random((n_rows, 5)) < 0.6)
    fine = rng.integers(-1, n_fine, n_rows)  # -1: a row in no group
    into = rng.integers(-1, n_coarse, n_fine)  # -1: a fine group left out
    coarse = np.where(fine >= 0, into[np.maximum(fine, 0)], -1)
    data = sp.csr_matrix(X) if sparse else X
    merged = group_moments(data, fine, n_fine, squares=True).merged(into, n_coarse)
    direct = group_moments(data, coarse, n_coarse, squares=True)
    np.testing.assert_array_equal(merged.count, direct.count)
    np.testing.assert_allclose(merged.sums, direct.sums, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(merged.squares, direct.squares, rtol=TOL, atol=TOL)
    naive = np.array([X[coarse == g].sum(axis=0) for g in range(n_coarse)]).reshape(-1, 5)
    np.testing.assert_allclose(merged.sums, naive, rtol=TOL, atol=TOL)


# --------------------------------------------------------------------------- reads counted
class CountingArray:
    """A dense array that counts the reads of each row block Dask makes."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.shape, self.dtype, self.ndim = X.shape, X.dtype, X.ndim
        self.reads: dict[int, int] = {}

    def __getitem__(self, key):
        out = self.X[key]
        if out.size:  # not Dask's zero-size probe of the type
            start = key[0].start or 0
            self.reads[start] = self.reads.get(start, 0) + 1
        return out


@pytest.fixture
def counted(monkeypatch):
    """A copy of an AnnData with a Dask X read from a :class:`CountingArray`.

    The raw-counts check of the contract reads a sample of the first rows
    (about a million values: all of this small X); it is held within the
    first block here, which is then left out of the count.
    """
    monkeypatch.setattr("causalcell.data.contract._COUNTS_SAMPLE_VALUES", 1)

    def make(adata: AnnData) -> tuple[AnnData, CountingArray]:
        source = CountingArray(np.asarray(adata.X))
        out = adata.copy()
        out.X = da.from_array(source, chunks=(CHUNK, -1), asarray=False)
        return out, source

    return make


def passes(source: CountingArray) -> list[int]:
    """How many times each row block but the first was read."""
    starts = range(CHUNK, source.shape[0], CHUNK)
    return sorted({source.reads.get(start, 0) for start in starts})


@pytest.mark.parametrize("de_method", ["t-test", "wilcoxon", None])
def test_evaluate_reads_the_cells_once(screen, counted, de_method):
    observed, source = counted(screen)
    quiet(evaluate, prediction(screen), observed, de_method=de_method)
    # t-test and no test: one pass. Wilcoxon: the ranks need the values (one more
    # pass, in gene blocks; this X fits one), but the means are not read again.
    assert passes(source) == [2 if de_method == "wilcoxon" else 1]


@pytest.mark.parametrize("de_method", ["t-test", None])
def test_compare_reads_the_cells_once(screen, counted, de_method):
    """Every model's alignment and the DE test share one pass (also without a test:
    the models' alignments share it)."""
    observed, source = counted(screen)
    predictions = {"a": prediction(screen, 1), "b": prediction(screen, 2),
                   "c": prediction(screen, 3)}
    quiet(compare, predictions, observed, baseline=None, n_resamples=10,
          de_method=de_method)
    assert passes(source) == [1]


def test_cli_reads_the_cells_once(screen, counted, monkeypatch, tmp_path):
    """``causalcell evaluate`` aligns once for every score and tests DE from the
    same pass."""
    from causalcell import cli

    observed, source = counted(screen)
    files = {"predicted.h5ad": prediction(screen), "observed.h5ad": observed}
    monkeypatch.setattr("causalcell.data.read_h5ad", lambda path: files[Path(path).name])
    argv = ["evaluate", "--predicted", str(tmp_path / "predicted.h5ad"), "--observed",
            str(tmp_path / "observed.h5ad"), "--out", str(tmp_path / "out")]
    assert quiet(cli.main, argv) == 0
    assert passes(source) == [1]
