"""`causalcell export`: files cell-eval's own loader reads, and the same scores on both sides."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import causalcell as cc
from causalcell._outdir import MANIFEST
from causalcell.cli import main

cell_eval = pytest.importorskip("cell_eval")  # in the dev extra


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def papalexi(tmp_path_factory):
    """Predictions of held-out Papalexi knockouts by the conditional GRN (CollecTRI
    network), and the observed cells, subsampled to keep the test short; float64 so
    that both tools read the same numbers."""
    root = tmp_path_factory.mktemp("export-inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.errors.UnmeasuredTargetWarning)
        adata = cc.datasets.load_papalexi2021()
        train, test = cc.data.split_by_perturbation(adata, test_size=0.5, random_state=0,
                                                    measured_only=True)
        model = cc.models.ConditionalGRNRegressor().fit(train,
                                                        network=cc.datasets.load_collectri())
        held_out = cc.data.pseudobulk(test)
        predicted = model.predict(held_out)
    rng = np.random.default_rng(0)
    keep = adata.obs["is_control"].to_numpy() | adata.obs["perturbation"].isin(
        held_out.obs["perturbation"]).to_numpy()
    rows = np.flatnonzero(keep)
    rows = np.sort(rng.choice(rows, size=min(1200, len(rows)), replace=False))
    observed = adata[rows].copy()
    observed.X = observed.X.astype(np.float64)
    paths = {"predicted": root / "predicted.h5ad", "observed": root / "observed.h5ad"}
    cc.data.write_h5ad(predicted, paths["predicted"])
    cc.data.write_h5ad(observed, paths["observed"])
    return paths, predicted, observed


@pytest.mark.filterwarnings("ignore:the string cache has been replaced:DeprecationWarning")
def test_export_runs_through_cell_eval_with_the_same_pearson_delta(papalexi, tmp_path, capsys):
    paths, predicted, observed = papalexi
    out = tmp_path / "cell-eval"
    code, stdout, err = _run(["export", "--predicted", str(paths["predicted"]), "--observed",
                              str(paths["observed"]), "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "observed.h5ad",
                                                     "predicted.h5ad"]
    assert f"cell-eval run -ap {out}/predicted.h5ad -ar {out}/observed.h5ad" in stdout

    # cell-eval's own loader and pair checks (same genes, perturbations and control).
    from cell_eval import MetricPipeline, MetricsEvaluator

    evaluator = MetricsEvaluator(
        adata_pred=str(out / "predicted.h5ad"), adata_real=str(out / "observed.h5ad"),
        control_pert="non-targeting", pert_col="target_gene", skip_de=True, num_threads=1,
        outdir=str(tmp_path / "cell-eval-out"))
    pipeline = MetricPipeline(profile=None)
    pipeline.add_metrics(["pearson_delta", "mse", "mae"])
    pipeline.compute_anndata_metrics(evaluator.anndata_pair)
    theirs = pipeline.get_results().to_pandas().set_index("perturbation")

    # causalcell on the same files, without conditioning (cell-eval's numbers).
    read = {side: cc.data.standardize(cc.data.read_h5ad(out / f"{side}.h5ad"), "cell-eval",
                                      require_controls=side == "observed")
            for side in ("predicted", "observed")}
    ours = cc.evaluate.evaluate(read["predicted"], read["observed"], exclude="none",
                                aggregate_predicted=True, retrieval=False, de_method=None)
    ours = ours.pivot(index="perturbation", columns="metric", values="value")
    assert sorted(theirs.index) == sorted(predicted.obs["perturbation"].astype(str))
    for metric in ("pearson_delta", "mse", "mae"):
        np.testing.assert_allclose(ours.loc[theirs.index, metric], theirs[metric],
                                   rtol=1e-9, atol=1e-12, err_msg=metric)

    # The sampled cells average exactly to the predictions: the exported files score
    # what the predictions score.
    direct = cc.evaluate.evaluate(predicted, observed, exclude="none", retrieval=False,
                                  de_method=None)
    direct = direct.pivot(index="perturbation", columns="metric", values="value")
    np.testing.assert_allclose(direct.loc[theirs.index, "pearson_delta"],
                               theirs["pearson_delta"], rtol=1e-9)


def test_export_other_layouts_and_cells(papalexi, tmp_path, capsys):
    paths = papalexi[0]
    for convention, column in (("gears", "condition"), ("scperturb", "perturbation")):
        out = tmp_path / convention
        code, stdout, err = _run(["export", "--predicted", str(paths["predicted"]),
                                  "--observed", str(paths["observed"]), "--out", str(out),
                                  "--convention", convention, "--n-cells", "7"], capsys)
        assert code == 0, err
        exported = cc.data.read_h5ad(out / "predicted.h5ad")
        assert column in exported.obs.columns
        assert "cell-eval run" not in stdout
        back = cc.data.standardize(exported, convention, control_label="non-targeting")
        counts = back.obs[~back.obs["is_control"]].groupby("perturbation", observed=True).size()
        assert set(counts) == {7}
    # Predictions that are already cells are converted as they are.
    cells = cc.data.read_h5ad(tmp_path / "gears" / "predicted.h5ad")
    cells = cc.data.standardize(cells, "gears", control_label="non-targeting")
    cells = cells[~cells.obs["is_control"].to_numpy()].copy()
    cells_path = tmp_path / "cells.h5ad"
    cc.data.write_h5ad(cells, cells_path)
    code, stdout, err = _run(["export", "--predicted", str(cells_path), "--observed",
                              str(paths["observed"]), "--out", str(tmp_path / "cells-out")],
                             capsys)
    assert code == 0, err
    assert f"{cells.n_obs} predicted cells as given" in stdout


def test_export_errors(papalexi, tmp_path, capsys):
    paths, predicted, _ = papalexi
    unseen = predicted.copy()
    unseen.obs["perturbation"] = pd.Categorical(["CD86"] * unseen.n_obs)
    unseen = unseen[:1].copy()
    bad = tmp_path / "unseen.h5ad"
    cc.data.write_h5ad(unseen, bad)
    base = ["export", "--observed", str(paths["observed"]), "--out", str(tmp_path / "x")]
    code, _, err = _run([*base, "--predicted", str(bad)], capsys)
    assert code == 2
    assert "has no cells of 1 predicted perturbation(s): CD86" in err
    code, _, err = _run([*base, "--predicted", str(paths["predicted"]), "--n-cells", "many"],
                        capsys)
    assert code == 2
    assert "--n-cells must be an integer or 'observed'" in err
    code, _, err = _run([*base, "--predicted", str(paths["predicted"]), "--control-label",
                         "NT"], capsys)
    assert code == 2
    assert "no control cells labelled 'NT'" in err
    code, _, err = _run(["export", "--predicted", str(paths["predicted"]), "--observed",
                         str(paths["observed"]), "--out", str(tmp_path / "no" / "dir")], capsys)
    assert code == 2
    assert "does not exist" in err
    assert not (tmp_path / "x").exists()
