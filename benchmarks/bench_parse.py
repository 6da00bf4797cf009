"""Parsing the obs contract (``Interventions.from_obs``) at 100,000 cells.

The parser factorizes each obs column once and combines the integer codes;
only the distinct conditions are parsed as text. The reference, timed in the
same run on the same obs, is the project's earlier parser itself: a faithful
copy of ``Interventions.from_obs`` as it was before commit bdedc29 (module
``benchmarks/_parse_reference.py``; it factorized a pandas MultiIndex of
(label, kind, control) tuples, one Python tuple per cell, and normalized the
kinds cell by cell). Both must return the same interventions (condition
codes, mask, levels and conditions table, checked before timing). Issue 16's
target: >= 10x. Run from the repository root:

    python benchmarks/bench_parse.py [--cells 100000 --perturbations 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _parse_reference import Interventions as EarlierInterventions
from _timing import best_of

from causalcell.data import Interventions

TARGET = 10.0


def screen_obs(n_cells: int, n_perturbations: int, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """A knockdown screen's obs (1 in ``n_perturbations + 1`` cells a control) with a
    numeric level column, and the measured genes (twice the targeted ones)."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:05d}" for i in range(2 * n_perturbations)]
    labels = np.array([*genes[:n_perturbations], "control"], dtype=object)
    codes = rng.integers(0, n_perturbations + 1, n_cells)
    control = codes == n_perturbations
    level = np.where(control, np.nan, rng.uniform(0.0, 1.0, n_cells))
    obs = pd.DataFrame(
        {"perturbation": labels[codes], "is_control": control,
         "perturbation_type": np.where(control, "control", "knockdown").astype(object),
         "expression_level_after_perturbation": level},
        index=[f"c{i}" for i in range(n_cells)],
    )
    return obs, genes


def check_same(ours: Interventions, earlier: EarlierInterventions) -> None:
    """Raise AssertionError unless both parsers return the same interventions."""
    np.testing.assert_array_equal(ours.codes, earlier.codes)
    np.testing.assert_array_equal(ours.mask.indptr, earlier.mask.indptr)
    np.testing.assert_array_equal(ours.mask.indices, earlier.mask.indices)
    np.testing.assert_array_equal(ours.levels, earlier.levels)
    np.testing.assert_array_equal(ours.is_control, earlier.is_control)
    np.testing.assert_array_equal(ours.kind, earlier.kind)
    pd.testing.assert_frame_equal(ours.conditions, earlier.conditions, check_dtype=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--perturbations", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    obs, genes = screen_obs(args.cells, args.perturbations)
    categorical = obs.astype({"perturbation": "category", "perturbation_type": "category"})
    print(f"{args.cells:,} cells, {args.perturbations:,} perturbations (knockdowns with a "
          f"numeric level column); best of {args.repeats}")
    for name, frame in (("object columns", obs), ("categorical columns", categorical)):
        check_same(Interventions.from_obs(frame, genes),
                   EarlierInterventions.from_obs(frame, genes))
        earlier, _ = best_of(lambda frame=frame: EarlierInterventions.from_obs(frame, genes),
                             repeats=args.repeats)
        ours, _ = best_of(lambda frame=frame: Interventions.from_obs(frame, genes),
                          repeats=args.repeats)
        ratio = earlier / ours
        verdict = "meets" if ratio >= TARGET else "misses"
        print(f"{name}: earlier parser {earlier:.3f} s, Interventions.from_obs {ours:.4f} s "
              f"-> {ratio:.1f}x faster (same interventions; {verdict} the >= {TARGET:.0f}x "
              f"target)")


if __name__ == "__main__":
    main()
