"""Output directories: whole or nothing, locked, cleaned after dead runs, killed at random."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from causalcell import _outdir
from causalcell._outdir import MANIFEST, OutputDirectory, read_manifest
from causalcell.errors import DataFileError


def _snapshot(directory):
    if not directory.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _write(out, contents, **kwargs):
    with OutputDirectory(out, command=["test"], **kwargs) as target:
        for name, text in contents.items():
            target.path(name).write_text(text)
        target.commit()


def _complete(snapshot):
    """A snapshot is a complete result when its manifest lists exactly its other files
    with their checksums."""
    import hashlib

    manifest = json.loads(snapshot[MANIFEST])
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    present = {n: hashlib.sha256(b).hexdigest() for n, b in snapshot.items() if n != MANIFEST}
    return listed == present


def test_first_write_creates_the_directory_with_a_manifest(tmp_path):
    out = tmp_path / "out"
    _write(out, {"a.csv": "1", "b.txt": "22"})
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "a.csv", "b.txt"])
    manifest = read_manifest(out)
    assert manifest["command"] == ["test"]
    assert manifest["version"] == _outdir.__version__
    assert [(f["name"], f["bytes"]) for f in manifest["files"]] == [("a.csv", 1), ("b.txt", 2)]
    assert _complete(_snapshot(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no scratch, no lock


def test_nothing_appears_without_commit(tmp_path):
    out = tmp_path / "out"
    def interrupted():
        with OutputDirectory(out) as target:
            target.path("a.csv").write_text("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted()
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_our_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "out"
    _write(out, {"a.csv": "old a", "b.csv": "old b"})
    (out / "notes.txt").write_text("user")
    (out / "sub").mkdir()
    (out / "sub" / "deep.txt").write_text("user too")
    _write(out, {"a.csv": "new a"})
    assert _snapshot(out)["a.csv"] == b"new a"
    assert not (out / "b.csv").exists()  # ours, from the old result: gone with it
    assert (out / "notes.txt").read_text() == "user"
    assert (out / "sub" / "deep.txt").read_text() == "user too"
    assert [f["name"] for f in read_manifest(out)["files"]] == ["a.csv"]


def test_foreign_directory_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("user a")
    (out / "keep.txt").write_text("user keep")
    with pytest.raises(DataFileError, match=r"causalcell did not write \(a.csv, keep.txt\)"):
        _write(out, {"a.csv": "ours"})
    assert _snapshot(out) == {"a.csv": b"user a", "keep.txt": b"user keep"}
    _write(out, {"a.csv": "ours"}, overwrite=True)
    assert _snapshot(out)["a.csv"] == b"ours"
    assert _snapshot(out)["keep.txt"] == b"user keep"
    # An empty directory has nothing to lose: no flag needed.
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty, {"a.csv": "x"})
    assert (empty / MANIFEST).exists()


@pytest.mark.parametrize("manifest", ['{"format": 99, "files": []}', "[1, 2]", "not json"])
def test_a_manifest_that_is_not_ours_does_not_count(tmp_path, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(manifest)
    assert read_manifest(out) is None
    with pytest.raises(DataFileError, match="did not write"):
        _write(out, {"a.csv": "x"})


def test_bad_targets(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("keep")
    with pytest.raises(DataFileError, match="exists and is not a directory"):
        _write(afile, {})
    with pytest.raises(DataFileError, match="parent directory .* does not exist"):
        _write(tmp_path / "no" / "out", {})
    with pytest.raises(DataFileError, match="--predictions-dir"):
        OutputDirectory(afile, flag="--predictions-dir").__enter__()
    assert afile.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", MANIFEST])
def test_invalid_file_names(tmp_path, name):
    bad_name = pytest.raises(ValueError, match="invalid output file name")
    with OutputDirectory(tmp_path / "out") as target, bad_name:
        target.path(name)


def test_leftovers_of_a_dead_run_are_cleaned(tmp_path):
    out = tmp_path / "out"
    _write(out, {"a.csv": "complete"})
    scratch = tmp_path / ".out.causalcell-scratch.dead1"
    scratch.mkdir()
    (scratch / "a.csv").write_text("partial")
    _write(out, {"a.csv": "next"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Killed between the two renames of a non-atomic swap: out is missing, the old
    # result waits beside it. The next run puts it back before it starts.
    os.rename(out, tmp_path / ".out.causalcell-old.dead2")
    with OutputDirectory(out) as target:
        assert _snapshot(out)["a.csv"] == b"next"
        target.path("a.csv").write_text("third")
        target.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert _snapshot(out)["a.csv"] == b"third"


def test_swap_without_renameat2_uses_two_renames(tmp_path, monkeypatch):
    monkeypatch.setattr(_outdir, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    _write(out, {"a.csv": "one"})
    _write(out, {"a.csv": "two"})
    assert _snapshot(out)["a.csv"] == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_second_run_waits_or_fails_with_no_wait(tmp_path):
    out = tmp_path / "out"
    order = []
    first = OutputDirectory(out, command=["first"])
    first.__enter__()
    with pytest.raises(DataFileError, match="another causalcell run"):
        OutputDirectory(out, wait=False).__enter__()

    def second():
        _write(out, {"a.csv": "second"})
        order.append("second done")

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # blocked on the lock
    first.path("a.csv").write_text("first")
    first.commit()
    order.append("first done")
    first.__exit__(None, None, None)
    thread.join(10)
    assert order == ["first done", "second done"]
    assert _snapshot(out)["a.csv"] == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _slow_writer(out, tag, pause):
    """Child process: write several files slowly, then commit."""
    with OutputDirectory(out, command=[tag]) as target:
        for k in range(5):
            target.path(f"file{k}.csv").write_text(f"{tag} {k}\n" * 1000)
            time.sleep(pause)
        target.commit()
    os._exit(0)


def test_killed_at_random_moments_leaves_old_or_new(tmp_path):
    """SIGKILL anywhere, many times: out is always one run's complete result."""
    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "out"
    _write(out, {f"file{k}.csv": f"initial {k}\n" for k in range(5)})
    rng = np.random.default_rng(0)
    # How long one uninterrupted run takes on this machine now (load varies).
    start = time.perf_counter()
    proc = ctx.Process(target=_slow_writer, args=(out, "timing", 0.004))
    proc.start()
    proc.join()
    duration = time.perf_counter() - start
    seen = {"old": 0, "new": 0}
    trial = 0
    while trial < 40 or min(seen.values()) < 3:
        assert trial < 300, f"kills never landed on both sides of the swap: {seen}"
        before = _snapshot(out)
        proc = ctx.Process(target=_slow_writer, args=(out, f"run{trial}", 0.004))
        proc.start()
        time.sleep(float(rng.uniform(0.0, 1.3 * duration)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        # What a reader sees after the kill, before anyone repairs anything.
        after = _snapshot(out)
        if after is None:  # between two renames (only without renameat2)
            assert any(p.name.startswith(".out.causalcell-old.") for p in tmp_path.iterdir())
        else:
            assert _complete(after)
            assert after == before or json.loads(after[MANIFEST])["command"] == [f"run{trial}"]
            seen["new" if after != before else "old"] += 1
        _write(out, {"marker.csv": "repair run"})  # the next run cleans up
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        _write(out, {f"file{k}.csv": f"base {k}\n" for k in range(5)})
        trial += 1


def _cli(argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "causalcell.cli", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def evaluate_inputs(tmp_path_factory):
    import anndata as ad

    import causalcell as cc

    root = tmp_path_factory.mktemp("kill-inputs")
    sim = cc.datasets.simulate(n_genes=40, n_tfs=6, random_state=3)
    pb = cc.data.pseudobulk(sim.adata)
    pb = pb[~pb.obs["is_control"].to_numpy()]
    obs = pb.obs[["perturbation", "is_control", "perturbation_type"]].copy()
    pred = ad.AnnData(np.asarray(pb.X) + 0.1, obs=obs, var=pb.var[[]].copy())
    cc.data.write_h5ad(sim.adata, root / "observed.h5ad")
    cc.data.write_h5ad(pred, root / "predicted.h5ad")
    return root


@pytest.mark.parametrize("command", ["evaluate", "demo"])
def test_cli_killed_at_random_moments(tmp_path, evaluate_inputs, command):
    """`causalcell evaluate` / `demo` under SIGKILL at 10 random moments: --out is the
    previous complete result (or absent), and two concurrent runs end with one run's
    complete result."""
    out = tmp_path / "out"
    if command == "evaluate":
        argv = ["evaluate", "--predicted", str(evaluate_inputs / "predicted.h5ad"),
                "--observed", str(evaluate_inputs / "observed.h5ad"), "--out", str(out)]
    else:
        argv = ["demo", "--data", "sachs", "--quiet", "--out", str(out)]
    start = time.perf_counter()
    proc = _cli(argv)
    assert proc.wait(300) == 0, proc.stderr.read().decode()
    duration = time.perf_counter() - start
    complete = _snapshot(out)
    assert _complete(complete)
    rng = np.random.default_rng(1 if command == "evaluate" else 2)
    for _ in range(10):
        proc = _cli(argv)
        time.sleep(float(rng.uniform(0.2, 1.05) * duration))
        proc.kill()
        proc.wait()
        after = _snapshot(out)
        # Either untouched, or a new complete result (the kill came after the swap).
        assert after is None or _complete(after)
        if after is not None and after != complete:
            complete = after
    # Two runs at once on the same --out: serialized, one complete result at the end.
    first, second = _cli(argv), _cli(argv)
    assert first.wait(300) == 0, first.stderr.read().decode()
    assert second.wait(300) == 0, second.stderr.read().decode()
    assert _complete(_snapshot(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
