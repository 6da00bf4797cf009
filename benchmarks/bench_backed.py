"""Backed files: the conditional model fitted on ``read_h5ad(path, backed=True)``.

A simulated CRISPRi screen (default 100,000 cells x 1,000 genes: 100
transcription factors (TFs), every other gene regulated by 5 of them, 500
knockdowns and 5 % control cells; values clipped at 0 and rounded to 1/32 like
log-normalized counts, about half of them 0) is written as ``.h5ad`` twice,
with a dense and with a CSR X. For each file, in fresh subprocesses so that
peak memory is the fit's own:

1. **in memory (the reference)**: ``read_h5ad(path)`` then
   ``ConditionalGRNRegressor().fit(adata, network)``;
2. **backed**: ``read_h5ad(path, backed=True)`` then the same fit, X read in
   row blocks through the Dask pass (threaded scheduler).

Printed per file: seconds and peak resident memory (Linux VmHWM) of each,
their ratios (backed / in memory), and the largest coefficient difference
(target <= 1e-10: the two fits are the same computation read in another
order). Run ``python benchmarks/bench_backed.py`` from the repository root
(``--cells 20000`` for a quick look). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TFS = 100
N_REGULATORS = 5
KNOCKDOWN = 0.2
CONTROL_FRACTION = 0.05
TOLERANCE = 1e-10


def simulate(n_cells: int, n_genes: int, n_perturbed: int, seed: int = 0):
    """Cells, obs and the network of a linear screen (in memory: it is the reference)."""
    import anndata as ad
    import networkx as nx
    import pandas as pd

    rng = np.random.default_rng(seed)
    genes = [f"TF{j:03d}" for j in range(N_TFS)] + [f"G{j:04d}" for j in range(n_genes - N_TFS)]
    regulators = np.stack([rng.choice(N_TFS, N_REGULATORS, replace=False)
                           for _ in range(n_genes - N_TFS)])
    weights = rng.uniform(0.2, 0.5, regulators.shape) * rng.choice([-1, 1], regulators.shape)
    targets = np.sort(rng.choice(n_genes, n_perturbed, replace=False))
    is_control = rng.random(n_cells) < CONTROL_FRACTION
    target = np.where(is_control, -1, targets[rng.integers(0, n_perturbed, n_cells)])
    tf = np.clip(rng.normal(1.0, 0.4, (n_cells, N_TFS)), 0, None)
    knocked_tf = (target >= 0) & (target < N_TFS)
    tf[knocked_tf, target[knocked_tf]] *= KNOCKDOWN
    base = rng.normal(0.0, 0.5, n_genes - N_TFS)
    # Every other gene: its baseline plus its regulators' weighted values, plus noise.
    other = base + np.einsum("cgk,gk->cg", tf[:, regulators], weights)
    other += rng.normal(0.0, 0.3, other.shape)
    X = np.concatenate([tf, other], axis=1)
    knocked_gene = target >= N_TFS
    X[knocked_gene, target[knocked_gene]] *= KNOCKDOWN
    X = (np.round(np.clip(X, 0, None) * 32) / 32).astype(np.float32)
    labels = np.where(is_control, "control", np.asarray(genes, dtype=object)[target])
    obs = pd.DataFrame({
        "perturbation": labels,
        "is_control": is_control,
        "perturbation_type": np.where(is_control, "control", "knockdown"),
    }, index=[f"c{i}" for i in range(n_cells)])
    network = nx.DiGraph()
    network.add_weighted_edges_from(
        (genes[int(r)], genes[N_TFS + g], float(w))
        for g in range(n_genes - N_TFS) for r, w in zip(regulators[g], weights[g], strict=True))
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    return adata, network


_CHILD = """
import json, sys, time, warnings
import numpy as np, scipy.sparse as sp
sys.path.insert(0, {root!r})
import causalcell as cc
warnings.simplefilter("ignore")
network = cc.graph.read_network({network!r})
start = time.perf_counter()
adata = cc.data.read_h5ad({path!r}, backed={backed})
model = cc.models.ConditionalGRNRegressor().fit(adata, network)
seconds = time.perf_counter() - start
coef = sp.csr_array(model.coef_)
np.savez({coef!r}, data=coef.data, indices=coef.indices, indptr=coef.indptr)
peak = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = float(line.split()[1]) * 1024
print(json.dumps({{"seconds": seconds, "peak": peak}}))
"""


def run(path: Path, network: Path, backed: bool, coef: Path) -> dict:
    code = _CHILD.format(root=str(ROOT), path=str(path), network=str(network), backed=backed,
                         coef=str(coef))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=1_000)
    parser.add_argument("--perturbed", type=int, default=500)
    options = parser.parse_args()

    import scipy.sparse as sp

    import causalcell as cc

    adata, network = simulate(options.cells, options.genes, options.perturbed)
    print(f"Screen: {adata.n_obs:,} cells x {adata.n_vars:,} genes, {options.perturbed} "
          f"knockdowns, {network.number_of_edges():,} edges; "
          f"{100 * float((adata.X == 0).mean()):.0f} % zeros.")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net_path = root / "network.csv"
        cc.graph.write_network(network, net_path)
        files = {"dense": root / "dense.h5ad", "csr": root / "csr.h5ad"}
        adata.write_h5ad(files["dense"])
        adata.X = sp.csr_matrix(adata.X)
        adata.write_h5ad(files["csr"])
        del adata
        for layout, path in files.items():
            results = {}
            coefs = {}
            for mode in ("memory", "backed"):
                coefs[mode] = root / f"coef-{layout}-{mode}.npz"
                results[mode] = run(path, net_path, mode == "backed", coefs[mode])
            with np.load(coefs["memory"]) as a, np.load(coefs["backed"]) as b:
                shape = (len(a["indptr"]) - 1,) * 2
                diff = abs(sp.csr_array((a["data"], a["indices"], a["indptr"]), shape=shape)
                           - sp.csr_array((b["data"], b["indices"], b["indptr"]), shape=shape))
                largest = float(diff.max()) if diff.nnz else 0.0
            mem, bk = results["memory"], results["backed"]
            print(f"{layout:>5} X ({path.stat().st_size / 2**20:,.0f} MiB on disk): in memory "
                  f"{mem['seconds']:.1f} s, peak {mem['peak'] / 2**30:.2f} GiB; backed "
                  f"{bk['seconds']:.1f} s, peak {bk['peak'] / 2**30:.2f} GiB; ratio backed / "
                  f"in memory: time {bk['seconds'] / mem['seconds']:.2f}x, peak memory "
                  f"{bk['peak'] / mem['peak']:.2f}x; largest coefficient difference "
                  f"{largest:.1e} ({'within' if largest <= TOLERANCE else 'ABOVE'} the target "
                  f"{TOLERANCE:g}).")


if __name__ == "__main__":
    main()
