"""Out-of-core expression: Dask arrays read lazily from zarr / h5ad, processed in row blocks.

Genome-scale screens (millions of cells) do not fit in memory as dense
arrays. AnnData reads ``X`` lazily as a Dask array; causalcell's passes over
the samples (Gram matrices, group means, DE moments, retrieval blocks) are
sums over *rows*, so they run block by block wherever Dask runs them: on the
active :class:`distributed.Client` when there is one (a laptop's
``LocalCluster``, dask-jobqueue on a SLURM cluster, dask-kubernetes), else on
Dask's threaded scheduler.

The one layout requirement is that each block holds whole rows (cells x all
genes): a statistic of a cell needs all its genes. :func:`check_row_chunks`
says how to rechunk otherwise.

A *backed* AnnData (``read_h5ad(path, backed=True)``) keeps X in its file;
:func:`backed_matrix` reads it as a Dask array chunked along cells, so the
same passes over row blocks serve both (one code path, not two).

Dask is an optional dependency (``pip install "causalcell[dask]"``); nothing
here imports it until a Dask array (or a backed matrix) is actually met.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._progress import tqdm
from causalcell._validation import check_path, nonfinite_rows
from causalcell.errors import DataContractError, DataFileError, ParameterError

__all__ = [
    "LOAD_IN_MEMORY",
    "active_client",
    "backed_matrix",
    "check_finite_block",
    "check_row_chunks",
    "compute_if_small",
    "format_bytes",
    "in_memory_copy",
    "is_backed",
    "is_dask_array",
    "map_row_blocks",
    "physical_memory",
    "read_lazy",
    "row_blocks",
]

T = TypeVar("T")

#: How to bring out-of-core expression into memory, for messages.
LOAD_IN_MEMORY = ("load it first if it fits in memory: adata = adata.to_memory() for a backed "
                  "file (read_h5ad(..., backed=True)), adata.X = adata.X.compute() for a Dask "
                  "array")

# Default rows per block when reading lazily: about 64 MB of float32 per block at 2,000 genes.
_BLOCK_VALUES = 1 << 23


def is_dask_array(X: Any) -> bool:
    """True when ``X`` is a Dask array (checked without importing Dask).

    Subclasses count: a view of an AnnData whose X is a Dask array holds an
    ``anndata`` ``DaskArrayView``, a Dask array too.
    """
    return any(
        cls.__name__ == "Array" and cls.__module__.startswith("dask.array")
        for cls in type(X).__mro__
    )


def is_backed(X: Any) -> bool:
    """True when ``X`` is the on-disk matrix of a backed AnnData (an h5py dataset, or
    anndata's backed CSR / CSC dataset), which only reads what is sliced from it."""
    from anndata.abc import CSCDataset, CSRDataset

    return isinstance(X, h5py.Dataset | CSRDataset | CSCDataset)


def backed_matrix(adata: AnnData, what: str = "X") -> Any:
    """The backed X of ``adata`` as a Dask array chunked along cells (read lazily).

    Every computation then reads the file in row blocks, as it reads any Dask
    X; nothing is loaded until a pass asks for a block.

    Parameters
    ----------
    adata
        An AnnData opened with ``read_h5ad(path, backed=True)`` (not a view:
        a view's X is read into memory by anndata).
    what
        How to call the data in messages (e.g. ``"the observed data"``).

    Raises
    ------
    DataContractError
        If Dask is not installed, or X is stored by gene (CSC): the message
        says to call ``adata.to_memory()`` (or how to store it by cell).
    """
    X = adata.X
    fix = "load it with adata = adata.to_memory() (it then must fit in memory)"
    if getattr(X, "format", None) == "csc":
        raise DataContractError(
            f"{what} is backed and stored by gene (CSC): causalcell reads cells in row blocks, "
            f"which a CSC file can only give by reading every gene. Either {fix}, or write "
            f"it by cell once: adata.to_memory().X.tocsr(), then write_h5ad."
        )
    try:
        import dask.array  # noqa: F401  (read_elem_lazy needs it)
        from anndata.experimental import read_elem_lazy
    except ImportError as exc:
        raise DataContractError(
            f"{what} is backed (read_h5ad(..., backed=True)); causalcell reads backed files "
            f"in row blocks with Dask, which is not installed: pip install 'causalcell[dask]', "
            f"or {fix}."
        ) from exc
    n_genes = adata.n_vars
    rows = max(1, min(_BLOCK_VALUES // max(1, n_genes), adata.n_obs))
    return read_elem_lazy(adata.file["X"], chunks=(rows, n_genes))


def in_memory_copy(adata: AnnData) -> AnnData:
    """A copy of ``adata`` (often a view of some rows) that owns its data.

    ``AnnData.copy`` refuses a backed object (it would need a new file); a
    backed one is read into memory instead (only the rows of a view).
    """
    return adata.to_memory() if adata.isbacked else adata.copy()


def check_finite_block(block: Any, start: int, what: str = "X") -> None:
    """Refuse a row block (NumPy or SciPy sparse) holding NaN or infinite values.

    Parameters
    ----------
    block
        Rows ``start:`` of X, as stored.
    start
        Row index of the block's first row, for the message.
    what
        Name of the matrix in the message.

    Raises
    ------
    DataContractError
        Naming the first row at fault.
    """
    if sp.issparse(block):
        if block.dtype.kind not in "fc" or np.isfinite(block.data).all():
            return
        coo = sp.coo_array(block)
        row = int(coo.row[~np.isfinite(coo.data)][0])
    else:
        values = np.asarray(block)
        if values.dtype.kind not in "fc":
            return
        rows = nonfinite_rows(values)
        if not len(rows):
            return
        row = int(rows[0])
    raise DataContractError(
        f"{what} contains NaN or infinite values, first in sample {start + row} (row index). "
        f"Expression must be finite: impute or drop those cells / genes first."
    )


def check_row_chunks(X: Any, what: str = "X") -> None:
    """Require a Dask array chunked along cells only (every block holds all genes).

    Parameters
    ----------
    X
        A Dask array, cells x genes.
    what
        Its name in messages (e.g. ``"X"`` or ``"layers['logcounts']"``).

    Raises
    ------
    DataContractError
        If ``X`` is not two-dimensional or is split along genes.
    """
    if X.ndim != 2:
        raise DataContractError(f"{what} must be 2-D (cells x genes); got {X.ndim}-D.")
    col_chunks = X.chunks[1]
    if len(col_chunks) > 1:
        raise DataContractError(
            f"{what} is a Dask array chunked along genes ({len(col_chunks)} column chunks of "
            f"sizes {list(col_chunks[:4])}{'...' if len(col_chunks) > 4 else ''}); causalcell "
            f"processes cells in row blocks that hold every gene. Rechunk it first: "
            f"X = X.rechunk({{0: 10_000, 1: -1}}) (or read it with causalcell.data.read_lazy)."
        )


def row_blocks(X: Any) -> list[tuple[int, int]]:
    """The (start, stop) row ranges of a Dask array's blocks, in order."""
    bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(int)
    return [(int(a), int(b)) for a, b in pairwise(bounds) if b > a]


def active_client() -> Any:
    """The active :class:`distributed.Client`, or None (also when distributed is not installed)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client is active
        return None


def _window(client: Any) -> int:
    """Blocks in flight at once: enough to keep every worker busy, few enough for memory."""
    threads = sum(client.nthreads().values()) if client is not None else os.cpu_count()
    return max(2, 2 * (threads or 1))


def _results_in_order(tasks: Iterator[Any], client: Any) -> Iterator[Any]:
    """Compute delayed tasks a window at a time; yield results in submission order."""
    import dask

    pending: list[Any] = []
    window = _window(client)
    for task in tasks:
        pending.append(client.compute(task) if client is not None else task)
        if len(pending) >= window:
            yield from _drain(pending[: window // 2], client, dask)
            del pending[: window // 2]
    yield from _drain(pending, client, dask)


def _drain(batch: list[Any], client: Any, dask: Any) -> Iterator[Any]:
    if client is not None:
        for future in batch:
            yield future.result()
    elif batch:
        yield from dask.compute(*batch, scheduler="threads")


def map_row_blocks(
    func: Callable[..., T],
    X: Any,
    *,
    block_args: Callable[[int, int], Sequence[Any]] | None = None,
    combine: Callable[[T, T], T] | None = None,
    verbose: bool = False,
    desc: str = "Row blocks",
) -> T | list[T]:
    """Apply ``func(block, start, stop, *block_args(start, stop))`` to every row block.

    The blocks are computed where Dask computes: on the active
    :class:`distributed.Client` if any, else with the threaded scheduler. Only
    ``func``'s (small) results travel back; a bounded window of blocks is in
    flight at a time, so memory stays at a few blocks whatever the size of X.

    Parameters
    ----------
    func
        Called on each block (a NumPy array or a SciPy sparse matrix, as
        stored) with the block's row range and its per-block arguments.
    X
        Dask array, cells x genes, chunked along cells only.
    block_args
        Returns the extra arguments of one block (e.g. the slice of a mask);
        computed in the caller, shipped with that block's task only.
    combine
        Folds two results into one (e.g. a sum). Results are folded in block
        order, so the outcome does not depend on which worker ends first.
        ``None`` returns the list of results in block order.
    verbose
        Progress bar over the blocks.
    desc
        Progress bar label.

    Returns
    -------
    The folded result, or the list of per-block results.

    Raises
    ------
    DataContractError
        If X is chunked along genes.
    ParameterError
        If X has no rows.
    """
    from dask import delayed

    check_row_chunks(X)
    ranges = row_blocks(X)
    if not ranges:
        raise ParameterError("map_row_blocks: X has no rows.")
    blocks = X.to_delayed()[:, 0]
    extra = block_args or (lambda start, stop: ())
    # The block is computed inside the task, next to func, so only results move.
    tasks = (
        delayed(func, pure=False)(block, start, stop, *extra(start, stop))
        for block, (start, stop) in zip(blocks, ranges, strict=True)
    )
    client = active_client()
    results = tqdm(
        _results_in_order(tasks, client),
        total=len(ranges),
        desc=desc,
        unit="block",
        disable=not verbose,
        leave=False,
    )
    if combine is None:
        return list(results)
    total = None
    for part in results:
        total = part if total is None else combine(total, part)
    return total


def physical_memory() -> float:
    """This machine's physical memory in bytes (inf when unknown)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return float("inf")


def format_bytes(n_bytes: float) -> str:
    """A size for messages: ``"1.5 GiB"`` or ``"12 MiB"``."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def compute_if_small(X: Any, what: str, *, fraction: float = 0.25) -> Any:
    """Load a Dask array into memory for code that needs it there, if it fits.

    Parameters
    ----------
    X
        Any matrix; only Dask arrays are computed (others are returned as they are).
    what
        The function that needs X in memory, for the message.
    fraction
        Largest share of this machine's memory the loaded array (as float64)
        may take.

    Returns
    -------
    numpy.ndarray or scipy sparse matrix
        X in memory (blocks as stored: sparse blocks give a sparse matrix).

    Raises
    ------
    ParameterError
        If X would not fit: the message says what to do instead.
    """
    if not is_dask_array(X):
        return X
    need = 8.0 * X.shape[0] * X.shape[1]
    budget = fraction * physical_memory()
    if need > budget:
        raise ParameterError(
            f"{what} needs the expression in memory, but X is out of core (a Dask array or a "
            f"backed file) of {X.shape[0]:,} x {X.shape[1]:,} ({need / 2**30:.1f} GiB as "
            f"float64, more than {budget / 2**30:.1f} GiB here). Run it on pseudobulk profiles "
            f"(causalcell.data.pseudobulk(adata)) or on a subsample of cells."
        )
    return X.compute()


def _open_store(p: Path) -> Any:
    """The zarr group or h5py File at ``p`` (DataFileError when it is not an AnnData store)."""
    if p.is_dir():
        import zarr

        try:
            store = zarr.open_group(str(p), mode="r")
        except Exception as exc:  # zarr raises several types for a non-store directory
            raise DataFileError(
                f"{str(p)!r} is a directory but not a zarr store ({exc}). Write one with "
                f"adata.write_zarr(path)."
            ) from exc
    elif h5py.is_hdf5(p):
        store = h5py.File(p, "r")
    else:
        raise DataFileError(
            f"{str(p)!r} is neither a zarr store (a directory) nor an .h5ad file. Write one "
            f"with adata.write_zarr(path) or adata.write_h5ad(path)."
        )
    missing = [key for key in ("X", "obs", "var") if key not in store]
    if missing:
        raise DataFileError(
            f"{str(p)!r} is not an AnnData store: it has no {missing} element(s) "
            f"(found: {sorted(store.keys())})."
        )
    return store


def read_lazy(
    path: str | os.PathLike[str], *, chunk_rows: int | None = None, layer: str | None = None
) -> AnnData:
    """Open an AnnData zarr store or ``.h5ad`` file with X as a lazy Dask array.

    ``obs`` and ``var`` are read into memory (they are small: one row per
    cell / gene); the expression matrix stays on disk and is read in row
    blocks of ``chunk_rows`` cells x all genes when a computation asks.

    Parameters
    ----------
    path
        A zarr store directory (``adata.write_zarr``) or an ``.h5ad`` file.
    chunk_rows
        Cells per block. Default: about 8M values per block.
    layer
        Read this layer as X instead of ``X``.

    Returns
    -------
    AnnData
        ``X`` is a Dask array chunked along cells only.

    Raises
    ------
    DataFileError
        If the path does not exist or is not an AnnData zarr store / h5ad
        file, or the layer is missing.
    ParameterError
        If ``chunk_rows`` is not a positive integer.

    Examples
    --------
    >>> import causalcell as cc
    >>> adata = cc.data.read_lazy("screen.zarr")  # doctest: +SKIP
    >>> model = cc.models.ConditionalGRNRegressor().fit(adata, network)  # doctest: +SKIP
    """
    try:
        from anndata.experimental import read_elem_lazy
    except ImportError as exc:  # pragma: no cover - anndata >= 0.12 has it
        raise DataFileError("read_lazy needs anndata >= 0.12.") from exc
    p = check_path(path, "read_lazy")
    if not p.exists():
        raise DataFileError(
            f"Store not found: {str(p)!r}. Check the path (cwd: {os.getcwd()}); a zarr store "
            f"is the directory written by adata.write_zarr(path)."
        )
    if chunk_rows is not None and (
        isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer)
        or chunk_rows < 1
    ):
        raise ParameterError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
    store = _open_store(p)
    try:
        obs = ad.io.read_elem(store["obs"])
        var = ad.io.read_elem(store["var"])
        if layer is None:
            elem = store["X"]
        else:
            if "layers" not in store or layer not in store["layers"]:
                have = sorted(store["layers"].keys()) if "layers" in store else []
                raise DataFileError(
                    f"{str(p)!r} has no layer {layer!r} (layers: {have})."
                )
            elem = store["layers"][layer]
        n_genes = len(var)
        rows = chunk_rows or max(1, _BLOCK_VALUES // max(1, n_genes))
        X = read_elem_lazy(elem, chunks=(min(rows, max(1, len(obs))), n_genes))
    except DataFileError:
        raise
    except Exception as exc:
        raise DataFileError(f"{str(p)!r} could not be read as AnnData: {exc}") from exc
    if not isinstance(obs, pd.DataFrame) or X.shape != (len(obs), len(var)):
        raise DataFileError(
            f"{str(p)!r}: X has shape {X.shape} but obs / var have {len(obs)} / {len(var)} rows."
        )
    return AnnData(X=X, obs=obs, var=var)
