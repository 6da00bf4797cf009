"""Reading and writing AnnData files with clear errors and atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anndata as ad
import h5py
from anndata import AnnData

from causalcell._validation import check_anndata, check_path
from causalcell.errors import DataFileError

__all__ = ["read_h5ad", "write_h5ad"]


def read_h5ad(path: str | os.PathLike[str], *, backed: bool = False) -> AnnData:
    """Read an ``.h5ad`` file.

    Parameters
    ----------
    path
        The file.
    backed
        Open in backed (read-only, on-disk) mode instead of loading X into
        memory.

    Returns
    -------
    AnnData

    Raises
    ------
    DataFileError
        If the path does not exist, is a directory, or is not an HDF5 /
        h5ad file.
    """
    p = check_path(path, "read_h5ad")
    if not p.exists():
        raise DataFileError(f"File not found: {str(p)!r}. Check the path (cwd: {os.getcwd()}).")
    if p.is_dir():
        raise DataFileError(
            f"{str(p)!r} is a directory, not an .h5ad file (a zarr store? read it with "
            f"anndata.read_zarr)."
        )
    if not h5py.is_hdf5(p):
        raise DataFileError(
            f"{str(p)!r} is not an HDF5 / .h5ad file. Convert it to AnnData first "
            f"(e.g. anndata.read_csv / scanpy.read_10x_h5, then .write_h5ad)."
        )
    try:
        return ad.read_h5ad(p, backed="r" if backed else None)
    except Exception as exc:  # anndata raises many types for a foreign HDF5 layout
        raise DataFileError(
            f"{str(p)!r} is an HDF5 file but not a readable AnnData (.h5ad): {exc}"
        ) from exc


def write_h5ad(adata: AnnData, path: str | os.PathLike[str], *, compression: str | None = "gzip"
               ) -> Path:
    """Write ``adata`` to ``path`` atomically.

    The file is written to a temporary name in the same directory and moved
    into place, so an interrupted or failed write never leaves a partial file
    under ``path``.

    Parameters
    ----------
    adata
        The object to write (not modified).
    path
        Destination ``.h5ad`` path.
    compression
        HDF5 compression of the arrays (``"gzip"``, ``"lzf"`` or None).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    DataFileError
        If the directory does not exist or is not writable.
    """
    check_anndata(adata)
    dest = check_path(path, "write_h5ad")
    directory = dest.parent if str(dest.parent) else Path(".")
    if not directory.is_dir():
        raise DataFileError(f"Directory {str(directory)!r} does not exist; create it first.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise DataFileError(f"Cannot write in {str(directory)!r}: {exc}") from exc
    os.close(fd)
    # anndata converts string columns to categoricals in place while writing;
    # write a new object sharing the arrays but owning copies of the tables.
    shell = AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=dict(adata.uns),
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
        layers=dict(adata.layers),
        obsp=dict(adata.obsp),
        varp=dict(adata.varp),
    )
    try:
        shell.write_h5ad(tmp, compression=compression)
        os.replace(tmp, dest)
    except OSError as exc:
        raise DataFileError(f"Could not write {str(dest)!r}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
