"""How far does the targeted gene move compared with every other gene?

Run: python examples/target_gene_effect.py

On the real Papalexi et al. (2021) knockout screen and on a simulation with a
known network, rank each targeted gene's own change (perturbation mean minus
control mean) among the changes of all other genes. A rank of 1 means the
most obvious prediction, "the targeted gene goes down", is the largest signal
in the profile: a metric that scores it rewards predicting the obvious.
"""

import warnings

import causalcell as cc
from causalcell.errors import UnmeasuredTargetWarning

warnings.simplefilter("ignore", UnmeasuredTargetWarning)

for name, adata in [
    ("Papalexi 2021 (real knockouts)", cc.datasets.load_papalexi2021()),
    ("simulation (knockdowns)", cc.datasets.simulate(random_state=0).adata),
]:
    table = cc.evaluate.target_effect(adata)
    first = (table["rank"] == 1).mean()
    print(f"{name}: targeted gene is the largest change in {first:.0%} of "
          f"{len(table)} measured targets")
    print(table.sort_values("rank").head(10).to_string(index=False))
    print()

# The intervention graph: knocking down TF01 removes its incoming edges only.
sim = cc.datasets.simulate(random_state=0)
G_do = cc.graph.intervene(sim.network, ["TF01"])
print("edges into TF01 before / after do():",
      sim.network.in_degree("TF01"), "/", G_do.in_degree("TF01"))
