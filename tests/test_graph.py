"""Tests of causalcell.graph: network I/O, adjacency, the do-operator, pgmpy round trip."""

from __future__ import annotations

import copy
import gzip
import warnings
from collections import OrderedDict

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pgmpy.base import DAG

from causalcell.errors import DataFileError, NetworkError, NetworkWarning
from causalcell.graph import (
    find_cycle_edges,
    from_pgmpy,
    intervene,
    network_to_frame,
    read_network,
    to_adjacency,
    to_pgmpy,
    write_network,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def edge_dict(G: nx.DiGraph) -> dict:
    return {(u, v): d for u, v, d in G.edges(data=True)}


def weights_of(G: nx.DiGraph) -> dict:
    return {(u, v): w for u, v, w in G.edges(data="weight")}


def read_quietly(source, **kwargs) -> nx.DiGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected on clean input
        return read_network(source, **kwargs)


def network_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, NetworkWarning)]


CLEAN = pd.DataFrame(
    {
        "regulator": ["STAT1", "STAT1", "JAK2", "IRF1"],
        "target": ["IRF1", "CXCL10", "STAT1", "CXCL10"],
        "weight": [1.5, -0.5, 2.0, 1.0],
    }
)
CLEAN_WEIGHTS = {
    ("STAT1", "IRF1"): 1.5,
    ("STAT1", "CXCL10"): -0.5,
    ("JAK2", "STAT1"): 2.0,
    ("IRF1", "CXCL10"): 1.0,
}


# ---------------------------------------------------------------------------
# read_network: conventions and formats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sep", "compress"),
    [
        ("net.csv", ",", False),
        ("net.tsv", "\t", False),
        ("net.txt", "\t", False),
        ("net.csv.gz", ",", True),
        ("net.tsv.gz", "\t", True),
    ],
)
def test_read_text_formats(tmp_path, name, sep, compress):
    path = tmp_path / name
    text = CLEAN.to_csv(sep=sep, index=False)
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    G = read_quietly(path)
    assert weights_of(G) == CLEAN_WEIGHTS
    assert G.graph["read_report"] == {
        "n_rows": 4,
        "n_duplicates": 0,
        "n_duplicates_conflicting": 0,
        "n_self_loops": 0,
        "n_absent_gene": 0,
        "n_missing_weight": 0,
        "n_edges": 4,
    }


def test_read_parquet_and_str_path(tmp_path):
    path = tmp_path / "net.parquet"
    CLEAN.to_parquet(path)
    G = read_quietly(str(path))
    assert weights_of(G) == CLEAN_WEIGHTS
    assert all(isinstance(w, float) for w in weights_of(G).values())


def test_read_collectri_style_quoted_mixed_case(tmp_path):
    path = tmp_path / "collectri.csv"
    path.write_text('"Source","TARGET","Weight"\n"MYC","TERT",1\n"SPI1","BGLAP",-1\n')
    G = read_quietly(path)
    assert weights_of(G) == {("MYC", "TERT"): 1.0, ("SPI1", "BGLAP"): -1.0}


def test_read_trrust_style_signs_crlf_and_conflicting_duplicates(tmp_path):
    path = tmp_path / "trrust.tsv"
    rows = [
        "TF\tTarget\tRegulation\tReference",
        "AATF\tBAX\tRepression\t22909821",
        "AATF\tMYC\tActivation\t20549547",
        "AATF\tKLK3\tUnknown\t23146908",
        "ABL1\tBAX\tActivation\t11753601",
        "ABL1\tBAX\tRepression\t11753602",
        "ABL1\tBAX\tActivation\t11753603",
    ]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    with pytest.warns(NetworkWarning) as record:
        G = read_network(path, weight_default=0.25)
    assert weights_of(G) == {
        ("AATF", "BAX"): -1.0,
        ("AATF", "MYC"): 1.0,
        ("AATF", "KLK3"): 0.25,
        ("ABL1", "BAX"): 1.0,  # first occurrence kept
    }
    (message,) = network_warnings(record)
    assert "2 duplicated edge(s)" in message
    assert "first occurrence" in message
    assert "1 of the duplicated pairs have disagreeing weights" in message
    assert G.graph["read_report"]["n_duplicates_conflicting"] == 1
    assert set(G.nodes) == {"AATF", "BAX", "MYC", "KLK3", "ABL1"}


def test_read_dataframe_not_mutated_and_names_become_str():
    frame = pd.DataFrame(
        {"Regulator": [7157, 7157, 1026], "target": [1026, 4193, 7157], "extra": [1, 2, 3]}
    )
    before = frame.copy(deep=True)
    G = read_quietly(frame, weight_default=0.5)
    pd.testing.assert_frame_equal(frame, before)
    assert weights_of(G) == {("7157", "1026"): 0.5, ("7157", "4193"): 0.5, ("1026", "7157"): 0.5}
    assert all(type(n) is str for n in G.nodes)
    assert all(d.keys() == {"weight"} for _, _, d in G.edges(data=True))


def test_read_strips_whitespace_and_keeps_na_like_symbols(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("regulator,target,weight\n NA , NAN ,1\nNULL,NA,2\n")
    G = read_quietly(path)
    assert weights_of(G) == {("NA", "NAN"): 1.0, ("NULL", "NA"): 2.0}


def test_read_missing_weight_cells_get_default(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("regulator,target,weight\nA,B,\nA,C,NA\nB,C,3\n")
    with pytest.warns(NetworkWarning, match="2 edge"):
        G = read_network(path, weight_default=-1.0)
    assert weights_of(G) == {("A", "B"): -1.0, ("A", "C"): -1.0, ("B", "C"): 3.0}
    assert G.graph["read_report"]["n_missing_weight"] == 2


def test_read_sep_override_for_other_extension(tmp_path):
    path = tmp_path / "net.dat"
    path.write_text("regulator;target;weight\nA;B;2\n")
    assert weights_of(read_quietly(path, sep=";")) == {("A", "B"): 2.0}


# ---------------------------------------------------------------------------
# read_network: dropped edges
# ---------------------------------------------------------------------------

DIRTY = pd.DataFrame(
    {
        "source": ["A", "A", "A", "B", "B", "C", "C", "X", "A", "Y"],
        "target": ["B", "B", "B", "B", "C", "C", "D", "A", "D", "Y"],
        "weight": [1.0, 1.0, 2.0, 5.0, -1.0, 3.0, 4.0, 1.0, 0.5, 1.0],
    }
)


def test_read_reports_each_category_once_with_counts():
    before = DIRTY.copy(deep=True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        G = read_network(DIRTY, genes=["A", "B", "C", "D"])
    pd.testing.assert_frame_equal(DIRTY, before)
    messages = network_warnings(record)
    assert len(messages) == 3
    dup, loops, absent = messages
    assert dup.startswith("2 duplicated edge(s)")
    assert "A -> B" in dup
    assert "1 of the duplicated pairs have disagreeing weights" in dup
    assert loops.startswith("3 self-loop(s)")
    assert "B -> B" in loops
    assert absent.startswith("1 edge(s)")
    assert "X -> A" in absent
    assert "4 given genes" in absent
    assert G.graph["read_report"] == {
        "n_rows": 10,
        "n_duplicates": 2,
        "n_duplicates_conflicting": 1,
        "n_self_loops": 3,
        "n_absent_gene": 1,
        "n_missing_weight": 0,
        "n_edges": 4,
    }
    assert weights_of(G) == {("A", "B"): 1.0, ("B", "C"): -1.0, ("C", "D"): 4.0, ("A", "D"): 0.5}


def test_read_agreeing_duplicates_do_not_claim_conflict():
    frame = pd.DataFrame({"regulator": ["A", "A"], "target": ["B", "B"], "weight": [2, 2]})
    with pytest.warns(NetworkWarning) as record:
        G = read_network(frame)
    (message,) = network_warnings(record)
    assert "disagree" not in message
    assert G.graph["read_report"]["n_duplicates_conflicting"] == 0


def test_read_verbose_is_deprecated_and_never_silences_the_report():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        G = read_network(DIRTY, genes=["A", "B", "C", "D"], verbose=False)
    future = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert len(future) == 1
    assert "verbose= is deprecated and ignored" in str(future[0].message)
    assert any(issubclass(w.category, NetworkWarning) for w in caught)
    assert G.graph["read_report"]["n_self_loops"] == 3
    assert G.number_of_edges() == 4
    # The warnings point at the caller's line.
    assert {w.filename for w in caught} == {__file__}


def test_read_genes_filter_accepts_index_and_drops_nodes():
    with pytest.warns(NetworkWarning, match="1 edge"):
        G = read_network(CLEAN, genes=pd.Index(["STAT1", "IRF1", "CXCL10", "OTHER"]))
    assert set(G.nodes) == {"STAT1", "IRF1", "CXCL10"}
    assert G.number_of_edges() == 3


# ---------------------------------------------------------------------------
# read_network: errors
# ---------------------------------------------------------------------------


def test_missing_column_names_found_and_accepted(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("gene_a,gene_b,score\nA,B,1\n")
    with pytest.raises(NetworkError) as err:
        read_network(path)
    message = str(err.value)
    for found in ("gene_a", "gene_b", "score"):
        assert found in message
    for accepted in ("'regulator'", "'source'", "'tf'"):
        assert accepted in message
    assert str(path) in message


def test_missing_target_column_in_dataframe():
    with pytest.raises(NetworkError, match="no target column"):
        read_network(pd.DataFrame({"TF": ["A"], "gene": ["B"]}))


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataFileError, match="absent.csv"):
        read_network(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataFileError, match="not a file"):
        read_network(tmp_path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "net.xlsx"
    path.write_text("regulator,target\nA,B\n")
    with pytest.raises(DataFileError, match="net.xlsx"):
        read_network(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("net.parquet", b"regulator,target\nA,B\n"),  # text posing as parquet
        ("net.csv.gz", b"regulator,target\nA,B\n"),  # not gzip
        ("net.csv", b"\xff\xfe\x00\x81\x00\x00garbage\x9d"),  # binary
        ("net.csv", b""),  # empty
    ],
)
def test_not_an_edge_list_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=name.replace(".", r"\.")):
        read_network(path)


def test_non_numeric_weight_names_the_line(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("regulator,target,weight\nA,B,1\nA,C,strong\nB,C,2\n")
    with pytest.raises(NetworkError, match=r"'strong'.*line 3 of .*net\.csv"):
        read_network(path)


def test_non_numeric_weight_names_the_dataframe_row():
    frame = pd.DataFrame(
        {"regulator": ["A", "B"], "target": ["B", "C"], "weight": [1, "x"]}, index=[10, 20]
    )
    with pytest.raises(NetworkError, match="row 20"):
        read_network(frame)


def test_non_finite_weight_and_empty_gene_raise():
    with pytest.raises(NetworkError, match="non-finite"):
        read_network(pd.DataFrame({"regulator": ["A"], "target": ["B"], "weight": [np.inf]}))
    with pytest.raises(NetworkError, match="empty 'target'"):
        read_network(pd.DataFrame({"regulator": ["A", "B"], "target": ["B", None]}))


# ---------------------------------------------------------------------------
# network_to_frame / write_network
# ---------------------------------------------------------------------------


def test_network_to_frame_columns_and_defaults():
    G = nx.DiGraph()
    G.add_edge("A", "B", weight=2.0, db="x", tags=["a", "b"])
    G.add_edge("B", "C", db="y")  # no weight
    G.add_edge("C", "D", weight=None)  # pgmpy-style missing weight
    G.add_node("ISOLATED")
    frame = network_to_frame(G)
    assert list(frame.columns) == ["regulator", "target", "weight", "db"]  # tags: not scalar
    assert frame.to_dict("list") == {
        "regulator": ["A", "B", "C"],
        "target": ["B", "C", "D"],
        "weight": [2.0, 1.0, 1.0],
        "db": ["x", "y", None],
    }


def test_network_to_frame_bad_weight():
    G = nx.DiGraph([("A", "B", {"weight": "heavy"})])
    with pytest.raises(NetworkError, match=r"'A' -> 'B'.*'heavy'"):
        network_to_frame(G)


def random_weighted_graph(seed: int, n: int = 30, m: int = 80) -> nx.DiGraph:
    rng = np.random.default_rng(seed)
    G = nx.DiGraph()
    for _ in range(m):
        u, v = rng.choice(n, size=2, replace=False)
        G.add_edge(f"g{u}", f"g{v}", weight=float(rng.normal()), evidence=int(rng.integers(5)))
    return G


@pytest.mark.parametrize("name", ["net.csv", "net.tsv", "net.txt", "net.parquet", "net.csv.gz"])
def test_write_read_round_trip(tmp_path, name):
    G = random_weighted_graph(1)
    before = copy.deepcopy(G)
    path = tmp_path / name
    write_network(G, path)
    assert nx.utils.graphs_equal(G, before)
    H = read_quietly(path)
    assert weights_of(H) == weights_of(G)  # exact floats, all edges
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left
    if name != "net.parquet":
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            assert fh.readline().strip().replace("\t", ",") == "regulator,target,weight,evidence"


def test_write_format_overrides_extension_and_overwrites(tmp_path):
    path = tmp_path / "net.edges"
    write_network(nx.DiGraph([("A", "B", {"weight": 1.0})]), path, format="tsv")
    write_network(nx.DiGraph([("C", "D", {"weight": 3.0})]), path, format="tsv")
    assert path.read_text().splitlines() == ["regulator\ttarget\tweight", "C\tD\t3.0"]


def test_write_errors(tmp_path):
    G = nx.DiGraph([("A", "B")])
    with pytest.raises(DataFileError, match=r"net\.json"):
        write_network(G, tmp_path / "net.json")
    with pytest.raises(DataFileError, match="xml"):
        write_network(G, tmp_path / "net.csv", format="xml")
    with pytest.raises(DataFileError, match="does not exist"):
        write_network(G, tmp_path / "missing_dir" / "net.csv")
    with pytest.raises(NetworkError, match="DiGraph"):
        write_network(nx.Graph([("A", "B")]), tmp_path / "net.csv")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# to_adjacency
# ---------------------------------------------------------------------------


def naive_adjacency(G: nx.DiGraph, genes: list, weight: str = "weight") -> np.ndarray:
    pos = {g: i for i, g in enumerate(genes)}
    A = np.zeros((len(genes), len(genes)))
    for u, v, d in G.edges(data=True):
        if u in pos and v in pos:
            w = d.get(weight)
            A[pos[u], pos[v]] = 1.0 if w is None else w
    return A


@st.composite
def graphs(draw, max_nodes: int = 12, acyclic: bool = False) -> nx.DiGraph:
    """Random DiGraphs of str nodes with weighted/unweighted edges and node attrs."""
    n = draw(st.integers(0, max_nodes))
    nodes = [f"g{i}" for i in range(n)]
    if acyclic:
        pairs = [(u, v) for i, u in enumerate(nodes) for v in nodes[i + 1 :]]
    else:
        pairs = [(u, v) for u in nodes for v in nodes]  # self-loops included
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    G = nx.DiGraph(name="random")
    G.add_nodes_from(nodes)
    for node in draw(st.lists(st.sampled_from(nodes), unique=True)) if nodes else []:
        G.nodes[node]["kind"] = ["tf"]  # mutable, to catch shared node attributes
    for u, v in chosen:
        attrs = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "weight": st.floats(-5, 5, allow_nan=False),
                    "sign": st.sampled_from(["+", "-"]),
                },
            )
        )
        G.add_edge(u, v, **attrs)
    return G


@settings(max_examples=60)
@given(G=graphs(), extra=st.lists(st.sampled_from(["x1", "x2", "x3"]), unique=True), data=st.data())
def test_to_adjacency_matches_naive_dense(G, extra, data):
    nodes = list(G.nodes)
    subset = data.draw(st.lists(st.sampled_from(nodes), unique=True)) if nodes else []
    genes = data.draw(st.permutations(subset + extra))
    A = to_adjacency(G, genes)
    assert A.shape == (len(genes), len(genes))
    assert A.dtype == np.float64
    np.testing.assert_array_equal(A.toarray(), naive_adjacency(G, genes))
    # weight=None: the pattern, as networkx's weight=None (every edge counts 1).
    pattern = to_adjacency(G, genes, weight=None)
    expected = [[float(G.has_edge(u, v)) for v in genes] for u in genes]
    np.testing.assert_array_equal(pattern.toarray(), np.reshape(expected, A.shape))


def test_to_adjacency_other_attribute_index_genes_and_zero_weights():
    G = nx.DiGraph()
    G.add_edge("A", "B", weight=0.0, score=3.0)
    G.add_edge("B", "A", weight=2.0)
    A = to_adjacency(G, pd.Index(["A", "B"]), weight="score")
    np.testing.assert_array_equal(A.toarray(), [[0.0, 3.0], [1.0, 0.0]])
    B = to_adjacency(G, np.array(["B", "A"]))
    np.testing.assert_array_equal(B.toarray(), [[0.0, 2.0], [0.0, 0.0]])
    assert B.nnz == 2  # the weight-0 edge is stored


def test_to_adjacency_errors():
    G = nx.DiGraph([("A", "B", {"weight": "x"})])
    with pytest.raises(NetworkError, match="duplicated"):
        to_adjacency(G, ["A", "B", "A"])
    with pytest.raises(NetworkError, match=r"'A' -> 'B'"):
        to_adjacency(G, ["A", "B"])
    with pytest.raises(NetworkError, match="DiGraph"):
        to_adjacency(nx.MultiDiGraph([("A", "B")]), ["A", "B"])


# ---------------------------------------------------------------------------
# intervene
# ---------------------------------------------------------------------------


class OrderedStorageDiGraph(nx.DiGraph):
    """A subclass with custom storage: exercises intervene's generic path."""

    node_attr_dict_factory = OrderedDict
    edge_attr_dict_factory = OrderedDict


def as_class(G: nx.DiGraph, cls: type) -> nx.DiGraph:
    H = cls()
    H.graph.update(G.graph)
    H.add_nodes_from(G.nodes(data=True))
    nx.DiGraph.add_edges_from(H, G.edges(data=True))
    return H


def reference_intervene(G: nx.DiGraph, targets: set) -> nx.DiGraph:
    H = copy.deepcopy(G)
    H.remove_edges_from([(u, v) for u, v in G.in_edges([t for t in targets if t in G])])
    return H


target_lists = st.lists(st.sampled_from([f"g{i}" for i in range(14)] + ["absent"]), max_size=5)


@settings(max_examples=80)
@given(G=graphs(), targets=target_lists, cls=st.sampled_from([nx.DiGraph, OrderedStorageDiGraph]))
def test_intervene_properties(G, targets, cls):
    G = as_class(G, cls)
    before = copy.deepcopy(G)
    H = intervene(G, targets)
    cut = set(targets)

    assert type(H) is cls
    assert nx.utils.graphs_equal(G, before)  # input untouched
    assert list(H.nodes) == list(G.nodes)  # node set (and order) unchanged
    assert dict(H.nodes(data=True)) == dict(G.nodes(data=True))
    assert H.graph == G.graph
    assert H.graph is not G.graph
    for t in cut & set(H):
        assert H.in_degree(t) == 0
    expected = {e: d for e, d in edge_dict(G).items() if e[1] not in cut}
    assert edge_dict(H) == expected  # every other edge, equal attributes
    assert nx.utils.graphs_equal(H, reference_intervene(G, cut))
    # Storage is consistent and nothing is shared with the input.
    for u, v, d in H.edges(data=True):
        assert H.pred[v][u] is d
        assert d is not G.edges[u, v]
        assert type(d) is type(G.edges[u, v])
    for n, d in H.nodes(data=True):
        assert d is not G.nodes[n]
        if "kind" in d:
            assert d["kind"] is not G.nodes[n]["kind"]
    # Mutating the result never reaches the input.
    for u, v in list(H.edges)[:2]:
        H.edges[u, v]["weight"] = 99.0
        H.remove_edge(u, v)
    H.graph["name"] = "changed"
    H.add_edge("new1", "new2")
    assert nx.utils.graphs_equal(G, before)


@settings(max_examples=40)
@given(G=graphs(), first=target_lists, second=target_lists)
def test_intervene_twice_equals_once_with_union(G, first, second):
    twice = intervene(intervene(G, first), second)
    once = intervene(G, set(first) | set(second))
    assert nx.utils.graphs_equal(twice, once)


def test_intervene_single_symbol_and_absent_target():
    G = nx.DiGraph([("A", "B", {"weight": 2.0}), ("B", "C", {"weight": -1.0}), ("C", "B", {})])
    H = intervene(G, "B")
    assert edge_dict(H) == {("B", "C"): {"weight": -1.0}}
    assert set(H) == {"A", "B", "C"}
    assert nx.utils.graphs_equal(intervene(G, "ZZZ"), G)
    assert nx.utils.graphs_equal(intervene(G, []), G)
    # A string target is one gene, not its letters.
    G2 = nx.DiGraph([("A", "AB"), ("B", "A")])
    assert set(intervene(G2, "AB").edges) == {("B", "A")}


def test_intervene_rejects_undirected_and_multigraphs():
    with pytest.raises(NetworkError, match="DiGraph"):
        intervene(nx.Graph([("A", "B")]), "A")
    with pytest.raises(NetworkError, match="MultiDiGraph"):
        intervene(nx.MultiDiGraph([("A", "B")]), "B")


def test_intervene_on_pgmpy_dag_keeps_attributes_and_latents():
    dag = DAG([("X", "A"), ("A", "Y"), ("A", "B")], latents={"X"})
    nx.set_edge_attributes(dag, {("X", "A"): 0.5, ("A", "Y"): -2.0, ("A", "B"): 1.0}, "weight")
    dag.edges["A", "Y"]["evidence"] = "chip"
    H = intervene(dag, ["A"])
    assert isinstance(H, DAG)
    assert set(H.edges) == set(dag.do(["A"]).edges)
    assert edge_dict(H) == {
        ("A", "Y"): {"weight": -2.0, "evidence": "chip"},
        ("A", "B"): {"weight": 1.0},
    }
    assert H.latents == {"X"}
    assert H.nodes["X"]["roles"] is not dag.nodes["X"]["roles"]
    assert dag.has_edge("X", "A")  # input untouched


@settings(max_examples=30)
@given(G=graphs(acyclic=True), targets=target_lists)
def test_intervene_pgmpy_dag_matches_networkx(G, targets):
    dag = to_pgmpy(G)
    H = intervene(dag, targets)
    assert isinstance(H, DAG)
    assert nx.utils.graphs_equal(from_pgmpy(H), intervene(G, targets))


# ---------------------------------------------------------------------------
# pgmpy round trip and cycles
# ---------------------------------------------------------------------------


def test_pgmpy_round_trip_keeps_attributes():
    G = nx.DiGraph(source="test")
    G.add_edge("A", "B", weight=0.5, evidence="chip")
    G.add_edge("B", "C", weight=-1.0)
    G.add_edge("A", "C")
    G.add_node("D", kind="tf", roles={"exposures", "latents"})
    before = copy.deepcopy(G)
    dag = to_pgmpy(G)
    assert isinstance(dag, DAG)
    assert dag.latents == {"D"}
    assert dag.get_role("exposures") == ["D"]
    assert dag.edges["A", "B"] == {"weight": 0.5, "evidence": "chip"}
    back = from_pgmpy(dag)
    assert type(back) is nx.DiGraph
    assert nx.utils.graphs_equal(back, G)
    assert nx.utils.graphs_equal(G, before)
    back.nodes["D"]["roles"].add("outcomes")
    dag.outcomes = {"A"}  # pgmpy mutates role sets in place
    assert G.nodes["D"]["roles"] == {"exposures", "latents"}  # node attributes not shared
    assert dag.outcomes == {"A"}


def test_from_pgmpy_drops_none_weights():
    dag = DAG()
    dag.add_edge("A", "B")  # pgmpy stores weight=None
    dag.add_edge("B", "C", weight=2.0)
    G = from_pgmpy(dag)
    assert edge_dict(G) == {("A", "B"): {}, ("B", "C"): {"weight": 2.0}}
    np.testing.assert_array_equal(
        to_adjacency(dag, ["A", "B", "C"]).toarray(), to_adjacency(G, ["A", "B", "C"]).toarray()
    )


def test_to_pgmpy_cycle_error_names_the_cycle():
    G = nx.DiGraph([("A", "B"), ("B", "C"), ("C", "A"), ("C", "D")])
    with pytest.raises(NetworkError) as err:
        to_pgmpy(G)
    assert "A -> B -> C -> A" in str(err.value)
    assert "Remove one edge" in str(err.value)
    assert "causalcell models" in str(err.value)
    assert err.value.cycle == [("A", "B"), ("B", "C"), ("C", "A")]


def test_find_cycle_edges():
    assert find_cycle_edges(nx.DiGraph([("A", "B"), ("A", "C")])) is None
    assert find_cycle_edges(nx.DiGraph([("A", "A")])) == [("A", "A")]
    cycle = find_cycle_edges(nx.DiGraph([("X", "A"), ("A", "B"), ("B", "A")]))
    assert sorted(cycle) == [("A", "B"), ("B", "A")]
    with pytest.raises(NetworkError) as err:
        to_pgmpy(nx.DiGraph([("A", "A")]))
    assert "A -> A" in str(err.value)
    assert err.value.cycle == [("A", "A")]
