"""sample_cells: cells that average exactly to a prediction, with the controls' noise."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import causalcell as cc
from causalcell.data import pseudobulk, sample_cells
from causalcell.data._sampling import _shift_to_mean
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError


def _bisection_shift(u: np.ndarray, target: float) -> float:
    """Naive reference: the shift s with mean(max(0, u + s)) == target, by bisection."""
    if target == 0:
        return -u.max()
    lo, hi = -u.max(), target - u.min() + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(u + mid, 0).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30),
       target=st.floats(0, 6, allow_nan=False))
def test_shift_to_mean_is_exact(values, target):
    """The closed form equals bisection, and the truncated cells have the target mean."""
    u = np.asarray(values)[:, None]
    s = _shift_to_mean(u, np.array([target]))[0]
    assert np.maximum(u + s, 0).mean() == pytest.approx(target, rel=1e-12, abs=1e-12)
    if target > 0:
        assert s == pytest.approx(_bisection_shift(u[:, 0], target), rel=1e-9, abs=1e-9)
    else:
        assert (u + s <= 0).all()


def _data(sparse: bool = False, seed: int = 0):
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, n_combinations=2, random_state=seed)
    truth = sim.truth[~sim.truth.obs["is_control"].to_numpy()].copy()
    observed = sim.adata.copy()
    if sparse:
        observed.X = sp.csr_matrix(observed.X)
    return truth, observed


@pytest.mark.parametrize("sparse", [False, True])
def test_cells_average_exactly_to_the_prediction(sparse):
    """Known answer: the do() means of the simulation, even where the floor truncates."""
    truth, observed = _data(sparse)
    truth.X = np.asarray(truth.X, dtype=np.float64)
    truth.X[:, :3] = 0.02  # near the floor: most shifted control values are truncated
    cells = sample_cells(truth, observed, random_state=1, dtype=np.float64)
    assert sp.issparse(cells.X) == sparse
    sampled = cells[cells.obs["source"] == "sampled"]
    assert (np.asarray(sampled.X.min()) >= 0).all()
    means = pseudobulk(sampled)
    np.testing.assert_allclose(means.X, truth.X, rtol=0, atol=1e-12)
    # n_cells="observed": as many cells as were observed per perturbation.
    observed_counts = pseudobulk(observed).obs.set_index("perturbation")["n_cells"]
    assert means.obs["n_cells"].tolist() == observed_counts[
        means.obs["perturbation"].astype(str)].tolist()
    # The observed controls are appended unchanged.
    controls = cells[cells.obs["source"] == "observed"]
    ctrl_obs = observed[observed.obs["is_control"].to_numpy()]
    assert list(controls.obs_names) == list(ctrl_obs.obs_names)
    np.testing.assert_array_equal(_dense(controls.X), _dense(ctrl_obs.X).astype(np.float64))


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def test_cells_are_shifted_control_cells():
    """Drawing every control cell once: each gene's sampled values are the control values
    shifted by one number (no floor), or that truncated at 0 (floor), compared with a
    naive per-gene bisection."""
    truth, observed = _data()
    ctrl = np.asarray(observed[observed.obs["is_control"].to_numpy()].X, dtype=np.float64)
    n = ctrl.shape[0]
    row = truth[[0]].copy()
    for floor in (None, 0.0):
        cells = sample_cells(row, observed, n_cells=n, random_state=0, floor=floor,
                             include_controls=False, dtype=np.float64)
        x = np.sort(np.asarray(cells.X), axis=0)
        c = np.sort(ctrl, axis=0)
        target = np.asarray(row.X[0], dtype=np.float64)
        if floor is None:
            np.testing.assert_allclose(x - c, np.broadcast_to(target - c.mean(0), c.shape),
                                       atol=1e-12)
        else:
            shifts = np.array([_bisection_shift(c[:, g], target[g]) for g in range(c.shape[1])])
            np.testing.assert_allclose(x, np.maximum(c + shifts, 0), atol=1e-9)


def test_seeded_and_documented():
    truth, observed = _data()
    a = sample_cells(truth, observed, n_cells=5, random_state=3)
    b = sample_cells(truth, observed, n_cells=5, random_state=3)
    c = sample_cells(truth, observed, n_cells=5, random_state=4)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert a.uns["sample_cells"]["random_state"] == 3
    assert a.uns["sample_cells"]["noise_model"] == "shifted control cells"
    assert a.obs["perturbation"].dtype == "category"
    assert a.obs_names[:2].tolist() == [f"{truth.obs_names[0]}-0", f"{truth.obs_names[0]}-1"]
    assert a.X.dtype == observed.X.dtype


def test_values_below_the_floor_are_raised_and_counted():
    truth, observed = _data()
    truth.X = np.asarray(truth.X, dtype=np.float64)
    truth.X[0, 0] = -0.5
    with pytest.warns(CausalCellWarning, match="1 predicted value.* raised to it"):
        cells = sample_cells(truth, observed, n_cells=4, random_state=0)
    assert cells.uns["sample_cells"]["n_raised"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = sample_cells(truth, observed, n_cells=4, random_state=0, floor=None,
                            dtype=np.float64)
    assert pseudobulk(kept[kept.obs["source"] == "sampled"]).X[0, 0] == pytest.approx(-0.5)


def test_sampled_cells_write_to_h5ad(tmp_path):
    """Combination levels stay text and unknown ones "nan": h5ad stores the column."""
    truth, observed = _data()
    cells = sample_cells(truth, observed, n_cells=2, random_state=0)
    cc.data.write_h5ad(cells, tmp_path / "cells.h5ad")
    back = cc.data.read_h5ad(tmp_path / "cells.h5ad")
    assert back.n_obs == cells.n_obs


def test_errors():
    truth, observed = _data()
    with pytest.raises(DataContractError, match="pseudobulk profiles"):
        sample_cells(truth, pseudobulk(observed))
    with pytest.raises(DataContractError, match="2 predicted gene.*not in the observed"):
        sample_cells(truth, observed[:, 2:].copy())
    twice = ad.concat([truth[:1], truth[:1]], index_unique="-")
    with pytest.raises(DataContractError, match="several rows for the perturbation"):
        sample_cells(twice, observed)
    no_ctrl = observed[~observed.obs["is_control"].to_numpy()].copy()
    with pytest.raises(DataContractError, match="no control cells"):
        sample_cells(truth, no_ctrl)
    with pytest.raises(DataContractError, match="no control cells with label 'NT'"):
        sample_cells(truth, observed, control_label="NT")
    unseen = truth[:1].copy()
    unseen.obs["perturbation"] = "G000"
    with pytest.raises(DataContractError, match="no observed cells.*G000.*n_cells=<int>"):
        sample_cells(unseen, observed)
    for bad in (0, "all", 2.5, True):
        with pytest.raises(ParameterError, match="n_cells"):
            sample_cells(truth, observed, n_cells=bad)
    with pytest.raises(ParameterError, match="floor"):
        sample_cells(truth, observed, floor="zero")
    with pytest.raises(ParameterError, match="random_state"):
        sample_cells(truth, observed, random_state="seed")
    nan = truth.copy()
    nan.X = np.asarray(nan.X, dtype=np.float64)
    nan.X[1, 1] = np.nan
    with pytest.raises(DataContractError, match="NaN or infinite"):
        sample_cells(nan, observed)
    pd.testing.assert_frame_equal(truth.obs, _data()[0].obs)  # inputs untouched
