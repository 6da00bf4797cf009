"""Benchmark of the exact E-distance retrieval with the fair exclusion (``pairwise_edistances``).

Run ``python benchmarks/bench_edistance.py`` from the repository root (a few
minutes; ``--quick`` for a smaller run). Measured:

1. n perturbations x c cells per perturbation and side x g genes, 1-2
   targeted genes per perturbation, ``exclude="targeted"``, pertpy's flavour
   (Euclidean, the energy distance): the time of ``pairwise_edistances`` (best
   of a few runs) and the speed-up over the naive double loop over pairs of
   perturbations (each comparison's E-distances computed from its own genes
   with ``scipy.spatial.distance.cdist``; timed on a random subsample of the
   n^2 comparisons and scaled to all of them: said in the output), checked
   to agree on that subsample. Target: >= 20x the naive loop.
2. The floor: one Gram product of all query cells with all candidate cells
   (``Q @ C.T``), the part no exact method avoids; the ratio to it says how
   much the exclusions and the within-group terms add. Target: <= 10x.

Timings on a shared 2-core machine are noisy: the best of several runs is
reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import cdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of

from causalcell.evaluate import CellGroups, pairwise_edistances

REPEATS = 3
NAIVE_PAIRS = 300


def make_data(n: int, cells: int, g: int, seed: int = 0):
    """Query and candidate cells of n perturbations (shared effects, 1-2 targets each)."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((n, g), dtype=bool)
    for i in range(n):
        targets[i, rng.choice(g, size=rng.choice([1, 2], p=[0.8, 0.2]), replace=False)] = True
    effect = rng.normal(scale=0.3, size=(n, g)) + 3.0 * targets
    codes = np.repeat(np.arange(n), cells)
    query = effect[codes] + rng.normal(size=(len(codes), g))
    candidates = effect[codes] + rng.normal(size=(len(codes), g))
    return query, candidates, codes, targets


def naive(query, candidates, codes, targets, pairs):
    """E-distances of the chosen comparisons, each on its own genes, from cdist."""

    def e(X, Y):
        return 2 * cdist(X, Y).mean() - cdist(X, X).mean() - cdist(Y, Y).mean()

    out = []
    for i, j in pairs:
        keep = ~(targets[i] | targets[j])
        X = query[codes == i][:, keep]
        out.append((e(X, candidates[codes == j][:, keep]),
                    e(X, candidates[codes == i][:, keep])))
    return np.array(out)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (seconds)")
    args = parser.parse_args()
    n, cells, g = (40, 20, 500) if args.quick else (150, 40, 2000)
    query, candidates, codes, targets = make_data(n, cells, g)
    Q = CellGroups.from_codes(query, codes, n)
    C = CellGroups.from_codes(candidates, codes, n)
    mask = sp.csr_array(targets)
    print(f"== E-distance retrieval, exclude='targeted', euclidean: n = {n} perturbations x "
          f"{cells} cells per side x g = {g:,} genes ({n * cells:,} cells per side) ==")
    t_ours, (cand, true, _) = best_of(lambda: pairwise_edistances(Q, C, mask, "targeted"), REPEATS)
    t_floor, _ = best_of(lambda: query @ candidates.T, REPEATS)
    rng = np.random.default_rng(1)
    pick = rng.choice(n * n, size=min(NAIVE_PAIRS, n * n), replace=False)
    pairs = np.column_stack(np.unravel_index(pick, (n, n)))
    start = time.perf_counter()
    reference = naive(query, candidates, codes, targets, pairs)
    t_naive_sample = time.perf_counter() - start
    t_naive = t_naive_sample * (n * n) / len(pairs)
    ours = np.column_stack([cand[pairs[:, 0], pairs[:, 1]], true[pairs[:, 0], pairs[:, 1]]])
    err = np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-12))
    print(f"pairwise_edistances: {t_ours:.2f} s (best of {REPEATS})")
    print(f"naive double loop (cdist per comparison): {t_naive_sample:.2f} s for "
          f"{len(pairs)} of the {n * n:,} comparisons, scaled to all: {t_naive:.1f} s")
    print(f"speed-up over the naive loop: {t_naive / t_ours:.0f}x (target >= 20x); max "
          f"relative difference on the sampled comparisons: {err:.1e}")
    print(f"floor (one Gram product Q @ C.T, {n * cells:,} x {n * cells:,} x {g:,}): "
          f"{t_floor:.2f} s; ours / floor = {t_ours / t_floor:.1f}x (target <= 10x)")


if __name__ == "__main__":
    main()
