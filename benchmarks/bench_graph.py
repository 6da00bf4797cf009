"""Benchmark of causalcell.graph at genome scale.

Builds a seeded random weighted DiGraph with 20,000 genes and 1,000,000 edges,
then times

* ``intervene`` on 100 targets, against ``G.copy()`` (the obvious way to
  start a do-operator, measured in the same run);
* ``to_adjacency`` over all genes, against ``networkx.to_scipy_sparse_array``;

and checks each against its 2 s target. Each timing is the best of a few
repeats. Run with ``python benchmarks/bench_graph.py`` from the repository
root (about a minute).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of

from causalcell.graph import intervene, to_adjacency

N_GENES = 20_000
N_EDGES = 1_000_000
N_TARGETS = 100
TARGET_SECONDS = 2.0
SEED = 0


def random_network(n_genes: int, n_edges: int, seed: int) -> tuple[nx.DiGraph, list[str]]:
    """A DiGraph with exactly ``n_edges`` distinct, non-loop, weighted edges."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:05d}" for i in range(n_genes)]
    codes = np.empty(0, dtype=np.int64)
    while codes.size < n_edges:
        draw = rng.integers(0, n_genes * n_genes, size=int(1.1 * n_edges))
        draw = draw[draw // n_genes != draw % n_genes]  # no self-loops
        codes = np.unique(np.concatenate([codes, draw]))
    codes = rng.permutation(codes)[:n_edges]
    names = np.asarray(genes, dtype=object)
    weights = rng.normal(size=n_edges)
    G = nx.DiGraph()
    G.add_nodes_from(genes)
    G.add_weighted_edges_from(
        zip(
            names[codes // n_genes].tolist(),
            names[codes % n_genes].tolist(),
            weights.tolist(),
            strict=True,
        )
    )
    return G, genes




def report(name: str, seconds: float, ref_name: str, ref_seconds: float) -> bool:
    ok = seconds < TARGET_SECONDS
    print(
        f"{name:<28s} {seconds:7.3f} s   {ref_name}: {ref_seconds:7.3f} s   "
        f"ratio {seconds / ref_seconds:5.2f}   target < {TARGET_SECONDS:.0f} s: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


def main() -> int:
    start = time.perf_counter()
    G, genes = random_network(N_GENES, N_EDGES, SEED)
    print(
        f"random network: {G.number_of_nodes():,} genes, {G.number_of_edges():,} edges "
        f"(built in {time.perf_counter() - start:.1f} s)"
    )
    rng = np.random.default_rng(SEED + 1)
    targets = [genes[i] for i in rng.choice(N_GENES, size=N_TARGETS, replace=False)]
    n_cut = sum(G.in_degree(t) for t in targets)

    t_copy, _ = best_of(G.copy, repeats=2)
    t_int, H = best_of(lambda: intervene(G, targets), repeats=3)
    assert H.number_of_edges() == N_EDGES - n_cut
    assert all(H.in_degree(t) == 0 for t in targets)
    del H

    t_nx, A_nx = best_of(lambda: nx.to_scipy_sparse_array(G, nodelist=genes), repeats=1)
    t_adj, A = best_of(lambda: to_adjacency(G, genes), repeats=3)
    assert (A_nx != A).nnz == 0
    assert A.nnz == N_EDGES

    print()
    ok = report(f"intervene ({N_TARGETS} targets)", t_int, "G.copy()", t_copy)
    ok &= report("to_adjacency", t_adj, "nx.to_scipy_sparse_array", t_nx)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
