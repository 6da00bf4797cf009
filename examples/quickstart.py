"""Quick start: simulate a screen, fit P(X | T), score with and without conditioning.

Run: python examples/quickstart.py
"""

import causalcell as cc

sim = cc.datasets.simulate(n_genes=200, n_tfs=20, library_size=100_000, random_state=0)
adata, network = sim.adata, sim.network        # cells, and the true network

cc.data.validate(adata)                        # the obs contract
iv = cc.Interventions.from_adata(adata)        # targets, levels T, kinds: parsed once
G_do = cc.graph.intervene(network, ["TF01"])   # the do-operator: edges into TF01 cut

train, test = cc.data.split_by_perturbation(adata, test_size=0.3, random_state=0)
request = cc.data.pseudobulk(test).obs         # which genes, which kind, level T

predictions = {
    "conditional GRN": cc.models.ConditionalGRNRegressor(verbose=False)
    .fit(train, network)
    .predict(request),
    "target only": cc.models.TargetOnlyBaseline().fit(train).predict(request),
    "mean": cc.models.MeanBaseline().fit(train).predict(request),
}
observed = cc.data.pseudobulk(adata)           # held-out perturbations + controls
table = cc.evaluate.compare(predictions, observed)
shown = table[table["metric"].isin(["pearson_delta", "retrieval_rank"])]
print(shown[["metric", "model", "value [targeted]", "value [none]"]].to_string(
    index=False))
