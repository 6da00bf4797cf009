"""Shared model helpers (causalcell.models._base, ._model_file): equality with naive references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from causalcell.data._sparse import entry_rows, gather_entries
from causalcell.models._model_file import (
    level_array_names,
    levels_from_arrays,
    levels_to_arrays,
)


@given(
    n=st.integers(1, 12),
    p=st.integers(1, 9),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_entry_rows_and_gather_match_a_loop(n, p, density, seed):
    rng = np.random.default_rng(seed)
    mask = sp.csr_array(sp.random(n, p, density=density, random_state=seed, format="csr") > 0)
    X = rng.normal(size=(n, p))
    X[rng.random((n, p)) < 0.5] = 0.0
    rows = entry_rows(mask.indptr)
    naive = [i for i in range(n) for _ in mask[[i]].indices]
    np.testing.assert_array_equal(rows, naive)
    want = np.array([X[i, j] for i, j in zip(rows, mask.indices, strict=True)], dtype=float)
    np.testing.assert_array_equal(gather_entries(X, rows, mask.indices), want)
    np.testing.assert_array_equal(gather_entries(sp.csr_matrix(X), rows, mask.indices), want)


def test_level_arrays_round_trip():
    table = pd.DataFrame(
        {
            "perturbation": ["A", "A,B", "B"],
            "perturbation_type": ["knockdown", "knockout", "overexpression"],
            "gene": ["A", "B", "B"],
            "level": [0.5, 0.0, np.nan],
            "n_samples": [3, 10, 1],
        }
    )
    arrays = levels_to_arrays(table, "levels_n")
    assert set(arrays) == set(level_array_names("levels_n"))
    back = levels_from_arrays(arrays, "levels_n")
    pd.testing.assert_frame_equal(back[table.columns], table, check_dtype=False)


def test_missing_level_is_looked_up_with_its_kind():
    """A gene both knocked down and overexpressed in training, levels unknown: a
    request without T takes the mean measured level of the *same* kind."""
    import anndata as ad

    from causalcell.data import Interventions
    from causalcell.models._base import observed_target_levels, resolve_levels

    rows = [("control", True, "control", 1.0)] * 3 + [
        ("A", False, "knockdown", 0.4), ("A", False, "knockdown", 0.6),
        ("A", False, "overexpression", 4.0), ("A", False, "overexpression", 5.0),
    ]
    obs = pd.DataFrame(
        [r[:3] for r in rows], columns=["perturbation", "is_control", "perturbation_type"],
        index=[f"c{i}" for i in range(len(rows))],
    )
    X = np.column_stack([[r[3] for r in rows], np.ones(len(rows))])
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["A", "B"]))
    known = observed_target_levels(X, Interventions.from_adata(adata))
    request = pd.DataFrame(
        {"perturbation": ["A", "A"], "is_control": [False, False],
         "perturbation_type": ["overexpression", "knockdown"]},
        index=["q0", "q1"],
    )
    iv = Interventions.from_obs(request, ["A", "B"])
    np.testing.assert_allclose(resolve_levels(iv, known), [4.5, 0.5])
