"""The real data shipped in causalcell.datasets and the conversion helpers."""

from __future__ import annotations

import gzip
import importlib.util
import io
import warnings
from importlib import resources
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from causalcell.data.contract import IS_CONTROL, LEVEL, PERTURBATION, PERTURBATION_TYPE, validate
from causalcell.datasets.real import (
    PAPALEXI_MIN_GUIDE_FRACTION,
    PAPALEXI_MIN_GUIDE_UMIS,
    SACHS_PROTEINS,
    load_collectri,
    load_papalexi2021,
    load_sachs2005,
    load_sachs2005_network,
    load_tf_names,
)
from causalcell.errors import (
    DataContractError,
    DataFileError,
    ExpressionScaleWarning,
    NetworkWarning,
    UnmeasuredTargetWarning,
)


def _load_build_tool():
    """The developer tool tools/build_datasets.py (it is not part of the installed package)."""
    path = Path(__file__).resolve().parents[1] / "tools" / "build_datasets.py"
    spec = importlib.util.spec_from_file_location("build_datasets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = _load_build_tool()

MEASURED_TARGETS = [
    "STAT1",
    "JAK2",
    "CMTM6",
    "STAT2",
    "UBE2L6",
    "STAT3",
    "TNFRSF14",
    "IFNGR2",
    "NFKBIA",
]
SACHS_COUNTS = {
    "cd3_cd28": 853,
    "cd3_cd28+aktinhib": 911,
    "cd3_cd28+icam2": 902,
    "cd3_cd28+ly": 848,
    "cd3_cd28+psitect": 810,
    "cd3_cd28+u0126": 799,
    "cd3_cd28+g0076": 723,
    "pma": 913,
    "b2camp": 707,
}


@pytest.fixture(scope="module")
def papalexi():
    return load_papalexi2021()


@pytest.fixture(scope="module")
def sachs():
    return load_sachs2005()


# ---------------------------------------------------------------------------
# Shipped files


def test_shipped_files_are_small_and_licensed():
    root = resources.files("causalcell.datasets").joinpath("data")
    files = {
        "papalexi2021": ["counts.npz", "cells.csv.gz", "guides.csv", "LICENSE.md"],
        "sachs2005": ["sachs2005.csv.gz", "consensus_network.csv", "LICENSE"],
        "collectri": ["collectri_papalexi2021.csv", "NOTICE.md"],
        "lambert2018_tfs": ["TF_names_v_1.01.txt", "NOTICE.md"],
    }
    total = 0
    for folder, names in files.items():
        for name in names:
            entry = root.joinpath(folder, name)
            assert entry.is_file(), f"{folder}/{name} missing"
            total += len(entry.read_bytes())
    assert root.joinpath("README.md").is_file()
    assert total < 4_000_000
    assert b"MIT License" in root.joinpath("papalexi2021", "LICENSE.md").read_bytes()
    assert b"CC0 1.0 Universal" in root.joinpath("sachs2005", "LICENSE").read_bytes()


# ---------------------------------------------------------------------------
# Papalexi et al. 2021


def test_papalexi_shape_and_counts(papalexi):
    assert papalexi.shape == (19_619, 299)
    per = papalexi.obs[PERTURBATION].value_counts()
    assert per["non-targeting"] == 2292
    assert per["STAT1"] == 421
    assert per["JAK2"] == 999
    assert per["SPI1"] == 47
    # 25 knockouts with cells: CD274's guides (PDL1g*) are never dominant.
    assert len(per) == 26
    assert "CD274" not in per.index
    assert papalexi.obs["bio_rep"].value_counts().to_dict() == {
        "rep_1": 8390,
        "rep_2": 5955,
        "rep_3": 5274,
    }
    assert papalexi.obs_names.is_unique
    assert papalexi.obs_names[0] == "cell00001"


@pytest.mark.filterwarnings("ignore::causalcell.errors.UnmeasuredTargetWarning")
def test_papalexi_follows_contract(papalexi):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExpressionScaleWarning)  # X is log-normalized
        validate(papalexi)
    with pytest.warns(ExpressionScaleWarning, match="layer 'counts' looks like raw counts"):
        validate(papalexi, layer="counts")
    obs = papalexi.obs
    control = obs[IS_CONTROL].to_numpy()
    assert obs[IS_CONTROL].dtype == bool
    assert set(obs.loc[control, PERTURBATION]) == {"non-targeting"}
    assert set(obs.loc[control, PERTURBATION_TYPE]) == {"control"}
    assert set(obs.loc[~control, PERTURBATION_TYPE]) == {"knockout"}
    assert obs[LEVEL].isna().all()
    assert sorted(papalexi.var_names[papalexi.var["targeted"].to_numpy()]) == sorted(
        MEASURED_TARGETS
    )
    assert set(MEASURED_TARGETS) <= set(obs[PERTURBATION])


def test_papalexi_unmeasured_targets_warn(papalexi):
    with pytest.warns(UnmeasuredTargetWarning, match=r"\b16 targeted gene"):
        validate(papalexi)


def test_papalexi_guide_rule_holds(papalexi):
    obs = papalexi.obs
    assert (obs["guide_fraction"] > PAPALEXI_MIN_GUIDE_FRACTION).all()
    assert (obs["guide_fraction"] <= 1.0).all()
    assert (obs["guide_umis"] >= PAPALEXI_MIN_GUIDE_UMIS).all()
    guide = obs["guide"].astype(str)
    control = obs[IS_CONTROL].to_numpy()
    assert guide[control].str.match(r"^NTg\d+$").all()
    # Guide ids are "<target>g<k>" (CD274's "PDL1g<k>" never occurs).
    prefix = guide[~control].str.replace(r"g\d+$", "", regex=True)
    assert (prefix == obs.loc[~control, PERTURBATION]).all()


def test_papalexi_expression(papalexi):
    counts = papalexi.layers["counts"]
    X = papalexi.X
    assert sp.issparse(counts)
    assert sp.issparse(X)
    assert counts.format == "csr"
    assert X.format == "csr"
    assert np.issubdtype(counts.dtype, np.integer)
    assert X.dtype == np.float32
    totals = np.asarray(counts.sum(axis=1)).ravel()
    np.testing.assert_array_equal(papalexi.obs["total_counts"].to_numpy(), totals)
    rows = np.arange(0, papalexi.n_obs, 97)
    dense = counts[rows].toarray().astype(np.float64)
    expected = np.log1p(dense / totals[rows, None] * 1e4)
    np.testing.assert_allclose(X[rows].toarray(), expected, rtol=1e-6, atol=1e-6)
    assert (X.data > 0).all()  # no stored zeros


def test_papalexi_measured_targets_drop(papalexi):
    normalized = np.expm1(papalexi.X.toarray().astype(np.float64))
    labels = papalexi.obs[PERTURBATION].to_numpy()
    control_mean = normalized[labels == "non-targeting"].mean(axis=0)
    ratio = {}
    for gene in MEASURED_TARGETS:
        j = papalexi.var_names.get_loc(gene)
        ratio[gene] = normalized[labels == gene, j].mean() / control_mean[j]
    assert ratio["STAT1"] < 0.35
    assert ratio["JAK2"] < 0.35
    assert all(r < 0.8 for r in ratio.values()), ratio


def test_papalexi_metadata(papalexi):
    meta = papalexi.uns["causalcell"]
    assert "Papalexi" in meta["citation"]
    assert "MIT" in meta["license"]
    assert "0.5" in meta["guide_assignment"]
    assert "5 UMIs" in meta["guide_assignment"]


def test_papalexi_new_object_each_call():
    first = load_papalexi2021()
    reference = first.X[:5].toarray()
    first.X.data[:] = -1.0
    first.layers["counts"].data[:] = 0
    first.obs[PERTURBATION] = "x"
    first.uns["causalcell"]["citation"] = "changed"
    second = load_papalexi2021()
    np.testing.assert_array_equal(second.X[:5].toarray(), reference)
    assert second.layers["counts"].data.min() >= 1
    assert (second.obs[PERTURBATION] != "x").all()
    assert "Papalexi" in second.uns["causalcell"]["citation"]


# ---------------------------------------------------------------------------
# Guide assignment rule


def test_assign_dominant_guide_known_answers():
    counts = np.array(
        [
            [10, 0, 0],  # clear winner
            [3, 3, 0],  # tie: half, not more than half
            [6, 5, 0],  # 6 / 11 > 0.5
            [4, 0, 0],  # alone but below 5 UMIs
            [0, 0, 0],  # no guide
            [5, 2, 2],  # 5 / 9
            [1, 8, 1],  # 8 / 10
            [5, 5, 1],  # tie at the top
        ]
    )
    guide, dominant, total = _build.assign_dominant_guide(sp.csr_matrix(counts))
    np.testing.assert_array_equal(guide, [0, -1, 0, -1, -1, 0, 1, -1])
    np.testing.assert_array_equal(dominant, [10, 3, 6, 4, 0, 5, 8, 5])
    np.testing.assert_array_equal(total, [10, 6, 11, 4, 0, 9, 10, 11])


def test_assign_dominant_guide_rejects_bad_counts():
    with pytest.raises(DataFileError, match="whole numbers"):
        _build.assign_dominant_guide(sp.csr_matrix(np.array([[1.5, 0.0]])))
    with pytest.raises(DataFileError, match="non-negative"):
        _build.assign_dominant_guide(sp.csr_matrix(np.array([[-1, 3]])))


@given(
    arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 6)), elements=st.integers(0, 12)),
    st.integers(1, 8),
    st.sampled_from([0.5, 0.6, 0.75]),
)
def test_assign_dominant_guide_matches_naive(counts, min_umis, min_fraction):
    guide, dominant, total = _build.assign_dominant_guide(
        sp.csr_matrix(counts), min_umis=min_umis, min_fraction=min_fraction
    )
    for i, row in enumerate(counts):
        best = int(row.max())
        winners = np.flatnonzero(row == best)
        ok = row.sum() > 0 and best >= min_umis and best / row.sum() > min_fraction
        assert guide[i] == (winners[0] if ok else -1)
        assert dominant[i] == best
        assert total[i] == row.sum()
        if ok:
            assert len(winners) == 1


# ---------------------------------------------------------------------------
# Deterministic writers and source checks of the build script


def test_writers_are_deterministic_and_readable():
    arrays_in = {"b": np.arange(5, dtype=np.uint16), "a": np.array(["x", "yz"])}
    blob = _build._npz_bytes(arrays_in)
    assert blob == _build._npz_bytes(arrays_in)
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["b"], arrays_in["b"])
        assert npz["b"].dtype == np.uint16
        assert npz["a"].tolist() == ["x", "yz"]
    text = b"a,b\n1,2.5\n"
    packed = _build._gzip_bytes(text)
    assert packed == _build._gzip_bytes(text)
    assert gzip.decompress(packed) == text


def test_write_atomic_replaces(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    _build._write_atomic(target, b"one")
    _build._write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def _write_sachs_source(folder, *, shift_log: float = 0.0) -> None:
    cols = [
        *SACHS_PROTEINS,
        "cd3_cd28",
        "icam2",
        "aktinhib",
        "g0076",
        "psitect",
        "u0126",
        "ly",
        "pma",
        "b2camp",
    ]
    raw = np.array([[10.0 + k for k in range(11)], [20.0 + k for k in range(11)]])
    ind = np.zeros((2, 9))
    ind[:, 0] = 1
    jitter = pd.DataFrame(np.hstack([raw, ind + 0.01]), columns=cols)
    mixed = pd.DataFrame(np.hstack([np.round(np.log(raw + 10), 4) + shift_log, ind]), columns=cols)
    sachs = folder / "sachs2005"
    sachs.mkdir(parents=True)
    jitter.to_csv(
        sachs / "sachs.2005.with.jittered.experimental.continuous.txt", sep="\t", index=False
    )
    mixed[list(cols[11:])] = mixed[list(cols[11:])].astype(int)
    mixed.to_csv(
        sachs / "sachs.2005.continuous.discrete.experimental.mixed.maximum.2.txt",
        sep="\t",
        index=False,
    )


def test_build_sachs_checks_the_files_agree(tmp_path):
    _write_sachs_source(tmp_path, shift_log=0.01)
    with pytest.raises(DataFileError, match="do not match"):
        _build.build_sachs2005(tmp_path, tmp_path / "out")


def test_build_sachs_checks_published_counts(tmp_path):
    _write_sachs_source(tmp_path)
    with pytest.raises(DataFileError, match="condition counts"):
        _build.build_sachs2005(tmp_path, tmp_path / "out")


def test_build_reports_missing_source(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        _build.build_tf_names(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------
# Sachs et al. 2005


def test_sachs_shape_and_conditions(sachs):
    assert sachs.shape == (7466, 11)
    assert list(sachs.var_names) == list(SACHS_PROTEINS)
    counts = sachs.obs["condition"].value_counts().to_dict()
    assert counts == SACHS_COUNTS
    assert sachs.X.dtype == np.float32
    assert isinstance(sachs.X, np.ndarray)
    assert sachs.layers["raw"].shape == (7466, 11)
    np.testing.assert_allclose(
        np.log(sachs.layers["raw"].astype(np.float64) + 10), sachs.X, atol=1e-4
    )
    assert np.all(sachs.layers["raw"] > 0)


def test_sachs_targets(sachs):
    table = sachs.obs.groupby("condition", observed=True)[
        [PERTURBATION, PERTURBATION_TYPE, IS_CONTROL]
    ].agg(lambda s: set(s))
    expected = {
        "cd3_cd28": ("cd3_cd28", "control", True),
        "cd3_cd28+aktinhib": ("akt", "inhibition", False),
        "cd3_cd28+g0076": ("pkc", "inhibition", False),
        "cd3_cd28+psitect": ("pip2", "inhibition", False),
        "cd3_cd28+u0126": ("mek", "inhibition", False),
        "cd3_cd28+ly": ("pip3", "inhibition", False),
        "cd3_cd28+icam2": ("ICAM2", "activation", False),
        "pma": ("pkc", "activation", False),
        "b2camp": ("pka", "activation", False),
    }
    for condition, (label, kind, control) in expected.items():
        row = table.loc[condition]
        assert row[PERTURBATION] == {label}
        assert row[PERTURBATION_TYPE] == {kind}
        assert row[IS_CONTROL] == {control}
    assert sachs.obs[LEVEL].isna().all()
    assert sachs.obs[IS_CONTROL].sum() == 853


def test_sachs_follows_contract(sachs):
    with pytest.warns(UnmeasuredTargetWarning, match="ICAM2"):
        validate(sachs)


def test_sachs_interventions_show(sachs):
    # Two reagents leave their textbook mark on the measured phospho-levels:
    # psitectorigenin lowers PIP2, and U0126 blocks MEK so that its substrate
    # ERK falls while phospho-MEK itself rises.
    mean = (
        pd.DataFrame(sachs.X, columns=sachs.var_names)
        .groupby(sachs.obs["condition"].to_numpy())
        .mean()
    )
    base = mean.loc["cd3_cd28"]
    assert mean.loc["cd3_cd28+psitect", "pip2"] < base["pip2"] - 1.0
    assert mean.loc["cd3_cd28+u0126", "erk"] < base["erk"] - 0.3
    assert mean.loc["cd3_cd28+u0126", "mek"] > base["mek"] + 1.0


def test_sachs_new_object_each_call():
    first = load_sachs2005()
    first.X[:] = 0
    first.obs.loc[first.obs_names[0], PERTURBATION] = "changed"
    second = load_sachs2005()
    assert second.X[0, 0] == pytest.approx(3.5946, abs=1e-4)
    assert second.obs[PERTURBATION].iloc[0] == "cd3_cd28"


def test_sachs_network():
    graph = load_sachs2005_network()
    assert isinstance(graph, nx.DiGraph)
    assert graph.number_of_edges() == 20
    assert set(graph.nodes) == set(SACHS_PROTEINS)
    assert nx.is_directed_acyclic_graph(graph)
    assert {("raf", "mek"), ("mek", "erk"), ("pkc", "pka"), ("plc", "pip2")} <= set(graph.edges)
    assert {w for _, _, w in graph.edges(data="weight")} == {1.0}
    graph.add_edge("erk", "raf")
    assert not load_sachs2005_network().has_edge("erk", "raf")


# ---------------------------------------------------------------------------
# Priors


def test_collectri_slice(papalexi):
    full = load_collectri(self_loops=True)
    graph = load_collectri()
    assert full.number_of_edges() == 74
    assert graph.number_of_edges() == 66
    assert nx.number_of_selfloops(graph) == 0
    assert nx.number_of_selfloops(full) == 8
    weights = np.array([w for _, _, w in full.edges(data="weight")])
    assert weights.dtype == np.float64
    assert set(weights) == {-1.0, 1.0}
    assert (weights < 0).sum() == 8
    genes = set(papalexi.var_names)
    targets = set(papalexi.obs[PERTURBATION]) | {"CD274"}
    assert all(t in genes for _, t in full.edges)
    assert all(s in genes or s in targets for s, _ in full.edges)
    assert full["STAT1"]["STAT2"]["weight"] == 1.0
    assert full["MYC"]["FN1"]["weight"] == -1.0


def test_collectri_genes_filter(papalexi):
    full = load_collectri()
    measured = load_collectri(genes=papalexi.var_names)
    expected = {(s, t) for s, t in full.edges if s in papalexi.var_names}
    assert set(measured.edges) == expected
    assert measured.number_of_edges() == 25
    small = load_collectri(genes=["STAT1", "STAT2", "STAT3", "MYC"])
    assert set(small.edges) == {
        ("STAT1", "STAT2"),
        ("STAT2", "STAT1"),
        ("STAT1", "STAT3"),
        ("STAT3", "STAT1"),
        ("MYC", "STAT3"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_collectri(genes=set()).number_of_edges() == 0


def test_collectri_bad_genes():
    with pytest.raises(DataContractError, match="single string"):
        load_collectri(genes="STAT1")
    with pytest.raises(DataContractError, match="iterable"):
        load_collectri(genes=3)  # type: ignore[arg-type]
    with pytest.warns(NetworkWarning, match="HGNC"):
        graph = load_collectri(genes=["stat1", "jak2"])
    assert graph.number_of_edges() == 0


def test_collectri_new_object_each_call():
    graph = load_collectri()
    graph.remove_edge("STAT1", "STAT2")
    graph["STAT2"]["STAT1"]["weight"] = 5.0
    again = load_collectri()
    assert again.has_edge("STAT1", "STAT2")
    assert again["STAT2"]["STAT1"]["weight"] == 1.0


def test_tf_names():
    names = load_tf_names()
    assert len(names) == 1639
    assert len(set(names)) == 1639
    assert names[0] == "AC008770.3"
    assert names[-1] == "ZZZ3"
    assert {"STAT1", "MYC", "SPI1", "IRF1"} <= set(names)
    assert all(n == n.strip() and n for n in names)
    names.clear()
    assert len(load_tf_names()) == 1639


def test_missing_shipped_file_raises(monkeypatch, tmp_path):
    from causalcell.datasets import real

    monkeypatch.setattr(real, "_data_file", lambda *parts: tmp_path.joinpath("data", *parts))
    with pytest.raises(DataFileError, match="missing"):
        load_tf_names()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataFileError, match="missing"):
            load_papalexi2021()
