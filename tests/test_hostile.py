"""The hostile-input corpus: inputs a user can get wrong, and what causalcell must do.

Every case builds fresh inputs, calls one public function (or the command
line) and asserts

- the exact exception class (a subclass of ``CausalCellError``: a foreign
  exception type fails the case, it does not match) and the key words of its
  message (the column, parameter, flag, side or file at fault, and the fix);
- that every input object is unchanged: a deep comparison of X, obs, var,
  uns, layers, obsm and varm of each AnnData (values, dtypes, index), of the
  nodes, edges and attributes of each graph, of DataFrames and arrays, and of
  the bytes of each input file (:func:`freeze`, :func:`assert_same`).

A few cases are warnings (raw counts, scales that differ, a label that
matches a gene up to case): the same checks with the warning class.

The corpus spans the data contract, the kinds of X (integer, float32,
sparse with explicit NaN, backed dense and CSR files, Dask dense and sparse
blocks), networks, models, model files, evaluation and the CLI. Keep it
fast: the data are tiny.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import causalcell as cc
from causalcell import cli
from causalcell.data.lazy import is_backed, is_dask_array
from causalcell.errors import (
    CausalCellError,
    DataContractError,
    DataFileError,
    ExpressionScaleWarning,
    NetworkError,
    NotFittedError,
    ParameterError,
    PredictionError,
    UnmeasuredTargetWarning,
)
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

LEVEL = "expression_level_after_perturbation"

# --------------------------------------------------------------------------- data
# Tiny: 110 cells x 12 genes, knockdowns of 3 TFs, 5 other genes and 2 combinations.
SIM = cc.datasets.simulate(n_genes=12, n_tfs=3, n_cells_per_perturbation=8,
                           n_control_cells=30, n_combinations=2, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    FITTED = ConditionalGRNRegressor().fit(SIM.adata, SIM.network)
    PREDICTED = MeanBaseline().fit(SIM.adata).predict(SIM.truth.obs)
FIRST_PERTURBED = int(np.flatnonzero(~SIM.adata.obs["is_control"].to_numpy())[0])
FAST = {"retrieval": False, "top_k": [3]}  # evaluate() options that keep cases quick


def data() -> ad.AnnData:
    """A fresh copy of the simulated cells (log-normalized float32 X, counts layer)."""
    return SIM.adata.copy()


def network() -> nx.DiGraph:
    return SIM.network.copy()


def predicted() -> ad.AnnData:
    return PREDICTED.copy()


def with_obs(column: str, values: Any, rows: Any = None) -> Callable[[ad.AnnData], ad.AnnData]:
    """A mutation setting obs[column] (on ``rows`` only, as objects) or deleting it (None)."""

    def mutate(adata: ad.AnnData) -> ad.AnnData:
        if values is None:
            del adata.obs[column]
        elif rows is None:
            adata.obs[column] = values
        else:
            col = adata.obs[column].astype(object).to_numpy().copy()
            col[rows] = values
            adata.obs[column] = col
        return adata

    return mutate


def with_x(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[ad.AnnData], ad.AnnData]:
    def mutate(adata: ad.AnnData) -> ad.AnnData:
        adata.X = change(np.asarray(adata.X).copy())
        return adata

    return mutate


def with_var_names(change: Callable[[list], list]) -> Callable[[ad.AnnData], ad.AnnData]:
    def mutate(adata: ad.AnnData) -> ad.AnnData:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata warns about a non-str index
            adata.var_names = pd.Index(change(list(adata.var_names)))
        return adata

    return mutate


def _nan(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float32)
    X[FIRST_PERTURBED + 1, 3] = np.nan
    return X


def _inf(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float32)
    X[5, 2] = np.inf
    return X


def _single_rows() -> np.ndarray:
    labels = SIM.adata.obs["perturbation"].astype(str)
    return np.flatnonzero(~SIM.adata.obs["is_control"].to_numpy()
                          & ~labels.str.contains(",").to_numpy())


def _combination_row() -> int:
    return int(np.flatnonzero(SIM.adata.obs["perturbation"].astype(str).str.contains(","))[0])


# Mutations of the contract: name -> (mutation, exception class, key words).
CONTRACT: dict[str, tuple[Callable[[ad.AnnData], ad.AnnData], type, tuple[str, ...]]] = {
    "X_nan": (with_x(_nan), DataContractError, ("NaN or infinite", "row")),
    "X_inf": (with_x(_inf), DataContractError, ("NaN or infinite",)),
    "X_complex": (with_x(lambda X: X.astype(np.complex128) + 1j), DataContractError,
                  ("complex128", "real numbers")),
    "X_object": (with_x(lambda X: X.astype(object)), DataContractError,
                 ("dtype object", "astype")),
    "X_bool": (with_x(lambda X: X > 1), DataContractError, ("dtype bool", "real numbers")),
    "X_text": (with_x(lambda X: X.astype(str)), DataContractError, ("real numbers",)),
    "no_perturbation_column": (with_obs("perturbation", None), DataContractError,
                               ("missing the column", "perturbation")),
    "no_is_control_column": (with_obs("is_control", None), DataContractError,
                             ("missing the column", "is_control")),
    "no_type_column": (with_obs("perturbation_type", None), DataContractError,
                       ("missing the column", "perturbation_type")),
    "is_control_text": (with_obs("is_control", "yes"), DataContractError,
                        ("is_control", "boolean")),
    "is_control_missing": (with_obs("is_control", None, rows=[0]), DataContractError,
                           ("is_control", "missing")),
    "label_missing": (with_obs("perturbation", np.nan, rows=[FIRST_PERTURBED]),
                      DataContractError, ("perturbation", "missing in row")),
    "label_empty": (with_obs("perturbation", " , ", rows=[FIRST_PERTURBED]),
                    DataContractError, ("names no gene",)),
    "label_gene_twice": (with_obs("perturbation", "TF01,TF01", rows=[FIRST_PERTURBED]),
                         DataContractError, ("names a gene twice",)),
    "kind_missing": (with_obs("perturbation_type", np.nan, rows=[FIRST_PERTURBED]),
                     DataContractError, ("perturbation_type", "missing in row")),
    "level_count": (with_obs(LEVEL, "0.1,0.2", rows=[FIRST_PERTURBED]), DataContractError,
                    ("2 level(s)", "targets 1 gene")),
    "level_text": (with_obs(LEVEL, "high", rows=[FIRST_PERTURBED]), DataContractError,
                   ("'high'", "not a number")),
    "level_inf_text": (with_obs(LEVEL, "inf", rows=[FIRST_PERTURBED]), DataContractError,
                       ("'inf'", "infinite", "finite number")),
    "level_minus_infinity": (with_obs(LEVEL, "-Infinity", rows=[FIRST_PERTURBED]),
                             DataContractError, ("infinite",)),
    "level_inf_float": (
        lambda a: with_obs(LEVEL, np.inf, rows=[FIRST_PERTURBED])(
            with_obs(LEVEL, np.nan)(a[_single_rows().tolist() + list(range(30))].copy())),
        DataContractError, ("holds inf", "infinite")),
    "level_inf_combination": (with_obs(LEVEL, "0.5,inf", rows=[_combination_row()]),
                              DataContractError, ("infinite",)),
    "var_padded": (with_var_names(lambda v: [v[0] + " ", *v[1:]]), DataContractError,
                   ("white space", "'TF01 '", "strip")),
    "var_duplicated": (with_var_names(lambda v: [v[1], *v[1:]]), DataContractError,
                       ("not unique", "var_names_make_unique")),
    "var_integers": (with_var_names(lambda v: list(range(len(v)))), DataContractError,
                     ("not all strings",)),
    "var_empty_name": (with_var_names(lambda v: ["", *v[1:]]), DataContractError,
                       ("empty name",)),
    "no_samples": (lambda a: a[:0].copy(), DataContractError, ("no samples", "0 rows")),
    "no_genes": (lambda a: a[:, :0].copy(), DataContractError, ("no genes",)),
}
CONTRACT_CALLS: dict[str, Callable[[ad.AnnData], Any]] = {
    "validate": lambda adata: cc.data.validate(adata),
    "fit": lambda adata: ConditionalGRNRegressor().fit(adata, network()),
    "evaluate_observed": lambda adata: cc.evaluate.evaluate(predicted(), adata, **FAST),
}


# --------------------------------------------------------------------------- X kinds
def as_kind(adata: ad.AnnData, kind: str, tmp: Path) -> ad.AnnData:
    """``adata`` with X stored as ``kind`` (files are written under ``tmp``)."""
    if kind == "float32":
        adata.X = np.asarray(adata.X, dtype=np.float32)
    elif kind == "int":
        adata.X = np.rint(np.nan_to_num(np.asarray(adata.X, dtype=np.float64))).astype(np.int64)
    elif kind == "csr_explicit":
        X = np.asarray(adata.X, dtype=np.float64)
        adata.X = sp.csr_matrix((X.ravel(), (np.repeat(np.arange(X.shape[0]), X.shape[1]),
                                             np.tile(np.arange(X.shape[1]), X.shape[0]))),
                                shape=X.shape)  # every value stored, NaN included
    elif kind in ("backed_dense", "backed_csr", "dask_dense", "dask_csr"):
        if kind.endswith("csr"):
            adata.X = sp.csr_matrix(np.asarray(adata.X))
        path = tmp / f"{kind}-{len(list(tmp.iterdir()))}.h5ad"
        adata.write_h5ad(path)
        if kind.startswith("backed"):
            return cc.data.read_h5ad(path, backed=True)
        return cc.data.read_lazy(path, chunk_rows=40)
    return adata


KINDS = ("float32", "int", "csr_explicit", "backed_dense", "backed_csr", "dask_dense",
         "dask_csr")
# Mutations that every kind of X can hold, and the calls made on each kind.
KIND_MUTATIONS = ("X_nan", "var_padded", "no_type_column", "level_inf_text")
KIND_CALLS: dict[str, Callable[[ad.AnnData], Any]] = {
    "validate": lambda adata: cc.data.validate(adata),
    "fit": lambda adata: ConditionalGRNRegressor().fit(adata, network()),
    "pseudobulk": lambda adata: cc.data.pseudobulk(adata),
    "mean_baseline": lambda adata: MeanBaseline().fit(adata),
}


# --------------------------------------------------------------------------- snapshots
def _file_state(path: Path) -> Any:
    if path.is_dir():
        return ("dir", sorted((p.name, _file_state(p)) for p in path.iterdir()))
    if path.exists():
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return ("absent",)


def _matrix(X: Any) -> Any:
    """A matrix as an independent in-memory copy (computed / read when lazy or backed)."""
    if X is None:
        return None
    if is_dask_array(X):
        return ("dask", X.chunks, _matrix(X.compute()))
    if is_backed(X):
        return ("backed", _matrix(X.to_memory() if hasattr(X, "to_memory") else X[...]))
    if sp.issparse(X):
        X = X.copy()
        return ("sparse", X.format, X.dtype, X.shape, X.data, X.indices, X.indptr)
    return np.array(X, copy=True)


def freeze(obj: Any) -> Any:
    """A deep, independent record of an input, to compare after a call (:func:`assert_same`)."""
    if isinstance(obj, ad.AnnData):
        state = {
            "X": _matrix(obj.X),
            "obs": obj.obs.copy(deep=True),
            "var": obj.var.copy(deep=True),
            "uns": copy.deepcopy(dict(obj.uns)),
            "layers": {k: _matrix(v) for k, v in obj.layers.items()},
            "obsm": {k: _matrix(v) for k, v in obj.obsm.items()},
            "varm": {k: _matrix(v) for k, v in obj.varm.items()},
        }
        if obj.isbacked:
            state["file"] = _file_state(Path(obj.filename))
        return ("AnnData", state)
    if isinstance(obj, nx.Graph):
        return ("graph", type(obj), copy.deepcopy(dict(obj.graph)),
                [(n, copy.deepcopy(d)) for n, d in obj.nodes(data=True)],
                [(u, v, copy.deepcopy(d)) for u, v, d in obj.edges(data=True)])
    if isinstance(obj, pd.DataFrame | pd.Series | pd.Index):
        return obj.copy(deep=True)
    if isinstance(obj, np.ndarray) or sp.issparse(obj):
        return _matrix(obj)
    if isinstance(obj, Path):
        return ("path", obj, _file_state(obj))
    return copy.deepcopy(obj)


def assert_same(before: Any, after: Any, where: str = "input") -> None:
    """Deep equality of two :func:`freeze` records (NaN equals NaN, dtypes must match)."""
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(before, after, check_exact=True, obj=where)
    elif isinstance(before, pd.Series):
        pd.testing.assert_series_equal(before, after, check_exact=True, obj=where)
    elif isinstance(before, pd.Index):
        pd.testing.assert_index_equal(before, after, exact=True, obj=where)
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray), where
        assert (before.dtype, before.shape) == (after.dtype, after.shape), where
        np.testing.assert_array_equal(before, after, err_msg=where, strict=True)
    elif isinstance(before, Mapping):
        assert isinstance(after, Mapping), where
        assert list(before) == list(after), where
        for key in before:
            assert_same(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, list | tuple):
        assert type(before) is type(after), where
        assert len(before) == len(after), where
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_same(b, a, f"{where}[{i}]")
    elif isinstance(before, float) and np.isnan(before):
        assert isinstance(after, float), where
        assert np.isnan(after), where
    else:
        assert type(before) is type(after), where
        assert before == after, where


def test_assert_same_sees_every_change():
    """The comparison is not vacuous: each kind of change to an input is caught."""
    changes: list[Callable[[Any], None]] = [
        lambda a: a.X.__setitem__((0, 0), 99.0),
        lambda a: a.obs.__setitem__("perturbation", "x"),
        lambda a: a.var.__setitem__("is_tf", False),
        lambda a: a.uns["simulation"].__setitem__("random_state", 7),
        lambda a: a.layers["counts"].__setitem__((0, 0), 1),
        lambda a: a.obsm.__setitem__("new", np.zeros((a.n_obs, 1))),
        lambda a: setattr(a, "obs", a.obs.astype({"total_counts": float})),
    ]
    for change in changes:
        adata = data()
        before = freeze(adata)
        change(adata)
        with pytest.raises(AssertionError):
            assert_same(before, freeze(adata))
    graph = network()
    before = freeze(graph)
    u, v = next(iter(graph.edges))
    graph.edges[u, v]["weight"] = 123.0
    with pytest.raises(AssertionError):
        assert_same(before, freeze(graph))
    frame = pd.DataFrame({"w": [1.0, np.nan]})
    before = freeze(frame)
    frame.loc[1, "w"] = 1.0
    with pytest.raises(AssertionError):
        assert_same(before, freeze(frame))


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One hostile input: ``call(**inputs(tmp))`` must raise (or warn) ``expected``."""

    inputs: Callable[[Path], dict[str, Any]]
    call: Callable[..., Any]
    expected: type
    words: tuple[str, ...] = ()
    absent: tuple[str, ...] = field(default=())  # words the message must not hold


CASES: dict[str, Case] = {}


def case(name: str, inputs: Callable[[Path], dict[str, Any]], call: Callable[..., Any],
         expected: type, *words: str, absent: tuple[str, ...] = ()) -> None:
    assert name not in CASES, name
    CASES[name] = Case(inputs, call, expected, tuple(words), absent)


# -- the contract, through the three entry points that read it
for _mut_name, (_mutate, _error, _words) in CONTRACT.items():
    for _call_name, _call in CONTRACT_CALLS.items():
        case(f"contract-{_mut_name}-{_call_name}",
             lambda tmp, m=_mutate: {"adata": m(data())}, _call, _error, *_words)

# -- the kinds of X
for _kind in KINDS:
    for _mut_name in KIND_MUTATIONS:
        if _kind == "int" and _mut_name == "X_nan":
            continue  # integers hold no NaN
        _mutate, _error, _words = CONTRACT[_mut_name]
        for _call_name, _call in KIND_CALLS.items():
            if _mut_name == "var_padded" and _call_name == "pseudobulk":
                continue  # pseudobulk does not compare genes with anything
            _words_here = ("NaN or infinite",) if _mut_name == "X_nan" else _words
            case(f"kind-{_kind}-{_mut_name}-{_call_name}",
                 lambda tmp, m=_mutate, k=_kind: {"adata": as_kind(m(data()), k, tmp)},
                 _call, _error, *_words_here)


def _not_anndata(call: Callable[[Any], Any], name: str, value: Any, error: type,
                 *words: str) -> None:
    case(name, lambda tmp, v=value: {"adata": v}, call, error, *words)


_not_anndata(lambda adata: cc.data.validate(adata), "contract-validate-dataframe",
             pd.DataFrame({"a": [1]}), DataContractError, "AnnData", "DataFrame")
_not_anndata(lambda adata: ConditionalGRNRegressor().fit(adata), "contract-fit-none", None,
             DataContractError, "AnnData", "NoneType")
_not_anndata(lambda adata: MeanBaseline().fit(adata), "contract-baseline-array",
             np.zeros((3, 3)), DataContractError, "AnnData", "ndarray")
case("contract-missing-layer", lambda tmp: {"adata": data()},
     lambda adata: cc.data.validate(adata, layer="logcounts"), DataContractError,
     "'logcounts' not found", "counts")
case("contract-layer-not-a-name", lambda tmp: {"adata": data()},
     lambda adata: cc.data.pseudobulk(adata, layer=5), DataContractError, "layer=5")
case("contract-no-x", lambda tmp: {"adata": ad.AnnData(obs=data().obs, var=data().var)},
     lambda adata: cc.data.validate(adata), DataContractError, "no X")
case("contract-n-cells-negative",
     lambda tmp: {"adata": with_obs("n_cells", -1)(cc.data.pseudobulk(data()))},
     lambda adata: MeanBaseline().fit(adata), DataContractError, "n_cells", "non-negative")
case("contract-interventions-empty-obs", lambda tmp: {"obs": data().obs.iloc[:0]},
     lambda obs: cc.Interventions.from_obs(obs, ["TF01"]), DataContractError, "0 rows")
case("contract-targeted-gene-case", lambda tmp: {"adata": data()},
     lambda adata: cc.Interventions.from_adata(adata).targeted("tf01"), DataContractError,
     "'tf01'", "did you mean TF01?")
case("contract-split-too-large", lambda tmp: {"adata": data()},
     lambda adata: cc.data.split_by_perturbation(adata, test_size=1.5), DataContractError,
     "test_size")
case("contract-standardize-unknown", lambda tmp: {"adata": data()},
     lambda adata: cc.data.standardize(adata, "nope"), DataContractError,
     "Unknown convention 'nope'")
case("contract-backed-csc",
     lambda tmp: {"adata": _backed_csc(tmp)},
     lambda adata: cc.data.pseudobulk(adata), DataContractError, "CSC", "to_memory()")


def _backed_csc(tmp: Path) -> ad.AnnData:
    adata = data()
    adata.X = sp.csc_matrix(np.asarray(adata.X))
    path = tmp / "csc.h5ad"
    adata.write_h5ad(path)
    return cc.data.read_h5ad(path, backed=True)


# -- networks
def _edges(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"regulator": ["TF01", "TF02"], "target": ["G001", "G002"],
                         "weight": [1.0, -1.0]} | columns)


def _relabel(mapping: Callable[[str], Any]) -> nx.DiGraph:
    return nx.relabel_nodes(network(), {n: mapping(n) for n in SIM.network.nodes})


case("network-read-int", lambda tmp: {}, lambda: cc.graph.read_network(42), ParameterError,
     "source=42", "DataFrame")
case("network-read-none", lambda tmp: {}, lambda: cc.graph.read_network(None),
     ParameterError, "source=None")
case("network-read-missing-file", lambda tmp: {"path": tmp / "nope.csv"},
     lambda path: cc.graph.read_network(path), DataFileError, "not found", "nope.csv")
case("network-read-directory", lambda tmp: {"path": tmp},
     lambda path: cc.graph.read_network(path), DataFileError, "not a file")
case("network-read-unknown-extension", lambda tmp: {"path": _write(tmp / "n.xyz", "a,b\n")},
     lambda path: cc.graph.read_network(path), DataFileError, "extension", "sep=")
case("network-read-binary-garbage",
     lambda tmp: {"path": _write(tmp / "n.csv.gz", "not gzip at all")},
     lambda path: cc.graph.read_network(path), DataFileError, "cannot read")
case("network-frame-no-target", lambda tmp: {"frame": _edges().drop(columns="target")},
     lambda frame: cc.graph.read_network(frame), NetworkError, "no target column")
case("network-frame-empty-gene", lambda tmp: {"frame": _edges(target=["G001", " "])},
     lambda frame: cc.graph.read_network(frame), NetworkError, "empty 'target'")
case("network-frame-text-weight", lambda tmp: {"frame": _edges(weight=["1", "strong"])},
     lambda frame: cc.graph.read_network(frame), NetworkError, "non-numeric weight",
     "'strong'")
case("network-frame-inf-weight", lambda tmp: {"frame": _edges(weight=[1.0, np.inf])},
     lambda frame: cc.graph.read_network(frame), NetworkError, "non-finite weight")
case("fit-network-padded-node",
     lambda tmp: {"adata": data(), "G": _relabel(lambda n: n + " " if n == "TF01" else n)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "white space", "'TF01 '", "relabel_nodes")
case("fit-network-integer-nodes", lambda tmp: {"adata": data(), "G": _relabel(hash)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "not all strings", "int")
case("fit-network-lower-case",
     lambda tmp: {"adata": data(), "G": _relabel(str.lower)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "shares no gene", "did you mean")
case("fit-network-undirected",
     lambda tmp: {"adata": data(), "G": nx.Graph(SIM.network)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "networkx.DiGraph", "Graph")
case("fit-network-multigraph",
     lambda tmp: {"adata": data(), "G": nx.MultiDiGraph(SIM.network)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError, "MultiDiGraph")
case("fit-network-edge-list",
     lambda tmp: {"adata": data(), "G": list(SIM.network.edges)},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "networkx.DiGraph", "list")
case("fit-network-self-loops-only",
     lambda tmp: {"adata": data(), "G": nx.DiGraph([("TF01", "TF01"), ("X", "Y")])},
     lambda adata, G: ConditionalGRNRegressor().fit(adata, G), NetworkError,
     "No edge of the network joins two different measured genes")
case("intervene-none", lambda tmp: {"G": network()}, lambda G: cc.graph.intervene(G, None),
     ParameterError, "targets=None")
case("intervene-unhashable", lambda tmp: {"G": network()},
     lambda G: cc.graph.intervene(G, [["TF01"]]), ParameterError, "['TF01']", "list")
case("intervene-undirected", lambda tmp: {"G": nx.Graph(SIM.network)},
     lambda G: cc.graph.intervene(G, "TF01"), NetworkError, "networkx.DiGraph")
case("adjacency-duplicated-genes", lambda tmp: {"G": network()},
     lambda G: cc.graph.to_adjacency(G, ["TF01", "TF01"]), NetworkError, "duplicated")
case("adjacency-text-weight", lambda tmp: {"G": nx.DiGraph([("A", "B", {"weight": "x"})])},
     lambda G: cc.graph.to_adjacency(G, ["A", "B"]), NetworkError, "non-numeric weight")
case("pgmpy-cycle", lambda tmp: {"G": nx.DiGraph([("A", "B"), ("B", "A")])},
     lambda G: cc.graph.to_pgmpy(G), NetworkError, "cycle", "A -> B -> A")
case("write-network-extension", lambda tmp: {"G": network(), "path": tmp / "net.xyz"},
     lambda G, path: cc.graph.write_network(G, path), DataFileError, "extension")
case("write-network-missing-directory",
     lambda tmp: {"G": network(), "path": tmp / "no" / "net.csv"},
     lambda G, path: cc.graph.write_network(G, path), DataFileError, "does not exist")
case("network-frame-text-weight-graph",
     lambda tmp: {"G": nx.DiGraph([("A", "B", {"weight": [1, 2]})])},
     lambda G: cc.graph.network_to_frame(G), NetworkError, "scalars")
case("learn-network-bad-method", lambda tmp: {"adata": data()},
     lambda adata: cc.graph.learn_network(adata, method="magic"), ParameterError,
     "method='magic'")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- model parameters and predictions
def _fit_with(**params: Any) -> Callable[..., Any]:
    return lambda adata: ConditionalGRNRegressor(**params).fit(adata, network())


for _name, _params, _words in [
    ("regressor-unknown", {"regressor": "magic"}, ("regressor='magic'",)),
    ("regressor-object", {"regressor": object()}, ("regressor", "object")),
    ("alpha-negative", {"alpha": -1.0}, ("alpha", ">= 0")),
    ("alpha-text", {"alpha": "evil"}, ("alpha", "'evil'")),
    ("alpha-nan", {"alpha": float("nan")}, ("alpha",)),
    ("alphas-empty", {"alpha": "gcv", "alphas": []}, ("alphas",)),
    ("lasso-alpha-zero", {"regressor": "lasso", "alpha": 0.0}, ("alpha > 0",)),
    ("max-iter-zero", {"max_iter": 0}, ("max_iter",)),
    ("tol-zero", {"tol": 0.0}, ("tol",)),
    ("layer-number", {"layer": 5}, ("layer=5",)),
    ("regulators-numbers", {"regulators": [1, 2]}, ("regulators",)),
    ("regulators-unknown", {"regulators": ["NOPE"]}, ("regulators", "measured")),
    ("n-jobs-zero", {"n_jobs": 0}, ("n_jobs=0",)),
    ("verbose-text", {"verbose": "yes"}, ("verbose",)),
]:
    case(f"model-param-{_name}", lambda tmp: {"adata": data()}, _fit_with(**_params),
         ParameterError, *_words)

for _model, _name, _words in [
    (MeanBaseline(over="cells"), "mean-over", ("over='cells'",)),
    (TargetOnlyBaseline(start="zero"), "target-start", ("start='zero'",)),
    (LinearEmbeddingBaseline(n_components=0), "embedding-components", ("n_components=0",)),
    (LinearEmbeddingBaseline(ridge=-1.0), "embedding-ridge", ("ridge=-1.0",)),
    (ControlBaseline(layer=3), "control-layer", ("layer=3",)),
]:
    case(f"model-param-{_name}", lambda tmp: {"adata": data()},
         lambda adata, m=_model: m.fit(adata), ParameterError, *_words)


def _request(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"perturbation": ["TF01"], "is_control": [False],
                         "perturbation_type": ["knockout"]} | columns, index=["q1"])


case("predict-before-fit", lambda tmp: {"request": _request()},
     lambda request: ConditionalGRNRegressor().predict(request), NotFittedError,
     "not fitted", "fit(")
case("predict-unknown-gene", lambda tmp: {"request": _request(perturbation=["tf01"])},
     lambda request: FITTED.predict(request), PredictionError, "tf01",
     "did you mean TF01?")
case("predict-level-inf",
     lambda tmp: {"request": _request(perturbation_type=["knockdown"], **{LEVEL: ["inf"]})},
     lambda request: FITTED.predict(request), DataContractError, "infinite")
case("predict-level-unknown-unseen",
     lambda tmp: {"request": _request(perturbation=["G009"], perturbation_type=["knockdown"])},
     lambda request: FITTED.predict(request), PredictionError, "G009", "level T")
case("predict-steps-negative", lambda tmp: {"request": _request()},
     lambda request: FITTED.predict(request, steps=-1), ParameterError, "steps")
case("predict-start-shape", lambda tmp: {"request": _request(), "start": np.zeros(3)},
     lambda request, start: FITTED.predict(request, start=start), ParameterError,
     "start must have shape")
case("predict-start-nan", lambda tmp: {"request": _request(), "start": np.full(12, np.nan)},
     lambda request, start: FITTED.predict(request, start=start), ParameterError, "NaN")
case("predict-start-cells-missing-genes",
     lambda tmp: {"request": _request(), "cells": data()[:, :5].copy()},
     lambda request, cells: FITTED.predict(request, start=cells), ParameterError,
     "start cells lack")
case("predict-request-list", lambda tmp: {"request": ["TF01"]},
     lambda request: FITTED.predict(request), PredictionError, "AnnData or a DataFrame")
case("predict-request-empty", lambda tmp: {"request": _request().iloc[:0]},
     lambda request: FITTED.predict(request), DataContractError, "0 rows")
case("predict-request-no-kind", lambda tmp: {"request": _request().drop(
    columns="perturbation_type")}, lambda request: FITTED.predict(request),
    DataContractError, "perturbation_type")
case("baseline-no-controls",
     lambda tmp: {"adata": data()[~SIM.adata.obs["is_control"].to_numpy()].copy()},
     lambda adata: ControlBaseline().fit(adata), DataContractError, "No control sample")
case("baseline-only-controls",
     lambda tmp: {"adata": data()[SIM.adata.obs["is_control"].to_numpy()].copy()},
     lambda adata: MeanBaseline().fit(adata), DataContractError, "no perturbed sample")
case("fit-lasso-backed", lambda tmp: {"adata": as_kind(data(), "backed_dense", tmp)},
     lambda adata: ConditionalGRNRegressor("lasso", alpha=0.01).fit(adata, network()),
     ParameterError, "out of core", "to_memory()")
case("edistance-backed-all-cells", lambda tmp: {"adata": as_kind(data(), "backed_csr", tmp)},
     lambda adata: cc.evaluate.edistance(predicted(), adata), DataContractError,
     "out of core", "to_memory()", "max_cells")

# -- saving and loading models
case("save-before-fit", lambda tmp: {"path": tmp / "m.npz"},
     lambda path: ConditionalGRNRegressor().save(path), NotFittedError, "not fitted")
case("save-onto-directory", lambda tmp: {"path": _mkdir(tmp / "m.npz")},
     lambda path: FITTED.save(path), DataFileError, "is a directory", "model.npz")
case("save-into-directory", lambda tmp: {"path": tmp},
     lambda path: FITTED.save(path), DataFileError, "is a directory")
case("save-missing-directory", lambda tmp: {"path": tmp / "no" / "m.npz"},
     lambda path: FITTED.save(path), DataFileError, "does not exist")
case("save-baseline-onto-directory", lambda tmp: {"path": _mkdir(tmp / "b.npz")},
     lambda path: MeanBaseline().fit(SIM.adata).save(path), DataFileError, "is a directory")
case("save-nonlinear", lambda tmp: {"path": tmp / "m.npz"},
     lambda path: _nonlinear().save(path), ParameterError, "pickle")


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _nonlinear() -> ConditionalGRNRegressor:
    from sklearn.tree import DecisionTreeRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ConditionalGRNRegressor(DecisionTreeRegressor(max_depth=2)).fit(
            SIM.adata, SIM.network)


def _saved(model: Any, tmp: Path, name: str) -> dict[str, np.ndarray]:
    path = model.save(tmp / f"{name}-good.npz")
    with np.load(path, allow_pickle=False) as stored:
        return {k: stored[k] for k in stored.files}


def _tampered(model: Any, change: Callable[[dict[str, np.ndarray]], None]
              ) -> Callable[[Path], dict[str, Any]]:
    """Inputs: the path of ``model`` saved and then edited by ``change``."""

    def inputs(tmp: Path) -> dict[str, Any]:
        arrays = _saved(model, tmp, type(model).__name__)
        change(arrays)
        path = tmp / "tampered.npz"
        np.savez(path, **arrays)
        return {"path": path}

    return inputs


def _header(edit: Callable[[dict], Any]) -> Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["__meta__"] = np.array(json.dumps(edit(json.loads(str(arrays["__meta__"])))))

    return change


def _param(name: str, value: Any) -> Callable[[dict], dict]:
    return lambda h: {**h, "params": {**h["params"], name: value}}


def _array(name: str, value: Callable[[np.ndarray], np.ndarray]
           ) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda arrays: arrays.__setitem__(name, value(arrays[name]))


_LOAD = {
    "conditional": (FITTED, ConditionalGRNRegressor.load),
    "mean": (MeanBaseline().fit(SIM.adata), MeanBaseline.load),
}
_FILE_CASES: list[tuple[str, str, Callable[[dict[str, np.ndarray]], None], tuple[str, ...]]] = [
    ("header-list", "conditional", _header(lambda h: [h]), ("JSON list",)),
    ("header-number", "mean", _header(lambda h: 3), ("JSON int",)),
    ("header-not-json", "conditional",
     lambda arrays: arrays.__setitem__("__meta__", np.array("{not json")), ("corrupt",)),
    ("header-numeric-array", "mean",
     lambda arrays: arrays.__setitem__("__meta__", np.arange(3)), ("not a JSON text",)),
    ("header-params-list", "conditional", _header(lambda h: {**h, "params": [1]}),
     ("'params'", "object")),
    ("header-meta-text", "conditional", _header(lambda h: {**h, "meta": "x"}), ("'meta'",)),
    ("header-version-text", "mean", _header(lambda h: {**h, "format_version": "1"}),
     ("'format_version'",)),
    ("header-format", "conditional", _header(lambda h: {**h, "format": "other"}),
     ("not a causalcell model",)),
    ("header-future-version", "mean", _header(lambda h: {**h, "format_version": 999}),
     ("format 999",)),
    ("param-alpha-evil", "conditional", _header(_param("alpha", "evil")),
     ("alpha", "'evil'", "invalid")),
    ("param-layer-number", "conditional", _header(_param("layer", 5)), ("layer=5",)),
    ("param-unknown", "conditional", _header(_param("exploit", 1)), ("['exploit']",)),
    ("param-over-evil", "mean", _header(_param("over", "evil")), ("over='evil'",)),
    ("intercept-text", "conditional", _array("intercept", lambda a: a.astype(str)),
     ("'intercept'", "float or integer")),
    ("intercept-short", "conditional", _array("intercept", lambda a: a[:3]),
     ("'intercept'", "shape (3,)", "(12,)")),
    ("coef-indices-out-of-range", "conditional", _array("coef_indices", lambda a: a + 100),
     ("malformed",)),
    ("coef-data-2d", "conditional", _array("coef_data", lambda a: a[:, None]),
     ("'coef_data'",)),
    ("genes-numbers", "conditional", _array("genes", lambda a: np.arange(len(a))),
     ("'genes'", "string")),
    ("genes-duplicated", "conditional", _array("genes", lambda a: np.r_[a[1:2], a[1:]]),
     ("not unique",)),
    ("genes-padded", "mean", _array("genes", lambda a: np.char.add(a, " ")), ("white space",)),
    ("array-missing", "conditional", lambda arrays: arrays.pop("coef_data"), ("coef_data",)),
    ("levels-length", "conditional", _array("levels_level", lambda a: a[:-1]),
     ("'levels_level'",)),
    ("n-samples-float", "conditional", _array("n_samples", lambda a: a + 0.5),
     ("'n_samples'", "integer")),
    ("mean-vector-short", "mean", _array("mean_", lambda a: a[:2]), ("'mean_'",)),
    ("class-other", "mean", _header(lambda h: {**h, "class": "ConditionalGRNRegressor"}),
     ("holds a ConditionalGRNRegressor", "not a MeanBaseline")),
]
for _name, _which, _change, _words in _FILE_CASES:
    _model, _load = _LOAD[_which]
    case(f"model-file-{_which}-{_name}", _tampered(_model, _change),
         lambda path, load=_load: load(path), DataFileError, *_words)

case("model-file-missing", lambda tmp: {"path": tmp / "none.npz"},
     lambda path: ConditionalGRNRegressor.load(path), DataFileError, "not found")
case("model-file-directory", lambda tmp: {"path": tmp},
     lambda path: ConditionalGRNRegressor.load(path), DataFileError, "not a readable")
case("model-file-text", lambda tmp: {"path": _write(tmp / "m.npz", "hello")},
     lambda path: MeanBaseline.load(path), DataFileError, "not a readable")
case("model-file-no-header",
     lambda tmp: {"path": _savez(tmp / "m.npz", genes=np.array(["A"]))},
     lambda path: ConditionalGRNRegressor.load(path), DataFileError, "not a causalcell model")
case("model-file-embedding-coef-shape",
     _tampered(LinearEmbeddingBaseline(n_components=2).fit(SIM.adata),
               _array("coef_", lambda a: np.zeros((3, 3)))),
     lambda path: LinearEmbeddingBaseline.load(path), DataFileError, "'coef_'")
case("model-file-target-levels-text",
     _tampered(TargetOnlyBaseline().fit(SIM.adata),
               _array("levels_level", lambda a: a.astype(str))),
     lambda path: TargetOnlyBaseline.load(path), DataFileError, "'levels_level'")


def _savez(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# -- evaluation
def _evaluate(**options: Any) -> Callable[..., Any]:
    return lambda pred, obs: cc.evaluate.evaluate(pred, obs, **(FAST | options))


def _pair(pred: Callable[[], Any] = predicted, obs: Callable[[], Any] = data
          ) -> Callable[[Path], dict[str, Any]]:
    return lambda tmp: {"pred": pred(), "obs": obs()}


def _pred_with(change: Callable[[ad.AnnData], ad.AnnData]) -> Callable[[], ad.AnnData]:
    return lambda: change(predicted())


case("evaluate-predicted-not-anndata", _pair(pred=lambda: PREDICTED.to_df()), _evaluate(),
     DataContractError, "predicted data must be an AnnData", "DataFrame")
case("evaluate-observed-not-anndata", _pair(obs=lambda: None), _evaluate(),
     DataContractError, "observed data must be an AnnData")
case("evaluate-predicted-missing-column",
     _pair(pred=_pred_with(with_obs("perturbation_type", None))), _evaluate(),
     DataContractError, "The predicted data", "perturbation_type")
case("evaluate-observed-missing-column",
     _pair(obs=lambda: with_obs("perturbation_type", None)(data())), _evaluate(),
     DataContractError, "The observed data", "perturbation_type")
case("evaluate-observed-is-control-text",
     _pair(obs=lambda: with_obs("is_control", "no")(data())), _evaluate(),
     DataContractError, "The observed data", "boolean")
case("evaluate-genes-differ", _pair(pred=lambda: PREDICTED[:, 2:].copy()), _evaluate(),
     DataContractError, "gene sets differ", "TF01", "join='inner'")
case("evaluate-genes-case", _pair(pred=lambda: _lower_genes(predicted())), _evaluate(),
     DataContractError, "gene sets differ", "did you mean")
case("evaluate-predicted-twice",
     _pair(pred=lambda: ad.concat([PREDICTED, PREDICTED[:2]], index_unique="-")),
     _evaluate(), DataContractError, "more than one row", "aggregate_predicted=True")
case("evaluate-predicted-nan",
     _pair(pred=_pred_with(with_x(lambda X: np.where(np.arange(12) == 3, np.nan, X)))),
     _evaluate(), DataContractError, "NaN or infinite", "predicted row")
case("evaluate-predicted-complex",
     _pair(pred=_pred_with(with_x(lambda X: X.astype(np.complex128)))), _evaluate(),
     DataContractError, "predicted data", "complex128")
case("evaluate-predicted-empty", _pair(pred=lambda: PREDICTED[:0].copy()), _evaluate(),
     DataContractError, "predicted data", "no samples")
case("evaluate-no-common-perturbation",
     _pair(pred=_pred_with(with_obs("perturbation_type", "overexpression"))),
     _evaluate(join="inner"), DataContractError, "No predicted perturbation")
case("evaluate-unobserved-exact",
     _pair(pred=_pred_with(with_obs("perturbation_type", "overexpression"))), _evaluate(),
     DataContractError, "not in the observed data", "join='inner'")
case("evaluate-control-label", _pair(), _evaluate(control_label="non-targeting"),
     DataContractError, "control_label='non-targeting'", "'control'")
case("evaluate-reference", _pair(), _evaluate(reference="zero"), ParameterError,
     "reference='zero'")
case("evaluate-join", _pair(), _evaluate(join="outer"), ParameterError, "join='outer'")
case("evaluate-de-method", _pair(), _evaluate(de_method="magic"), ParameterError,
     "de_method='magic'", absent=(" method='magic'",))
case("compare-de-method", _pair(),
     lambda pred, obs: cc.evaluate.compare({"mean": pred}, obs, de_method="magic"),
     ParameterError, "de_method='magic'")
case("evaluate-distance", _pair(), _evaluate(distance="hamming", retrieval=True),
     ParameterError, "hamming")
case("evaluate-exclude", _pair(), _evaluate(exclude="all"), ParameterError, "exclude='all'")
case("evaluate-observed-nan", _pair(obs=lambda: with_x(_nan)(data())), _evaluate(),
     DataContractError, "NaN or infinite")
case("evaluate-observed-backed-nan",
     lambda tmp: {"pred": predicted(), "obs": as_kind(with_x(_nan)(data()), "backed_csr", tmp)},
     _evaluate(), DataContractError, "NaN or infinite")
case("evaluate-observed-dask-nan",
     lambda tmp: {"pred": predicted(), "obs": as_kind(with_x(_nan)(data()), "dask_dense", tmp)},
     _evaluate(), DataContractError, "NaN or infinite")
case("evaluate-no-controls",
     _pair(obs=lambda: data()[~SIM.adata.obs["is_control"].to_numpy()].copy()),
     _evaluate(), DataContractError, "control")
case("compare-empty", _pair(), lambda pred, obs: cc.evaluate.compare({}, obs),
     ParameterError, "non-empty mapping")
case("compare-missing-baseline", _pair(),
     lambda pred, obs: cc.evaluate.compare({"model": pred}, obs), ParameterError,
     "baseline='mean'")
case("summarize-wrong-table", lambda tmp: {"table": pd.DataFrame({"a": [1]})},
     lambda table: cc.evaluate.summarize(table), ParameterError, "columns")
case("retrieval-exclusion", _pair(),
     lambda pred, obs: cc.evaluate.retrieval(pred, obs, exclude="some"), ParameterError,
     "'some'")
case("target-effect-no-controls",
     lambda tmp: {"adata": data()[~SIM.adata.obs["is_control"].to_numpy()].copy()},
     lambda adata: cc.evaluate.target_effect(adata), DataContractError, "control")
case("ceiling-splits", lambda tmp: {"adata": data()},
     lambda adata: cc.evaluate.replicate_ceiling(adata, n_splits=0), ParameterError,
     "n_splits=0")
case("de-method", lambda tmp: {"adata": data()},
     lambda adata: cc.evaluate.differential_expression(adata, method="magic"),
     ParameterError, "method='magic'")
case("de-pseudobulk", lambda tmp: {"adata": cc.data.pseudobulk(data())},
     lambda adata: cc.evaluate.differential_expression(adata), DataContractError, "n_cells")
case("cross-validate-folds", lambda tmp: {"adata": data()},
     lambda adata: cc.benchmark.cross_validate({"mean": MeanBaseline()}, adata, folds=1,
                                               verbose=False),
     ParameterError, "folds")


# -- parameters of the data, graph and evaluation functions
for _name, _call, _error, _words in [
    ("evaluate-top-k-text", _evaluate(top_k="x"), ParameterError, ("top_k='x'",)),
    ("evaluate-top-k-zero", _evaluate(top_k=[0]), ParameterError, ("top_k=[0]",)),
    ("evaluate-alpha-text", _evaluate(alpha="x"), ParameterError, ("alpha='x'",)),
    ("evaluate-alpha-above-one", _evaluate(alpha=2), ParameterError, ("alpha=2",)),
    ("compare-top-k-text",
     lambda pred, obs: cc.evaluate.compare({"mean": pred}, obs, top_k="x"), ParameterError,
     ("top_k='x'",)),
    ("compare-n-resamples", lambda pred, obs: cc.evaluate.compare({"mean": pred}, obs,
                                                                  n_resamples=0),
     ParameterError, ("n_resamples=0",)),
    ("compare-prediction-not-anndata", lambda pred, obs: cc.evaluate.compare({"mean": 5}, obs),
     DataContractError, ("predicted data must be an AnnData", "int")),
]:
    case(f"evaluate-param-{_name}", _pair(), _call, _error, *_words)

for _name, _call, _error, _words in [
    ("pseudobulk-groupby-number", lambda a: cc.data.pseudobulk(a, groupby=5), ParameterError,
     ("groupby=5",)),
    ("pseudobulk-groupby-missing", lambda a: cc.data.pseudobulk(a, groupby="batch"),
     DataContractError, ("'batch'", "not in obs")),
    ("pseudobulk-min-cells-text", lambda a: cc.data.pseudobulk(a, min_cells="x"),
     ParameterError, ("min_cells='x'",)),
    ("pseudobulk-min-cells-huge", lambda a: cc.data.pseudobulk(a, min_cells=10**6),
     DataContractError, ("min_cells=1000000",)),
    ("changes-min-cells-text", lambda a: cc.data.changes(a, min_cells=1.5), ParameterError,
     ("min_cells=1.5",)),
    ("target-effect-min-cells-text", lambda a: cc.evaluate.target_effect(a, min_cells="x"),
     ParameterError, ("min_cells='x'",)),
    ("split-test-size-text", lambda a: cc.data.split_by_perturbation(a, test_size="x"),
     DataContractError, ("test_size",)),
    ("split-random-state-text", lambda a: cc.data.split_by_perturbation(a, random_state="x"),
     ParameterError, ("random_state='x'",)),
    ("ceiling-random-state-text", lambda a: cc.evaluate.replicate_ceiling(a, random_state="x"),
     ParameterError, ("random_state='x'",)),
    ("ceiling-top-k-text", lambda a: cc.evaluate.replicate_ceiling(a, top_k="x"),
     ParameterError, ("top_k='x'",)),
    ("interventions-take-text", lambda a: cc.Interventions.from_adata(a).take("x"),
     ParameterError, ("rows='x'",)),
    ("write-h5ad-path-number", lambda a: cc.data.write_h5ad(a, 42), ParameterError,
     ("path=42",)),
    ("learn-pc-prior-padded",
     lambda a: cc.graph.learn_pc(a, prior=nx.relabel_nodes(SIM.network, {"TF01": "TF01 "})),
     NetworkError, ("prior", "white space")),
    ("learn-pc-required-numbers",
     lambda a: cc.graph.learn_pc(a, genes=["TF01", "G001"], required=[(1, 2)]),
     NetworkError, ("required", "not all strings")),
    ("learn-network-regulators-numbers", lambda a: cc.graph.learn_network(a, regulators=[1]),
     ParameterError, ("regulators",)),
    ("predict-start-text", lambda a: FITTED.predict(a.obs.iloc[:3], start="x"), ParameterError,
     ("start='x'",)),
]:
    case(f"param-{_name}", lambda tmp: {"a": data()}, _call, _error, *_words)

for _name, _call, _error, _words in [
    ("read-h5ad-number", lambda: cc.data.read_h5ad(42), ParameterError, ("path=42",)),
    ("read-h5ad-none", lambda: cc.data.read_h5ad(None), ParameterError, ("path=None",)),
    ("read-lazy-number", lambda: cc.data.read_lazy(42), ParameterError, ("path=42",)),
    ("write-h5ad-not-anndata", lambda: cc.data.write_h5ad(5, "x.h5ad"), DataContractError,
     ("AnnData", "int")),
    ("tidy-obs-number", lambda: cc.data.tidy_obs(5), DataContractError, ("DataFrame",)),
    ("bh-qvalues-text", lambda: cc.evaluate.bh_qvalues(["a"]), ParameterError,
     ("p-values",)),
    ("adjacency-genes-none", lambda: cc.graph.to_adjacency(SIM.network, None),
     ParameterError, ("genes=None",)),
    ("read-network-genes-number",
     lambda: cc.graph.read_network(_edges(), genes=5), ParameterError, ("genes=5",)),
    ("read-network-weight-default-text",
     lambda: cc.graph.read_network(_edges(), weight_default="x"), ParameterError,
     ("weight_default='x'",)),
    ("read-network-weight-default-nan",
     lambda: cc.graph.read_network(_edges(), weight_default=float("nan")), ParameterError,
     ("weight_default=nan",)),
]:
    case(f"param-{_name}", lambda tmp: {}, _call, _error, *_words)


def _lower_genes(adata: ad.AnnData) -> ad.AnnData:
    adata.var_names = adata.var_names.str.lower()
    return adata


# -- warnings: the data are used, with a word on what is probably wrong
def _counts(adata: ad.AnnData) -> ad.AnnData:
    adata.X = adata.layers["counts"].copy()
    return adata


WARNING_CASES: dict[str, Case] = {
    "counts-validate": Case(lambda tmp: {"adata": _counts(data())},
                            lambda adata: cc.data.validate(adata), ExpressionScaleWarning,
                            ("raw counts", "normalize_total", "log1p", "layer=")),
    "counts-fit": Case(lambda tmp: {"adata": _counts(data())},
                       lambda adata: ConditionalGRNRegressor().fit(adata, network()),
                       ExpressionScaleWarning, ("raw counts", "sc.pp.log1p")),
    "counts-layer": Case(lambda tmp: {"adata": data()},
                         lambda adata: MeanBaseline(layer="counts").fit(adata),
                         ExpressionScaleWarning, ("layer 'counts'", "raw counts")),
    "counts-evaluate": Case(lambda tmp: {"pred": predicted(), "obs": _counts(data())},
                            _evaluate(), ExpressionScaleWarning,
                            ("observed data", "raw counts")),
    "counts-backed": Case(lambda tmp: {"adata": as_kind(_counts(data()), "backed_csr", tmp)},
                          lambda adata: cc.data.validate(adata), ExpressionScaleWarning,
                          ("raw counts",)),
    "scales-differ": Case(_pair(pred=_pred_with(with_x(lambda X: np.expm1(X) * 100))),
                          _evaluate(), ExpressionScaleWarning,
                          ("clearly different scales", "predicted data", "observed data")),
    "network-missing-weight": Case(
        lambda tmp: {"frame": _edges(weight=[1.0, np.nan])},
        lambda frame: cc.graph.read_network(frame), cc.errors.NetworkWarning,
        ("no weight value", "weight_default=1.0")),
    "label-case": Case(lambda tmp: {"adata": with_obs("perturbation", "tf01",
                                                      rows=[FIRST_PERTURBED])(data())},
                       lambda adata: cc.data.validate(adata), UnmeasuredTargetWarning,
                       ("tf01", "did you mean TF01?")),
}


# -- the command line: flags and files, one line, exit 2
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Input files of the CLI cases (checked unchanged after each)."""
    root = tmp_path_factory.mktemp("cli-inputs")
    paths = {}
    writes = {
        "predicted": predicted(),
        "observed": data(),
        "observed_no_type": with_obs("perturbation_type", None)(data()),
        "predicted_no_type": _pred_with(with_obs("perturbation_type", None))(),
        "predicted_twice": ad.concat([PREDICTED, PREDICTED[:2]], index_unique="-"),
        "predicted_fewer_genes": PREDICTED[:, 2:].copy(),
        "observed_counts": _counts(data()),
    }
    for name, adata in writes.items():
        paths[name] = root / f"{name}.h5ad"
        adata.write_h5ad(paths[name])
    paths["text"] = _write(root / "notes.txt", "not an h5ad")
    paths["foreign"] = _mkdir(root / "foreign")
    _write(paths["foreign"] / "mine.csv", "keep me")
    return paths


def _evaluate_argv(files: dict[str, Path], tmp: Path, *extra: str, pred: str = "predicted",
                   obs: str = "observed", out: Path | None = None) -> list[str]:
    return ["evaluate", "--predicted", str(files[pred]), "--observed", str(files[obs]),
            "--out", str(out or tmp / "out"), *extra]


CLI_CASES: dict[str, tuple[Callable[[dict[str, Path], Path], list[str]], tuple[str, ...]]] = {
    "predicted-missing-file": (
        lambda f, t: ["evaluate", "--predicted", str(t / "nope.h5ad"), "--observed",
                      str(f["observed"]), "--out", str(t / "out")],
        ("--predicted", "nope.h5ad", "not found")),
    "observed-not-h5ad": (lambda f, t: _evaluate_argv(f, t, obs="text"),
                          ("--observed", "notes.txt", "not an HDF5")),
    "observed-missing-column": (lambda f, t: _evaluate_argv(f, t, obs="observed_no_type"),
                                ("--observed", "observed_no_type.h5ad", "perturbation_type")),
    "predicted-missing-column": (lambda f, t: _evaluate_argv(f, t, pred="predicted_no_type"),
                                 ("--predicted", "predicted_no_type.h5ad",
                                  "perturbation_type")),
    "control-label": (lambda f, t: _evaluate_argv(f, t, "--control-label", "NT"),
                      ("--control-label 'NT'", "--observed")),
    "genes-differ": (lambda f, t: _evaluate_argv(f, t, pred="predicted_fewer_genes"),
                     ("gene sets differ", "--join inner")),
    "predicted-twice": (lambda f, t: _evaluate_argv(f, t, pred="predicted_twice"),
                        ("--predicted", "more than one row", "--pseudobulk-predicted")),
    "convention-without-type": (lambda f, t: _evaluate_argv(f, t, "--convention", "gears"),
                                ("--convention gears", "--perturbation-type")),
    "out-parent-missing": (lambda f, t: _evaluate_argv(f, t, out=t / "no" / "out"),
                           ("--out", "does not exist")),
    "out-foreign": (lambda f, t: _evaluate_argv(f, t, out=f["foreign"]),
                    ("--out", "--overwrite")),
    "export-n-cells": (lambda f, t: ["export", "--predicted", str(f["predicted"]),
                                     "--observed", str(f["observed"]), "--out",
                                     str(t / "out"), "--n-cells", "many"],
                       ("--n-cells", "'many'")),
    "export-layer": (lambda f, t: ["export", "--predicted", str(f["predicted"]),
                                   "--observed", str(f["observed"]), "--out", str(t / "out"),
                                   "--layer", "logcounts"],
                     ("'logcounts' not found", "--observed")),
}


# --------------------------------------------------------------------------- tests
def _inputs_and_snapshots(build: Callable[[Path], dict[str, Any]], tmp: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # building hostile data may warn
        inputs = build(tmp)
    return inputs, {name: freeze(value) for name, value in inputs.items()}


def _check_unchanged(inputs: dict[str, Any], before: dict[str, Any]) -> None:
    for name, value in inputs.items():
        assert_same(before[name], freeze(value), name)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_raises_our_error_and_changes_nothing(name, tmp_path):
    item = CASES[name]
    inputs, before = _inputs_and_snapshots(item.inputs, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Only causalcell's errors are caught: a foreign exception fails the case as it is.
        with pytest.raises(CausalCellError) as info:
            item.call(**inputs)
    assert type(info.value) is item.expected, (type(info.value), str(info.value))
    message = str(info.value)
    for word in item.words:
        assert word in message, (word, message)
    for word in item.absent:
        assert word not in message, (word, message)
    _check_unchanged(inputs, before)


@pytest.mark.parametrize("name", list(WARNING_CASES))
def test_suspicious_input_warns_and_changes_nothing(name, tmp_path):
    item = WARNING_CASES[name]
    inputs, before = _inputs_and_snapshots(item.inputs, tmp_path)
    with pytest.warns(item.expected) as record:
        item.call(**inputs)
    messages = [str(w.message) for w in record if issubclass(w.category, item.expected)]
    assert any(all(word in m for word in item.words) for m in messages), messages
    _check_unchanged(inputs, before)


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_error_names_flags_and_files(name, files, tmp_path, capsys):
    argv_of, words = CLI_CASES[name]
    argv = argv_of(files, tmp_path)
    before = {key: _file_state(path) for key, path in files.items()}
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("causalcell: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    # Flags, never the library's parameter names.
    for python_name in ("control_label=", "join=", "aggregate_predicted", "de_method=",
                        "perturbation_type=", "n_cells="):
        assert python_name not in lines[0], (python_name, lines[0])
    assert {key: _file_state(path) for key, path in files.items()} == before


def test_cli_warning_is_one_line_in_cli_words(files, tmp_path, capsys):
    code = cli.main(_evaluate_argv(files, tmp_path, obs="observed_counts"))
    err = capsys.readouterr().err
    assert code == 0, err
    warning = [line for line in err.splitlines() if "raw counts" in line]
    assert len(warning) == 1, err
    assert warning[0].startswith("causalcell: warning: X of --observed"), err


def test_the_corpus_is_large():
    """At least 150 hostile inputs across the contract, X kinds, networks, models, model
    files, evaluation and the CLI."""
    n = len(CASES) + len(WARNING_CASES) + len(CLI_CASES)
    assert n >= 150, n
    prefixes = {name.split("-")[0] for name in CASES}
    assert {"contract", "kind", "network", "fit", "model", "evaluate"} <= prefixes


def test_cli_words_translate_parameters_sides_and_lines():
    parser = cli.build_parser()
    argv = ["export", "--predicted", "p.h5ad", "--observed", "o.h5ad", "--out", "x"]
    args = parser.parse_args(argv)
    command = cli._command_parser(parser, "export")
    message = ("The observed data: control_label='NT' names no control; pass layer=None to use "
               "X,\nor n_cells=5. The predicted data has join='inner' (not a flag of export).")
    assert cli.in_cli_words(message, command, args) == (
        "--observed 'o.h5ad': --control-label 'NT' names no control; pass no --layer to use "
        "X, or --n-cells 5. --predicted 'p.h5ad' has join='inner' (not a flag of export).")
    evaluate = cli._command_parser(parser, "evaluate")
    args = parser.parse_args(["evaluate", "--predicted", "p", "--observed", "o", "--out", "x"])
    assert cli.in_cli_words("pass join='inner' or aggregate_predicted=True; de_method='t'",
                            evaluate, args) == (
        "pass --join inner or --pseudobulk-predicted; --de-method t")


def test_counts_heuristic_known_answers():
    """Raw counts: non-negative whole numbers reaching 20. Log-normalized values, negative
    values, non-whole values and NaN are not counts."""
    from causalcell.data.contract import COUNTS_MAX, counts_maximum

    counts = np.array([[0, 3, 25], [1, 0, 7]])
    assert counts_maximum(counts) == 25.0
    assert counts_maximum(counts.astype(np.float32)) == 25.0
    assert counts_maximum(sp.csr_matrix(counts)) == 25.0
    assert counts_maximum(np.log1p(counts)) is None
    assert counts_maximum(counts - 1) is None  # a negative value
    assert counts_maximum(counts + 0.5) is None  # not whole numbers
    assert counts_maximum(np.where(counts == 7, np.nan, counts)) is None
    assert counts_maximum(np.full((2, 2), COUNTS_MAX - 1)) is None
    assert counts_maximum(np.full((2, 2), COUNTS_MAX)) == COUNTS_MAX
    assert counts_maximum(np.zeros((0, 3))) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExpressionScaleWarning)
        cc.data.validate(data())  # the simulation's log-normalized X
        cc.evaluate.evaluate(predicted(), data(), **FAST)  # predictions on its scale
