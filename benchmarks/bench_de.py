"""Benchmark of causalcell.evaluate.differential_expression against scanpy's rank_genes_groups.

Builds a seeded sparse, log-normalized screen (default 20,000 cells x 2,000
genes, 200 perturbations plus controls), then times

* ``differential_expression(method="t-test")`` (Welch t, p, BH q for every
  perturbation and gene against the controls), and
* ``scanpy.tl.rank_genes_groups(method="t-test", reference="control")`` on the
  same AnnData (the peer; it also computes Welch t, p and BH q, and sorts),

checks that both give the same t statistics, and prints the time ratio. Our
Wilcoxon rank-sum test is timed as well; scanpy's Wilcoxon is timed only with
``--wilcoxon-peer`` (it takes minutes at this size).

scanpy is not a dependency of causalcell: install it in a separate
environment to time the peer (``python3 -m venv /work/venv-bench-de &&
/work/venv-bench-de/bin/pip install -e . scanpy``). Without it the peer is
skipped with a message. Run from the repository root:

    python benchmarks/bench_de.py [--cells 20000 --genes 2000 --perturbations 200]

Timings are the best of ``--repeats`` runs on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalcell.evaluate._de import differential_expression

SEED = 0


def make_screen(n_cells: int, n_genes: int, n_perturbations: int, seed: int) -> ad.AnnData:
    """Poisson counts with per-perturbation shifts, normalized to log1p(CP10k), CSR float32."""
    rng = np.random.default_rng(seed)
    labels = np.array(["control"] + [f"G{i:05d}" for i in range(n_perturbations)])
    # A tenth of the cells are controls, the rest spread over the perturbations.
    codes = np.where(rng.random(n_cells) < 0.1, 0, rng.integers(1, n_perturbations + 1, n_cells))
    base = rng.gamma(0.6, 1.0, size=n_genes)
    effect = np.exp(rng.normal(0, 0.3, size=(n_perturbations + 1, n_genes)))
    effect[0] = 1.0
    counts = rng.poisson(base[None, :] * effect[codes])
    X = sp.csr_matrix(counts.astype(np.float32))
    library = np.asarray(X.sum(axis=1)).ravel()
    X = sp.csr_matrix(sp.diags(1e4 / np.maximum(library, 1)) @ X)
    X.data = np.log1p(X.data).astype(np.float32)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels[codes]),
            "is_control": codes == 0,
            "perturbation_type": np.where(codes == 0, "control", "knockdown"),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"GENE{j:05d}" for j in range(n_genes)])
    return ad.AnnData(X=X, obs=obs, var=var)


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def scanpy_peer(adata: ad.AnnData, method: str) -> pd.DataFrame:
    """scanpy's scores as a (perturbation x gene) table."""
    import scanpy as sc

    data = adata.copy()
    data.uns["log1p"] = {"base": None}
    sc.tl.rank_genes_groups(data, "perturbation", reference="control", method=method,
                            n_genes=data.n_vars, use_raw=False)
    result = data.uns["rank_genes_groups"]
    groups = list(result["names"].dtype.names)
    names = np.stack([result["names"][g] for g in groups])
    scores = np.stack([result["scores"][g] for g in groups]).astype(np.float64)
    table = pd.DataFrame(np.nan, index=groups, columns=data.var_names)
    cols = data.var_names.get_indexer(names.ravel()).reshape(names.shape)
    table.values[np.arange(len(groups))[:, None], cols] = scores
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--perturbations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wilcoxon-peer", action="store_true",
                        help="also time scanpy's Wilcoxon test (slow)")
    args = parser.parse_args()

    adata = make_screen(args.cells, args.genes, args.perturbations, SEED)
    density = adata.X.nnz / np.prod(adata.shape)
    print(f"screen: {args.cells:,} cells x {args.genes:,} genes, {args.perturbations} "
          f"perturbations + controls, sparse ({density:.0%} non-zero)")

    ours_t, ours = best_of(args.repeats, lambda: differential_expression(adata, method="t-test"))
    print(f"causalcell Welch t-test (t, p, BH q):  {ours_t:7.3f} s")
    ours_w, _ = best_of(1, lambda: differential_expression(adata, method="wilcoxon"))
    print(f"causalcell Wilcoxon rank-sum (exact U): {ours_w:7.3f} s")

    try:
        import scanpy  # noqa: F401
    except ImportError:
        print("scanpy is not installed: the peer comparison is skipped. Install scanpy in a "
              "separate environment (see this file's docstring) to time it.")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer_t, peer = best_of(args.repeats, lambda: scanpy_peer(adata, "t-test"))
    print(f"scanpy rank_genes_groups t-test:        {peer_t:7.3f} s")
    ours_table = pd.DataFrame(ours.statistic, index=ours.perturbations, columns=ours.genes)
    mine = ours_table.loc[peer.index].to_numpy()
    diff = np.nanmax(np.abs(mine - peer.to_numpy()) / np.maximum(1.0, np.abs(mine)))
    # scanpy accumulates float32 data in lower precision; ours is float64 (= scipy).
    print(f"max |t(causalcell) - t(scanpy)| / max(1, |t|) = {diff:.1e}")
    print(f"speed-up over scanpy (t-test): {peer_t / ours_t:.1f}x")
    if args.wilcoxon_peer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer_w, _ = best_of(1, lambda: scanpy_peer(adata, "wilcoxon"))
        print(f"scanpy rank_genes_groups wilcoxon:      {peer_w:7.3f} s "
              f"(speed-up {peer_w / ours_w:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
