"""The data contract, Interventions, pseudobulk, splits, conventions and files."""

from __future__ import annotations

import math
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from causalcell.data import (
    Interventions,
    changes,
    control_mean,
    pseudobulk,
    read_h5ad,
    split_by_perturbation,
    standardize,
    validate,
    write_h5ad,
)
from causalcell.errors import (
    CausalCellError,
    DataContractError,
    DataFileError,
    UnmeasuredTargetWarning,
)

GENES = ["A", "B", "C", "D", "E"]


def make_adata(rows, *, sparse=False, seed=0):
    """rows: list of (label, is_control, kind, level)."""
    obs = pd.DataFrame(
        rows,
        columns=[
            "perturbation",
            "is_control",
            "perturbation_type",
            "expression_level_after_perturbation",
        ],
        index=[f"cell{i}" for i in range(len(rows))],
    )
    obs["expression_level_after_perturbation"] = obs[
        "expression_level_after_perturbation"
    ].astype(object)
    rng = np.random.default_rng(seed)
    X = rng.random((len(rows), len(GENES)))
    if sparse:
        X[X < 0.5] = 0
        X = sp.csr_matrix(X)
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=GENES))


BASIC = [
    ("control", True, "control", np.nan),
    ("control", True, "control", np.nan),
    ("A", False, "knockdown", "0.5"),
    ("A", False, "knockdown", "0.7"),
    ("B,A", False, "knockdown", "0.1,0.2"),
    ("A,B", False, "knockdown", "0.3,0.4"),
    ("C", False, "knockout", "3.0"),
    ("D", False, "overexpression", np.nan),
]


def snapshot(adata):
    return adata.obs.copy(), (adata.X.toarray() if sp.issparse(adata.X) else adata.X.copy())


def assert_unchanged(adata, snap):
    obs, X = snap
    pd.testing.assert_frame_equal(adata.obs, obs)
    now = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    np.testing.assert_array_equal(now, X)


# ----------------------------------------------------------------- validate
def test_validate_accepts_contract():
    validate(make_adata(BASIC))
    validate(make_adata(BASIC, sparse=True))


def test_missing_perturbation_column_names_it():
    adata = make_adata(BASIC)
    adata.obs = adata.obs.drop(columns="perturbation")
    snap = snapshot(adata)
    with pytest.raises(DataContractError, match="'perturbation'"):
        validate(adata)
    assert_unchanged(adata, snap)


def test_is_control_must_be_boolean():
    adata = make_adata(BASIC)
    adata.obs["is_control"] = adata.obs["is_control"].map({True: "yes", False: "no"})
    snap = snapshot(adata)
    with pytest.raises(DataContractError, match="is_control.*boolean"):
        validate(adata)
    assert_unchanged(adata, snap)


@pytest.mark.parametrize("level", ["0.1", "0.1,0.2,0.3", 0.5])
def test_level_count_must_match_combination(level):
    rows = [*BASIC, ("A,E", False, "knockdown", level)]
    adata = make_adata(rows)
    if isinstance(level, float):
        # numeric column: every other row must be numeric too
        adata.obs["expression_level_after_perturbation"] = [
            np.nan if i != len(rows) - 1 else level for i in range(len(rows))
        ]
    snap = snapshot(adata)
    with pytest.raises(DataContractError, match="cell8.*targets 2 gene"):
        validate(adata)
    assert_unchanged(adata, snap)


def test_level_not_a_number():
    adata = make_adata([*BASIC, ("E", False, "knockdown", "high")])
    with pytest.raises(DataContractError, match="'cell8' holds 'high'"):
        validate(adata)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sparse", [False, True])
def test_nonfinite_expression_names_row(bad, sparse):
    adata = make_adata(BASIC, sparse=sparse)
    if sparse:
        adata.X.data[3] = bad
        row = int(np.searchsorted(adata.X.indptr, 3, side="right") - 1)
    else:
        adata.X[5, 2] = bad
        row = 5
    snap = snapshot(adata)
    with pytest.raises(DataContractError, match=f"first in row 'cell{row}'"):
        validate(adata)
    # X compared with NaN-aware equality
    obs, X = snap
    pd.testing.assert_frame_equal(adata.obs, obs)
    now = adata.X.toarray() if sparse else adata.X
    np.testing.assert_array_equal(now, X)


def test_duplicated_var_names():
    adata = make_adata(BASIC)
    adata.var_names = ["A", "A", "C", "D", "E"]
    with pytest.raises(DataContractError, match="not unique"):
        validate(adata)


def test_perturbed_sample_needs_gene_and_kind():
    with pytest.raises(DataContractError, match="names no gene"):
        validate(make_adata([*BASIC, (" , ", False, "knockdown", np.nan)]))
    with pytest.raises(DataContractError, match="perturbation_type.*cell8"):
        validate(make_adata([*BASIC, ("E", False, None, np.nan)]))


def test_unmeasured_target_warns_not_errors():
    adata = make_adata([*BASIC, ("ZZZ", False, "knockdown", np.nan)])
    with pytest.warns(UnmeasuredTargetWarning, match="ZZZ"):
        validate(adata)


def test_not_anndata():
    with pytest.raises(DataContractError, match="AnnData"):
        validate(pd.DataFrame())


def test_errors_are_causalcell_errors():
    assert issubclass(DataContractError, CausalCellError)
    assert issubclass(DataFileError, CausalCellError)


# ------------------------------------------------------------ Interventions
def test_interventions_basic():
    iv = Interventions.from_adata(make_adata(BASIC))
    dense = iv.mask.toarray()
    expected = np.zeros((8, 5), dtype=bool)
    expected[[2, 3, 4, 5], 0] = True
    expected[[4, 5], 1] = True
    expected[6, 2] = True
    expected[7, 3] = True
    np.testing.assert_array_equal(dense, expected)
    levels = iv.level_matrix().toarray()
    # "B,A" with "0.1,0.2": B = 0.1, A = 0.2 (levels follow label order)
    assert levels[4, 0] == 0.2
    assert levels[4, 1] == 0.1
    assert levels[5, 0] == 0.3
    assert levels[5, 1] == 0.4
    assert levels[6, 2] == 0.0  # knockout: T = 0 whatever the column says
    assert math.isnan(levels[7, 3])
    # "A,B" and "B,A" are one condition
    assert iv.codes[4] == iv.codes[5]
    assert iv.conditions.loc["A,B", "n_samples"] == 2
    np.testing.assert_array_equal(iv.targeted("B"), expected[:, 1])
    assert iv.targets(4) == ("A", "B")


def test_interventions_subset_matches_reparse():
    adata = make_adata(BASIC)
    iv = Interventions.from_adata(adata)
    rows = np.array([7, 4, 0, 6])
    sub = iv[rows]
    ref = Interventions.from_adata(adata[rows])
    np.testing.assert_array_equal(sub.mask.toarray(), ref.mask.toarray())
    np.testing.assert_array_equal(sub.level_matrix().toarray(), ref.level_matrix().toarray())
    np.testing.assert_array_equal(sub.labels, ref.labels)


def test_interventions_same_gene_two_kinds_are_two_conditions():
    rows = [*BASIC, ("A", False, "overexpression", "4.0")]
    iv = Interventions.from_adata(make_adata(rows))
    assert iv.codes[2] != iv.codes[8]
    assert {"A [knockdown]", "A [overexpression]"} <= set(iv.conditions.index)


def test_unmeasured_reported_once_and_kept():
    rows = [*BASIC, ("ZZZ,A", False, "knockdown", "1,2"), ("ZZZ", False, "knockdown", "1")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iv = Interventions.from_adata(make_adata(rows))
    relevant = [w for w in caught if issubclass(w.category, UnmeasuredTargetWarning)]
    assert len(relevant) == 1
    assert iv.unmeasured == ("ZZZ",)
    assert iv.targets(8) == ("A", "ZZZ")
    assert iv.mask[[8]].toarray().sum() == 1  # only A is measured
    assert iv.level_matrix().toarray()[8, 0] == 2.0
    assert iv.mask[[9]].toarray().sum() == 0


gene_pool = st.sampled_from(["A", "B", "C", "D", "E", "X1", "X2"])
sample = st.one_of(
    st.just(("ctrl", True, "control", None)),
    st.tuples(
        st.lists(gene_pool, min_size=1, max_size=3, unique=True),
        # Kinds as users write them: the case and surrounding spaces do not matter.
        st.sampled_from(["knockdown", "knockout", "overexpression", "Knockout", " KnockDown "]),
    ).flatmap(
        lambda gk: st.tuples(
            st.just(",".join(gk[0])),
            st.just(False),
            st.just(gk[1]),
            st.one_of(
                st.none(),
                st.lists(
                    st.floats(0, 5, allow_nan=False).map(lambda v: round(v, 3)),
                    min_size=len(gk[0]),
                    max_size=len(gk[0]),
                ).map(lambda vs: ",".join(map(str, vs))),
            ),
        )
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(sample, min_size=1, max_size=25))
def test_interventions_equal_naive_reference(rows):
    rows = [(lab, ctrl, kind, np.nan if lev is None else lev) for lab, ctrl, kind, lev in rows]
    adata = make_adata(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        iv = Interventions.from_adata(adata)
    mask = np.zeros((len(rows), len(GENES)), dtype=bool)
    levels = np.full((len(rows), len(GENES)), np.inf)
    for i, (lab, ctrl, kind, lev) in enumerate(rows):
        if ctrl:
            continue
        genes = lab.split(",")
        vals = [math.nan] * len(genes) if isinstance(lev, float) else [
            float(v) for v in lev.split(",")
        ]
        for g, v in zip(genes, vals, strict=True):
            if g in GENES:
                j = GENES.index(g)
                mask[i, j] = True
                levels[i, j] = 0.0 if kind.strip().lower() == "knockout" else v
    np.testing.assert_array_equal(iv.mask.toarray(), mask)
    got = np.full(mask.shape, np.inf)
    got[mask] = iv.level_matrix().toarray()[mask]
    np.testing.assert_array_equal(got, levels)
    # Conditions are order-insensitive: same gene set and kind <=> same code.
    keys = [
        (frozenset(lab.split(",")) if not ctrl else lab, kind.strip().lower())
        for lab, ctrl, kind, _ in rows
    ]
    for i in range(len(rows)):
        for j in range(len(rows)):
            assert (iv.codes[i] == iv.codes[j]) == (keys[i] == keys[j])
    # Categorical columns (as AnnData stores strings) parse to the same object.
    categorical = adata.obs.copy()
    for column in ("perturbation", "perturbation_type", "expression_level_after_perturbation"):
        categorical[column] = categorical[column].astype("category")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        again = Interventions.from_obs(categorical, GENES)
    assert_same_interventions(again, iv)


def assert_same_interventions(a, b):
    np.testing.assert_array_equal(a.mask.toarray(), b.mask.toarray())
    np.testing.assert_array_equal(a.levels, b.levels)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.kind, b.kind)
    pd.testing.assert_frame_equal(a.conditions, b.conditions)


def test_obs_names_are_strings_and_not_the_callers_index():
    adata = make_adata(BASIC)
    iv = Interventions.from_adata(adata)
    np.testing.assert_array_equal(iv.obs_names, adata.obs_names)
    iv.obs_names.name = "renamed"  # the parsed names may be renamed ...
    assert adata.obs.index.name is None  # ... without renaming the caller's obs
    numbered = adata.obs.reset_index(drop=True)
    assert Interventions.from_obs(numbered, GENES).obs_names.tolist() == [
        str(i) for i in range(len(BASIC))
    ]


def test_conditions_in_order_of_first_appearance():
    rows = [("B", False, "knockdown", np.nan), ("control", True, "control", np.nan),
            ("A,B", False, "knockdown", np.nan), ("B", False, "knockdown", np.nan),
            ("B,A", False, "knockdown", np.nan), ("A", False, "knockout", np.nan)]
    iv = Interventions.from_adata(make_adata(rows))
    assert iv.conditions.index.tolist() == ["B", "control", "A,B", "A"]
    np.testing.assert_array_equal(iv.codes, [0, 1, 2, 0, 2, 3])


def test_kind_spelling_does_not_matter():
    rows = [
        ("control", True, "control", np.nan),
        ("A", False, "Knockout", "3.0"),
        ("A", False, " knockout ", np.nan),
        ("B", False, "KNOCKDOWN", "0.4"),
        ("B", False, "knockdown", "0.6"),
    ]
    iv = Interventions.from_adata(make_adata(rows))
    assert iv.kind.tolist() == ["control", "knockout", "knockout", "knockdown", "knockdown"]
    np.testing.assert_array_equal(iv.levels, [0.0, 0.0, 0.4, 0.6])  # knockouts: T = 0
    assert iv.codes[1] == iv.codes[2]
    assert iv.codes[3] == iv.codes[4]
    assert set(iv.conditions.index) == {"control", "A", "B"}


def test_entry_rows_take_and_with_levels():
    adata = make_adata(BASIC)
    iv = Interventions.from_adata(adata)
    naive = [i for i in range(iv.n_samples) for _ in iv.mask[[i]].indices]
    np.testing.assert_array_equal(iv.entry_rows, naive)
    rows = np.array([5, 2, 5, 0, 4])  # repeats allowed
    sub = iv.take(rows)
    ref = Interventions.from_adata(adata[[5, 2, 5, 0, 4]])
    np.testing.assert_array_equal(sub.mask.toarray(), ref.mask.toarray())
    np.testing.assert_array_equal(sub.levels, ref.levels)
    np.testing.assert_array_equal(sub.entry_rows, ref.entry_rows)
    assert sub.conditions["n_samples"].sum() == len(rows)
    np.testing.assert_array_equal(iv.take(iv.is_control).labels, ["control", "control"])
    new = np.arange(iv.mask.nnz, dtype=float)
    other = iv.with_levels(new)
    np.testing.assert_array_equal(other.levels, new)
    np.testing.assert_array_equal(other.take(rows).levels, new[sub_entries(iv, rows)])
    assert other.mask is iv.mask
    assert np.isnan(iv.levels).any()
    with pytest.raises(ValueError, match="one per targeted entry"):
        iv.with_levels(new[:-1])


def sub_entries(iv, rows):
    """Entry positions of the given rows, in their order (naive reference)."""
    return [k for i in rows for k in range(iv.mask.indptr[i], iv.mask.indptr[i + 1])]


# --------------------------------------------------------------- pseudobulk
@pytest.mark.parametrize("sparse", [False, True])
def test_pseudobulk_equals_naive_groupby(sparse):
    adata = make_adata(BASIC, sparse=sparse)
    pb = pseudobulk(adata)
    dense = adata.X.toarray() if sparse else adata.X
    key = ["control", "control", "A", "A", "A,B", "A,B", "C", "D"]
    naive = pd.DataFrame(dense).groupby(np.array(key)).mean()
    for name in naive.index:
        np.testing.assert_allclose(pb[name].X.ravel(), naive.loc[name].to_numpy(), rtol=1e-12)
    assert pb.obs.loc["A,B", "n_cells"] == 2
    assert pb.obs.loc["A", "expression_level_after_perturbation"] == "0.6"
    assert pb.obs.loc["A,B", "expression_level_after_perturbation"] == "0.25,0.25"
    assert pb.obs.loc["C", "expression_level_after_perturbation"] == "0.0"
    assert pb.obs.loc["control", "is_control"]
    validate(pb)


def test_pseudobulk_dense_row_blocks(monkeypatch):
    import importlib

    module = importlib.import_module("causalcell.data._stats")  # the shared group sums

    adata = make_adata(BASIC)
    adata.X = adata.X.astype(np.float32)
    expected = pseudobulk(adata).X
    monkeypatch.setattr(module, "_DENSE_BLOCK_ENTRIES", 3 * adata.n_vars)  # several blocks
    np.testing.assert_allclose(pseudobulk(adata).X, expected, rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_pseudobulk_in_threads_and_blocks_equals_naive_groupby(monkeypatch, sparse):
    """Blocks summed on two threads (float32 X read in float64, CSR split by rows) and
    groups crossed with an obs column: equal to a pandas groupby in float64."""
    import importlib

    module = importlib.import_module("causalcell.data._stats")
    monkeypatch.setattr(module, "_threads", lambda bytes_per_thread=0: 2)
    monkeypatch.setattr(module, "_DENSE_BLOCK_ENTRIES", 37 * 20)  # 37 rows per block
    monkeypatch.setattr(module, "_RANK_BLOCK_ENTRIES", 50)  # CSR in two row ranges
    rng = np.random.default_rng(3)
    n, p = 400, 20
    label = rng.choice(np.array(["control", "G0", "G1", "G2,G3", "G4"], dtype=object), n)
    X = rng.random((n, p)).astype(np.float32) * (rng.random((n, p)) < 0.3)
    obs = pd.DataFrame({"perturbation": label, "is_control": label == "control",
                        "perturbation_type": np.where(label == "control", "control", "knockout"),
                        "rep": rng.choice(["r1", "r2", "r3"], n)},
                       index=[f"c{i}" for i in range(n)])
    adata = ad.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=obs,
                       var=pd.DataFrame(index=[f"G{j}" for j in range(p)]))
    pb = pseudobulk(adata, groupby="rep")
    naive = pd.DataFrame(X.astype(np.float64)).groupby([label, obs["rep"].to_numpy()],
                                                       sort=False).mean()
    assert list(zip(pb.obs["perturbation"], pb.obs["rep"], strict=True)) == list(naive.index)
    np.testing.assert_allclose(pb.X, naive.to_numpy(), rtol=1e-12, atol=1e-15)
    sizes = pd.Series(X[:, 0]).groupby([label, obs["rep"].to_numpy()], sort=False).size()
    np.testing.assert_array_equal(pb.obs["n_cells"].to_numpy(), sizes.to_numpy())


def test_pseudobulk_groupby_and_min_cells():
    adata = make_adata(BASIC)
    adata.obs["rep"] = ["r1", "r2"] * 4
    pb = pseudobulk(adata, groupby="rep")
    assert pb.n_obs == 8  # control, A and A,B each split across r1/r2; C, D not
    assert int(pb.obs["n_cells"].sum()) == adata.n_obs
    pb2 = pseudobulk(adata, min_cells=2)
    assert set(pb2.obs_names) == {"control", "A", "A,B"}
    with pytest.raises(DataContractError, match="groupby column 'batch'"):
        pseudobulk(adata, groupby="batch")


def test_control_mean():
    adata = make_adata(BASIC, sparse=True)
    np.testing.assert_allclose(control_mean(adata), adata.X[:2].toarray().mean(axis=0))
    pb = pseudobulk(adata)
    np.testing.assert_allclose(control_mean(pb), adata.X[:2].toarray().mean(axis=0))
    no_ctrl = make_adata(BASIC[2:])
    with pytest.raises(DataContractError, match="No control"):
        control_mean(no_ctrl)


@pytest.mark.parametrize("sparse", [False, True])
def test_control_mean_weights_pseudobulk_rows_by_their_cells(sparse):
    """Two control labels with 1 and 3 cells: the pseudobulk control rows weigh
    their n_cells, so the control mean of the pseudobulk is that of the cells."""
    rows = [("ctrl_a", True, "control", np.nan)] + [("ctrl_b", True, "control", np.nan)] * 3
    adata = make_adata(rows + BASIC[2:], sparse=sparse)
    pb = pseudobulk(adata)
    assert sorted(pb.obs.loc[pb.obs["is_control"], "n_cells"]) == [1, 3]
    dense = adata.X.toarray() if sparse else adata.X
    expected = dense[:4].mean(axis=0)
    np.testing.assert_allclose(control_mean(adata), expected, rtol=1e-12)
    np.testing.assert_allclose(control_mean(pb), expected, rtol=1e-12)
    np.testing.assert_allclose(changes(pb).uns["control_mean"], expected, rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_changes_are_means_minus_control(sparse):
    adata = make_adata(BASIC, sparse=sparse)
    dense = adata.X.toarray() if sparse else adata.X
    delta = changes(adata)
    ctrl = dense[:2].mean(axis=0)
    assert list(delta.obs_names) == ["A", "A,B", "C", "D"]
    np.testing.assert_allclose(delta["A,B"].X.ravel(), dense[4:6].mean(axis=0) - ctrl)
    np.testing.assert_allclose(delta["D"].X.ravel(), dense[7] - ctrl)
    np.testing.assert_allclose(delta.uns["control_mean"], ctrl)
    again = changes(pseudobulk(adata))  # pseudobulk input is used as it is
    np.testing.assert_allclose(again.X, delta.X)
    assert list(changes(adata, min_cells=2).obs_names) == ["A", "A,B"]


# -------------------------------------------------------------------- split
def many_perturbations():
    rows = [("control", True, "control", np.nan)] * 5
    genes = ["A", "B", "C", "D", "E"]
    for g in genes:
        rows += [(g, False, "knockdown", np.nan)] * 3
    rows += [("A,B", False, "knockdown", np.nan), ("B,A", False, "knockdown", np.nan)]
    rows += [("C", False, "overexpression", np.nan)]
    return make_adata(rows)


@pytest.mark.parametrize("seed", range(5))
def test_split_holds_out_whole_perturbations(seed):
    adata = many_perturbations()
    snap = snapshot(adata)
    train, test = split_by_perturbation(adata, test_size=0.34, random_state=seed)
    assert_unchanged(adata, snap)
    assert train.n_obs + test.n_obs == adata.n_obs
    assert not test.obs["is_control"].any()
    assert train.obs["is_control"].sum() == 5

    def canon(obs):
        return {",".join(sorted(s.split(","))) for s in obs["perturbation"][~obs["is_control"]]}

    assert canon(train.obs).isdisjoint(canon(test.obs))
    assert len(canon(test.obs)) == 2  # round(0.34 * 6)
    again = split_by_perturbation(adata, test_size=0.34, random_state=seed)[1]
    assert list(again.obs_names) == list(test.obs_names)


@pytest.mark.parametrize("seed", range(6))
def test_split_measured_only_never_holds_out_unmeasured_targets(seed):
    rows = many_perturbations().obs.itertuples(index=False)
    # X and Y are not measured genes; "A,X" has one unmeasured target.
    extra = [("X", False, "knockdown", np.nan)] * 2 + [("A,X", False, "knockdown", np.nan)] * 2
    extra += [("Y", False, "knockdown", np.nan)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        adata = make_adata([tuple(r) for r in rows] + extra)
        train, test = split_by_perturbation(adata, test_size=0.34, random_state=seed,
                                            measured_only=True)
        most = split_by_perturbation(adata, test_size=5, random_state=seed, measured_only=True)[1]
    held = set(test.obs["perturbation"])
    assert held.isdisjoint({"X", "Y", "A,X"})
    assert set(train.obs["perturbation"]) >= {"X", "Y", "A,X"}
    assert train.n_obs + test.n_obs == adata.n_obs
    assert len(test.uns["split"]["test_perturbations"]) == 2  # round(0.34 * 6 eligible)
    # All but one of the 6 eligible perturbations held out: the unmeasured ones still train.
    assert len(most.uns["split"]["test_perturbations"]) == 5
    assert set(most.obs["perturbation"]).isdisjoint({"X", "Y", "A,X"})


def test_split_errors():
    adata = many_perturbations()
    with pytest.raises(DataContractError, match="out of range"):
        split_by_perturbation(adata, test_size=1.5)
    with pytest.raises(DataContractError, match="out of range"):
        split_by_perturbation(adata, test_size=6)
    with pytest.raises(DataContractError, match="at least 2"):
        split_by_perturbation(make_adata(BASIC[:3]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        only_unmeasured = make_adata(
            [("control", True, "control", np.nan)] * 2
            + [("A", False, "knockdown", np.nan), ("X", False, "knockdown", np.nan)]
        )
    with pytest.raises(DataContractError, match="at least 2 distinct perturbations with every"):
        split_by_perturbation(only_unmeasured, measured_only=True)


# -------------------------------------------------------------- standardize
def test_standardize_gears():
    obs = pd.DataFrame(
        {"condition": ["ctrl", "A+ctrl", "ctrl+B", "A+B", "B+A"]},
        index=[f"c{i}" for i in range(5)],
    )
    var = pd.DataFrame({"gene_name": ["A", "B", "C"]}, index=["ENSG1", "ENSG2", "ENSG3"])
    raw = ad.AnnData(np.ones((5, 3)), obs=obs, var=var)
    snap = snapshot(raw)
    std = standardize(raw, "gears", perturbation_type="overexpression")
    assert_unchanged(raw, snap)
    assert list(raw.var_names) == ["ENSG1", "ENSG2", "ENSG3"]
    assert std.obs["perturbation"].tolist() == ["ctrl", "A", "B", "A,B", "B,A"]
    assert std.obs["is_control"].tolist() == [True, False, False, False, False]
    assert std.obs["perturbation_type"].tolist()[1:] == ["overexpression"] * 4
    assert list(std.var_names) == ["A", "B", "C"]
    iv = Interventions.from_adata(std)
    assert iv.codes[3] == iv.codes[4]
    with pytest.raises(DataContractError, match="perturbation_type=.*Norman"):
        standardize(raw, "gears")


def test_standardize_cell_eval():
    obs = pd.DataFrame({"target_gene": ["non-targeting", "A", "C"]}, index=["x", "y", "z"])
    raw = ad.AnnData(np.ones((3, 3)), obs=obs, var=pd.DataFrame(index=["A", "B", "C"]))
    std = standardize(raw, "cell-eval", perturbation_type="knockdown")
    assert std.obs["perturbation"].tolist() == ["non-targeting", "A", "C"]
    assert std.obs["is_control"].tolist() == [True, False, False]
    with pytest.raises(DataContractError, match="No sample has the control label 'NT'"):
        standardize(raw, "vcc", perturbation_type="knockdown", control_label="NT")
    no_controls = raw[1:].copy()  # e.g. a file of predictions
    std = standardize(no_controls, "vcc", perturbation_type="knockdown", require_controls=False)
    assert std.obs["perturbation"].tolist() == ["A", "C"]
    assert not std.obs["is_control"].any()


def test_standardize_scperturb():
    obs = pd.DataFrame(
        {
            "perturbation": ["control", "A", "A_B", "C"],
            "perturbation_type": ["CRISPRa", "CRISPRa", "CRISPRa", "CRISPR"],
        },
        index=list("wxyz"),
    )
    raw = ad.AnnData(np.ones((4, 3)), obs=obs, var=pd.DataFrame(index=["A", "B", "C"]))
    std = standardize(raw, "scperturb")
    assert std.obs["perturbation"].tolist() == ["control", "A", "A,B", "C"]
    assert std.obs["perturbation_type"].tolist() == [
        "control", "overexpression", "overexpression", "knockout"
    ]
    assert std.obs["perturbation_original"].tolist() == ["control", "A", "A_B", "C"]
    assert raw.obs["perturbation"].tolist() == ["control", "A", "A_B", "C"]


def test_standardize_errors():
    raw = ad.AnnData(np.ones((2, 2)), obs=pd.DataFrame({"x": [1, 2]}, index=["a", "b"]))
    with pytest.raises(DataContractError, match="Unknown convention 'seurat'"):
        standardize(raw, "seurat")
    with pytest.raises(DataContractError, match="column 'condition', which is missing"):
        standardize(raw, "gears", perturbation_type="knockdown")


# -------------------------------------------------------------------- files
@pytest.mark.filterwarnings("ignore:Element '/matrix' was written without encoding")
def test_read_h5ad_errors(tmp_path):
    with pytest.raises(DataFileError, match="File not found"):
        read_h5ad(tmp_path / "nope.h5ad")
    text = tmp_path / "table.h5ad"
    text.write_text("gene,value\nA,1\n")
    with pytest.raises(DataFileError, match="not an HDF5"):
        read_h5ad(text)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["matrix"] = np.ones(3)
    with pytest.raises(DataFileError, match="not a readable AnnData"):
        read_h5ad(tmp_path / "foreign.h5")
    with pytest.raises(DataFileError, match="directory"):
        read_h5ad(tmp_path)


def test_write_read_round_trip_is_atomic(tmp_path):
    adata = make_adata(BASIC, sparse=True)
    dtypes = adata.obs.dtypes.copy()
    path = write_h5ad(adata, tmp_path / "cells.h5ad")
    pd.testing.assert_series_equal(adata.obs.dtypes, dtypes)  # caller's obs untouched
    back = read_h5ad(path)
    np.testing.assert_array_equal(back.X.toarray(), adata.X.toarray())
    assert back.obs["perturbation"].tolist() == adata.obs["perturbation"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"]
    with pytest.raises(DataFileError, match="does not exist"):
        write_h5ad(adata, tmp_path / "missing" / "x.h5ad")
