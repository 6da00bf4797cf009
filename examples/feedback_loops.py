"""Feedback loops: the per-gene fit is biased, the instrumental-variable fit is not.

Accompanies the tutorial docs/tutorials/feedback_loops.md.
Run: python examples/feedback_loops.py

A linear model with feedback, x = W^T x + mu + e (spectral radius 0.7), every
gene but one knocked out in its own condition. Its exact interventional means
are (I - W_do^T)^{-1} c: nothing is estimated. We fit
ConditionalGRNRegressor on the true network with the per-gene ridge fit and
with regressor="iv" (the conditions as instruments), at 100, 1,000 and 10,000
cells per condition, and compare both with the exact answer. Then a network is
learned from the data and its unoriented pairs are listed.
"""

import warnings

import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData

import causalcell as cc
from causalcell.errors import CausalCellWarning

P = 10
rng = np.random.default_rng(7)
W = np.where(rng.random((P, P)) < 0.3, rng.normal(size=(P, P)), 0.0)
np.fill_diagonal(W, 0.0)
ring = np.arange(P)
W[ring, (ring + 1) % P] = rng.choice([-1.0, 1.0], P) * rng.uniform(0.5, 1.0, P)
W *= 0.7 / np.max(np.abs(np.linalg.eigvals(W)))  # spectral radius 0.7
genes = [f"G{j}" for j in range(P)]
mu = np.full(P, 5.0)
print(f"{P} genes, {np.count_nonzero(W)} edges, spectral radius "
      f"{np.max(np.abs(np.linalg.eigvals(W))):.2f}")


def exact_mean(targets, level=0.0):
    """(I - W_do^T)^{-1} c: the exact mean under do(x_t = level)."""
    Wdo = W.copy()
    Wdo[:, list(targets)] = 0.0
    c = mu.copy()
    c[list(targets)] = level
    return np.linalg.solve(np.eye(P) - Wdo.T, c)


def screen(n_cells, seed, perturbed=range(P - 1)):
    """n_cells per condition: controls and the knockout of each perturbed gene
    (default: every gene but the last)."""
    r = np.random.default_rng(seed)
    conditions = [()] + [(j,) for j in perturbed]
    blocks, labels = [], []
    for targets in conditions:
        Wdo = W.copy()
        Wdo[:, list(targets)] = 0.0
        c = mu.copy()
        c[list(targets)] = 0.0
        E = r.normal(size=(n_cells, P))
        E[:, list(targets)] = 0.0
        blocks.append(np.linalg.solve(np.eye(P) - Wdo.T, (c + E).T).T)
        labels += [",".join(genes[t] for t in targets) or "control"] * n_cells
    labels = np.array(labels, dtype=object)
    control = labels == "control"
    obs = pd.DataFrame({"perturbation": labels, "is_control": control,
                        "perturbation_type": np.where(control, "control", "knockout")},
                       index=[f"c{i}" for i in range(len(labels))])
    return AnnData(np.vstack(blocks), obs=obs, var=pd.DataFrame(index=genes))


truth_network = nx.DiGraph()
truth_network.add_nodes_from(genes)
truth_network.add_weighted_edges_from(
    (genes[r], genes[g], W[r, g]) for r, g in zip(*np.nonzero(W), strict=True))
asked = [(j,) for j in range(P - 1)] + [(0, 4), (2, 7), (5, 8), (1, 6)]  # 4 unseen pairs
request = pd.DataFrame({"perturbation": [",".join(genes[t] for t in c) for c in asked],
                        "is_control": False, "perturbation_type": "knockout"})
exact = np.array([exact_mean(c) for c in asked])
sd = np.sqrt(np.sum(np.linalg.inv(np.eye(P) - W.T) ** 2, axis=1))  # control sd per gene

rows = []
for n_cells in (100, 1_000, 10_000):
    adata = screen(n_cells, seed=n_cells)
    for regressor in ("ridge", "iv"):
        model = cc.models.ConditionalGRNRegressor(regressor, alpha=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CausalCellWarning)
            model.fit(adata, truth_network)
        pred = model.predict(request).X
        rows.append({
            "cells per condition": n_cells,
            "fit": regressor,
            "worst coefficient error": np.max(np.abs(model.coef_.toarray() - W)[W != 0]),
            "worst prediction error (sd)": np.max(np.abs(pred - exact) / sd),
            "requests": len(asked),
        })
table = pd.DataFrame(rows)
print(table.round(3).to_string(index=False))
errors = table.pivot(index="cells per condition", columns="fit",
                     values="worst prediction error (sd)")
shrinks = bool(np.all(np.diff(errors["iv"].to_numpy()) < 0))
print(f"iv: worst prediction error {errors['iv'].iloc[0]:.2f} -> {errors['iv'].iloc[-1]:.2f} sd "
      f"({'shrinks' if shrinks else 'does not shrink'} with cells); ridge: "
      f"{errors['ridge'].iloc[0]:.2f} -> {errors['ridge'].iloc[-1]:.2f} sd "
      f"({errors['ridge'].iloc[-1] / errors['iv'].iloc[-1]:.0f}x the iv error at "
      f"{errors.index[-1]:,} cells).")

# A learned network from a screen that knocks out only G0-G4: pairs the
# interventions cannot orient are reported, never silently doubled.
adata = screen(2_000, seed=1, perturbed=range(5))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", CausalCellWarning)
    learned = cc.graph.learn_network(adata, alpha=0.05, max_regulators=None)
print(f"learned: {learned.number_of_edges()} edges, {learned.graph['n_oriented']} pairs "
      f"oriented by the interventions, {learned.graph['n_feedback_pairs']} in feedback "
      f"(each moves the other), {learned.graph['n_unoriented']} not oriented:")
print(learned.graph["unoriented"].round(3).to_string(index=False))
for w in caught:
    print("warning:", str(w.message)[:160], "...")
