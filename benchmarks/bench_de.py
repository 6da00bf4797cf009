"""Benchmark of causalcell's DE against scanpy's rank_genes_groups (5 to 5,000 groups)
and crispyx (200 groups).

For each group count (default 5, 50, 500, 5,000 perturbations plus controls on a
seeded sparse, log-normalized screen of 20,000 cells x 2,000 genes, CSR float32)
the script times

* ``differential_expression(method="t-test")`` (Welch t, p, BH q of every
  perturbation and gene against the controls) and
  ``scanpy.tl.rank_genes_groups(method="t-test", reference="control")``;
* ``differential_expression(method="wilcoxon")`` (exact U, tie-corrected z, p,
  BH q) and scanpy's ``method="wilcoxon"`` (up to ``--scanpy-wilcoxon-max``
  groups, default 500: scanpy ranks controls + group again for every group,
  which takes hours at 5,000);

and prints each time, the ratio ours / peer (target <= 1) and the largest
difference of the statistics (t, and scanpy's Wilcoxon z score), relative to
max(1, |ours|). Scores that are not finite in ours (no spread on either side;
scanpy reports 0) are counted, not compared, and so are t scores of groups whose
variance / mean^2 is below 1e-4: scanpy takes its moments in float32, so there
its variance is off by about 6e-8 / (variance / mean^2), and it cancels for a
group constant to float32 precision. At 200 groups
(``--crispyx``, on by default when crispyx is installed) crispyx's
``t_test`` and ``wilcoxon_test`` are timed too: they stream an h5ad file from
disk (written once beforehand, CSC for the rank test as crispyx recommends), so
their time includes reading it; ours is in memory.

scanpy and crispyx come with the ``bench`` extra (``pip install -e '.[bench]'``);
without them the peers are skipped. Run from the repository root:

    python benchmarks/bench_de.py [--quick] [--groups 5,50,500,5000]

Timings are the best of ``--repeats`` runs (1 for the slow peers).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_of

from causalcell.evaluate import differential_expression

SEED = 0
# Below this variance / mean^2 a group's float32 moments (scanpy's) lose more than
# 6e-4 of the variance: those t scores are not compared (see main).
MIN_RELATIVE_VARIANCE = 1e-4


def make_screen(n_cells: int, n_genes: int, n_perturbations: int, seed: int) -> ad.AnnData:
    """Poisson counts with per-perturbation shifts, normalized to log1p(CP10k), CSR float32."""
    rng = np.random.default_rng(seed)
    labels = np.array(["control"] + [f"G{i:05d}" for i in range(n_perturbations)])
    # A tenth of the cells are controls, the rest spread over the perturbations.
    codes = np.where(rng.random(n_cells) < 0.1, 0, rng.integers(1, n_perturbations + 1, n_cells))
    # Every perturbation gets at least 2 cells (scanpy refuses groups of one).
    perturbed = np.flatnonzero(codes > 0)[: 2 * n_perturbations]
    codes[perturbed] = np.repeat(np.arange(1, n_perturbations + 1), 2)[: len(perturbed)]
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




def scanpy_peer(adata: ad.AnnData, method: str) -> pd.DataFrame:
    """scanpy's scores as a (perturbation x gene) table."""
    import scanpy as sc

    data = adata.copy()
    data.uns["log1p"] = {"base": None}
    # tie_correct: the same tie-corrected z as ours (scanpy's default leaves ties out)
    extra = {"tie_correct": True} if method == "wilcoxon" else {}
    sc.tl.rank_genes_groups(data, "perturbation", reference="control", method=method,
                            n_genes=data.n_vars, use_raw=False, **extra)
    result = data.uns["rank_genes_groups"]
    groups = list(result["names"].dtype.names)
    names = np.stack([result["names"][g] for g in groups])
    scores = np.stack([result["scores"][g] for g in groups]).astype(np.float64)
    table = pd.DataFrame(np.nan, index=groups, columns=data.var_names)
    cols = data.var_names.get_indexer(names.ravel()).reshape(names.shape)
    table.values[np.arange(len(groups))[:, None], cols] = scores
    return table


def crispyx_peer(adata: ad.AnnData, method: str, workdir: Path) -> float:
    """Seconds of crispyx's test on an h5ad file written beforehand (not timed)."""
    import crispyx

    path = workdir / f"screen_{method}.h5ad"
    if not path.exists():
        data = adata.copy()
        if method == "wilcoxon":
            data.X = sp.csc_matrix(data.X)
        data.write_h5ad(path)
    test = crispyx.wilcoxon_test if method == "wilcoxon" else crispyx.t_test
    filters = {"min_pct_ctrl": 0.0, "min_pct_pert": 0.0, "min_mean_ctrl": 0.0,
               "min_mean_pert": 0.0}
    out = workdir / f"out_{method}"
    start = time.perf_counter()
    test(str(path), perturbation_column="perturbation", control_label="control",
         output_dir=str(out), verbose=False, force=True, **filters)
    return time.perf_counter() - start


def relative_variance(adata: ad.AnnData, groups: pd.Index) -> np.ndarray:
    """Each group's variance of each gene over its squared mean, in float64 ((groups x
    genes); inf for a zero mean with nonzero variance, nan for a constant zero)."""
    labels = adata.obs["perturbation"].cat.categories.get_indexer(groups)
    codes = adata.obs["perturbation"].cat.codes.to_numpy()
    indicator = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))))
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    n = np.asarray(indicator.sum(axis=1)).ravel()[labels, None]
    mean = (indicator @ X).toarray()[labels] / n
    square = (indicator @ X.multiply(X)).toarray()[labels] / n
    variance = np.maximum(square - mean**2, 0.0) * n / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return variance / mean**2


def _score_table(result) -> pd.DataFrame:
    """t, or the z of U: what scanpy reports as its score."""
    return pd.DataFrame(result.score, index=result.perturbations, columns=result.genes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--groups", default="5,50,500,5000",
                        help="comma-separated perturbation counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scanpy-wilcoxon-max", type=int, default=500)
    parser.add_argument("--no-crispyx", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5,000 x 500, 5 and 50 groups")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.genes, args.groups, args.repeats = 5_000, 500, "5,50", 1
    counts = [int(g) for g in args.groups.split(",")]
    try:
        import scanpy
    except ImportError:
        print("scanpy is not installed (pip install -e '.[bench]'): peers skipped")
        scanpy = None
    try:
        import crispyx
    except ImportError:
        crispyx = None
    if not args.no_crispyx and not args.quick and 200 not in counts:
        counts.append(200)
    print(f"screen: {args.cells:,} cells x {args.genes:,} genes, sparse float32 "
          f"log-normalized; ours / peer < 1 means causalcell is faster")
    print(f"{'groups':>6} {'test':<9} {'causalcell s':>12} {'scanpy s':>9} {'ratio':>6} "
          f"{'max diff':>9}")
    failures = 0
    if scanpy is not None:  # compile scanpy's numba kernels before anything is timed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warm = make_screen(500, 50, 3, SEED)
            for method in ("t-test", "wilcoxon"):
                scanpy_peer(warm, method)
    for n_groups in counts:
        adata = make_screen(args.cells, args.genes, n_groups, SEED)
        for method, peer_method in (("t-test", "t-test"), ("wilcoxon", "wilcoxon")):
            ours_s, ours = best_of(repeats=args.repeats, fn=lambda m=method, adata=adata:
                                   differential_expression(adata, method=m))
            line = f"{n_groups:>6} {method:<9} {ours_s:12.3f}"
            run_peer = scanpy is not None and (
                method == "t-test" or n_groups <= args.scanpy_wilcoxon_max)
            if not run_peer:
                print(line + "  (scanpy not timed)")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peer_s, peer = best_of(repeats=1 if method == "wilcoxon" else args.repeats, fn=
                                       lambda m=peer_method, adata=adata: scanpy_peer(adata, m))
            a = _score_table(ours).loc[peer.index].to_numpy()
            diff = np.abs(a - peer.to_numpy()) / np.maximum(1.0, np.abs(a))
            # scanpy takes the t-test's moments in float32 (E[x^2] - E[x]^2): a
            # group's variance then carries a relative error of about
            # 6e-8 / (variance / mean^2), and for a group constant to float32
            # precision it cancels (scanpy reports 0 for the score it cannot
            # compute). Those scores are counted apart, not compared.
            kept = np.isfinite(a)
            if method == "t-test":
                kept &= ~(relative_variance(adata, peer.index) < MIN_RELATIVE_VARIANCE)
            ratio = ours_s / peer_s
            failures += ratio > 1
            print(f"{line} {peer_s:9.3f} {ratio:6.2f} {diff[kept].max():9.1e}")
            undefined = int((~np.isfinite(a)).sum())
            cancelled = np.isfinite(a) & ~kept
            left_out = [f"{undefined:,} not finite in ours (no spread on either side: nan, "
                        f"or +-inf when the means differ; scanpy reports 0)"] if undefined else []
            if cancelled.any():
                left_out.append(f"{int(cancelled.sum()):,} of groups whose variance / mean^2 < "
                                f"{MIN_RELATIVE_VARIANCE:g}, where scanpy's float32 variance "
                                f"cancels (max diff there {diff[cancelled].max():.1e})")
            if left_out:
                print(f"{'':>17}max diff over {int(kept.sum()):,} scores; left out: "
                      + " and ".join(left_out))
        if n_groups == 200 and crispyx is not None and not args.no_crispyx:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                for method in ("t-test", "wilcoxon"):
                    peer_s = crispyx_peer(adata, method, Path(tmp))
                    ours_s, _ = best_of(repeats=args.repeats, fn=lambda m=method, adata=adata:
                                        differential_expression(adata, method=m))
                    print(f"{n_groups:>6} {method:<9} {ours_s:12.3f} {peer_s:9.3f} "
                          f"{ours_s / peer_s:6.2f}  (peer: crispyx, from disk)")
    print("every ratio <= 1" if not failures else f"{failures} ratio(s) above 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
