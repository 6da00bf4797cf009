"""Loaders for the small real data sets shipped inside causalcell.

Every loader reads the files under ``causalcell/datasets/data/`` (located with
:mod:`importlib.resources`, so it works from a wheel or a zip) and builds a new
object on every call: mutating a result never changes the next one.

The shipped files are produced once, by developers, with
``python tools/build_datasets.py /path/to/source/data``; their sources,
licences and the exact processing are described in
``causalcell/datasets/data/README.md``.

================================  ============================================
loader                            content
================================  ============================================
:func:`load_papalexi2021`         ECCITE-seq CRISPR knockout screen, THP-1
                                  cells: 19,619 cells x 299 genes
:func:`load_sachs2005`            flow cytometry of 11 phospho-proteins under
                                  9 conditions: 7,466 cells x 11 proteins
:func:`load_sachs2005_network`    the 20-edge consensus signalling network
:func:`load_collectri`            CollecTRI TF -> target edges among the
                                  Papalexi genes and targets
:func:`load_tf_names`             the 1,639 human TFs of Lambert et al. 2018
================================  ============================================
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import IO

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data.contract import IS_CONTROL, LEVEL, PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError, DataFileError, NetworkWarning

__all__ = [
    "load_collectri",
    "load_papalexi2021",
    "load_sachs2005",
    "load_sachs2005_network",
    "load_tf_names",
]

# ---------------------------------------------------------------------------
# Shared constants (also used by ``tools/build_datasets.py``, so the shipped
# files and the documentation of the loaders cannot drift apart).

PAPALEXI_CONTROL = "non-targeting"
# A cell is assigned its dominant guide when that guide holds strictly more
# than this share of the cell's guide UMIs ...
PAPALEXI_MIN_GUIDE_FRACTION = 0.5
# ... and at least this many UMIs itself.
PAPALEXI_MIN_GUIDE_UMIS = 5
PAPALEXI_GUIDE_RULE = (
    f"dominant guide: the guide with the most UMIs in the cell, kept when it holds "
    f"> {PAPALEXI_MIN_GUIDE_FRACTION:g} of the cell's guide UMIs and >= "
    f"{PAPALEXI_MIN_GUIDE_UMIS} UMIs itself; other cells dropped "
    f"(20,729 -> 19,619 cells)"
)

SACHS_PROTEINS = ("raf", "mek", "plc", "pip2", "pip3", "erk", "akt", "pka", "pkc", "p38", "jnk")
SACHS_CONTROL = "cd3_cd28"
# condition -> (perturbation label, perturbation_type). Targets as usually read
# from Sachs et al. 2005 (Science 308:523): each reagent acts on the activity of
# the named molecule, not on its measured abundance.
SACHS_CONDITIONS: dict[str, tuple[str, str]] = {
    "cd3_cd28": (SACHS_CONTROL, "control"),
    "cd3_cd28+aktinhib": ("akt", "inhibition"),
    "cd3_cd28+g0076": ("pkc", "inhibition"),
    "cd3_cd28+psitect": ("pip2", "inhibition"),
    # U0126 blocks MEK kinase activity; phospho-MEK itself can rise.
    "cd3_cd28+u0126": ("mek", "inhibition"),
    # LY294002 inhibits PI3K, which is not measured; its product PIP3 is.
    "cd3_cd28+ly": ("pip3", "inhibition"),
    # ICAM-2 co-stimulation has no single measured target.
    "cd3_cd28+icam2": ("ICAM2", "activation"),
    "pma": ("pkc", "activation"),
    "b2camp": ("pka", "activation"),
}

_DATA_PACKAGE = "causalcell.datasets"
_REBUILD_HINT = (
    "The file ships with causalcell; reinstall the package, or rebuild the data "
    "with `python tools/build_datasets.py /path/to/source/data`."
)

_PAPALEXI_CITATION = (
    "Papalexi E, Mimitou EP, Butler AW, et al. Characterizing the molecular "
    "regulation of inhibitory immune checkpoints with multimodal single-cell "
    "screens. Nat Genet 53, 322-331 (2021). doi:10.1038/s41588-021-00778-2"
)
_SACHS_CITATION = (
    "Sachs K, Perez O, Pe'er D, Lauffenburger DA, Nolan GP. Causal protein-"
    "signaling networks derived from multiparameter single-cell data. Science "
    "308, 523-529 (2005). doi:10.1126/science.1105809"
)
_COLLECTRI_CITATION = (
    "Müller-Dott S, Tsirvouli E, Vazquez M, et al. Expanding the coverage of "
    "regulons from high-confidence prior knowledge for accurate estimation of "
    "transcription factor activities. Nucleic Acids Res 51, 10934-10949 (2023). "
    "doi:10.1093/nar/gkad841"
)


# ---------------------------------------------------------------------------
# File access


def _data_file(*parts: str) -> Traversable:
    return resources.files(_DATA_PACKAGE).joinpath("data", *parts)


@contextlib.contextmanager
def _open_data(*parts: str) -> Iterator[IO[bytes]]:
    """Open a shipped data file in binary mode, or raise :class:`DataFileError`."""
    path = _data_file(*parts)
    try:
        handle = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise DataFileError(f"Shipped data file {path} is missing. {_REBUILD_HINT}") from exc
    with handle:
        yield handle


def _read_csv(*parts: str, **kwargs: object) -> pd.DataFrame:
    name = parts[-1]
    compression = "gzip" if name.endswith(".gz") else None
    with _open_data(*parts) as fh:
        try:
            return pd.read_csv(fh, compression=compression, **kwargs)
        except (ValueError, OSError, EOFError) as exc:
            raise DataFileError(
                f"Shipped data file {'/'.join(parts)} could not be read ({exc}). {_REBUILD_HINT}"
            ) from exc


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFileError(
            f"Shipped data file {where} lacks the column(s) {missing}; found "
            f"{list(frame.columns)}. {_REBUILD_HINT}"
        )


# ---------------------------------------------------------------------------
# Papalexi et al. 2021


def _read_papalexi_counts() -> tuple[sp.csr_matrix, np.ndarray]:
    where = "papalexi2021/counts.npz"
    with _open_data("papalexi2021", "counts.npz") as fh:
        try:
            with np.load(fh, allow_pickle=False) as npz:
                data = npz["data"]
                indices = npz["indices"]
                indptr = npz["indptr"]
                shape = tuple(int(v) for v in npz["shape"])
                genes = npz["genes"]
        except (KeyError, ValueError, OSError) as exc:
            raise DataFileError(
                f"Shipped data file {where} is unreadable ({exc}). {_REBUILD_HINT}"
            ) from exc
    if len(genes) != shape[1] or len(indptr) != shape[0] + 1 or indptr[-1] != len(data):
        raise DataFileError(
            f"Shipped data file {where} is inconsistent (shape {shape}, "
            f"{len(genes)} genes, {len(data)} values). {_REBUILD_HINT}"
        )
    # Stored compactly as uint16; widen to the dtypes scipy and anndata expect.
    counts = sp.csr_matrix(
        (data.astype(np.int32), indices.astype(np.int32), indptr.astype(np.int32)),
        shape=shape,
    )
    return counts, genes.astype(str)


def _log_normalize(counts: sp.csr_matrix, totals: np.ndarray) -> sp.csr_matrix:
    """``log1p(counts / totals * 1e4)`` per cell, as float32 CSR (no densifying)."""
    scale = np.divide(1e4, totals, out=np.zeros(len(totals)), where=totals > 0)
    values = np.log1p(counts.data * np.repeat(scale, np.diff(counts.indptr)))
    return sp.csr_matrix(
        (values.astype(np.float32), counts.indices.copy(), counts.indptr.copy()),
        shape=counts.shape,
    )


def load_papalexi2021() -> AnnData:
    """Load the Papalexi et al. 2021 ECCITE-seq CRISPR knockout screen.

    THP-1 cells stimulated with IFN-gamma, low multiplicity of infection, 26
    genes of the PD-L1 regulatory pathway knocked out with 3-4 guides each,
    plus 9 non-targeting guides. The data are the example data of the R
    package sceptredata (``lowmoi_example_data``), whose authors kept 299 of
    the measured genes; 9 targeted genes are among them (STAT1, JAK2, CMTM6,
    STAT2, UBE2L6, STAT3, TNFRSF14, IFNGR2, NFKBIA). The other targets are
    real interventions whose downstream effects are measured, but their own
    expression is not (validation warns about them). No cell is assigned to
    CD274: its guides (named ``PDL1g1-3``) are nearly absent from these
    example data (164 cells carry any of their UMIs, at most 8 per cell),
    so the data hold 25 knockouts and the control.

    Guide assignment (the source gives guide UMI counts, not assignments): a
    cell is assigned the guide with the most UMIs when that guide holds
    strictly more than half of the cell's guide UMIs and at least 5 UMIs
    itself. The majority rule leaves one unambiguous guide per cell (a cell
    with two guides in similar amounts, a doublet or a double infection, is
    dropped); the 5-UMI floor keeps a handful of ambient guide molecules from
    deciding the label (every source cell has at least 5 guide UMIs, and on
    these data the floor removes no cell beyond the majority rule). 19,619 of the
    20,729 cells pass (2,292 non-targeting, 17,327 knockout; from 47 cells
    for SPI1 to 1,197 for IFNGR1; replicates 8,390 / 5,955 / 5,274); the
    other 1,110 are dropped.

    Returns
    -------
    anndata.AnnData
        19,619 cells x 299 genes, a new object on every call.

        - ``X``: ``log1p(counts / total_counts * 1e4)``, float32 CSR.
          ``total_counts`` is the sum over the 299 shipped genes: the
          original library size is not available in the source, so this is
          a library size over the retained genes only.
        - ``layers["counts"]``: raw UMI counts, int32 CSR.
        - ``obs``: the contract columns (``perturbation`` = targeted gene
          symbol, or ``"non-targeting"``; ``is_control``;
          ``perturbation_type`` ``"knockout"`` or ``"control"``;
          ``expression_level_after_perturbation`` NaN, a knockout implying
          T = 0), plus ``guide`` (guide id; CD274's guides are named
          ``PDL1g*``), ``guide_umis`` (UMIs of the assigned guide),
          ``guide_fraction`` (its share of the cell's guide UMIs),
          ``bio_rep`` (biological replicate ``rep_1`` / ``rep_2`` /
          ``rep_3``) and ``total_counts``. Cell names ``cellNNNNN`` give the
          1-based column of the cell in the sceptredata matrices.
        - ``var["targeted"]``: the gene is a target of the screen.
        - ``uns["causalcell"]``: source, citation, license, guide assignment
          rule and normalisation.

    Raises
    ------
    DataFileError
        If the shipped files are missing or damaged.

    Notes
    -----
    After normalisation the measured targets drop clearly in their knockout
    cells against non-targeting cells: mean normalised STAT1 falls to 0.23x
    and JAK2 to 0.24x; the other seven measured targets to 0.50-0.75x.

    References
    ----------
    .. [1] Papalexi E, et al. Characterizing the molecular regulation of
       inhibitory immune checkpoints with multimodal single-cell screens.
       Nat Genet 53, 322-331 (2021).
    .. [2] sceptredata authors. sceptredata: example data for the sceptre R
       package, MIT licence, github.com/Katsevich-Lab/sceptredata.

    Examples
    --------
    >>> import causalcell as cc
    >>> adata = cc.datasets.load_papalexi2021()
    >>> adata.shape
    (19619, 299)
    >>> int(adata.obs["is_control"].sum())
    2292
    """
    counts, genes = _read_papalexi_counts()
    cells = _read_csv(
        "papalexi2021",
        "cells.csv.gz",
        dtype={"cell": str, "guide": str, "bio_rep": str},
    )
    _require_columns(
        cells,
        ("cell", "guide", "guide_umis", "guide_umis_total", "bio_rep"),
        "papalexi2021/cells.csv.gz",
    )
    guides = _read_csv("papalexi2021", "guides.csv", dtype=str)
    _require_columns(guides, ("grna_id", "grna_target"), "papalexi2021/guides.csv")
    if len(cells) != counts.shape[0]:
        raise DataFileError(
            f"papalexi2021/cells.csv.gz has {len(cells)} rows but counts.npz has "
            f"{counts.shape[0]} cells. {_REBUILD_HINT}"
        )
    target_of = pd.Series(guides["grna_target"].to_numpy(), index=guides["grna_id"].to_numpy())
    target = target_of.reindex(cells["guide"].to_numpy())
    if target.isna().any():
        bad = cells["guide"].to_numpy()[target.isna().to_numpy()][0]
        raise DataFileError(
            f"Guide {bad!r} of papalexi2021/cells.csv.gz is not in guides.csv. {_REBUILD_HINT}"
        )
    target_arr = target.to_numpy(dtype=object)
    is_control = target_arr == PAPALEXI_CONTROL

    totals = np.asarray(counts.sum(axis=1), dtype=np.int64).ravel()
    guide_umis = cells["guide_umis"].to_numpy(dtype=np.int64)
    obs = pd.DataFrame(
        {
            PERTURBATION: target_arr,
            IS_CONTROL: is_control,
            PERTURBATION_TYPE: np.where(is_control, "control", "knockout").astype(object),
            LEVEL: np.full(len(cells), np.nan),
            "guide": pd.Categorical(
                cells["guide"].to_numpy(), categories=guides["grna_id"].to_numpy()
            ),
            "guide_umis": guide_umis,
            "guide_fraction": guide_umis / cells["guide_umis_total"].to_numpy(dtype=np.float64),
            "bio_rep": pd.Categorical(cells["bio_rep"].to_numpy()),
            "total_counts": totals,
        },
        index=pd.Index(cells["cell"].to_numpy(dtype=object), name=None),
    )
    targets = set(guides["grna_target"]) - {PAPALEXI_CONTROL}
    var = pd.DataFrame(
        {"targeted": np.isin(genes, sorted(targets))}, index=pd.Index(genes.astype(object))
    )
    adata = AnnData(
        X=_log_normalize(counts, totals.astype(np.float64)),
        obs=obs,
        var=var,
        layers={"counts": counts},
    )
    adata.uns["causalcell"] = {
        "source": "sceptredata (Katsevich-Lab) lowmoi_example_data, commit "
        "ec722d5df90dfd34ace6cc9a5745ab6a5c2a6731",
        "citation": _PAPALEXI_CITATION,
        "license": "MIT (sceptredata authors); see causalcell/datasets/data/papalexi2021/"
        "LICENSE.md",
        "guide_assignment": PAPALEXI_GUIDE_RULE,
        "normalization": "X = log1p(counts / total_counts * 1e4); total_counts is the sum "
        "over the 299 shipped genes (the original library size is not available)",
    }
    return adata


# ---------------------------------------------------------------------------
# Sachs et al. 2005


def load_sachs2005() -> AnnData:
    """Load the Sachs et al. 2005 flow cytometry data (11 phospho-proteins).

    Human primary CD4+ T cells, 7,466 cells measured under 9 conditions: the
    baseline stimulation anti-CD3/CD28 (``cd3_cd28``, 853 cells), that
    stimulation plus one of six reagents (``cd3_cd28+aktinhib`` 911,
    ``+icam2`` 902, ``+ly`` 848, ``+psitect`` 810, ``+u0126`` 799,
    ``+g0076`` 723), and two stimulations without anti-CD3/CD28 (``pma`` 913,
    ``b2camp`` 707). Copied from cmu-phil/example-causal-datasets (CC0).

    The perturbation targets follow the usual reading of the paper. They act
    on the activity of a molecule, not on its measured abundance, so
    ``perturbation_type`` is ``"inhibition"`` or ``"activation"`` and the
    level column is NaN:

    =====================  ==========  ============  ===========================
    condition              target      type          note
    =====================  ==========  ============  ===========================
    cd3_cd28               cd3_cd28    control       baseline
    cd3_cd28+aktinhib      akt         inhibition    Akt inhibitor
    cd3_cd28+g0076         pkc         inhibition    Gö6976, PKC inhibitor
    cd3_cd28+psitect       pip2        inhibition    psitectorigenin, inhibits PIP2
    cd3_cd28+u0126         mek         inhibition    blocks MEK activity:
                                                     phospho-MEK itself can rise
    cd3_cd28+ly            pip3        inhibition    LY294002 inhibits PI3K
                                                     (unmeasured), whose product
                                                     PIP3 is measured
    cd3_cd28+icam2         ICAM2       activation    co-stimulation with no
                                                     single measured target: an
                                                     unmeasured label
    pma                    pkc         activation    phorbol ester, PKC activator
    b2camp                 pka         activation    8-bromo-cAMP, PKA activator
    =====================  ==========  ============  ===========================

    Returns
    -------
    anndata.AnnData
        7,466 cells x 11 proteins (``raf, mek, plc, pip2, pip3, erk, akt, pka,
        pkc, p38, jnk``, as named in the source files), a new object on every
        call.

        - ``X``: ``log(x + 10)`` of the intensities as given in the source
          (rounded to 4 decimals there), float32 dense. This is not the
          log-per-10,000 normalisation of sequencing data.
        - ``layers["raw"]``: the raw intensities, float32 dense.
        - ``obs``: the contract columns and ``condition`` (categorical).
        - ``uns["causalcell"]``: source, citation, license, targets.

    Raises
    ------
    DataFileError
        If the shipped file is missing or damaged.

    See Also
    --------
    load_sachs2005_network : the consensus network of these 11 proteins.

    Notes
    -----
    Because the reagents act on activity, the measured phospho-level of a
    target need not move: psitectorigenin lowers PIP2 and U0126 lowers ERK
    (while raising phospho-MEK) clearly, but PMA and 8-Br-cAMP barely change
    PKC and PKA, and Gö6976 raises PKC and most other proteins while PKA falls.

    References
    ----------
    .. [1] Sachs K, Perez O, Pe'er D, Lauffenburger DA, Nolan GP. Causal
       protein-signaling networks derived from multiparameter single-cell
       data. Science 308, 523-529 (2005).

    Examples
    --------
    >>> import causalcell as cc
    >>> adata = cc.datasets.load_sachs2005()
    >>> adata.shape
    (7466, 11)
    >>> int((adata.obs["condition"] == "pma").sum())
    913
    """
    where = "sachs2005/sachs2005.csv.gz"
    raw_cols = [f"raw_{p}" for p in SACHS_PROTEINS]
    log_cols = [f"log_{p}" for p in SACHS_PROTEINS]
    table = _read_csv("sachs2005", "sachs2005.csv.gz", dtype={"cell": str, "condition": str})
    _require_columns(table, ["cell", "condition", *raw_cols, *log_cols], where)
    condition = table["condition"].to_numpy(dtype=object)
    unknown = sorted(set(condition) - set(SACHS_CONDITIONS))
    if unknown:
        raise DataFileError(f"{where} has unknown condition(s) {unknown}. {_REBUILD_HINT}")
    label = {c: v[0] for c, v in SACHS_CONDITIONS.items()}
    kind = {c: v[1] for c, v in SACHS_CONDITIONS.items()}
    cond = pd.Series(condition)
    obs = pd.DataFrame(
        {
            PERTURBATION: cond.map(label).to_numpy(dtype=object),
            IS_CONTROL: condition == SACHS_CONTROL,
            PERTURBATION_TYPE: cond.map(kind).to_numpy(dtype=object),
            LEVEL: np.full(len(table), np.nan),
            "condition": pd.Categorical(condition, categories=list(SACHS_CONDITIONS)),
        },
        index=pd.Index(table["cell"].to_numpy(dtype=object)),
    )
    adata = AnnData(
        X=table[log_cols].to_numpy(dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(list(SACHS_PROTEINS), dtype=object)),
        layers={"raw": table[raw_cols].to_numpy(dtype=np.float32)},
    )
    adata.uns["causalcell"] = {
        "source": "cmu-phil/example-causal-datasets, commit "
        "a23adc349a23fc34d258193b45c60522ca6355b4, real/sachs/",
        "citation": _SACHS_CITATION,
        "license": "CC0 1.0; see causalcell/datasets/data/sachs2005/LICENSE",
        "expression": "X = log(x + 10) of the raw intensities (layers['raw'])",
        "targets": {c: f"{v[0]} ({v[1]})" for c, v in SACHS_CONDITIONS.items()},
    }
    return adata


def load_sachs2005_network() -> nx.DiGraph:
    """Load the 20-edge consensus signalling network of Sachs et al. 2005.

    The network of the 11 measured proteins commonly used as ground truth for
    these data (the signalling connections known from the literature that
    Sachs et al. compared their inferred network with), in the edge list of
    cmu-phil/example-causal-datasets (CC0). It is acyclic.

    Returns
    -------
    networkx.DiGraph
        11 nodes (the protein names of :func:`load_sachs2005`) and 20 edges
        ``regulator -> target``, each with ``weight`` 1.0; a new graph on
        every call. ``G.graph`` holds ``source`` and ``citation``.

    Raises
    ------
    DataFileError
        If the shipped file is missing or damaged.

    References
    ----------
    .. [1] Sachs K, et al. Causal protein-signaling networks derived from
       multiparameter single-cell data. Science 308, 523-529 (2005).

    Examples
    --------
    >>> import causalcell as cc
    >>> G = cc.datasets.load_sachs2005_network()
    >>> G.number_of_edges()
    20
    >>> sorted(G.successors("raf"))
    ['mek']
    """
    where = "sachs2005/consensus_network.csv"
    edges = _read_csv("sachs2005", "consensus_network.csv", dtype=str)
    _require_columns(edges, ("source", "target"), where)
    unknown = sorted((set(edges["source"]) | set(edges["target"])) - set(SACHS_PROTEINS))
    if unknown:
        raise DataFileError(f"{where} names unknown protein(s) {unknown}. {_REBUILD_HINT}")
    graph = nx.DiGraph(
        source="Sachs et al. 2005 consensus network (cmu-phil/example-causal-datasets, CC0)",
        citation=_SACHS_CITATION,
    )
    graph.add_nodes_from(SACHS_PROTEINS)
    graph.add_edges_from(zip(edges["source"], edges["target"], strict=True), weight=1.0)
    return graph


# ---------------------------------------------------------------------------
# Priors


def _gene_set(genes: Iterable[str], name: str) -> set[str]:
    if isinstance(genes, str | bytes):
        raise DataContractError(
            f"{name} must be a collection of gene symbols, got the single string {genes!r}. "
            f"Wrap it in a list: {name}=[{genes!r}]."
        )
    try:
        return {str(g) for g in genes}
    except TypeError:
        raise DataContractError(
            f"{name} must be an iterable of gene symbols (list, set, pandas.Index), got "
            f"{type(genes).__name__}."
        ) from None


def load_collectri(genes: Iterable[str] | None = None, *, self_loops: bool = False) -> nx.DiGraph:
    """Load the CollecTRI TF -> target edges among the Papalexi genes.

    A slice of the CollecTRI human regulatory network (43,178 signed edges,
    exported with ``decoupleR::get_collectri(split_complexes = FALSE)``,
    September 2025): every edge whose target is one of the 299 genes of
    :func:`load_papalexi2021` and whose source is one of those genes or one of
    the 26 targets of that screen. That is 74 edges (66 activating, 8
    repressing), 8 of them self-loops (STAT1, STAT3, SMAD6, CTNNB1, ATRX,
    CREB3L4, LHX2, MBD1 regulating themselves). Without self-loops, 66 edges
    (59 activating, 7 repressing) on 47 genes from 18 regulators (7 of them,
    ATF2, BRD4, IRF1, MYC, SMAD4, SPI1, STAT5A, are targeted but not
    measured); 25 edges have both ends among the measured genes. The graph
    has cycles (e.g. STAT1 <-> STAT2): it is a prior, not a DAG.

    Parameters
    ----------
    genes
        If given, keep only the edges with both ends in ``genes`` (for
        example ``adata.var_names``). ``None`` keeps the whole slice.
    self_loops
        Keep the 8 autoregulation edges. Off by default: a gene cannot be a
        parent of itself in the per-gene models of causalcell.

    Returns
    -------
    networkx.DiGraph
        Nodes are the genes that appear in a kept edge; each edge
        ``TF -> target`` has ``weight`` +1.0 (activation) or -1.0
        (repression). A new graph on every call; ``G.graph`` holds
        ``source`` and ``citation``.

    Raises
    ------
    DataContractError
        If ``genes`` is a single string or not iterable.
    DataFileError
        If the shipped file is missing or damaged.

    Warns
    -----
    NetworkWarning
        If ``genes`` is not empty but shares no gene with the slice (often a
        naming mismatch, e.g. Ensembl ids or lower-case symbols instead of
        HGNC symbols).

    References
    ----------
    .. [1] Müller-Dott S, et al. Expanding the coverage of regulons from
       high-confidence prior knowledge for accurate estimation of
       transcription factor activities. Nucleic Acids Res 51, 10934-10949
       (2023).

    Examples
    --------
    >>> import causalcell as cc
    >>> G = cc.datasets.load_collectri()
    >>> G.number_of_edges()
    66
    >>> G["STAT1"]["STAT2"]["weight"]
    1.0
    """
    keep_genes = None if genes is None else _gene_set(genes, "genes")
    where = "collectri/collectri_papalexi2021.csv"
    edges = _read_csv(
        "collectri",
        "collectri_papalexi2021.csv",
        dtype={"source": str, "target": str, "weight": np.float64},
    )
    _require_columns(edges, ("source", "target", "weight"), where)
    keep = np.ones(len(edges), dtype=bool)
    if not self_loops:
        keep &= (edges["source"] != edges["target"]).to_numpy()
    if keep_genes is not None:
        in_source = edges["source"].isin(keep_genes).to_numpy()
        in_target = edges["target"].isin(keep_genes).to_numpy()
        if keep_genes and not (in_source | in_target).any():
            example = sorted(keep_genes)[:3]
            warnings.warn(
                f"None of the {len(keep_genes)} genes passed to load_collectri (e.g. "
                f"{example}) is in the CollecTRI slice; the graph is empty. Use HGNC gene "
                f"symbols such as 'STAT1'.",
                NetworkWarning,
                stacklevel=2,
            )
        keep &= in_source & in_target
    kept = edges.loc[keep]
    graph = nx.DiGraph(
        source="CollecTRI human (decoupleR get_collectri, 2025-09), slice on "
        "the Papalexi 2021 genes and targets",
        citation=_COLLECTRI_CITATION,
    )
    graph.add_weighted_edges_from(
        zip(kept["source"], kept["target"], kept["weight"].astype(float), strict=True)
    )
    return graph


def load_tf_names() -> list[str]:
    """Load the 1,639 human transcription factors of Lambert et al. 2018.

    The curated catalogue of likely human sequence-specific TFs (file
    ``TF_names_v_1.01.txt`` of humantfs.ccbr.utoronto.ca), as HGNC symbols or
    Ensembl-era clone names (e.g. ``AC008770.3``).

    Returns
    -------
    list of str
        The 1,639 names in the order of the source file (alphabetical), a new
        list on every call.

    Raises
    ------
    DataFileError
        If the shipped file is missing or damaged.

    References
    ----------
    .. [1] Lambert SA, et al. The Human Transcription Factors. Cell 172,
       650-665 (2018).

    Examples
    --------
    >>> import causalcell as cc
    >>> tfs = cc.datasets.load_tf_names()
    >>> len(tfs), "STAT1" in tfs
    (1639, True)
    """
    with _open_data("lambert2018_tfs", "TF_names_v_1.01.txt") as fh:
        text = fh.read().decode("utf-8")
    # The source mixes CRLF and LF line endings.
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n]
