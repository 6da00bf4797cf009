"""P(X | T = t): the response to a knockdown is a curve (the tutorial of the same name).

A simulated CRISPRi screen in which every cell has its own knockdown
efficiency and a fifth of the cells escape, with switch-like regulation.
The script

1. compares the curve E[X | T = t] with what the usual summaries keep: the
   average of all cells of a guide, and perturbed / not-perturbed classes;
2. cross-validates a straight-line (ridge) and a spline model per dose bin;
3. measures, on the shipped Papalexi et al. 2021 knockout screen, how much the
   cut gene's transcript still varies, the reason a knockout's T is 0 by rule.

Run ``python examples/dose_response.py`` (about a minute).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

import causalcell as cc
from causalcell.benchmark import cross_validate_dose_response, predict_dose_response
from causalcell.errors import UnmeasuredTargetWarning
from causalcell.models import ConditionalGRNRegressor, MeanBaseline

LEVEL = "expression_level_after_perturbation"


def simulate_screen() -> cc.datasets.Simulation:
    """Switch-like regulation, per-cell efficiency, escapers, a few combinations."""
    return cc.datasets.simulate(
        n_genes=100, n_tfs=10, regulation="saturating", hill_coefficient=4,
        half_saturation=0.5, knockdown_efficiency=0.6, efficiency_sd=0.25,
        escaper_fraction=0.2, n_combinations=20, n_cells_per_perturbation=300,
        library_size=3e4, random_state=0,
    )


def summaries_against_the_curve(sim: cc.datasets.Simulation, tf: str, genes: list[str]
                                ) -> pd.DataFrame:
    """The change of each gene for: the guide average, the perturbed class and the
    not-perturbed class (split at the control level minus two control sds), and the
    curve at those classes' mean T and at the strongest tenth of the cells."""
    obs = sim.adata.obs
    cells = (obs["perturbation"] == tf).to_numpy()
    control = obs["is_control"].to_numpy()
    level = obs.loc[cells, LEVEL].to_numpy(dtype=float)
    j = sim.adata.var_names.get_indexer(genes)
    X = np.asarray(sim.adata.X[:, j], dtype=float)
    reference = X[control].mean(axis=0)
    measured = np.asarray(sim.adata[:, tf].X, dtype=float).ravel()
    threshold = measured[control].mean() - 2 * measured[control].std()
    perturbed = level < threshold
    strongest = level <= np.quantile(level, 0.1)
    groups = {"guide average": np.ones(len(level), dtype=bool), "perturbed": perturbed,
              "not perturbed": ~perturbed, "strongest 10%": strongest}
    base = sim.expected.X[0, j]
    rows = []
    for name, members in groups.items():
        mean_T = float(level[members].mean())
        curve = sim.expected_at(tf, [mean_T]).X[0, j] - base
        observed = X[cells][members].mean(axis=0) - reference
        for gene, o, c in zip(genes, observed, curve, strict=True):
            rows.append({"summary": name, "n_cells": int(members.sum()), "mean T": mean_T,
                         "gene": gene, "observed change": o, "curve at mean T": c})
    return pd.DataFrame(rows)


def cut_transcripts(papalexi) -> pd.DataFrame:
    """Per knocked-out gene: its measured transcript in knockout and control cells."""
    X = papalexi.X
    labels = papalexi.obs["perturbation"].astype(str).to_numpy()
    control = papalexi.obs["is_control"].to_numpy()
    rows = []
    for target in sorted(set(labels[~control]) & set(papalexi.var_names)):
        j = papalexi.var_names.get_loc(target)
        column = X[:, j].toarray().ravel() if sp.issparse(X) else np.asarray(X[:, j]).ravel()
        ko, ctrl = column[labels == target], column[control]
        rows.append({"target": target, "n_cells": len(ko),
                     "control mean": ctrl.mean(), "knockout mean": ko.mean(),
                     "knockout sd": ko.std(),
                     "knockout cells >= control median": (ko >= np.median(ctrl)).mean(),
                     "zero in knockout cells": (ko == 0).mean(),
                     "zero in control cells": (ctrl == 0).mean()})
    return pd.DataFrame(rows).set_index("target")


def main() -> None:
    warnings.simplefilter("ignore", UnmeasuredTargetWarning)
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 120)
    sim = simulate_screen()
    tf = "TF01"
    expected_change = sim.expected[tf].X[0] - sim.expected.X[0]
    expected_change[sim.adata.var_names.get_loc(tf)] = 0.0
    genes = list(sim.adata.var_names[np.argsort(-np.abs(expected_change))[:3]])
    table = summaries_against_the_curve(sim, tf, genes)
    print(f"{tf}: the guide's cells, their classes and the curve E[X | T] (genes {genes}):")
    print(table.to_string(index=False))

    models = {"ridge": ConditionalGRNRegressor(alpha="gcv"),
              "spline": ConditionalGRNRegressor("spline", alpha="gcv"),
              "mean": MeanBaseline()}
    result = cross_validate_dose_response(models, sim.adata, sim.network, n_bins=5,
                                          min_cells=40, verbose=False)
    print("\nCross-validated per dose bin (each perturbation predicted by models fitted "
          "without it):")
    print(result.table.to_string())
    print("\n".join(result.verdict()))

    held_out = sim.adata[(sim.adata.obs["perturbation"] != tf).to_numpy()]
    spline = ConditionalGRNRegressor("spline", alpha="gcv").fit(held_out, sim.network)
    curve = predict_dose_response(spline, sim.adata, tf, n_levels=6)
    print(f"\nThe spline model's predicted curve of {tf} (fitted without it), top genes:")
    print(curve[curve["gene"].isin(genes)].pivot(index="level", columns="gene",
                                                  values="change").to_string())

    papalexi = cc.datasets.load_papalexi2021()
    cut = cut_transcripts(papalexi)
    print("\nPapalexi et al. 2021: the knocked-out gene's measured transcript (T = 0 by rule):")
    print(cut.to_string())


if __name__ == "__main__":
    main()
