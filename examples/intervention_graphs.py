"""Intervention graphs and do(): cutting the incoming edges of targeted genes.

Accompanies the tutorial docs/tutorials/intervention_graphs.md.
Run: python examples/intervention_graphs.py

A perturbation sets the level of its targets from outside, so on the gene
regulatory network the do-operator removes the edges *into* each target and
keeps the edges *out of* it (its downstream effect is what we predict).
"""

import networkx as nx

import causalcell as cc

sim = cc.datasets.simulate(random_state=0)
G = sim.network
print(f"true network: {G.number_of_nodes()} genes, {G.number_of_edges()} edges")

# A TF that is both regulated and a regulator shows both kinds of edges.
target = max(
    (g for g in G if G.in_degree(g) and G.out_degree(g)),
    key=lambda g: (G.in_degree(g), G.out_degree(g)),
)
G_do = cc.graph.intervene(G, [target])
print(f"do({target}): in-degree {G.in_degree(target)} -> {G_do.in_degree(target)}, "
      f"out-degree {G.out_degree(target)} -> {G_do.out_degree(target)}")
print("cut edges:", sorted(set(G.edges) - set(G_do.edges)))
print("input graph unchanged:", G.in_degree(target) > 0)

# A combination cuts the edges into every target, including target -> target.
regulator = sorted(G.predecessors(target))[0]
G_pair = cc.graph.intervene(G, [regulator, target])
print(f"do({regulator}, {target}): edge {regulator} -> {target} kept:",
      G_pair.has_edge(regulator, target),
      "| still a DAG:", nx.is_directed_acyclic_graph(G_pair))

# The models clamp the target and propagate on this graph: genes downstream of
# the target move, its former regulators do not.
model = cc.models.ConditionalGRNRegressor(verbose=False).fit(sim.adata, G)
request = sim.truth.obs.loc[[target]]
change = model.predict(request).X[0] - model.control_mean_
genes = list(model.genes_)
downstream = [genes.index(g) for g in nx.descendants(G_do, target)]
upstream = [genes.index(g) for g in nx.ancestors(G, target)
            if g not in nx.descendants(G_do, target)]
print(f"predicted |change| downstream of {target}: {abs(change[downstream]).mean():.3f} "
      f"(mean over {len(downstream)} genes); upstream: "
      f"{abs(change[upstream]).max(initial=0.0):.3g} (max over {len(upstream)} genes)")
