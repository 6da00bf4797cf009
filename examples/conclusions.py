"""Conclusions that hold: cross-validated scores with coverage, intervals and calibration.

Every perturbation of a simulated screen is predicted once by models fitted
without it; each mean carries n, its 95% bootstrap interval, the paired
difference from the mean baseline and a calibrated score (0 = mean baseline,
1 = the data's split-half replicate). The simulation's exact expected profile
(``sim.expected``) is the known answer: it calibrates at 1.

Tutorial: docs/tutorials/conclusions.md
"""

from sklearn.base import BaseEstimator

import causalcell as cc


class KnownAnswer(BaseEstimator):
    """Predicts the rows of a fixed table of profiles, whatever it is trained on."""

    def __init__(self, profiles=None):
        self.profiles = profiles

    def fit(self, adata, network=None):
        return self

    def predict(self, request):
        return self.profiles[list(request.index)].copy()


sim = cc.datasets.simulate(random_state=0)
models = {
    "expected": KnownAnswer(sim.expected),
    "conditional GRN": cc.models.ConditionalGRNRegressor(verbose=False),
    "mean": cc.models.MeanBaseline(),
    "control": cc.models.ControlBaseline(),
}
result = cc.benchmark.cross_validate(models, sim.adata, sim.network, folds=5, verbose=False)
cond = "targeted"
columns = ["metric", "model", f"value [{cond}]", f"ci_low [{cond}]", f"ci_high [{cond}]",
           f"n [{cond}]", f"n_undefined [{cond}]", f"p_value [{cond}]", f"calibrated [{cond}]"]
shown = result.table[result.table["metric"].isin(["mse", "pearson_delta", "retrieval_rank"])]
print(f"{len(result.held_out)} perturbations, each predicted once in 5 folds:")
print(shown[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
