"""Benchmark of the batched exact ridge solver against a per-gene scikit-learn loop.

Problem: 2,000 genes x 20,000 cells (dense float64), ~50 regulators per gene,
100 targeted genes x 100 cells each plus 10 two-gene combinations x 100 cells
(half of the perturbations with a known level T, the others unknown), the rest
controls. Two regulator layouts are run:

* ``tf``: regulators drawn among 300 "transcription factors" (the usual
  layout of a gene regulatory network: few genes regulate);
* ``any``: regulators drawn among all 2,000 genes (the hardest layout for the
  batched solver: its cross-product matrix is 2,000 x 2,000).

For each, the script times

* ``ConditionalGRNRegressor(alpha=1.0).fit(adata, network)`` (the batched
  solver, plus validation and bookkeeping), best of a few repeats;
* the per-gene loop that GGRN / CellOracle use: for each gene, drop the cells
  that target it and fit ``sklearn.linear_model.Ridge(alpha=1.0)`` on its
  regulators' columns (targeted regulators at T). The loop is timed on a
  random subsample of genes (targeted ones included) and scaled to all
  genes: this is said in the output;

checks that both agree (max relative coefficient difference, target <= 1e-6),
and measures in a fresh subprocess the peak memory that the fit adds on top
of the data (Linux VmHWM, reset just before the fit), relative to the size of
the expression matrix (target < 2x). The speed-up target is >= 20x.

Run ``python benchmarks/bench_solver.py`` from the repository root (about
two minutes). Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalcell.errors import CausalCellWarning
from causalcell.models import ConditionalGRNRegressor

N_GENES = 2_000
N_CELLS = 20_000
N_REGULATORS = 50
N_TFS = 300
N_TARGETED = 100
N_COMBOS = 10
CELLS_PER_PERTURBATION = 100
LOOP_SAMPLE = 60
ALPHA = 1.0
SEED = 0
TARGET_SPEEDUP = 20.0
TARGET_MEMORY = 2.0


def make_data(layout: str, seed: int = SEED) -> tuple[AnnData, nx.DiGraph]:
    """Random expression with a perturbation design and a random network."""
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i:04d}" for i in range(N_GENES)])
    X = np.empty((N_CELLS, N_GENES))
    rng.standard_normal(out=X)
    X *= 0.4
    X += 2.0  # log-normalized-like levels
    targeted = rng.choice(N_GENES, N_TARGETED, replace=False)
    labels = np.full(N_CELLS, "control", dtype=object)
    levels = np.full(N_CELLS, "nan", dtype=object)
    is_control = np.ones(N_CELLS, dtype=bool)
    kinds = np.full(N_CELLS, "control", dtype=object)
    row = 0
    for i, g in enumerate(targeted):
        cells = slice(row, row + CELLS_PER_PERTURBATION)
        X[cells, g] = rng.normal(0.5, 0.2, CELLS_PER_PERTURBATION)
        labels[cells] = genes[g]
        is_control[cells] = False
        kinds[cells] = "knockdown"
        if i % 2 == 0:  # half with a known level T
            levels[cells] = np.char.mod("%.6f", X[cells, g])
        row += CELLS_PER_PERTURBATION
    for _ in range(N_COMBOS):
        a, b = rng.choice(targeted, 2, replace=False)
        cells = slice(row, row + CELLS_PER_PERTURBATION)
        X[cells, a] = 0.0
        X[cells, b] = 0.0
        labels[cells] = f"{genes[a]},{genes[b]}"
        is_control[cells] = False
        kinds[cells] = "knockout"
        levels[cells] = "0,0"
        row += CELLS_PER_PERTURBATION
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": is_control,
            "perturbation_type": kinds,
            "expression_level_after_perturbation": levels,
        },
        index=[f"c{i}" for i in range(N_CELLS)],
    )
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    pool = np.arange(N_TFS) if layout == "tf" else np.arange(N_GENES)
    G = nx.DiGraph()
    G.add_nodes_from(genes.tolist())
    for g in range(N_GENES):
        candidates = pool[pool != g]
        regs = rng.choice(candidates, N_REGULATORS, replace=False)
        G.add_edges_from((genes[r], genes[g]) for r in regs)
    return adata, G


def regulator_matrix(adata: AnnData) -> np.ndarray:
    """Z: X with each targeted entry of known level replaced by T (loop's input)."""
    from causalcell.data import Interventions

    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    Z = np.array(adata.X)
    rows = np.repeat(np.arange(adata.n_obs), np.diff(iv.mask.indptr))
    known = ~np.isnan(iv.levels)
    Z[rows[known], iv.mask.indices[known]] = iv.levels[known]
    return Z, iv.mask.tocsc()


def loop_fit(adata: AnnData, G: nx.DiGraph, genes_idx: np.ndarray) -> tuple[float, dict]:
    """Per-gene sklearn Ridge on a subsample of genes: seconds per gene, coefficients."""
    from sklearn.linear_model import Ridge

    Z, excl = regulator_matrix(adata)
    X = np.asarray(adata.X)
    names = adata.var_names
    index = {g: i for i, g in enumerate(names)}
    coefs = {}
    start = time.perf_counter()
    for g in genes_idx:
        keep = np.ones(adata.n_obs, dtype=bool)
        keep[excl.indices[excl.indptr[g] : excl.indptr[g + 1]]] = False
        regs = sorted(index[r] for r in G.predecessors(names[g]))
        rows = np.flatnonzero(keep)
        model = Ridge(alpha=ALPHA).fit(Z[np.ix_(rows, regs)], X[rows, g])
        coefs[int(g)] = (np.array(regs), model.coef_, model.intercept_)
    return (time.perf_counter() - start) / len(genes_idx), coefs


def batched_fit(
    adata: AnnData, G: nx.DiGraph, repeats: int = 3
) -> tuple[float, ConditionalGRNRegressor]:
    best = np.inf
    model = None
    for _ in range(repeats):
        start = time.perf_counter()
        model = ConditionalGRNRegressor(alpha=ALPHA, verbose=False).fit(adata, G)
        best = min(best, time.perf_counter() - start)
    return best, model


def _vm(field: str) -> int:
    """A Vm* field of /proc/self/status in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(layout: str) -> None:
    """(subprocess) Peak memory the fit adds on top of the loaded data."""
    adata, G = make_data(layout)
    ConditionalGRNRegressor(alpha=ALPHA, verbose=False).fit(adata[:200].copy(), G)  # warm up
    base = _vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # reset the high-water mark
        handle.write("5")
    ConditionalGRNRegressor(alpha=ALPHA, verbose=False).fit(adata, G)
    peak = _vm("VmHWM")
    print(json.dumps({"added": peak - base, "x_bytes": adata.X.nbytes}))


def measure_memory(layout: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", layout],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(layout: str) -> dict:
    adata, G = make_data(layout)
    seconds, model = batched_fit(adata, G)
    rng = np.random.default_rng(SEED + 1)
    targeted = np.unique(model.target_levels_["gene"].to_numpy())
    t_idx = adata.var_names.get_indexer(targeted)
    sample = np.unique(
        np.concatenate(
            [
                rng.choice(t_idx, LOOP_SAMPLE // 4, replace=False),
                rng.choice(N_GENES, LOOP_SAMPLE - LOOP_SAMPLE // 4, replace=False),
            ]
        )
    )
    per_gene, coefs = loop_fit(adata, G, sample)
    loop_seconds = per_gene * N_GENES
    C = model.coef_.tocsc()
    worst = 0.0
    for g, (regs, coef, intercept) in coefs.items():
        ours = C[:, [g]].toarray().ravel()[regs]
        scale = max(np.max(np.abs(coef)), 1e-300)
        worst = max(
            worst,
            np.max(np.abs(ours - coef)) / scale,
            abs(model.intercept_[g] - intercept) / max(abs(intercept), 1e-300),
        )
    mem = measure_memory(layout)
    return {
        "layout": layout,
        "batched_s": seconds,
        "loop_s_per_gene": per_gene,
        "loop_s": loop_seconds,
        "loop_genes_timed": len(sample),
        "speedup": loop_seconds / seconds,
        "max_rel_diff": worst,
        "memory_ratio": mem["added"] / mem["x_bytes"],
        "x_mib": mem["x_bytes"] / 2**20,
        "added_mib": mem["added"] / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-child", choices=["tf", "any"])
    parser.add_argument("--layout", choices=["tf", "any", "both"], default="both")
    args = parser.parse_args()
    warnings.simplefilter("ignore", CausalCellWarning)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    layouts = ["tf", "any"] if args.layout == "both" else [args.layout]
    print(
        f"{N_GENES} genes x {N_CELLS} cells (dense float64), ~{N_REGULATORS} regulators "
        f"per gene, {N_TARGETED} targeted genes + {N_COMBOS} combinations, ridge "
        f"alpha={ALPHA}"
    )
    ok = True
    for layout in layouts:
        r = run(layout)
        pool = f"{N_TFS} TFs" if layout == "tf" else f"all {N_GENES} genes"
        print(f"\nregulators drawn among {pool}:")
        print(f"  batched fit (ConditionalGRNRegressor.fit, best of 3): {r['batched_s']:.2f} s")
        print(
            f"  per-gene sklearn Ridge loop: {r['loop_s_per_gene'] * 1e3:.1f} ms/gene, timed "
            f"on {r['loop_genes_timed']} genes and scaled to {N_GENES}: {r['loop_s']:.1f} s"
        )
        print(f"  speed-up: {r['speedup']:.1f}x (target >= {TARGET_SPEEDUP:.0f}x)")
        print(
            f"  max relative coefficient difference vs the loop: {r['max_rel_diff']:.2e} "
            f"(target <= 1e-6)"
        )
        print(
            f"  peak memory added by the fit: {r['added_mib']:.0f} MiB = "
            f"{r['memory_ratio']:.2f}x the expression matrix ({r['x_mib']:.0f} MiB; "
            f"target < {TARGET_MEMORY:.0f}x)"
        )
        ok &= (
            r["speedup"] >= TARGET_SPEEDUP
            and r["max_rel_diff"] <= 1e-6
            and r["memory_ratio"] < TARGET_MEMORY
        )
    print("\nall targets met" if ok else "\nsome target NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
