"""Output directories that are replaced as a whole, never half-written.

Every command that writes a directory of results (``causalcell demo --out``,
``causalcell evaluate --out``) goes through :class:`OutputDirectory`:

1. A lock file beside the directory (``.<name>.causalcell.lock``, held with
   ``fcntl.flock``) serializes runs on the same ``--out``: a second run waits
   for the first, or fails at once with ``wait=False`` (``--no-wait``).
2. Holding the lock, leftovers of runs that died (``kill -9``, power loss) are
   cleaned up: scratch directories are removed, and a previous result that a
   dead run had moved aside is put back.
3. An existing directory that causalcell did not write (it holds files but no
   manifest of ours) is refused unless ``overwrite=True`` (``--overwrite``).
4. Files are written into a scratch sibling ``.<name>.causalcell-scratch.<id>``.
5. :meth:`OutputDirectory.commit` writes the manifest
   (:data:`MANIFEST`: every file with its size and SHA-256, the command line,
   the package version), brings over the files of the old directory that
   causalcell did not write (hard links where possible: they are never
   deleted), and swaps the scratch directory in. On Linux the swap is one
   atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, whose
   interruption step 2 of the next run repairs.

So at every moment ``--out`` holds either the previous complete result or the
new complete result (or, for a first run, nothing). Files of a previous
causalcell run that this run does not write again are not carried over: they
belonged to the old result.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from causalcell._version import __version__
from causalcell.errors import DataFileError

__all__ = ["MANIFEST", "OutputDirectory", "atomic_write", "read_manifest"]

MANIFEST = "causalcell-manifest.json"
_MANIFEST_FORMAT = 1
_SCRATCH = "causalcell-scratch"
_OLD = "causalcell-old"
_LOCK = "causalcell.lock"
_RENAME_EXCHANGE = 2  # linux/fs.h


def _sibling(out: Path, kind: str) -> str:
    """Name prefix of the hidden siblings of ``out`` (scratch, old, lock)."""
    return f".{out.name}.{kind}"


def _fail(out: Path, what: str, exc: OSError | None = None, flag: str = "--out") -> DataFileError:
    reason = f" ({exc.strerror or exc})" if exc is not None else ""
    return DataFileError(f"{flag} {str(out)!r}: {what}{reason}.")


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest causalcell wrote into ``directory``, or None if there is none.

    A manifest that does not parse as ours counts as absent: the directory is
    then treated as somebody else's.
    """
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) for f in files
    ):
        return None
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries (making renames inside it durable), to disk.
    Best effort: not every filesystem allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the filesystem cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))


def _bring_over(source: Path, target: Path) -> None:
    """Link (or copy) a file or directory tree of the user's into ``target``."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _temp_file_beside(path: Path) -> str:
    """A temporary file in ``path``'s directory with the permissions of a normal new
    file (mkstemp makes it private to the user)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Write one file atomically: ``write(tmp)`` fills a temporary file beside
    ``path``, which then replaces ``path`` in one rename. A failure leaves the
    previous file (or nothing) and no temporary file."""
    path = Path(path)
    tmp = _temp_file_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OutputDirectory:
    """A results directory written completely in scratch and swapped in as a whole.

    Use it as a context manager; nothing appears at ``out`` unless
    :meth:`commit` is called and succeeds::

        with OutputDirectory(out, command=sys.argv) as target:
            table.to_csv(target.path("metrics.csv"))
            target.commit()

    Parameters
    ----------
    out
        The directory of results (``--out``). Its parent must exist.
    command
        The command line recorded in the manifest.
    overwrite
        Allow writing over a directory causalcell did not write (its files
        that this run does not replace are kept).
    wait
        When another run holds the lock on ``out``: wait for it (True) or
        raise at once (False).
    flag
        How the user named ``out`` (``"--out"``), for error messages.

    Raises
    ------
    DataFileError
        ``out`` exists and is not a directory, its parent does not exist or
        is not writable, it holds files causalcell did not write (without
        ``overwrite``), or another run holds it (with ``wait=False``).
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        command: Sequence[str] = (),
        overwrite: bool = False,
        wait: bool = True,
        flag: str = "--out",
    ) -> None:
        self.out = Path(out)
        self.command = [str(c) for c in command]
        self.overwrite = overwrite
        self.wait = wait
        self.flag = flag
        self.written: list[str] = []
        self._lock_fd: int | None = None
        self._lock_path: Path | None = None
        self._scratch: Path | None = None
        self._committed = False

    # ------------------------------------------------------------ set-up
    def __enter__(self) -> OutputDirectory:
        self._check_target()
        self._acquire()
        try:
            self._recover()
            self._check_owner()
            try:
                self._scratch = Path(tempfile.mkdtemp(prefix=_sibling(self.out, _SCRATCH) + ".",
                                                      dir=self.out.parent))
            except OSError as exc:
                raise self._error("cannot be written next to", exc) from exc
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._scratch, 0o777 & ~umask)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._scratch is not None and self._scratch.exists():
                shutil.rmtree(self._scratch, ignore_errors=True)
        finally:
            self._release()

    def _error(self, what: str, exc: OSError | None = None) -> DataFileError:
        return _fail(self.out, what, exc, self.flag)

    def _check_target(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise self._error("exists and is not a directory; name a directory")
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            # Renaming it would only need the parent's permission: respect the user's.
            raise self._error("is not writable; make it writable or choose another directory")
        if not out.parent.is_dir():
            raise DataFileError(
                f"{self.flag} {str(out)!r}: the parent directory {str(out.parent)!r} does not "
                f"exist. Create it first."
            )

    def _acquire(self) -> None:
        """Take the lock file beside ``out``.

        The file is removed again on release, so a finished run leaves nothing
        behind. A run that waited may therefore wake up holding the lock of a
        file that is gone; it then starts over on the current file.
        """
        import fcntl

        lock = self.out.parent / _sibling(self.out, _LOCK)
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise self._error("is not writable (cannot create a lock file beside it)",
                                  exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    os.close(fd)
                    raise self._error(
                        "is being written by another causalcell run; wait for it to finish, "
                        "or drop --no-wait to wait automatically"
                    ) from None
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._lock_fd, self._lock_path = fd, lock
                return
            os.close(fd)  # the holder before us removed this file: take the new one

    def _release(self) -> None:
        if self._lock_fd is not None:
            # Unlink while still holding the lock (see _acquire), then let go.
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _leftovers(self, kind: str) -> list[Path]:
        prefix = _sibling(self.out, kind) + "."
        try:
            return sorted(p for p in self.out.parent.iterdir() if p.name.startswith(prefix))
        except OSError:
            return []

    def _recover(self) -> None:
        """Undo what a dead run left (we hold the lock: no live run owns these)."""
        for scratch in self._leftovers(_SCRATCH):
            shutil.rmtree(scratch, ignore_errors=True)
        old = self._leftovers(_OLD)
        if old and not self.out.exists():
            # Killed between the two renames of a non-atomic swap: the old result is
            # the last complete one.
            os.rename(old[-1], self.out)
            old = old[:-1]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)

    def _check_owner(self) -> None:
        out = self.out
        if not out.exists():
            return
        try:
            entries = [p.name for p in out.iterdir()]
        except OSError as exc:
            raise self._error("cannot be read", exc) from exc
        if not entries or read_manifest(out) is not None or self.overwrite:
            return
        shown = ", ".join(sorted(entries)[:5]) + (" ..." if len(entries) > 5 else "")
        raise self._error(
            f"exists and holds files causalcell did not write ({shown}). Choose a new "
            f"directory, or pass --overwrite to write into it (its other files are kept)"
        )

    # ------------------------------------------------------------ writing
    def path(self, name: str) -> Path:
        """Where to write the file ``name`` (inside the scratch directory)."""
        if self._scratch is None:
            raise RuntimeError("OutputDirectory is used outside its with-block")
        if Path(name).name != name or name in ("", ".", "..", MANIFEST):
            raise ValueError(f"invalid output file name {name!r}")
        if name not in self.written:
            self.written.append(name)
        return self._scratch / name

    def commit(self) -> None:
        """Write the manifest and swap the new directory in, as one step."""
        scratch = self._scratch
        if scratch is None or self._committed:
            raise RuntimeError("commit() needs an open, uncommitted OutputDirectory")
        files = [n for n in self.written if (scratch / n).exists()]
        try:
            self._write_manifest(scratch, files)
            previous = self.out if self.out.exists() else None
            if previous is not None:
                self._keep_foreign_files(previous, scratch, set(files))
            # Everything new reaches the disk before the rename that publishes it.
            for path in (*(scratch / n for n in files), scratch / MANIFEST, scratch):
                _fsync(path)
            if previous is None:
                os.rename(scratch, self.out)
            else:
                if not _exchange(scratch, previous):
                    aside = Path(tempfile.mkdtemp(prefix=_sibling(self.out, _OLD) + ".",
                                                  dir=self.out.parent))
                    os.rmdir(aside)
                    os.rename(previous, aside)
                    os.rename(scratch, previous)
                    scratch = aside
                # ``scratch`` now names the old result.
                shutil.rmtree(scratch, ignore_errors=True)
            _fsync(self.out.parent)
        except OSError as exc:
            raise self._error(
                "could not be written; the previous result is unchanged. Check that the "
                "disk is not full and the directory is writable", exc
            ) from exc
        self._committed = True
        self._scratch = None

    def _write_manifest(self, scratch: Path, files: list[str]) -> None:
        manifest = {
            "format": _MANIFEST_FORMAT,
            "tool": "causalcell",
            "version": __version__,
            "command": self.command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": [
                {"name": n, "bytes": (scratch / n).stat().st_size, "sha256": _sha256(scratch / n)}
                for n in files
            ],
        }
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def _keep_foreign_files(self, previous: Path, scratch: Path, new: set[str]) -> None:
        """Carry over every file of ``previous`` that causalcell did not write."""
        manifest = read_manifest(previous)
        ours = {f["name"] for f in manifest["files"]} if manifest else set()
        ours.add(MANIFEST)
        for entry in previous.iterdir():
            if entry.name in ours or entry.name in new:
                continue
            _bring_over(entry, scratch / entry.name)

