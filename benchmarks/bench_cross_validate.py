"""Benchmark of causalcell.benchmark.cross_validate: is an honest comparison affordable?

1. **Papalexi et al. 2021** (the embedded real screen: 19,619 cells x 299
   genes, 9 perturbations whose targets are measured): ``cross_validate`` of
   the five built-in models (conditional GRN on CollecTRI, linear embedding,
   mean, control, target only) in 5 folds, with the replicate ceiling and
   2,000 bootstrap resamples. Target: under a minute on 2 cores. The time is
   split into fitting and predicting (per model, summed over folds), the
   ceiling and the comparison, and set against a reference measured in the
   same run: one fit and prediction of the five models on one training split
   (the least any K-fold evaluation costs is K of those).
2. **A simulated screen at scale** (``--genes``, ``--tfs``,
   ``--combinations``, ``--cells``; default 1,000 genes and 300 perturbations;
   ``--large``: 2,000 genes, 1,000 perturbations, 100,000 cells): the same,
   with the true network, to show that the scoring (ceiling, bootstrap, paired
   tests, calibration) stays a small share of the fitting at real size.

Run from the repository root:

    python benchmarks/bench_cross_validate.py [--repeats 1] [--large]

Timings are the best of ``--repeats`` runs; the machine may be shared.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of

import causalcell as cc
from causalcell.benchmark import cross_predict, cross_validate, observed_request
from causalcell.errors import UnmeasuredTargetWarning
from causalcell.evaluate import compare, replicate_ceiling
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

TARGET_SECONDS = 60.0
FOLDS = 5


def models() -> dict[str, Any]:
    return {"conditional GRN": ConditionalGRNRegressor(verbose=False),
            "linear embedding": LinearEmbeddingBaseline(), "mean": MeanBaseline(),
            "control": ControlBaseline(), "target only": TargetOnlyBaseline()}




def one_split(adata, network) -> float:
    """The reference: fit the five models on one fold's training split, predict its test."""
    cell_fold, _ = cc.benchmark.perturbation_folds(adata, FOLDS, random_state=0)
    train, test = adata[cell_fold != 0].copy(), adata[cell_fold == 0]
    request = observed_request(test)
    start = time.perf_counter()
    for model in models().values():
        model.fit(train, network).predict(request)
    return time.perf_counter() - start


def run(title: str, adata, network, repeats: int) -> float:
    print(f"\n== {title}: {adata.n_obs:,} cells x {adata.n_vars:,} genes ==")
    t_total, result = best_of(repeats=repeats, fn=lambda: cross_validate(models(), adata, network,
                                                              folds=FOLDS, verbose=False))
    n = len(result.held_out)
    print(f"cross_validate, {FOLDS} folds, 5 models, {n} perturbations, ceiling and 2,000 "
          f"resamples: {t_total:.1f} s")
    fits = result.fit_seconds
    print("  fit + predict per model (summed over folds): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in fits.items()))
    t_predict, predicted = best_of(repeats=1, fn=lambda: cross_predict(models(), adata, network,
                                                            folds=FOLDS, verbose=False))
    t_ceiling, ceiling = best_of(repeats=1, fn=lambda: replicate_ceiling(predicted.observed))
    t_compare, _ = best_of(repeats=1, fn=lambda: compare(predicted.predictions, predicted.observed,
                                              ceiling=ceiling))
    print(f"  parts: cross_predict {t_predict:.1f} s, replicate_ceiling {t_ceiling:.1f} s, "
          f"compare (bootstrap, paired tests, calibration) {t_compare:.1f} s")
    t_one = one_split(adata, network)
    print(f"reference, one fit + prediction of the 5 models on one training split: "
          f"{t_one:.1f} s -> cross_validate / reference = {t_total / t_one:.1f}x "
          f"({FOLDS} folds cost at least {FOLDS}x)")
    return t_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--large", action="store_true",
                        help="2,000 genes, 1,000 perturbations, 100,000 cells")
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--tfs", type=int, default=100)
    parser.add_argument("--combinations", type=int, default=200)
    parser.add_argument("--cells", type=int, default=60, help="cells per perturbation")
    args = parser.parse_args()
    if args.large:
        args.genes, args.tfs, args.combinations, args.cells = 2000, 500, 495, 100
    warnings.simplefilter("ignore", UnmeasuredTargetWarning)
    papalexi = cc.datasets.load_papalexi2021()
    network = cc.datasets.load_collectri(genes=papalexi.var_names)
    seconds = run("Papalexi et al. 2021, CollecTRI prior", papalexi, network, args.repeats)
    verdict = "PASS" if seconds < TARGET_SECONDS else "FAIL"
    print(f"{verdict}: {seconds:.1f} s against the target of {TARGET_SECONDS:.0f} s "
          f"(ratio {seconds / TARGET_SECONDS:.2f})")
    sim = cc.datasets.simulate(n_genes=args.genes, n_tfs=args.tfs,
                               n_combinations=args.combinations,
                               n_cells_per_perturbation=args.cells, random_state=0)
    run(f"simulated screen, {sim.truth.n_obs - 1:,} perturbations", sim.adata, sim.network,
        args.repeats)


if __name__ == "__main__":
    main()
