"""The spline model's known answer across seeds and simulation settings, against ridge.

Issue 12's acceptance: on a saturating simulation with the true network, the
spline model's median Pearson (``pearson_delta`` against
``Simulation.expected``, held-out TF perturbations, 5-fold cross-validation
over perturbations) reaches >= 0.9 where ridge stays < 0.8. The unit test
(``tests/test_spline.py``) checks seed 0 of the first setting; this script
prints the table over several seeds for each setting below, and says,
computed from the numbers, on how many seeds the acceptance holds.

Every setting is one screen (200 genes, 20 TFs, 60 TF pairs, 100 cells per
perturbation, 300 controls, knockdown efficiency 0.85 +- 0.1, Hill
coefficient 6, half-saturation at 0.3 x the control level, simulate's
default depth of 10,000 counts per cell and biological noise 0.1) with one
knob changed:

* ``library_size`` (sequencing depth: the count noise of every measured
  level, the regulators' included). The test's depth, 6,000, was chosen on
  seeds 1 and 2 as the largest smallest margin to both thresholds among
  5,000, 6,000, 7,000 and 8,000 counts (8,000 leaves ridge above 0.8); the
  other seeds validate it;
* ``noise_sd`` (biological cell-to-cell variation: the spread of each
  regulator around its control level that the curves are fitted on);
* the steepness of the curve (``hill_coefficient``, ``half_saturation``);
* "latent regulators": the default depth with the TF columns of X replaced by
  the cells' states before count sampling (``simulate(record_states=True)``),
  everything else as measured: what the count noise of the measured
  regulators (errors in variables) costs each model.

Run ``python benchmarks/bench_spline_known_answer.py`` from the repository
root (about 15 s per setting and seed on a quiet 2-core machine; ``--seeds``
and ``--settings`` shorten it).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalcell.benchmark import cross_predict
from causalcell.datasets import simulate
from causalcell.errors import CausalCellWarning
from causalcell.evaluate import align, perturbation_metrics
from causalcell.models import ConditionalGRNRegressor

TEST = {"hill_coefficient": 6.0, "half_saturation": 0.3, "knockdown_efficiency": 0.85,
        "noise_sd": 0.1, "library_size": 10_000}
SETTINGS: dict[str, dict] = {
    "test (depth 6k)": {"library_size": 6_000},
    "depth 10k": {},
    "depth 30k": {"library_size": 30_000},
    "depth 100k": {"library_size": 100_000},
    "noise_sd 0.3": {"noise_sd": 0.3},
    "steeper (half-sat 0.25)": {"half_saturation": 0.25},
    "latent regulators": {"latent_regulators": True},
}
TARGET_SPLINE = 0.9
TARGET_RIDGE = 0.8


def median_pearson(seed: int, changes: dict) -> dict[str, float]:
    """Median pearson_delta of ridge and spline over the held-out TF perturbations."""
    changes = dict(changes)
    latent = changes.pop("latent_regulators", False)
    sim = simulate(n_genes=200, n_tfs=20, regulation="saturating", n_combinations=60,
                   n_cells_per_perturbation=100, random_state=seed, record_states=latent,
                   **{**TEST, **changes})
    adata = sim.adata
    if latent:
        adata = adata.copy()
        tfs = adata.var["is_tf"].to_numpy(dtype=bool)
        X = np.asarray(adata.X).copy()
        X[:, tfs] = adata.layers["state"][:, tfs]
        adata.X = X
    models = {"ridge": ConditionalGRNRegressor(alpha="gcv"),
              "spline": ConditionalGRNRegressor("spline", alpha="gcv")}
    predicted = cross_predict(models, adata, sim.network, folds=5, verbose=False)
    out = {}
    for name, prediction in predicted.predictions.items():
        aligned = align(prediction, sim.expected)
        scores = perturbation_metrics(aligned.predicted, aligned.observed, aligned.targets,
                                      top_k=())
        is_tf = np.char.startswith(aligned.labels.astype(str), "TF")
        out[name] = float(np.nanmedian(scores["pearson_delta"].to_numpy()[is_tf]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS),
                        help="names of the settings to run (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", CausalCellWarning)
    rows = []
    for name in args.settings:
        for seed in args.seeds:
            start = time.perf_counter()
            median = median_pearson(seed, SETTINGS[name])
            rows.append({"setting": name, "seed": seed, **median})
            print(f"{name:32s} seed {seed}: ridge {median['ridge']:.3f}, spline "
                  f"{median['spline']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    table["holds"] = (table["spline"] >= TARGET_SPLINE) & (table["ridge"] < TARGET_RIDGE)
    summary = table.groupby("setting", sort=False).agg(
        ridge_mean=("ridge", "mean"), ridge_max=("ridge", "max"),
        spline_mean=("spline", "mean"), spline_min=("spline", "min"),
        gap_min=("spline", lambda s: float(np.min(s - table.loc[s.index, "ridge"]))),
        holds=("holds", "sum"), seeds=("holds", "size"))
    print(f"\nmedian pearson_delta over {len(args.seeds)} seeds (acceptance: spline >= "
          f"{TARGET_SPLINE}, ridge < {TARGET_RIDGE} on the same data):")
    print(summary.round(3).to_string())
    every = summary.index[summary["holds"] == summary["seeds"]].tolist()
    print("acceptance holds on every seed for: " + (", ".join(every) if every else "no setting"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
