"""Benchmark of ``causalcell.data.pseudobulk`` against scanpy's ``sc.get.aggregate``.

A seeded screen (default 100,000 cells x 2,000 genes, 1,000 perturbations plus
controls, 10 % non-zero, float32, perturbation labels categorical) is averaged
per perturbation by both, on sparse (CSR) and on dense X. Printed per layout:
the best-of-``--repeats`` times, their ratio (target: causalcell at least as
fast, ratio <= 1), the time to read X once (the floor: a sum over the stored
values) and the largest difference between the two results (target: equal to
1e-12; both sum in float64). scanpy comes with the ``bench`` extra. Run from
the repository root:

    python benchmarks/bench_pseudobulk.py [--quick] [--cells N --genes P --perturbations G]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of

from causalcell.data import pseudobulk

SEED = 0


def make_screen(n: int, p: int, n_perturbations: int, seed: int = SEED) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i:05d}" for i in range(p)])
    labels = np.array([*genes[:n_perturbations], "control"], dtype=object)
    codes = rng.integers(0, n_perturbations + 1, n)
    X = sp.random(n, p, density=0.1, format="csr", dtype=np.float32, random_state=seed)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels[codes]),
            "is_control": codes == n_perturbations,
            "perturbation_type": pd.Categorical(
                np.where(codes == n_perturbations, "control", "knockdown")),
        },
        index=[f"c{i}" for i in range(n)],
    )
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--perturbations", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 x 1,000, 200 groups")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.genes, args.perturbations = 20_000, 1_000, 200
    try:
        import scanpy as sc
    except ImportError:
        sc = None
        print("scanpy is not installed (pip install -e '.[bench]'): the peer is skipped")
    adata = make_screen(args.cells, args.genes, args.perturbations)
    print(f"{args.cells:,} cells x {args.genes:,} genes, {args.perturbations:,} perturbations "
          f"+ controls, float32; best of {args.repeats}")
    print(f"{'X':<7} {'read X s':>9} {'causalcell s':>13} {'scanpy s':>9} {'ratio':>6} "
          f"{'max |diff|':>11}  verdict")
    for layout in ("sparse", "dense"):
        data = adata if layout == "sparse" else ad.AnnData(
            X=adata.X.toarray(), obs=adata.obs, var=adata.var)
        X = data.X
        floor, _ = best_of(lambda X=X: (X.data if sp.issparse(X) else X).sum(dtype=np.float64),
                        args.repeats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, pb = best_of(lambda data=data: pseudobulk(data), args.repeats)
        line = f"{layout:<7} {floor:9.3f} {ours:13.3f}"
        if sc is None:
            print(line)
            continue
        theirs, agg = best_of(lambda data=data: sc.get.aggregate(data, by="perturbation",
                                                              func="mean"), args.repeats)
        expected = pd.DataFrame(agg.layers["mean"], index=agg.obs_names.astype(str))
        got = pd.DataFrame(np.asarray(pb.X), index=pb.obs["perturbation"].astype(str).to_numpy())
        diff = float(np.abs(got.loc[expected.index].to_numpy() - expected.to_numpy()).max())
        ratio = ours / theirs
        verdict = "meets" if ratio <= 1.0 and diff <= 1e-12 else "MISSES"
        print(f"{line} {theirs:9.3f} {ratio:6.2f} {diff:11.1e}  {verdict}")


if __name__ == "__main__":
    main()
