"""Bring your own data: convert a GEARS-layout screen, read an edge list, fit.

Accompanies the tutorial docs/tutorials/bring_your_own_data.md.
Run: python examples/bring_your_own_data.py

The shipped Papalexi et al. (2021) knockout screen is rewritten in the GEARS
layout (obs "condition": "STAT1+ctrl", "ctrl"; symbols in var "gene_name"),
saved and read back as h5ad, converted with cc.data.standardize, validated,
and fitted with a network read from a tab-separated edge list; the predictions
are then written back out as cells in the cell-eval layout.
"""

import os
import tempfile
import warnings

import anndata as ad
import numpy as np
import pandas as pd

import causalcell as cc
from causalcell.errors import UnmeasuredTargetWarning

warnings.simplefilter("ignore", UnmeasuredTargetWarning)  # most targets are unmeasured
papalexi = cc.datasets.load_papalexi2021()
label = papalexi.obs["perturbation"].astype(str).to_numpy()
control = papalexi.obs["is_control"].to_numpy()
gears = ad.AnnData(
    papalexi.X,
    obs=pd.DataFrame({"condition": np.where(control, "ctrl", np.char.add(label, "+ctrl"))},
                     index=papalexi.obs_names),
    var=pd.DataFrame({"gene_name": papalexi.var_names.to_numpy()},
                     index=[f"gene{i:03d}" for i in range(papalexi.n_vars)]),
)

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "screen.h5ad")
    cc.data.write_h5ad(gears, path, compression=None)  # fast; gzip is the default
    adata = cc.data.standardize(cc.data.read_h5ad(path), "gears", perturbation_type="knockout")
    edges = cc.graph.network_to_frame(cc.datasets.load_collectri())
    tsv = os.path.join(tmp, "network.tsv")
    edges.rename(columns={"regulator": "source"}).to_csv(tsv, sep="\t", index=False)
    network = cc.graph.read_network(tsv, genes=adata.var_names)

cc.data.validate(adata)
iv = cc.Interventions.from_adata(adata)
print(iv)
print(f"network: {network.number_of_edges()} edges between measured genes")

# Hold out perturbations whose targets are measured (a model clamps only those).
train, test = cc.data.split_by_perturbation(adata, test_size=0.4, random_state=0,
                                            measured_only=True)
request = cc.data.pseudobulk(test).obs
predictions = {
    "conditional GRN": cc.models.ConditionalGRNRegressor(verbose=False)
    .fit(train, network).predict(request),
    "target only": cc.models.TargetOnlyBaseline().fit(train).predict(request),
    "mean": cc.models.MeanBaseline().fit(train).predict(request),
}
table = cc.evaluate.compare(predictions, cc.data.pseudobulk(adata))
print("held out:", ", ".join(test.uns["split"]["test_perturbations"]))
shown = table[table["metric"].isin(["pearson_delta", "retrieval_rank"])]
print(shown[["metric", "model", "value [targeted]", "value [none]"]]
      .round(3).to_string(index=False))

# Back out: the conditional GRN's predictions as cells (observed control cells shifted
# to average exactly to each prediction), in the layout cell-eval reads; the command
# `causalcell export` writes such a pair of files for `cell-eval run`.
cells = cc.data.sample_cells(predictions["conditional GRN"], adata, random_state=0)
for_cell_eval = cc.data.to_convention(cells, "cell-eval")
print(for_cell_eval.obs["target_gene"].value_counts().to_string())
