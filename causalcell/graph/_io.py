"""Gene regulatory networks in and out: edge-list files, pandas, scipy.sparse, pgmpy.

A network is an :class:`networkx.DiGraph` whose nodes are gene symbols (str)
and whose edges ``regulator -> target`` carry a float ``weight`` attribute
(the sign or strength of the regulation). Everything in causalcell that takes
a network takes such a graph; this module converts it from and to the formats
networks are shipped in:

* edge-list files (csv, tsv, parquet, gzip-compressed text) and DataFrames,
  in the PEREGGRN (``regulator,target,weight``), CollecTRI
  (``source,target,weight``) and TRRUST (``TF,Target,Regulation``)
  column conventions: :func:`read_network`, :func:`write_network`,
  :func:`network_to_frame`;
* a sparse adjacency matrix over a chosen gene order: :func:`to_adjacency`;
* pgmpy DAGs: :func:`to_pgmpy`, :func:`from_pgmpy`, with
  :func:`find_cycle_edges` to locate the cycle that stops the conversion.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Callable, Hashable, Iterable
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell._validation import DEPRECATED
from causalcell.data._schema import did_you_mean, gene_name_problem
from causalcell.errors import DataFileError, NetworkError, NetworkWarning, ParameterError

if TYPE_CHECKING:
    from pgmpy.base import DAG

__all__ = [
    "check_network_genes",
    "find_cycle_edges",
    "from_pgmpy",
    "network_to_frame",
    "read_network",
    "require_digraph",
    "to_adjacency",
    "to_pgmpy",
    "write_network",
]

#: Accepted column names (compared case-insensitively), in order of preference.
REGULATOR_COLUMNS: tuple[str, ...] = ("regulator", "source", "tf")
TARGET_COLUMNS: tuple[str, ...] = ("target",)
WEIGHT_COLUMNS: tuple[str, ...] = ("weight",)
#: TRRUST's sign column, used only when there is no weight column.
SIGN_COLUMNS: tuple[str, ...] = ("regulation",)
#: TRRUST ``Regulation`` values (lower-cased) and the weight they map to;
#: any other value (TRRUST's ``Unknown``) gets ``weight_default``.
SIGN_WEIGHTS: dict[str, float] = {"activation": 1.0, "repression": -1.0}

# Weight cells that mean "no value" (compared lower-cased after stripping).
_MISSING_WEIGHT = frozenset({"", "na", "nan", "none", "null"})
_TEXT_SEPARATORS = {"csv": ",", "tsv": "\t", "txt": "\t"}
_N_EXAMPLES = 3


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _file_kind(path: Path) -> tuple[str | None, bool]:
    """Return (format, gzipped) from the file name: ``("tsv", True)`` for x.tsv.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    if ext in ("parquet", "pq") and not gz:
        return "parquet", False
    if ext in _TEXT_SEPARATORS:
        return ext, gz
    return None, gz


def _read_table(path: Path, sep: str | None) -> pd.DataFrame:
    """Read an edge-list file into a DataFrame of strings (text) or native dtypes
    (parquet), raising DataFileError naming the path on any failure."""
    if not path.exists():
        raise DataFileError(f"network file not found: {path}")
    if not path.is_file():
        raise DataFileError(f"network path is not a file: {path}")
    kind, gz = _file_kind(path)
    if kind is None and sep is None:
        raise DataFileError(
            f"cannot tell the format of network file {path} from its extension; use .csv, "
            ".tsv, .txt (tab-separated), .parquet, or .csv.gz / .tsv.gz, or pass sep= to read "
            "it as delimited text"
        )
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(
            path,
            sep=sep if sep is not None else _TEXT_SEPARATORS[kind],
            # Gene symbols are text: never turn "NA"-like symbols or numeric IDs into
            # floats; only empty cells are missing. Weights are parsed afterwards.
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            compression="gzip" if gz else None,
        )
    except ImportError as exc:
        raise DataFileError(
            f"reading parquet network {path} needs pyarrow: pip install pyarrow ({exc})"
        ) from exc
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # ParserError and EmptyDataError are ValueErrors; a bad gzip or parquet file
        # raises OSError / pyarrow's ArrowInvalid (a ValueError).
        raise DataFileError(
            f"cannot read network file {path} as {kind or 'delimited text'}"
            f"{' (gzip)' if gz else ''}: {type(exc).__name__}: {exc}"
        ) from exc


def _find_column(frame: pd.DataFrame, accepted: tuple[str, ...]) -> Hashable | None:
    """The first column of ``frame`` whose name matches one of ``accepted``
    case-insensitively (in the order of ``accepted``), or None."""
    lowered: dict[str, Hashable] = {}
    for col in frame.columns:
        lowered.setdefault(str(col).strip().lower(), col)
    for name in accepted:
        if name in lowered:
            return lowered[name]
    return None


class _Locator:
    """Turns a row position into words for error messages (file line or frame label)."""

    def __init__(self, frame: pd.DataFrame, path: Path | None) -> None:
        self.frame = frame
        self.path = path

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "the DataFrame"

    def row(self, pos: int) -> str:
        if self.path is not None and self.path.suffix.lower() not in (".parquet", ".pq"):
            # +2: 1-based lines and one header line.
            return f"line {pos + 2} of {self.path}"
        label = self.frame.index[pos]
        label = label.item() if isinstance(label, np.generic) else label  # no np.int64(...)
        return f"row {label!r} of {self.name}"


def _gene_column(frame: pd.DataFrame, col: Hashable, loc: _Locator) -> np.ndarray:
    """Gene names of one column as a stripped str object array; empty → NetworkError."""
    values = frame[col]
    text = values.astype(str).str.strip()
    empty = (values.isna() | (text == "")).to_numpy(dtype=bool)
    if empty.any():
        pos = int(np.flatnonzero(empty)[0])
        raise NetworkError(
            f"empty {col!r} (gene name) in {loc.row(pos)} ({int(empty.sum())} such rows); "
            "every edge needs a regulator and a target: fill or remove these rows"
        )
    return text.to_numpy(dtype=object)


def _as_index(genes: Iterable[Hashable]) -> pd.Index:
    """Genes as a pandas Index (a lone string is one gene, not its letters)."""
    if isinstance(genes, pd.Index):
        return genes
    if isinstance(genes, str):
        genes = [genes]
    if not isinstance(genes, Iterable):
        raise ParameterError(
            f"genes={genes!r} is not a list of gene names; give e.g. adata.var_names."
        )
    return pd.Index(np.asarray(list(genes), dtype=object))


def _weight_column(
    frame: pd.DataFrame, col: Hashable, weight_default: float, loc: _Locator
) -> tuple[np.ndarray, int]:
    """Parse the weight column to float; missing cells get ``weight_default``.

    Returns the weights and the number of missing cells. Non-numeric or
    non-finite weights raise NetworkError naming the first bad row.
    """
    raw = frame[col]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        # A copy: a float column's to_numpy() is a view of the caller's DataFrame, and
        # missing weights are filled in below.
        weights = raw.to_numpy(dtype=float, na_value=np.nan, copy=True)
        missing = np.isnan(weights)
    else:
        text = raw.astype("string").str.strip()
        missing = (text.isna() | text.str.lower().isin(_MISSING_WEIGHT)).to_numpy(dtype=bool)
        try:
            # astype(float) parses exactly (round trip of repr); pd.to_numeric's fast
            # parser can be off by one ulp, so it is only used to find bad rows.
            weights = text.mask(missing).astype(float).to_numpy(dtype=float)
        except (TypeError, ValueError):
            coerced = pd.to_numeric(text.mask(missing), errors="coerce")
            bad = np.isnan(coerced.to_numpy(dtype=float, na_value=np.nan)) & ~missing
            pos = int(np.flatnonzero(bad)[0]) if bad.any() else 0
            raise NetworkError(
                f"non-numeric weight {raw.iloc[pos]!r} in column {col!r}, {loc.row(pos)} "
                f"({int(bad.sum())} such rows); weights must be numbers: fix these rows or "
                "drop the weight column to give every edge weight_default"
            ) from None
    inf = np.isinf(weights)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise NetworkError(
            f"non-finite weight {raw.iloc[pos]!r} in column {col!r}, {loc.row(pos)}; "
            "weights must be finite numbers"
        )
    weights[missing] = weight_default
    return weights, int(missing.sum())


def _examples(regs: np.ndarray, tgts: np.ndarray, mask: np.ndarray) -> str:
    """A few ``A -> B`` examples of the masked edges, for warning messages."""
    idx = np.flatnonzero(mask)[:_N_EXAMPLES]
    text = ", ".join(f"{regs[i]} -> {tgts[i]}" for i in idx)
    return text + (", ..." if mask.sum() > _N_EXAMPLES else "")


def _warn(message: str, stacklevel: int = 4) -> None:
    # stacklevel 4: _warn <- _drop_edges <- read_network <- the caller's line.
    warnings.warn(message, NetworkWarning, stacklevel=stacklevel)


def read_network(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    genes: Iterable[str] | None = None,
    sep: str | None = None,
    weight_default: float = 1.0,
    verbose: Any = DEPRECATED,
) -> nx.DiGraph:
    """Read a regulator → target edge list into a weighted DiGraph.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A DataFrame, or the path of an edge-list file: ``.csv`` (comma),
        ``.tsv`` or ``.txt`` (tab), optionally gzip-compressed (``.csv.gz``,
        ``.tsv.gz``, ``.txt.gz``), or ``.parquet``. The DataFrame is not
        modified.
    genes : iterable of str, optional
        The genes of the data the network will be used with (e.g.
        ``adata.var_names``). Edges whose regulator or target is not among
        them are dropped (counted in a warning). Default: keep every edge.
    sep : str, optional
        Field separator for text files, overriding the one implied by the
        extension; also lets files with other extensions be read as text.
    weight_default : float, default 1.0
        Weight of edges without one: every edge when there is no weight
        column, and edges whose weight cell is empty or ``NA``.
    verbose
        Deprecated and ignored (a ``FutureWarning``; removed in the next
        release). Every category of dropped edges is reported by one
        :class:`~causalcell.errors.NetworkWarning` (silence them with
        ``warnings.filterwarnings("ignore", category=NetworkWarning)``); the
        counts are in ``G.graph["read_report"]`` either way.

    Returns
    -------
    networkx.DiGraph
        Nodes are the gene symbols (str, surrounding whitespace stripped) of
        the kept edges; each edge has a float ``weight``.
        ``G.graph["read_report"]`` is a dict with ``n_rows`` (edges read),
        ``n_duplicates``, ``n_duplicates_conflicting`` (duplicated pairs whose
        weights disagree), ``n_self_loops``, ``n_absent_gene``,
        ``n_missing_weight`` and ``n_edges`` (edges kept).

    Raises
    ------
    DataFileError
        The file does not exist, cannot be read, or its format cannot be told
        from its extension (pass ``sep=``).
    NetworkError
        A required column is missing (the message lists the columns found and
        the accepted names), a gene name is empty, or a weight is not a finite
        number (the message names the row).

    Notes
    -----
    Columns are found case-insensitively: the regulator in ``regulator``
    (PEREGGRN), ``source`` (CollecTRI) or ``TF`` (TRRUST), the target in
    ``target``, the weight in ``weight``. Without a weight column, a TRRUST
    ``Regulation`` column gives the weight: ``Activation`` → +1,
    ``Repression`` → -1, anything else (``Unknown``) → ``weight_default``.
    Other columns are ignored.

    Edges are dropped, in this order, and each category is reported once:

    1. duplicated ``(regulator, target)`` pairs: the first occurrence is kept
       (TRRUST lists a pair once per sign, so a pair can be both
       ``Activation`` and ``Repression``; the warning says how many kept
       pairs had disagreeing weights);
    2. self-loops (a gene regulating itself; the models take the regulators
       of a gene as predictors of it);
    3. when ``genes`` is given, edges with a regulator or target not in it.

    Examples
    --------
    >>> import pandas as pd
    >>> edges = pd.DataFrame({"source": ["A", "A"], "target": ["B", "C"], "weight": [1, -1]})
    >>> G = read_network(edges)
    >>> sorted(G.edges(data="weight"))
    [('A', 'B', 1.0), ('A', 'C', -1.0)]
    """
    if verbose is not DEPRECATED:
        warnings.warn(
            "read_network: verbose= is deprecated and ignored, and will stop working in the "
            "next release: dropped edges are always reported as NetworkWarning (counts in "
            "G.graph['read_report']); silence them with "
            "warnings.filterwarnings('ignore', category=NetworkWarning).",
            FutureWarning,
            stacklevel=2,
        )
    if isinstance(weight_default, bool) or not isinstance(
            weight_default, int | float | np.integer | np.floating) or not np.isfinite(
            weight_default):
        raise ParameterError(
            f"read_network: weight_default={weight_default!r} must be a finite number (the "
            f"weight of edges without one, e.g. 1.0)."
        )
    if isinstance(source, pd.DataFrame):
        frame, path = source, None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        frame = _read_table(path, sep)
    else:
        raise ParameterError(
            f"read_network: source={source!r} is a {type(source).__name__}; give the path of "
            "an edge-list file (str or pathlib.Path) or a pandas DataFrame with regulator and "
            "target columns"
        )
    loc = _Locator(frame, path)
    regs, tgts = _edge_columns(frame, loc)
    weights, n_missing_weight = _edge_weights(frame, weight_default, loc)
    keep, report = _drop_edges(regs, tgts, weights, genes, loc)
    if n_missing_weight:
        _warn(
            f"{n_missing_weight} edge(s) in {loc.name} have no weight value and were given "
            f"weight_default={weight_default}",
            stacklevel=3,
        )
    G = nx.DiGraph()
    # tolist() gives Python str / float, which is what users expect to find in the graph.
    G.add_weighted_edges_from(
        zip(regs[keep].tolist(), tgts[keep].tolist(), weights[keep].tolist(), strict=True)
    )
    G.graph["read_report"] = {
        "n_rows": len(frame),
        **report,
        "n_missing_weight": n_missing_weight,
        "n_edges": G.number_of_edges(),
    }
    return G


def _edge_columns(frame: pd.DataFrame, loc: _Locator) -> tuple[np.ndarray, np.ndarray]:
    """The regulator and target gene names (found case-insensitively)."""
    reg_col = _find_column(frame, REGULATOR_COLUMNS)
    tgt_col = _find_column(frame, TARGET_COLUMNS)
    if reg_col is None or tgt_col is None:
        missing = "regulator" if reg_col is None else "target"
        accepted = REGULATOR_COLUMNS if reg_col is None else TARGET_COLUMNS
        raise NetworkError(
            f"{loc.name} has no {missing} column: columns found {list(frame.columns)}; "
            f"accepted names (any case): {list(accepted)}. An edge list needs "
            "regulator,target[,weight] (PEREGGRN), source,target[,weight] (CollecTRI) or "
            "TF,Target[,Regulation] (TRRUST) columns: rename yours"
            + ("; if the file has no header row, add one" if loc.path is not None else "")
        )
    return _gene_column(frame, reg_col, loc), _gene_column(frame, tgt_col, loc)


def _edge_weights(
    frame: pd.DataFrame, weight_default: float, loc: _Locator
) -> tuple[np.ndarray, int]:
    """Weights from the weight column, else TRRUST's sign column, else the default;
    and the number of empty weight cells."""
    weight_col = _find_column(frame, WEIGHT_COLUMNS)
    if weight_col is not None:
        return _weight_column(frame, weight_col, weight_default, loc)
    weights = np.full(len(frame), float(weight_default))
    sign_col = _find_column(frame, SIGN_COLUMNS)
    if sign_col is not None:
        signs = frame[sign_col].astype("string").str.strip().str.lower()
        signs = signs.to_numpy(dtype=object, na_value="")
        for sign, value in SIGN_WEIGHTS.items():
            weights[signs == sign] = value
    return weights, 0


def _drop_edges(
    regs: np.ndarray, tgts: np.ndarray, weights: np.ndarray,
    genes: Iterable[str] | None, loc: _Locator,
) -> tuple[np.ndarray, dict[str, int]]:
    """Edges kept (duplicates, self-loops and absent genes dropped, each category
    reported once) and the counts."""
    # 1. Duplicates: keep the first occurrence of each (regulator, target) pair.
    pairs = pd.MultiIndex.from_arrays([regs, tgts])
    dup = pairs.duplicated(keep="first")
    n_dup = int(dup.sum())
    n_conflict = 0
    if n_dup:
        involved = pairs.duplicated(keep=False)
        per_pair = (
            pd.DataFrame({"r": regs[involved], "t": tgts[involved], "w": weights[involved]})
            .groupby(["r", "t"], sort=False)["w"]
            .nunique()
        )
        n_conflict = int((per_pair > 1).sum())
        message = (
            f"{n_dup} duplicated edge(s) in {loc.name} dropped, keeping the first occurrence "
            f"of each pair (e.g. {_examples(regs, tgts, dup)})"
        )
        if n_conflict:
            message += (
                f"; {n_conflict} of the duplicated pairs have disagreeing weights "
                "(the first occurrence's weight is kept)"
            )
        _warn(message)
    keep = ~dup

    # 2. Self-loops.
    loops = keep & (regs == tgts)
    n_loops = int(loops.sum())
    if n_loops:
        _warn(f"{n_loops} self-loop(s) in {loc.name} dropped (e.g. {_examples(regs, tgts, loops)})")
        keep &= ~loops

    # 3. Edges touching genes absent from the data.
    n_absent = 0
    if genes is not None:
        gene_index = _as_index(genes).astype(str)
        present = pd.Index(regs).isin(gene_index) & pd.Index(tgts).isin(gene_index)
        absent = keep & ~present
        n_absent = int(absent.sum())
        if n_absent:
            _warn(
                f"{n_absent} edge(s) in {loc.name} dropped because their regulator or target "
                f"is not among the {len(gene_index)} given genes "
                f"(e.g. {_examples(regs, tgts, absent)})"
            )
            keep &= ~absent
    return keep, {
        "n_duplicates": n_dup,
        "n_duplicates_conflicting": n_conflict,
        "n_self_loops": n_loops,
        "n_absent_gene": n_absent,
    }


# ---------------------------------------------------------------------------
# Frames and files
# ---------------------------------------------------------------------------


def require_digraph(G: Any, what: str) -> None:
    """NetworkError unless G is a directed simple graph (a DiGraph, not a MultiDiGraph)."""
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise NetworkError(
            f"{what} needs a networkx.DiGraph (or a subclass such as a pgmpy DAG), got "
            f"{type(G).__name__}; convert with networkx.DiGraph(G) (parallel edges merge) "
            "or read an edge list with causalcell.graph.read_network"
        )


def check_network_genes(G: nx.DiGraph, genes: pd.Index, what: str = "network") -> int:
    """Check that a network's nodes can meet the data's genes; return how many do.

    Nodes are matched to ``var_names`` exactly, so a node that is not a str,
    or that carries surrounding white space, would silently lose its edges.

    Parameters
    ----------
    G
        The network (a DiGraph).
    genes
        The measured genes (``var_names``).
    what
        The parameter holding ``G``, for messages.

    Returns
    -------
    int
        The number of nodes that are measured genes (at least 1).

    Raises
    ------
    NetworkError
        G is not a DiGraph, a node is not a gene symbol (str, no surrounding
        white space), or no node is a measured gene (naming near matches).
    """
    require_digraph(G, what)
    nodes = pd.Index(list(G.nodes), dtype=object)
    problem = gene_name_problem(nodes)
    if problem is not None:
        raise NetworkError(
            f"The nodes of {what} {problem}. Relabel them to the symbols of var_names, e.g. "
            f"networkx.relabel_nodes(G, lambda node: str(node).strip())"
        )
    shared = int(nodes.isin(genes).sum())
    if shared == 0:
        hint = did_you_mean(nodes[:1000].astype(str), genes)
        raise NetworkError(
            f"{what} ({G.number_of_nodes()} nodes, e.g. {nodes[:3].tolist()}) shares no gene "
            f"with var_names (e.g. {list(genes[:3])}){hint}. Use the same gene identifiers in "
            f"both (symbols), or convert them first."
        )
    return shared


def _edge_arrays(
    G: nx.DiGraph, attributes: bool = True
) -> tuple[list[Any], np.ndarray, list[Any], list[dict]]:
    """Sources, out-degrees, targets and attribute dicts (empty without
    ``attributes``) of all edges in one pass.

    Uses ``G.adjacency()`` (public API: the graph's own adjacency dicts) so that
    targets and attribute dicts are gathered by C-level chaining, without
    building a tuple per edge.
    """
    nodes: list[Any] = []
    nbr_dicts: list[dict] = []
    for node, nbrs in G.adjacency():
        nodes.append(node)
        nbr_dicts.append(nbrs)
    degrees = np.fromiter(map(len, nbr_dicts), dtype=np.int64, count=len(nbr_dicts))
    targets = list(chain.from_iterable(nbr_dicts))
    attrs = list(chain.from_iterable(nbrs.values() for nbrs in nbr_dicts)) if attributes else []
    return nodes, degrees, targets, attrs


def _weights_to_float(values: list[Any], edge_name: Callable[[int], str]) -> np.ndarray:
    """Edge weights as floats; a weight of None (pgmpy's "no weight") counts as 1.0.

    ``edge_name(i)`` describes edge ``i`` for the error message; it is only
    called when a weight is not a number.
    """
    try:
        weights = np.array(values, dtype=float)
    except (TypeError, ValueError):
        for i, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                raise NetworkError(
                    f"edge {edge_name(i)} has a non-numeric weight {value!r}; set it to a "
                    "number or delete the attribute (missing weights count as 1.0)"
                ) from None
        raise  # pragma: no cover - float() accepted every value but numpy did not
    if weights.ndim != 1:
        raise NetworkError("edge weights must be scalars, found sequences")
    nan = np.flatnonzero(np.isnan(weights))
    if nan.size:
        is_none = np.fromiter((values[i] is None for i in nan), dtype=bool, count=nan.size)
        weights[nan[is_none]] = 1.0
    return weights


def network_to_frame(G: nx.DiGraph) -> pd.DataFrame:
    """Edge list of a network as a DataFrame.

    Parameters
    ----------
    G : networkx.DiGraph
        The network.

    Returns
    -------
    pandas.DataFrame
        One row per edge, in the graph's edge order, with columns
        ``regulator``, ``target``, ``weight`` (float; an edge without a weight,
        or with weight None as pgmpy stores it, gets 1.0, as in
        :func:`to_adjacency`), then every other edge attribute whose values
        are all scalars (str, number, bool, None), in sorted order. Missing
        values of those attributes are None/NaN. Attributes with non-scalar
        values (lists, dicts...) or named ``regulator``/``target`` are left
        out. Node names are kept as they are (not converted to str) and
        isolated nodes do not appear.

    Raises
    ------
    NetworkError
        G is not a DiGraph, or a weight is not a number.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph()
    >>> G.add_edge("A", "B", weight=2.0, source_db="x")
    >>> network_to_frame(G).to_dict("records")
    [{'regulator': 'A', 'target': 'B', 'weight': 2.0, 'source_db': 'x'}]
    """
    require_digraph(G, "network_to_frame")
    nodes, degrees, targets, attrs = _edge_arrays(G)
    sources = np.repeat(np.asarray(nodes, dtype=object), degrees)
    weights = _weights_to_float(
        [d.get("weight", 1.0) for d in attrs], lambda i: f"{sources[i]!r} -> {targets[i]!r}"
    )
    columns: dict[str, Any] = {
        "regulator": sources,
        "target": np.asarray(targets, dtype=object),
        "weight": weights,
    }
    keys = set().union(*attrs) - {"weight", "regulator", "target"} if attrs else set()
    for key in sorted(keys, key=str):
        values = [d.get(key) for d in attrs]
        if all(map(pd.api.types.is_scalar, values)):
            columns[str(key)] = pd.Series(values).infer_objects()
    frame = pd.DataFrame(columns)
    return frame


def _write_format(path: Path, format: str | None) -> tuple[str, bool]:
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in ("csv", "tsv", "parquet"):
            raise DataFileError(
                f"unsupported network format {format!r} for {path}; use 'csv', 'tsv' or 'parquet'"
            )
        return fmt, fmt != "parquet" and path.suffix.lower() == ".gz"
    kind, gz = _file_kind(path)
    if kind is None:
        raise DataFileError(
            f"cannot tell which format to write {path} in from its extension; use .csv, "
            ".tsv, .txt (tab), .parquet, .csv.gz / .tsv.gz, or pass format="
        )
    return ("tsv" if kind == "txt" else kind), gz


def write_network(
    G: nx.DiGraph, path: str | os.PathLike[str], *, format: str | None = None
) -> None:
    """Write a network as an edge list (csv, tsv or parquet), atomically.

    Parameters
    ----------
    G : networkx.DiGraph
        The network.
    path : str or os.PathLike
        Destination. The format follows the extension (``.csv``, ``.tsv``,
        ``.txt`` = tab, ``.parquet``; text formats may end in ``.gz`` to be
        gzip-compressed) unless ``format`` is given.
    format : {"csv", "tsv", "parquet"}, optional
        Format to write regardless of the extension.

    Raises
    ------
    DataFileError
        Unsupported extension or format, or the file cannot be written (e.g.
        the directory does not exist).
    NetworkError
        G is not a DiGraph, or a weight is not a number.

    Notes
    -----
    The columns are those of :func:`network_to_frame`: ``regulator``,
    ``target``, ``weight`` and the other scalar edge attributes, so that
    ``read_network(path)`` gives back the same edges and weights. Isolated
    nodes and node attributes are not stored (an edge list has no place for
    them). The file is first written to a temporary file in the same directory
    and then renamed over ``path``, so a reader never sees half a file.
    """
    path = Path(path)
    fmt, gz = _write_format(path, format)
    frame = network_to_frame(G)
    directory = path.parent
    if not directory.is_dir():
        raise DataFileError(f"cannot write network to {path}: directory {directory} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise DataFileError(f"cannot write network to {path}: {exc}") from exc
    try:
        if fmt == "parquet":
            try:
                frame.to_parquet(tmp_name, index=False)
            except ImportError as exc:
                raise DataFileError(
                    f"writing parquet network {path} needs pyarrow: pip install pyarrow"
                ) from exc
        else:
            frame.to_csv(
                tmp_name,
                sep=_TEXT_SEPARATORS[fmt],
                index=False,
                compression="gzip" if gz else None,
            )
        os.replace(tmp_name, path)
    except DataFileError:
        raise
    except OSError as exc:
        raise DataFileError(f"cannot write network to {path}: {exc}") from exc
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


# ---------------------------------------------------------------------------
# Adjacency matrix
# ---------------------------------------------------------------------------


def to_adjacency(
    G: nx.DiGraph, genes: Iterable[Hashable], *, weight: str | None = "weight"
) -> sp.csr_array:
    """Weighted adjacency matrix of a network over a given gene order.

    Parameters
    ----------
    G : networkx.DiGraph
        The network.
    genes : iterable of hashable
        Row and column order (e.g. ``adata.var_names``); must be unique.
        Names must match the graph's nodes exactly (same type and spelling).
    weight : str or None, default "weight"
        Edge attribute holding the weight. Edges without it (or with a value
        of None, as pgmpy stores unweighted edges) count as 1.0. ``None``:
        every edge counts as 1.0 and no attribute is read (the pattern only,
        as networkx's ``weight=None``).

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(len(genes), len(genes))``, float64; ``A[i, j]`` is the weight
        of the edge ``genes[i] -> genes[j]`` (rows are regulators, columns
        targets). Edges with an endpoint not in ``genes`` are left out; graph
        nodes without edges change nothing. An edge of weight 0 is stored as
        an explicit zero, so ``A.nnz`` counts the edges kept.

    Raises
    ------
    NetworkError
        ``genes`` has duplicates, G is not a DiGraph, or a weight is not a
        number.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("A", "B", {"weight": -2.0}), ("B", "C", {})])
    >>> to_adjacency(G, ["A", "B", "C"]).toarray()
    array([[ 0., -2.,  0.],
           [ 0.,  0.,  1.],
           [ 0.,  0.,  0.]])
    """
    require_digraph(G, "to_adjacency")
    index = _as_index(genes)
    if not index.is_unique:
        dups = index[index.duplicated()].unique()[:_N_EXAMPLES].tolist()
        raise NetworkError(
            f"genes has duplicated names (e.g. {dups}); the adjacency matrix needs one row "
            "per gene: deduplicate them (e.g. adata.var_names_make_unique())"
        )
    n = len(index)
    # One pass over the adjacency dicts; everything after is vectorized.
    nodes, degrees, targets, attrs = _edge_arrays(G, attributes=weight is not None)
    # Every target is a node: its position comes from a dict of the nodes'
    # positions (one lookup per edge), not from an index of all the targets
    # (an object array of every edge's name, hashed again).
    node_rows = index.get_indexer(pd.Index(nodes, dtype=object))
    position = dict(zip(nodes, node_rows.tolist(), strict=True))
    rows = np.repeat(node_rows, degrees)
    cols = np.fromiter(map(position.__getitem__, targets), dtype=np.int64, count=len(targets))
    kept = np.flatnonzero((rows >= 0) & (cols >= 0))
    if weight is None:
        return sp.csr_array((np.ones(kept.size), (rows[kept], cols[kept])), shape=(n, n))
    if kept.size == len(attrs):
        values = [d.get(weight, 1.0) for d in attrs]
    else:
        values = [attrs[i].get(weight, 1.0) for i in kept.tolist()]
        rows, cols = rows[kept], cols[kept]

    def edge_name(i: int) -> str:
        j = int(kept[i])
        return f"{np.repeat(np.asarray(nodes, dtype=object), degrees)[j]!r} -> {targets[j]!r}"

    data = _weights_to_float(values, edge_name)
    # A DiGraph has no duplicate (row, col) pairs, so the COO → CSR conversion
    # only sorts; explicit zeros (weight-0 edges) are kept.
    return sp.csr_array((data, (rows, cols)), shape=(n, n))


# ---------------------------------------------------------------------------
# pgmpy
# ---------------------------------------------------------------------------


def find_cycle_edges(G: nx.DiGraph) -> list[tuple[Any, Any]] | None:
    """One directed cycle of G as a list of edges, or None if G is acyclic.

    Parameters
    ----------
    G : networkx.DiGraph
        The network.

    Returns
    -------
    list of tuple or None
        Edges ``[(a, b), (b, c), ..., (z, a)]`` of one cycle (a self-loop is
        ``[(a, a)]``), or None when G is a DAG.

    Examples
    --------
    >>> import networkx as nx
    >>> find_cycle_edges(nx.DiGraph([("A", "B"), ("B", "A")]))
    [('A', 'B'), ('B', 'A')]
    >>> find_cycle_edges(nx.DiGraph([("A", "B")])) is None
    True
    """
    require_digraph(G, "find_cycle_edges")
    try:
        cycle = nx.find_cycle(G, orientation="original")
    except nx.NetworkXNoCycle:
        return None
    return [(u, v) for u, v, *_ in cycle]


def _format_cycle(cycle: list[tuple[Any, Any]]) -> str:
    return " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"


def to_pgmpy(G: nx.DiGraph) -> DAG:
    """Convert a network to a :class:`pgmpy.base.DAG`, keeping all attributes.

    Parameters
    ----------
    G : networkx.DiGraph
        An acyclic network.

    Returns
    -------
    pgmpy.base.DAG
        Same nodes and edges, with copies of the node, edge and graph
        attribute dicts (node attributes deep-copied, since pgmpy keeps
        mutable role sets there). pgmpy 1.x stores ``latents``,
        ``exposures`` and ``outcomes`` as the node attribute ``roles`` (a
        set of role names), so a ``roles`` attribute written by
        :func:`from_pgmpy` restores them.

    Raises
    ------
    NetworkError
        G has a directed cycle (pgmpy DAGs cannot hold one). The message
        names one cycle and ``err.cycle`` holds its edges.

    Notes
    -----
    pgmpy's ``DAG.add_edges_from`` only takes a weight per edge, so edges are
    added with :meth:`networkx.DiGraph.add_edges_from`, which keeps every
    attribute. Gene regulatory networks often have feedback loops: the
    causalcell models accept cyclic networks directly, only pgmpy needs a DAG.
    """
    from pgmpy.base import DAG

    require_digraph(G, "to_pgmpy")
    cycle = find_cycle_edges(G)
    if cycle is not None:
        u, v = cycle[-1]
        raise NetworkError(
            f"a pgmpy DAG cannot hold cycles and this network has at least one: "
            f"{_format_cycle(cycle)}. Remove one edge of each cycle (e.g. "
            f"G.remove_edge({u!r}, {v!r}); causalcell.graph.find_cycle_edges finds the next "
            "one), or use the cyclic network directly with the causalcell models, which accept "
            "cycles",
            cycle=cycle,
        )
    dag = DAG()
    dag.graph.update(G.graph)
    dag.add_nodes_from((n, copy.deepcopy(d)) for n, d in G.nodes(data=True))
    nx.DiGraph.add_edges_from(dag, ((u, v, dict(d)) for u, v, d in G.edges(data=True)))
    return dag


def from_pgmpy(dag: nx.DiGraph) -> nx.DiGraph:
    """Convert a :class:`pgmpy.base.DAG` (or any DiGraph) to a plain networkx DiGraph.

    Parameters
    ----------
    dag : pgmpy.base.DAG or networkx.DiGraph
        The DAG.

    Returns
    -------
    networkx.DiGraph
        Same nodes and edges with copies of the node (deep), edge and graph
        attributes. pgmpy stores ``weight=None`` on edges added without a
        weight; such None weights are dropped, so these edges count as weight
        1.0 in :func:`to_adjacency`. pgmpy's latent / exposure / outcome
        roles stay in the node attribute ``roles``.

    Examples
    --------
    >>> from pgmpy.base import DAG
    >>> dag = DAG([("A", "B")])
    >>> G = from_pgmpy(dag)
    >>> type(G).__name__, list(G.edges(data=True))
    ('DiGraph', [('A', 'B', {})])
    """
    require_digraph(dag, "from_pgmpy")
    G = nx.DiGraph()
    G.graph.update(dag.graph)
    G.add_nodes_from((n, copy.deepcopy(d)) for n, d in dag.nodes(data=True))
    G.add_edges_from(
        (u, v, {k: val for k, val in d.items() if not (k == "weight" and val is None)})
        for u, v, d in dag.edges(data=True)
    )
    return G
