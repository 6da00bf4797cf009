"""The `causalcell` command: version, help, demo, one-line errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from causalcell import __version__
from causalcell.cli import main


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
    real = re.search(r"papalexi2021: .* ranks first among 299 genes in (\d+) of (\d+)", out)
    sim = re.search(r"simulated: .* ranks first among 200 genes in (\d+) of (\d+)", out)
    assert real
    assert sim
    # Known facts of these data: all 9 measured knockout targets are ranked;
    # most are the largest change of their profile; in the simulation's
    # knockdowns the target is first in (nearly) all.
    assert int(real.group(2)) == 9
    assert int(real.group(1)) >= 7
    assert int(sim.group(1)) >= 0.95 * int(sim.group(2))
    table = pd.read_csv(tmp_path / "out" / "target_effect_papalexi2021.csv")
    assert set(table["target"]) == {
        "STAT1", "JAK2", "CMTM6", "STAT2", "UBE2L6", "STAT3", "TNFRSF14", "IFNGR2", "NFKBIA"
    }
    assert (table["target_change"] < 0).all()  # knockouts lower their target
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model_comparison_papalexi.csv",
        "target_effect_papalexi2021.csv",
        "target_effect_simulated.csv",
    ]
    models = pd.read_csv(tmp_path / "out" / "model_comparison_papalexi.csv")
    assert set(models["model"]) == {
        "conditional GRN", "linear embedding", "mean", "control", "target only"
    }
    assert {"value [targeted excluded]", "value [none]"} <= set(models.columns)
    assert "targeted genes excluded (conditioned, causalcell)" in out
    assert "Held-out perturbations of papalexi" in out


def test_demo_simulated_conditioning_reverses_target_only(capsys):
    from causalcell.demo import compare_models, demo_data

    adata, network, _ = demo_data("simulated")
    table = compare_models(adata, network, verbose=False).table.set_index(["metric", "model"])
    pearson = table.loc["pearson_delta"]
    # Unconditioned, the predictor that knows only P(T) looks good; conditioned it
    # has nothing left, while the model of P(X | T) with the true network does.
    assert pearson.loc["target only", "value [none]"] > 0.5
    assert abs(pearson.loc["target only", "value [targeted excluded]"]) < 0.1
    assert pearson.loc["conditional GRN", "value [targeted excluded]"] > 0.6


def test_demo_sachs(capsys):
    assert main(["demo", "--data", "sachs", "--quiet"]) == 0
    assert "sachs2005:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--data", "nope"], "invalid choice: 'nope'"),
        (["demo", "--out", "/nonexistent-parent/out"], "does not exist"),
        (["demo", "--out", "/proc/causalcell-cannot-write"], "cannot be created"),
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
