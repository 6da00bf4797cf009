"""Target-gene effect table: equality with a naive loop, and the known answer."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from causalcell.data import pseudobulk
from causalcell.errors import DataContractError
from causalcell.evaluate import target_effect


def random_screen(seed: int, n_genes: int = 12, sparse: bool = False) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    genes = [f"g{i}" for i in range(n_genes)]
    labels = ["ctrl"] * 10
    for i in range(6):
        labels += [genes[i]] * 4
    labels += ["g0,g1"] * 3 + ["g2,NOTMEASURED"] * 3
    n = len(labels)
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": [lab == "ctrl" for lab in labels],
            "perturbation_type": ["control" if lab == "ctrl" else "knockdown" for lab in labels],
        },
        index=[f"c{i}" for i in range(n)],
    )
    X = rng.normal(2.0, 0.5, size=(n, n_genes))
    if sparse:
        X[X < 1.8] = 0
        X = sp.csr_matrix(X)
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_target_effect_equals_naive_loop(seed, sparse):
    adata = random_screen(seed, sparse=sparse)
    table = target_effect(adata)
    dense = adata.X.toarray() if sparse else adata.X
    obs = adata.obs
    ctrl = dense[obs["is_control"].to_numpy()].mean(axis=0)
    genes = list(adata.var_names)
    rows = []
    for label in dict.fromkeys(obs["perturbation"]):
        if label == "ctrl":
            continue
        delta = dense[(obs["perturbation"] == label).to_numpy()].mean(axis=0) - ctrl
        targets = [g for g in label.split(",") if g in genes]
        for t in sorted(targets, key=genes.index):
            j = genes.index(t)
            rank = 1 + sum(
                abs(delta[k]) > abs(delta[j])
                for k in range(len(genes))
                if genes[k] not in targets
            )
            other = max(abs(delta[k]) for k in range(len(genes)) if genes[k] not in targets)
            rows.append((label, t, delta[j], rank, other))
    got = table.set_index(["perturbation", "target"])
    assert len(got) == len(rows)
    for label, t, change, rank, other in rows:
        canon = ",".join(sorted(label.split(",")))
        row = got.loc[(canon, t)]
        assert row["rank"] == rank
        np.testing.assert_allclose(row["target_change"], change, rtol=1e-12)
        np.testing.assert_allclose(row["max_other_change"], other, rtol=1e-12)


def test_target_effect_on_pseudobulk_equals_cells():
    adata = random_screen(7)
    a = target_effect(adata)
    b = target_effect(pseudobulk(adata))
    pd.testing.assert_frame_equal(a, b)


def test_target_effect_needs_controls():
    adata = random_screen(0)
    adata = adata[~adata.obs["is_control"].to_numpy()].copy()
    with pytest.raises(DataContractError, match="control"):
        target_effect(adata)
