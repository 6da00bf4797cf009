"""The `causalcell` command: version, help, demo, one-line errors."""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest

from causalcell import __version__, cli
from causalcell._outdir import MANIFEST, read_manifest
from causalcell.cli import main

PAPALEXI_FILES = [
    "target_effect_papalexi2021.csv",
    "target_effect_simulated.csv",
    "model_comparison_papalexi.csv",
    "retrieval_papalexi.csv",
    "target_effect_papalexi2021.png",
    "target_effect_simulated.png",
    "conditioning_comparison_papalexi.png",
    "retrieval_ranks_papalexi.png",
    "rank_matrix_papalexi.png",
    "predicted_vs_observed_papalexi.png",
    "intervention_graph_papalexi.png",
]
SACHS_GRNS = {"conditional GRN (consensus graph)", "conditional GRN (learned graph)"}


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"causalcell {__version__}"


def test_help_lists_demo(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_papalexi_and_simulation(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    real = re.search(r"papalexi2021: the targeted gene's own change is the largest of its "
                     r"profile in (\d+) of (\d+)", out)
    sim = re.search(r"simulated: the targeted gene's own change is the largest of its "
                    r"profile in (\d+) of (\d+)", out)
    assert real
    assert sim
    # Known facts of these data: all 9 measured knockout targets are ranked;
    # most are the largest change of their profile; in the simulation's
    # knockdowns the target is first in (nearly) all.
    assert int(real.group(2)) == 9
    assert int(real.group(1)) >= 7
    assert int(sim.group(1)) >= 0.95 * int(sim.group(2))
    # Short by default: the comparison first, no per-perturbation table.
    lines = out.splitlines()
    assert lines[0].startswith("Models of P(X | T) on Papalexi et al. 2021")
    assert len(lines) - len(PAPALEXI_FILES) - 1 <= 35
    assert "target_change" not in out
    table = pd.read_csv(tmp_path / "out" / "target_effect_papalexi2021.csv")
    assert set(table["target"]) == {
        "STAT1", "JAK2", "CMTM6", "STAT2", "UBE2L6", "STAT3", "TNFRSF14", "IFNGR2", "NFKBIA"
    }
    assert (table["target_change"] < 0).all()  # knockouts lower their target
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted([*PAPALEXI_FILES, MANIFEST])
    manifest = read_manifest(tmp_path / "out")
    assert sorted(f["name"] for f in manifest["files"]) == sorted(PAPALEXI_FILES)
    assert manifest["command"] == ["causalcell", "demo", "--out", str(tmp_path / "out")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no scratch, no lock
    for name in PAPALEXI_FILES:  # every file is listed at the end, and none is empty
        assert f"  {name}\n" in out
        assert (tmp_path / "out" / name).stat().st_size > 0
    for name in (n for n in PAPALEXI_FILES if n.endswith(".png")):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ranks = pd.read_csv(tmp_path / "out" / "retrieval_papalexi.csv")
    assert set(ranks["exclude"]) == {"none", "query", "targeted"}
    assert ranks["rank"].between(0, 1).all()
    models = pd.read_csv(tmp_path / "out" / "model_comparison_papalexi.csv")
    assert set(models["model"]) == {
        "conditional GRN", "linear embedding", "mean", "control", "target only"
    }
    assert {"value [targeted]", "value [none]", "ci_low [none]", "n [none]",
            "calibrated [targeted]", "p_value [none]"} <= set(models.columns)
    assert "targeted genes excluded (conditioned, causalcell)" in out
    # Cross-validated over all 9 measurable perturbations, with n and intervals.
    assert "all 9 perturbations whose targets are measured" in out
    assert "pearson_delta (n=9)" in out
    # Every sentence about the models is computed (see test_demo for changes).
    assert "nothing beats the mean baseline" in out
    assert "papalexi2021: the targeted gene's own change is the largest of its profile in" in out


def test_demo_simulated_conditioning_reverses_target_only(capsys):
    from causalcell.demo import demo_comparison

    result, _ = demo_comparison("simulated", verbose=False)
    table = result.table.set_index(["metric", "model"])
    pearson = table.loc["pearson_delta"]
    # Unconditioned, the predictor that knows only P(T) looks good; conditioned it
    # has nothing left (an undefined correlation: no skill), while the model of
    # P(X | T) with the true network does.
    assert pearson.loc["target only", "value [none]"] > 0.5
    assert pearson.loc["target only", "value [targeted]"] == 0.0
    assert pearson.loc["conditional GRN", "value [targeted]"] > 0.6
    assert pearson.loc["target only", "reversal"]


def test_demo_help_describes_both_parts(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(1) For each perturbation, rank the targeted gene's own change" in text
    assert "(2) Cross-validate the conditional GRN model of P(X | T)" in text
    assert "--verbose" in text
    assert "--quiet print only the verdict sentences and the files written" in text


def test_demo_sachs_compares_consensus_and_learned_graphs(tmp_path, capsys):
    assert main(["demo", "--data", "sachs", "--quiet", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # --quiet, as the README says: no tables and no progress bars.
    assert captured.err == ""
    assert not any(line.startswith(("--", "conditional GRN ")) for line in out.splitlines())
    assert "sachs2005:" in out
    table = pd.read_csv(tmp_path / "model_comparison_sachs.csv")
    assert set(table["model"]) == SACHS_GRNS | {
        "conditional GRN (selected graph)", "linear embedding", "mean", "control",
        "target only"
    }
    # The verdict line is computed from the table: check its numbers against it.
    verdict = next(line for line in out.splitlines() if line.startswith("Graph verdict"))
    mse = table[table["metric"] == "mse"].set_index("model")["value [targeted]"]
    assert f"mse {mse['conditional GRN (selected graph)']:.3f}" in verdict
    assert "nested selection" in verdict
    assert "sachs2005: the targeted gene's own change is the largest of its profile in" in out
    assert "does not dominate on this data set" in out
    assert (tmp_path / "intervention_graph_sachs.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--data", "nope"], "invalid choice: 'nope'"),
        (["demo", "--out", "/nonexistent-parent/out"], "does not exist"),
        (["demo", "--data", "unknown"], "invalid choice: 'unknown'"),
        (["demo", "--out", "/proc/causalcell-cannot-write"], "is not writable"),
        # An existing read-only directory (even root cannot create files there).
        (["demo", "--out", "/proc/self"], "is not writable"),
    ],
)
def test_demo_bad_input_is_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_demo_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["demo", "--data", "simulated", "--out", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_demo_unknown_data_fails_before_creating_out(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--data", "unknown", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_out_is_created_when_its_parent_exists(tmp_path, capsys):
    assert main(["demo", "--data", "sachs", "--quiet", "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / MANIFEST).is_file()
    code = main(["demo", "--data", "sachs", "--out", str(tmp_path / "missing" / "new")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


needs_permissions = pytest.mark.skipif(
    os.geteuid() == 0, reason="root ignores directory permissions"
)


@needs_permissions
@pytest.mark.parametrize(("sub", "message"), [(None, "is not writable"),
                                               ("new", "is not writable")])
def test_demo_read_only_out_is_one_line(tmp_path, capsys, monkeypatch, sub, message):
    # The check comes first: no data is loaded when --out is unusable.
    import causalcell.demo

    monkeypatch.setattr(causalcell.demo, "run", lambda *a, **k: pytest.fail("work started"))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        target = read_only if sub is None else read_only / sub
        assert main(["demo", "--data", "sachs", "--out", str(target)]) == 2
    finally:
        read_only.chmod(0o700)
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert list(read_only.iterdir()) == []


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_demo_write_failure_midway_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["demo", "--data", "sachs", "--quiet", "--out", str(out)]) == 0
    before = _snapshot(out)

    def fail(fig, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_write_figure", fail)
    capsys.readouterr()
    assert main(["demo", "--data", "sachs", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "target_effect_sachs2005.png" in err
    # One line for the failure (warnings of the run, e.g. learn_network's report of the
    # pairs it could not orient, are lines of their own).
    errors = [line for line in err.strip().splitlines()
              if not line.startswith("causalcell: warning:")]
    assert len(errors) == 1
    # The previous complete result is untouched; no scratch directory or lock is left.
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
