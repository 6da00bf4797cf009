"""Peer parity: every metric whose docs name a cell-eval metric equals it on the same inputs.

cell-eval (installed by the ``dev`` extra) scores predicted *cells* against
real cells, each side against its own control cells. Here the predicted
controls are the real ones, so both sides share one control mean, as in
causalcell, and the targeted genes are scored (``exclude="none"``; cell-eval's
retrieval excludes the query's gene only: our ``"query"`` rule).
``de_overlap_sig`` is documented as *not* cell-eval's ``overlap_at_N`` and is
named differently (see :func:`causalcell.evaluate.perturbation_metrics`).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cell_eval._types import PerturbationAnndataPair
from cell_eval.metrics import discrimination_score, mae, mse, pearson_delta

import causalcell as cc

CONTROL = "non-targeting"


@pytest.fixture(scope="module")
def pair():
    """Real cells of single knockdowns and predicted cells (noisy, with the real controls)."""
    sim = cc.datasets.simulate(n_genes=60, n_tfs=12, n_combinations=0,
                               n_cells_per_perturbation=30, random_state=7)
    real = sim.adata
    rng = np.random.default_rng(0)
    perturbed = ~real.obs["is_control"].to_numpy()
    X = np.asarray(real.X, dtype=np.float64)
    predicted_X = X.copy()
    predicted_X[perturbed] = X[perturbed] + rng.normal(0, 0.3, X[perturbed].shape)
    predicted = ad.AnnData(predicted_X, obs=real.obs.copy(), var=real.var.copy())
    real = ad.AnnData(X, obs=real.obs.copy(), var=real.var.copy())
    for side in (real, predicted):
        labels = side.obs["perturbation"].astype(str).to_numpy()
        side.obs["target_gene"] = np.where(side.obs["is_control"].to_numpy(), CONTROL, labels)
    theirs = PerturbationAnndataPair(real=real, pred=predicted, pert_col="target_gene",
                                     control_pert=CONTROL)
    return real, predicted, theirs


def _ours(real, predicted, **options) -> pd.DataFrame:
    table = cc.evaluate.evaluate(predicted[~predicted.obs["is_control"].to_numpy()], real,
                                 exclude="none", aggregate_predicted=True, top_k=[5],
                                 de_method=None, **options)
    return table


@pytest.mark.parametrize(("ours", "theirs"), [("pearson_delta", pearson_delta),
                                              ("mse", mse), ("mae", mae)])
def test_profile_metrics_equal_cell_eval(pair, ours, theirs):
    real, predicted, peer = pair
    table = _ours(real, predicted, retrieval=False)
    values = table[table["metric"] == ours].set_index("perturbation")["value"]
    scores = theirs(peer)
    assert set(scores) == set(values.index)
    for label, score in scores.items():
        assert values[label] == pytest.approx(score, rel=1e-9, abs=1e-12), label


@pytest.mark.parametrize(("distance", "metric"), [("manhattan", "l1"), ("euclidean", "l2")])
def test_retrieval_score_equals_cell_eval_discrimination_score(pair, distance, metric):
    real, predicted, peer = pair
    profiles = predicted[~predicted.obs["is_control"].to_numpy()]
    ranks = cc.evaluate.retrieval(profiles, real, distance=distance, exclude="query",
                                  aggregate_predicted=True)
    ours = ranks.set_index("perturbation")["score"]
    scores = discrimination_score(peer, metric=metric)
    assert set(scores) == set(ours.index)
    for label, score in scores.items():
        assert ours[label] == pytest.approx(score, abs=1e-12), label
