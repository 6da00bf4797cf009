"""Conventions of other tools: standardize with explicit keys, to_convention, round trips."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import causalcell as cc
from causalcell.data import CONVENTIONS, Interventions, standardize, to_convention
from causalcell.errors import DataContractError, ParameterError

GENES = ["A", "B", "C", "D"]
KINDS = ["knockout", "knockdown", "overexpression", "chemical", "activation"]
CONTRACT = ["perturbation", "is_control", "perturbation_type",
            "expression_level_after_perturbation"]


@st.composite
def contract_data(draw):
    """Random data in the contract: single and double targets (one unmeasured gene
    allowed), every kind, levels known or not, an extra obs column."""
    n = draw(st.integers(2, 12))
    genes = [*GENES, "X"]  # X is targeted but not measured
    rows = []
    for i in range(n):
        if i == 0 or (draw(st.booleans()) and draw(st.booleans())):
            rows.append(("control", True, "control", "nan"))
            continue
        targets = draw(st.lists(st.sampled_from(genes), min_size=1, max_size=2, unique=True))
        kind = draw(st.sampled_from(KINDS))
        levels = [draw(st.one_of(st.just(float("nan")),
                                 st.floats(0, 5, allow_nan=False).map(lambda v: round(v, 3))))
                  for _ in targets]
        rows.append((",".join(targets), False, kind,
                     ",".join("nan" if np.isnan(v) else repr(v) for v in levels)))
    obs = pd.DataFrame(rows, columns=CONTRACT, index=[f"s{i}" for i in range(n)])
    obs["batch"] = [f"b{i % 2}" for i in range(n)]
    X = draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=n * len(GENES),
                      max_size=n * len(GENES)))
    return ad.AnnData(np.asarray(X).reshape(n, len(GENES)), obs=obs,
                      var=pd.DataFrame(index=GENES))


def _assert_round_trip(original: ad.AnnData, back: ad.AnnData) -> None:
    pd.testing.assert_frame_equal(back.obs[[*CONTRACT, "batch"]],
                                  original.obs[[*CONTRACT, "batch"]], check_dtype=False)
    np.testing.assert_array_equal(back.X, original.X)
    assert list(back.var_names) == list(original.var_names)
    assert list(back.obs_names) == list(original.obs_names)


@settings(max_examples=40, deadline=None)
@given(data=contract_data(), convention=st.sampled_from(CONVENTIONS))
def test_round_trip_is_exact(data, convention):
    """standardize(to_convention(a, c), c) gives back a's contract columns, X, names."""
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.errors.UnmeasuredTargetWarning)
        exported = to_convention(data, convention, control_label="control")
        back = standardize(exported, convention, control_label="control")
    _assert_round_trip(data, back)
    pd.testing.assert_frame_equal(data.obs, before.obs)  # the input is never modified
    assert "is_control" not in exported.obs.columns


def test_layouts_written():
    obs = pd.DataFrame({"perturbation": ["ctl", "A", "A,B", "C"],
                        "is_control": [True, False, False, False],
                        "perturbation_type": ["control", "knockdown", "knockdown", "knockout"]},
                       index=list("wxyz"))
    adata = ad.AnnData(np.ones((4, 3)), obs=obs, var=pd.DataFrame(index=["A", "B", "C"]))
    gears = to_convention(adata, "gears")
    assert gears.obs["condition"].tolist() == ["ctrl", "A+ctrl", "A+B", "C+ctrl"]
    assert gears.var["gene_name"].tolist() == ["A", "B", "C"]
    cell_eval = to_convention(adata, "cell-eval")
    assert cell_eval.obs["target_gene"].tolist() == ["non-targeting", "A", "A,B", "C"]
    assert "perturbation" not in cell_eval.obs.columns
    scperturb = to_convention(adata, "scperturb")
    assert scperturb.obs["perturbation"].tolist() == ["control", "A", "A_B", "C"]
    # scPerturb's words; controls carry the data set's main kind, as in scPerturb files.
    assert scperturb.obs["perturbation_type"].tolist() == ["CRISPRi", "CRISPRi", "CRISPRi",
                                                           "CRISPR"]
    back = standardize(scperturb, "scperturb")
    assert back.obs["perturbation_type"].tolist() == ["control", "knockdown", "knockdown",
                                                      "knockout"]
    # An existing column of the convention's name is kept, not overwritten silently.
    adata.obs["condition"] = "old"
    assert to_convention(adata, "gears").obs["condition_original"].tolist() == ["old"] * 4


def test_to_convention_rejects_ambiguous_labels():
    obs = pd.DataFrame({"perturbation": ["ctl", "MT_1"], "is_control": [True, False],
                        "perturbation_type": ["control", "knockout"]}, index=["a", "b"])
    adata = ad.AnnData(np.ones((2, 1)), obs=obs, var=pd.DataFrame(index=["MT_1"]))
    with pytest.raises(DataContractError, match="'MT_1'.*separator '_'"):
        to_convention(adata, "scperturb")
    assert to_convention(adata, "scperturb", separator="+").obs["perturbation"].tolist() == [
        "control", "MT_1"]
    obs.loc["b", "perturbation"] = "ctrl"
    ctrl_gene = ad.AnnData(np.ones((2, 1)), obs=obs, var=pd.DataFrame(index=["ctrl"]))
    with pytest.raises(DataContractError, match="'ctrl'.*control label"):
        to_convention(ctrl_gene, "gears")
    with pytest.raises(DataContractError, match="Unknown convention 'seurat'"):
        to_convention(adata, "seurat")


def test_standardize_explicit_keys():
    """Any layout, described like pertpy / scanpy arguments."""
    obs = pd.DataFrame({"guide": ["NT", "IRF1|STAT1", "JAK2", "NT"],
                        "method": ["CRISPRi", "CRISPRi", "CRISPRa", "CRISPRi"],
                        "kd": [np.nan, "0.2,0.4", "3.5", np.nan]}, index=list("abcd"))
    raw = ad.AnnData(np.ones((4, 3)), obs=obs, var=pd.DataFrame(index=["IRF1", "STAT1", "JAK2"]))
    std = standardize(raw, perturbation_key="guide", control_label="NT", separator="|",
                      perturbation_type_key="method", level_key="kd")
    assert std.obs["perturbation"].tolist() == ["NT", "IRF1,STAT1", "JAK2", "NT"]
    assert std.obs["is_control"].tolist() == [True, False, False, True]
    assert std.obs["perturbation_type"].tolist() == ["control", "knockdown", "overexpression",
                                                     "control"]
    iv = Interventions.from_adata(std)
    np.testing.assert_allclose(iv.levels, [0.2, 0.4, 3.5])
    # A value for every sample overrides the kind column; explicit keys override a
    # convention's defaults.
    assert set(standardize(raw, perturbation_key="guide", control_label="NT", separator="|",
                           perturbation_type="knockout").obs["perturbation_type"]) == {
        "control", "knockout"}
    renamed = raw.copy()
    renamed.obs["target_gene"] = renamed.obs.pop("guide")
    std2 = standardize(renamed, "cell-eval", perturbation_key="target_gene", control_label="NT",
                       separator="|", perturbation_type="knockdown")
    assert std2.obs["perturbation"].tolist() == std.obs["perturbation"].tolist()


def test_standardize_key_errors():
    raw = ad.AnnData(np.ones((2, 1)), obs=pd.DataFrame({"g": ["NT", "A"]}, index=["a", "b"]),
                     var=pd.DataFrame(index=["A"]))
    with pytest.raises(ParameterError, match="perturbation_key="):
        standardize(raw)
    with pytest.raises(ParameterError, match="control_label="):
        standardize(raw, perturbation_key="g", perturbation_type="knockout")
    with pytest.raises(DataContractError, match="does not record how genes were perturbed"):
        standardize(raw, perturbation_key="g", control_label="NT")
    with pytest.raises(DataContractError, match="perturbation_type_key='kind' is not an obs"):
        standardize(raw, perturbation_key="g", control_label="NT", perturbation_type_key="kind")
    with pytest.raises(DataContractError, match="level_key='T' is not an obs column"):
        standardize(raw, perturbation_key="g", control_label="NT", perturbation_type="knockout",
                    level_key="T")
    with pytest.raises(DataContractError, match="obs column 'h', which is missing"):
        standardize(raw, perturbation_key="h", control_label="NT", perturbation_type="knockout")


def test_standardize_renamed_column_warns():
    raw = ad.AnnData(np.ones((2, 1)), obs=pd.DataFrame({"g": ["NT", "A"]}, index=["a", "b"]),
                     var=pd.DataFrame(index=["A"]))
    with pytest.warns(FutureWarning, match=r"column=.*renamed perturbation_key="):
        std = standardize(raw, "cell-eval", column="g", control_label="NT",
                          perturbation_type="knockout")
    assert std.obs["perturbation"].tolist() == ["NT", "A"]
    with pytest.raises(ParameterError, match="not both"), pytest.warns(FutureWarning):
        standardize(raw, "cell-eval", column="g", perturbation_key="g")
    with pytest.raises(TypeError, match="colum"):
        standardize(raw, "cell-eval", colum="g")


def test_gears_symbols_kept_only_when_they_differ():
    obs = pd.DataFrame({"condition": ["ctrl", "A+ctrl"]}, index=["a", "b"])
    same = ad.AnnData(np.ones((2, 2)), obs=obs,
                      var=pd.DataFrame({"gene_name": ["A", "B"]}, index=["A", "B"]))
    assert "original_var_names" not in standardize(same, "gears",
                                                   perturbation_type="knockdown").var
    other = ad.AnnData(np.ones((2, 2)), obs=obs,
                       var=pd.DataFrame({"gene_name": ["A", "B"]}, index=["E1", "E2"]))
    assert standardize(other, "gears", perturbation_type="knockdown").var[
        "original_var_names"].tolist() == ["E1", "E2"]
