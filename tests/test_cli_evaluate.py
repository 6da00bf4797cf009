"""`causalcell evaluate`: tables and figure written atomically, one-line errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import causalcell as cc
from causalcell import cli
from causalcell._outdir import MANIFEST, read_manifest
from causalcell.cli import main
from causalcell.data import write_h5ad

FILES = ["metrics.csv", "retrieval.csv", "summary.csv", "summary.png"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Observed cells and a noisy prediction of their pseudobulk, as .h5ad files."""
    root = tmp_path_factory.mktemp("evaluate-inputs")
    sim = cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=7)
    pb = cc.data.pseudobulk(sim.adata)
    pb = pb[~pb.obs["is_control"].to_numpy()]
    rng = np.random.default_rng(0)
    obs = pb.obs[["perturbation", "is_control", "perturbation_type"]].copy()
    predicted = ad.AnnData(np.asarray(pb.X) + rng.normal(0, 0.1, pb.shape), obs=obs,
                           var=pb.var[[]].copy())
    paths = {"observed": root / "observed.h5ad", "predicted": root / "predicted.h5ad"}
    write_h5ad(sim.adata, paths["observed"])
    write_h5ad(predicted, paths["predicted"])
    # The same data in the cell-eval (Virtual Cell Challenge) layout; the
    # prediction has no control row.
    ce_obs = pd.DataFrame({"target_gene": np.where(sim.adata.obs["is_control"],
                                                   "non-targeting",
                                                   sim.adata.obs["perturbation"].astype(str))},
                          index=sim.adata.obs_names)
    ce_observed = ad.AnnData(sim.adata.X, obs=ce_obs, var=sim.adata.var[[]].copy())
    singles = ~predicted.obs["perturbation"].str.contains(",").to_numpy()
    ce_predicted = ad.AnnData(
        predicted.X[singles],
        obs=pd.DataFrame({"target_gene": predicted.obs["perturbation"].to_numpy()[singles]},
                         index=predicted.obs_names[singles]),
        var=predicted.var.copy(),
    )
    paths["ce_observed"] = root / "ce_observed.h5ad"
    paths["ce_predicted"] = root / "ce_predicted.h5ad"
    write_h5ad(ce_observed, paths["ce_observed"])
    write_h5ad(ce_predicted, paths["ce_predicted"])
    # A prediction missing two genes.
    paths["fewer_genes"] = root / "fewer_genes.h5ad"
    write_h5ad(predicted[:, 2:].copy(), paths["fewer_genes"])
    paths["genes"] = list(predicted.var_names[:2])
    return paths


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _args(files, out, *extra, predicted="predicted", observed="observed"):
    return ["evaluate", "--predicted", str(files[predicted]), "--observed",
            str(files[observed]), "--out", str(out), *extra]


def test_evaluate_writes_tables_and_figure(files, tmp_path, capsys):
    out = tmp_path / "result"
    code, stdout, err = _run(_args(files, out), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, MANIFEST])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]  # no scratch, no lock
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["exclude"]) == {"targeted", "none"}
    assert {"pearson_delta", "de_overlap_top20", "retrieval_rank"} <= set(metrics["metric"])
    summary = pd.read_csv(out / "summary.csv")
    assert {"metric", "exclude", "mean", "median", "n"} <= set(summary.columns)
    ranks = pd.read_csv(out / "retrieval.csv")
    assert set(ranks["exclude"]) == {"targeted", "query", "none", "all"}
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targeted" in stdout
    assert "pearson_delta" in stdout
    assert "targeted rank" in stdout
    mean_targeted = ranks[ranks["exclude"] == "targeted"]["rank"].mean()
    assert f"targeted rank {mean_targeted:.3f}" in stdout


def test_evaluate_options(files, tmp_path, capsys):
    out = tmp_path / "result"
    code, stdout, err = _run(_args(files, out, "--reference", "perturbed_mean", "--de-method",
                                   "wilcoxon", "--distance", "cosine", "--join", "inner"),
                             capsys)
    assert code == 0, err
    assert "reference: perturbed_mean" in stdout
    assert "top-k genes by wilcoxon" in stdout
    assert set(pd.read_csv(out / "retrieval.csv")["distance"]) == {"cosine"}


def test_evaluate_cell_eval_convention(files, tmp_path, capsys):
    out = tmp_path / "result"
    argv = _args(files, out, "--convention", "cell-eval", "--perturbation-type", "knockdown",
                 predicted="ce_predicted", observed="ce_observed")
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    metrics = pd.read_csv(out / "metrics.csv")
    assert not metrics["perturbation"].str.contains(",").any()
    assert "observed perturbations have no prediction" in stdout  # the combinations
    code, _, err = _run([*argv, "--control-label", "ctrl"], capsys)
    assert code == 2
    assert "control label 'ctrl'" in err


@pytest.mark.parametrize(
    ("extra", "kind", "message"),
    [
        ([], "fewer_genes", "gene sets differ: 2 observed gene"),
        (["--control-label", "non-targeting"], "predicted",
         "--control-label 'non-targeting' names no control"),
        (["--convention", "cell-eval"], "ce_predicted", "needs --perturbation-type"),
        (["--convention", "nope"], "predicted", "invalid choice: 'nope'"),
    ],
)
def test_evaluate_errors_are_one_line_and_leave_nothing(files, tmp_path, capsys, extra,
                                                        kind, message):
    out = tmp_path / "result"
    observed = "ce_observed" if kind.startswith("ce_") else "observed"
    code, _, err = _run(_args(files, out, *extra, predicted=kind, observed=observed), capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither --out nor a scratch directory
    if kind == "fewer_genes":
        assert all(gene in err for gene in files["genes"])
        assert "--join inner" in err


def test_evaluate_bad_paths(files, tmp_path, capsys):
    argv = ["evaluate", "--predicted", str(tmp_path / "nope.h5ad"), "--observed",
            str(files["observed"]), "--out", str(tmp_path / "out")]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "File not found" in err
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, err = _run(_args(files, target), capsys)
    assert code == 2
    assert "not a directory" in err
    assert target.read_text() == "keep me"
    code, _, err = _run(_args(files, tmp_path / "no" / "out"), capsys)
    assert code == 2
    assert "does not exist" in err


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_failure_while_writing_keeps_previous_results(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "result"
    code, _, err = _run(_args(files, out), capsys)
    assert code == 0, err
    before = _snapshot(out)

    def broken_figure(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cli, "_summary_figure", broken_figure)
    code, _, err = _run(_args(files, out, "--distance", "cosine"), capsys)
    assert code == 2
    assert "disk full" in err
    assert _snapshot(out) == before  # the previous complete result, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_foreign_directory_is_refused_unless_overwrite(files, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("the user's own table")
    (out / "notes.txt").write_text("the user's notes")
    code, _, err = _run(_args(files, out), capsys)
    assert code == 2
    assert "causalcell did not write" in err
    assert "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "metrics.csv").read_text() == "the user's own table"
    code, _, err = _run(_args(files, out, "--overwrite"), capsys)
    assert code == 0, err
    # --overwrite replaces the files causalcell writes and keeps every other file.
    assert (out / "notes.txt").read_text() == "the user's notes"
    assert (out / "metrics.csv").read_text().startswith("perturbation,")
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "notes.txt", MANIFEST])


def test_single_perturbation_skips_retrieval(files, tmp_path, capsys):
    out = tmp_path / "result"
    code, _, err = _run(_args(files, out), capsys)
    assert code == 0, err
    assert (out / "retrieval.csv").exists()
    (out / "notes.txt").write_text("added by the user after the run")
    one = cc.data.read_h5ad(files["predicted"])[:1].copy()
    path = tmp_path / "one.h5ad"
    write_h5ad(one, path)
    argv = ["evaluate", "--predicted", str(path), "--observed", str(files["observed"]),
            "--out", str(out)]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "retrieval needs at least 2 perturbations" in stdout
    # The previous run's retrieval table no longer applies and goes; the user's file stays.
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST, "metrics.csv", "notes.txt", "summary.csv", "summary.png"]
    manifest = read_manifest(out)
    assert [f["name"] for f in manifest["files"]] == ["metrics.csv", "summary.csv",
                                                      "summary.png"]


def test_help_lists_evaluate(capsys):
    assert main([]) == 0
    assert "evaluate" in capsys.readouterr().out


def test_printed_nan_gets_a_footnote(capsys):
    summary = pd.DataFrame({
        "metric": ["pearson_delta", "pearson_delta", "de_overlap_sig", "de_overlap_sig"],
        "exclude": ["targeted", "none"] * 2,
        "mean": [0.5, 0.6, np.nan, 0.2],
    })
    metrics = pd.DataFrame({"perturbation": ["A", "B"]})
    cli._print_evaluation(summary, None, metrics)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("de_overlap_sig"))
    assert row.split() == ["de_overlap_sig", "n/a", "0.200"]
    assert "n/a: no perturbation defines the metric under that exclusion rule" in out
    cli._print_evaluation(summary.fillna(0.1), None, metrics)
    assert "n/a" not in capsys.readouterr().out
