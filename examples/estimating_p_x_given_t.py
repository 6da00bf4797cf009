"""Estimating P(X | T): fit where not targeted, clamp at T, propagate.

Accompanies the tutorial docs/tutorials/estimating_p_x_given_t.md.
Run: python examples/estimating_p_x_given_t.py

On a simulation with a known network and known effects: fit
ConditionalGRNRegressor on some perturbations, predict held-out ones, score
against the truth with the targeted genes excluded (baselines alongside),
ask for a dose-response across levels T, and compare fitted coefficients
with the true edge weights.
"""

import numpy as np
import pandas as pd

import causalcell as cc

sim = cc.datasets.simulate(random_state=0, library_size=100_000)
train, test = cc.data.split_by_perturbation(sim.adata, test_size=0.3, random_state=0)
held_tf = [p for p in test.uns["split"]["test_perturbations"] if p.startswith("TF")]
request = cc.data.pseudobulk(test).obs
request = request[request["perturbation"].isin(held_tf)]   # TFs: downstream effects

model = cc.models.ConditionalGRNRegressor(verbose=False).fit(train, sim.network)
predictions = {
    "conditional GRN": model.predict(request),
    "mean": cc.models.MeanBaseline().fit(train).predict(request),
    "target only": cc.models.TargetOnlyBaseline().fit(train).predict(request),
    "linear embedding": cc.models.LinearEmbeddingBaseline().fit(train).predict(request),
}
truth = sim.truth[sim.truth.obs["perturbation"].isin(["control", *held_tf])]
table = cc.evaluate.compare(predictions, truth, exclude="targeted")
table = table[table["metric"].isin(["pearson_delta", "retrieval_rank"])]
print(f"held-out TF perturbations scored against the truth: {', '.join(held_tf)}")
print(table.pivot(index="model", columns="metric", values="value [targeted]")
      .round(3).to_string())

# T is an input: the same model at any level of one TF.
tf = held_tf[0]
x0 = sim.adata.var["control_level"][tf]
levels = np.array([0.0, 0.5 * x0, x0, 2.0 * x0])
dose = model.predict(pd.DataFrame({
    "perturbation": tf, "is_control": False, "perturbation_type": "knockdown",
    "expression_level_after_perturbation": levels}))
strongest = max(sim.network.successors(tf), key=lambda g: abs(sim.network[tf][g]["weight"]))
response = dose[:, strongest].X.ravel()
pairs = ", ".join(f"{t:.2f} -> {v:.2f}" for t, v in zip(levels, response, strict=True))
print(f"\ndose-response of {strongest} (strongest target of {tf}) to T({tf}): {pairs}")

# Fitted coefficients against the true network weights.
both = model.coef_table().merge(cc.graph.network_to_frame(sim.network),
                                on=["regulator", "target"])
print(f"\n{len(both)} edges: Pearson(fitted coef, true weight) = "
      f"{np.corrcoef(both['coef'], both['weight'])[0, 1]:.3f}")
