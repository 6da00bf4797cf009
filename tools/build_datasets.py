"""Build the real data files shipped in ``causalcell/datasets/data/``.

A one-off conversion run by developers, never at user run time::

    python tools/build_datasets.py /path/to/source/data [--out DIR]

It lives outside the installed package (developer tooling does not ship in
the wheel) and imports the installed ``causalcell`` for the shared constants.

The source folder holds the files described in its README (``papalexi2021/``,
``sachs2005/``, ``priors/``). The output is small, readable with the runtime
dependencies only (numpy, pandas, scipy) and byte-for-byte deterministic:
gzip streams carry no time stamp, npz members a fixed date, and rebuilding
from the same sources gives identical files. Reading the R data of Papalexi
et al. needs the development dependency ``rdata``, imported inside
:func:`build_papalexi2021` only.

Every check of the sources (shapes, names, the agreement of the two Sachs
files, the published condition counts) raises :class:`DataFileError` naming
the file and what differs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell.datasets.real import (
    PAPALEXI_CONTROL,
    PAPALEXI_MIN_GUIDE_FRACTION,
    PAPALEXI_MIN_GUIDE_UMIS,
    SACHS_CONDITIONS,
    SACHS_PROTEINS,
)
from causalcell.errors import DataFileError

__all__ = [
    "assign_dominant_guide",
    "build_all",
    "build_collectri",
    "build_papalexi2021",
    "build_sachs2005",
    "build_tf_names",
    "main",
]

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "causalcell" / "datasets" / "data"

# Shapes and counts documented by the sources; a different source file is a
# different data set and must not be converted silently.
_PAPALEXI_N_GENES = 299
_PAPALEXI_N_CELLS = 20_729
_PAPALEXI_N_GUIDES = 110
_PAPALEXI_N_TARGETS = 26
_SACHS_COUNTS = {
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
_SACHS_STIMULI = ("cd3_cd28", "pma", "b2camp")
_SACHS_REAGENTS = ("icam2", "aktinhib", "g0076", "psitect", "u0126", "ly")
_SACHS_N_EDGES = 20
# The mixed file gives log(x + 10) rounded to 4 decimals: |error| <= 5e-5.
_SACHS_LOG_TOL = 1e-4
_N_LAMBERT_TFS = 1639

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip entry can carry


# ---------------------------------------------------------------------------
# Deterministic, atomic writers


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _gzip_bytes(payload: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and an empty file name keep the gzip header constant.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(payload)
    return buf.getvalue()


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    # Floats are written with repr(), so values read from text round-trip exactly.
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (readable by :func:`numpy.load`) with fixed metadata."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w") as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.create_system = 3  # unix, whatever the building machine
            info.external_attr = 0o644 << 16
            zf.writestr(
                info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9
            )
    return buf.getvalue()


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataFileError(
            f"Source file {path} not found. Pass the folder that holds papalexi2021/, "
            f"sachs2005/ and priors/ (see its README)."
        )
    return path


def _copy(src: Path, dst: Path) -> None:
    _write_atomic(dst, _require_file(src).read_bytes())


# ---------------------------------------------------------------------------
# Papalexi et al. 2021


def assign_dominant_guide(
    guide_counts: sp.spmatrix | sp.sparray | np.ndarray,
    *,
    min_umis: int = PAPALEXI_MIN_GUIDE_UMIS,
    min_fraction: float = PAPALEXI_MIN_GUIDE_FRACTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign each cell its dominant guide, or none.

    A cell gets the guide with the most UMIs when that guide holds strictly
    more than ``min_fraction`` of the cell's guide UMIs and at least
    ``min_umis`` UMIs. With ``min_fraction >= 0.5`` the dominant guide is
    unique, so ties are never assigned.

    Parameters
    ----------
    guide_counts
        Cells x guides UMI counts (sparse or dense), non-negative.
    min_umis
        Smallest number of UMIs of the dominant guide.
    min_fraction
        The dominant guide's share of the cell's guide UMIs must exceed this.

    Returns
    -------
    guide : numpy.ndarray of int64
        Column index of the assigned guide, -1 for unassigned cells.
    dominant_umis : numpy.ndarray of int64
        UMIs of the most abundant guide of each cell (0 without guides).
    total_umis : numpy.ndarray of int64
        Guide UMIs of each cell.

    Raises
    ------
    DataFileError
        If the counts are negative or not whole numbers.
    """
    counts = sp.csr_array(guide_counts)
    if counts.nnz and (counts.data.min() < 0 or not np.all(np.mod(counts.data, 1) == 0)):
        raise DataFileError("Guide UMI counts must be non-negative whole numbers.")
    n_cells = counts.shape[0]
    total = np.asarray(counts.sum(axis=1)).ravel().astype(np.int64)
    if counts.shape[1] == 0:
        zeros = np.zeros(n_cells, dtype=np.int64)
        return np.full(n_cells, -1, dtype=np.int64), zeros, zeros
    dominant = np.asarray(counts.max(axis=1).toarray()).ravel().astype(np.int64)
    which = np.asarray(counts.argmax(axis=1)).ravel().astype(np.int64)
    # dominant / total > min_fraction, in exact integer-safe float arithmetic.
    ok = (dominant >= min_umis) & (dominant > min_fraction * total) & (total > 0)
    return np.where(ok, which, -1), dominant, total


def _triplets_to_csr(matrix: Any, name: str) -> tuple[sp.csr_array, np.ndarray]:
    """An R dgTMatrix (as returned by rdata) -> (columns x rows CSR, row names)."""
    needed = ("i", "j", "x", "Dim", "Dimnames")
    if not all(hasattr(matrix, a) for a in needed):
        raise DataFileError(
            f"{name} is not a dgTMatrix as read by rdata (attributes {needed} expected, got "
            f"{type(matrix).__name__})."
        )
    n_rows, n_cols = (int(v) for v in matrix.Dim)
    values = np.asarray(matrix.x, dtype=np.float64)
    if values.size and (values.min() < 0 or not np.all(np.mod(values, 1) == 0)):
        raise DataFileError(f"{name} holds values that are not non-negative UMI counts.")
    # Transposed: cells become rows. Duplicated triplets are summed, as in R.
    csr = sp.coo_array(
        (values.astype(np.int64), (np.asarray(matrix.j), np.asarray(matrix.i))),
        shape=(n_cols, n_rows),
    ).tocsr()
    csr.sum_duplicates()
    csr.sort_indices()
    row_names = np.asarray(matrix.Dimnames[0]).astype(str)
    if len(row_names) != n_rows:
        raise DataFileError(f"{name} has {n_rows} rows but {len(row_names)} row names.")
    return csr, row_names


def build_papalexi2021(source: Path, out: Path) -> dict[str, Any]:
    """Convert sceptredata's ``lowmoi_example_data.rda`` (Papalexi et al. 2021).

    Writes ``papalexi2021/counts.npz`` (assigned cells x 299 genes, CSR of
    uint16 counts and gene names), ``cells.csv.gz`` (cell, guide, guide_umis,
    guide_umis_total, bio_rep), ``guides.csv`` (grna_id, grna_target) and a
    copy of ``LICENSE.md``.

    Returns
    -------
    dict
        ``genes`` and ``targets`` (for the CollecTRI slice), ``n_cells_in``,
        ``n_cells_out`` and ``cells_per_perturbation``.
    """
    import rdata  # development dependency, only needed to rebuild

    src_dir = source / "papalexi2021"
    rda = _require_file(src_dir / "lowmoi_example_data.rda")
    with warnings.catch_warnings():
        # rdata has no Python class for Matrix's dgTMatrix and returns its slots.
        warnings.filterwarnings("ignore", message=".*dgTMatrix.*", category=UserWarning)
        parsed = rdata.read_rda(rda)
    try:
        obj = parsed["lowmoi_example_data"]
        response, genes = _triplets_to_csr(obj["response_matrix"], "response_matrix")
        grna, guide_ids = _triplets_to_csr(obj["grna_matrix"], "grna_matrix")
        table = obj["grna_target_data_frame"]
        covariates = obj["extra_covariates"]
    except KeyError as exc:
        raise DataFileError(f"{rda} lacks the component {exc} of lowmoi_example_data.") from None

    n_cells = response.shape[0]
    if response.shape != (_PAPALEXI_N_CELLS, _PAPALEXI_N_GENES):
        raise DataFileError(
            f"{rda}: response_matrix is {response.shape[::-1]} (genes x cells), "
            f"expected ({_PAPALEXI_N_GENES}, {_PAPALEXI_N_CELLS})."
        )
    if grna.shape != (n_cells, _PAPALEXI_N_GUIDES):
        raise DataFileError(
            f"{rda}: grna_matrix is {grna.shape[::-1]} (guides x cells), "
            f"expected ({_PAPALEXI_N_GUIDES}, {n_cells})."
        )
    if len(set(genes)) != len(genes):
        raise DataFileError(f"{rda}: response_matrix gene names are not unique.")
    if response.data.max() >= 2**16:
        raise DataFileError(f"{rda}: a count exceeds 65535 and does not fit uint16 storage.")

    guide_table = pd.DataFrame(
        {
            "grna_id": np.asarray(table["grna_id"]).astype(str),
            "grna_target": np.asarray(table["grna_target"]).astype(str),
        }
    )
    if set(guide_table["grna_id"]) != set(guide_ids) or guide_table["grna_id"].duplicated().any():
        raise DataFileError(
            f"{rda}: grna_target_data_frame$grna_id does not list the "
            f"{len(guide_ids)} rows of grna_matrix exactly once."
        )
    targets = sorted(set(guide_table["grna_target"]) - {PAPALEXI_CONTROL})
    if PAPALEXI_CONTROL not in set(guide_table["grna_target"]) or (
        len(targets) != _PAPALEXI_N_TARGETS
    ):
        raise DataFileError(
            f"{rda}: expected {_PAPALEXI_N_TARGETS} targets and the control "
            f"label {PAPALEXI_CONTROL!r}, found {len(targets)} targets."
        )
    if "bio_rep" not in covariates.columns or len(covariates) != n_cells:
        raise DataFileError(f"{rda}: extra_covariates must hold bio_rep for {n_cells} cells.")
    # Rows of an R data frame match the matrix columns by position (its row
    # names are permuted labels, not positions).
    bio_rep = covariates["bio_rep"].astype(str).to_numpy()

    guide, dominant, total = assign_dominant_guide(grna)
    keep = guide >= 0
    cell_names = np.char.add("cell", np.char.zfill(np.arange(1, n_cells + 1).astype(str), 5))
    counts = response[keep]
    counts.sort_indices()
    out_dir = out / "papalexi2021"
    _write_atomic(
        out_dir / "counts.npz",
        _npz_bytes(
            {
                "data": counts.data.astype(np.uint16),
                "indices": counts.indices.astype(np.uint16),
                "indptr": counts.indptr.astype(np.int32),
                "shape": np.asarray(counts.shape, dtype=np.int64),
                "genes": genes.astype(np.str_),
            }
        ),
    )
    cells = pd.DataFrame(
        {
            "cell": cell_names[keep],
            "guide": guide_ids[guide[keep]],
            "guide_umis": dominant[keep],
            "guide_umis_total": total[keep],
            "bio_rep": bio_rep[keep],
        }
    )
    _write_atomic(out_dir / "cells.csv.gz", _gzip_bytes(_csv_bytes(cells)))
    _write_atomic(out_dir / "guides.csv", _csv_bytes(guide_table))
    _copy(src_dir / "LICENSE.md", out_dir / "LICENSE.md")

    target_of = dict(zip(guide_table["grna_id"], guide_table["grna_target"], strict=True))
    per_pert = pd.Series([target_of[g] for g in cells["guide"]]).value_counts()
    return {
        "genes": genes.tolist(),
        "targets": targets,
        "measured_targets": [g for g in genes if g in set(targets)],
        "n_cells_in": n_cells,
        "n_cells_out": int(keep.sum()),
        "cells_per_perturbation": per_pert.to_dict(),
    }


# ---------------------------------------------------------------------------
# Sachs et al. 2005


def _sachs_conditions(indicators: pd.DataFrame, where: Path) -> np.ndarray:
    """Exact 0/1 indicator columns -> condition names such as ``cd3_cd28+ly``."""
    values = indicators.to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise DataFileError(f"{where}: condition indicators must be exactly 0 or 1.")
    stim = indicators[list(_SACHS_STIMULI)].to_numpy(dtype=bool)
    reagent = indicators[list(_SACHS_REAGENTS)].to_numpy(dtype=bool)
    bad = (stim.sum(axis=1) != 1) | (reagent.sum(axis=1) > 1) | (reagent.any(axis=1) & ~stim[:, 0])
    if bad.any():
        raise DataFileError(
            f"{where}: data row {int(np.flatnonzero(bad)[0]) + 1} has an "
            f"indicator pattern that is not one of the 9 conditions."
        )
    names = np.asarray(_SACHS_STIMULI, dtype=object)[stim.argmax(axis=1)]
    suffix = np.asarray(["", *(f"+{r}" for r in _SACHS_REAGENTS)], dtype=object)
    has = reagent.any(axis=1)
    return names + suffix[np.where(has, reagent.argmax(axis=1) + 1, 0)]


def _read_sachs_network(path: Path) -> pd.DataFrame:
    text = _require_file(path).read_text()
    _, _, body = text.partition("Graph Edges:")
    rows = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        _, _, edge = line.partition(". ")
        source, arrow, target = edge.partition(" --> ")
        if not arrow:
            raise DataFileError(f"{path}: cannot parse edge line {line!r}.")
        rows.append((source.strip(), target.strip()))
    edges = pd.DataFrame(rows, columns=["source", "target"])
    unknown = sorted((set(edges["source"]) | set(edges["target"])) - set(SACHS_PROTEINS))
    if len(edges) != _SACHS_N_EDGES or unknown or edges.duplicated().any():
        raise DataFileError(
            f"{path}: expected {_SACHS_N_EDGES} distinct edges between the 11 "
            f"proteins, found {len(edges)} (unknown names: {unknown})."
        )
    return edges


def build_sachs2005(source: Path, out: Path) -> dict[str, Any]:
    """Convert the Sachs et al. 2005 files of cmu-phil/example-causal-datasets.

    Writes ``sachs2005/sachs2005.csv.gz`` (cell, condition, ``raw_<protein>``,
    ``log_<protein>``), ``consensus_network.csv`` (source, target) and a copy
    of ``LICENSE``.

    Returns
    -------
    dict
        ``n_cells``, ``condition_counts`` and ``n_edges``.
    """
    src_dir = source / "sachs2005"
    mixed_path = _require_file(
        src_dir / "sachs.2005.continuous.discrete.experimental.mixed.maximum.2.txt"
    )
    jitter_path = _require_file(src_dir / "sachs.2005.with.jittered.experimental.continuous.txt")
    mixed = pd.read_csv(mixed_path, sep="\t")
    jitter = pd.read_csv(jitter_path, sep="\t")
    indicators = [*_SACHS_STIMULI[:1], *_SACHS_REAGENTS, *_SACHS_STIMULI[1:]]
    for frame, path in ((mixed, mixed_path), (jitter, jitter_path)):
        missing = [c for c in (*SACHS_PROTEINS, *indicators) if c not in frame.columns]
        if missing:
            raise DataFileError(f"{path}: missing column(s) {missing}.")
    if len(mixed) != len(jitter):
        raise DataFileError(
            f"{mixed_path.name} has {len(mixed)} rows but {jitter_path.name} "
            f"has {len(jitter)}; they must describe the same cells."
        )
    proteins = list(SACHS_PROTEINS)
    raw = jitter[proteins].to_numpy(dtype=np.float64)
    logged = mixed[proteins].to_numpy(dtype=np.float64)
    if not (np.isfinite(raw).all() and np.isfinite(logged).all()) or raw.min() <= -10:
        raise DataFileError(f"{src_dir}: non-finite intensities or values <= -10.")
    # Same cells in the same order: the indicators agree after rounding the
    # jitter away, and log(raw + 10) reproduces the log file up to its rounding.
    rounded = np.rint(jitter[indicators].to_numpy(dtype=np.float64))
    differ = np.flatnonzero((rounded != mixed[indicators].to_numpy()).any(axis=1))
    if differ.size:
        raise DataFileError(
            f"{src_dir}: the condition indicators of the two files differ first "
            f"in data row {int(differ[0]) + 1}."
        )
    gap = np.abs(np.log(raw + 10.0) - logged)
    if gap.max() > _SACHS_LOG_TOL:
        row = int(np.unravel_index(gap.argmax(), gap.shape)[0]) + 1
        raise DataFileError(
            f"{src_dir}: log(raw + 10) differs from the log file by "
            f"{gap.max():.3g} in data row {row}; the files do not match."
        )
    condition = _sachs_conditions(mixed[indicators], mixed_path)
    counts = pd.Series(condition).value_counts().to_dict()
    if counts != _SACHS_COUNTS or set(counts) != set(SACHS_CONDITIONS):
        raise DataFileError(
            f"{src_dir}: condition counts {counts} differ from the published {_SACHS_COUNTS}."
        )

    n = len(mixed)
    width = len(str(n))
    table = pd.DataFrame(
        {
            "cell": np.char.add("cell", np.char.zfill(np.arange(1, n + 1).astype(str), width)),
            "condition": condition,
        }
    )
    table = pd.concat(
        [
            table,
            pd.DataFrame(raw, columns=[f"raw_{p}" for p in proteins]),
            pd.DataFrame(logged, columns=[f"log_{p}" for p in proteins]),
        ],
        axis=1,
    )
    out_dir = out / "sachs2005"
    _write_atomic(out_dir / "sachs2005.csv.gz", _gzip_bytes(_csv_bytes(table)))
    edges = _read_sachs_network(src_dir / "sachs.2005.ground.truth.graph.txt")
    _write_atomic(out_dir / "consensus_network.csv", _csv_bytes(edges))
    _copy(src_dir / "LICENSE", out_dir / "LICENSE")
    return {"n_cells": n, "condition_counts": counts, "n_edges": len(edges)}


# ---------------------------------------------------------------------------
# Priors


def build_collectri(
    source: Path, out: Path, genes: Sequence[str], targets: Sequence[str]
) -> dict[str, Any]:
    """Slice CollecTRI to the edges among the measured genes and screen targets.

    Keeps every edge whose target is in ``genes`` and whose source is in
    ``genes`` or ``targets``; writes ``collectri/collectri_papalexi2021.csv``
    (source, target, weight), sorted by source then target.

    Returns
    -------
    dict
        ``n_edges``, ``n_self_loops``, ``n_activating``, ``n_repressing``.
    """
    path = _require_file(source / "priors" / "collectri" / "collectri_human_decoupleR_2025-09.csv")
    frame = pd.read_csv(path, dtype={"source": str, "target": str})
    missing = [c for c in ("source", "target", "weight") if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}.")
    weight = pd.to_numeric(frame["weight"], errors="coerce")
    if weight.isna().any() or (weight == 0).any():
        raise DataFileError(f"{path}: weights must be signed non-zero numbers.")
    gene_set = set(genes)
    keep = frame["target"].isin(gene_set) & frame["source"].isin(gene_set | set(targets))
    sliced = frame.loc[keep, ["source", "target", "weight"]]
    if sliced.duplicated(["source", "target"]).any():
        raise DataFileError(f"{path}: duplicated source -> target edges in the slice.")
    sliced = sliced.sort_values(["source", "target"], kind="stable").reset_index(drop=True)
    _write_atomic(out / "collectri" / "collectri_papalexi2021.csv", _csv_bytes(sliced))
    w = sliced["weight"].to_numpy()
    return {
        "n_edges": len(sliced),
        "n_self_loops": int((sliced["source"] == sliced["target"]).sum()),
        "n_activating": int((w > 0).sum()),
        "n_repressing": int((w < 0).sum()),
    }


def build_tf_names(source: Path, out: Path) -> dict[str, Any]:
    """Copy the Lambert et al. 2018 TF list verbatim, after checking it."""
    path = _require_file(source / "priors" / "lambert2018_tfs" / "TF_names_v_1.01.txt")
    payload = path.read_bytes()
    names = [n.strip() for n in payload.decode("utf-8").splitlines() if n.strip()]
    if len(names) != _N_LAMBERT_TFS or len(set(names)) != len(names):
        raise DataFileError(
            f"{path}: expected {_N_LAMBERT_TFS} distinct names, found "
            f"{len(names)} ({len(set(names))} distinct)."
        )
    _write_atomic(out / "lambert2018_tfs" / "TF_names_v_1.01.txt", payload)
    return {"n_tfs": len(names)}


def build_all(source: Path | str, out: Path | str = DEFAULT_OUT) -> dict[str, Any]:
    """Build every shipped data file from ``source`` into ``out``.

    Parameters
    ----------
    source
        The folder with ``papalexi2021/``, ``sachs2005/`` and ``priors/``.
    out
        The output folder, by default the package's ``datasets/data``.

    Returns
    -------
    dict
        A summary per data set plus ``files``: relative path -> (bytes,
        sha256) of every file written or already present in ``out``.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise DataFileError(f"Source folder {source} does not exist.")
    summary: dict[str, Any] = {}
    papalexi = build_papalexi2021(source, out)
    summary["papalexi2021"] = papalexi
    summary["sachs2005"] = build_sachs2005(source, out)
    summary["collectri"] = build_collectri(source, out, papalexi["genes"], papalexi["targets"])
    summary["lambert2018_tfs"] = build_tf_names(source, out)
    summary["files"] = {
        str(p.relative_to(out)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints a summary of what was built."""
    parser = argparse.ArgumentParser(
        prog="python tools/build_datasets.py",
        description="Convert the real source data into causalcell's shipped data files.",
    )
    parser.add_argument("source", type=Path, help="folder with papalexi2021/, sachs2005/, priors/")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    summary = build_all(args.source, args.out)
    pap = summary["papalexi2021"]
    print(
        f"papalexi2021: {pap['n_cells_in']} cells -> {pap['n_cells_out']} assigned; "
        f"measured targets: {', '.join(pap['measured_targets'])}"
    )
    for label, n in sorted(pap["cells_per_perturbation"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<14} {n:>5}")
    print(f"sachs2005: {summary['sachs2005']}")
    print(f"collectri: {summary['collectri']}")
    print(f"lambert2018_tfs: {summary['lambert2018_tfs']}")
    total = 0
    for name, (size, digest) in summary["files"].items():
        total += size
        print(f"  {size:>9}  {digest[:16]}  {name}")
    print(f"  {total:>9}  total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
