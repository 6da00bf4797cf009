"""causalcell.demo: cross-validated comparisons and verdicts computed from the numbers."""

from __future__ import annotations

import dataclasses
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest

import causalcell as cc
from causalcell import plot
from causalcell.demo import (
    FIGURES,
    NAN_FOOTNOTE,
    SELECTED,
    demo_comparison,
    format_comparison,
    graph_verdict,
    render_text,
    run,
    target_verdict,
    verdicts,
)
from causalcell.errors import ParameterError, UnmeasuredTargetWarning


@pytest.fixture(scope="module")
def papalexi():
    return demo_comparison("papalexi", verbose=False)[0]


@pytest.fixture(scope="module")
def simulated():
    return demo_comparison("simulated", verbose=False)[0]


@pytest.fixture(scope="module")
def sachs_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)  # ICAM2
        return run("sachs")


@pytest.fixture(scope="module")
def sachs(sachs_run):
    return sachs_run.comparison


def test_papalexi_is_cross_validated_over_its_nine_measurable_perturbations(papalexi):
    assert papalexi.held_out == ["CMTM6", "IFNGR2", "JAK2", "NFKBIA", "STAT1", "STAT2",
                                 "STAT3", "TNFRSF14", "UBE2L6"]
    assert papalexi.folds["fold"].nunique() == 5
    table = papalexi.table
    assert (table["n [targeted]"][table["metric"] == "mse"] == 9).all()
    text = format_comparison(papalexi)
    assert "pearson_delta (n=9)" in text
    assert "calibrated (0 = mean baseline, 1 = replicate ceiling" in text
    row = table[(table["metric"] == "mse") & (table["model"] == "mean")].iloc[0]
    shown = f"{row['value [none]']:.3f} [{row['ci_low [none]']:.3f}, {row['ci_high [none]']:.3f}]"
    assert shown in text


def test_every_verdict_line_changes_when_the_numbers_change(papalexi, simulated):
    """Real data where nothing beats the mean baseline once the targets are
    excluded, and a simulation with the true network where the GRN does: the
    same sentences, each with other words or numbers."""
    real, sim = verdicts(papalexi), verdicts(simulated)
    assert len(real) == len(sim)
    for a, b in zip(real, sim, strict=True):
        assert a != b
    conditioned = "=> targeted genes excluded (conditioned, causalcell)"
    real_summary = next(line for line in real if line.startswith(conditioned))
    sim_summary = next(line for line in sim if line.startswith(conditioned))
    assert "nothing beats the mean baseline" in real_summary
    assert "conditional GRN on pearson_delta" in sim_summary
    # Doctored numbers: the GRN made equal to the mean baseline loses its verdict.
    table = simulated.table.copy()
    grn = table["model"] == "conditional GRN"
    for column in [c for c in table.columns if c.startswith(("diff", "p_value"))]:
        table.loc[grn, column] = 0.0 if column.startswith("diff") else 1.0
    doctored = verdicts(dataclasses.replace(simulated, table=table))
    assert doctored != sim
    assert any("nothing beats the mean baseline" in line for line in doctored)


def test_target_verdict_follows_the_data():
    sim = cc.datasets.simulate(random_state=0)
    dominated = target_verdict("simulated", cc.evaluate.target_effect(sim.adata))
    assert "45 of 45" in dominated
    assert "it dominates" in dominated
    sachs = cc.datasets.load_sachs2005()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)  # ICAM2
        table = cc.evaluate.target_effect(sachs)
    line = target_verdict("sachs2005", table)
    first = int((table["rank"] == 1).sum())
    assert f"in {first} of {len(table)} perturbed targets" in line
    assert "does not dominate" in line


def test_sachs_graph_verdict_comes_from_nested_selection(sachs):
    fitted = sachs.fitted[SELECTED]
    assert len(fitted) == 5
    choices = [f.selected_ for f in fitted]
    line = graph_verdict(sachs)
    for graph in ("consensus graph", "learned graph"):
        assert f"the {graph} in {choices.count(graph)} of 5 folds" in line
    mse = sachs.table.set_index(["metric", "model"]).loc[("mse", SELECTED),
                                                          "value [targeted]"]
    assert f"mse {mse:.3f}" in line
    # Other choices, other sentence.
    other = {"consensus graph": "learned graph", "learned graph": "consensus graph"}
    try:
        for f in fitted:
            f.selected_ = other[f.selected_]
        assert graph_verdict(sachs) != line
    finally:
        for f, choice in zip(fitted, choices, strict=True):
            f.selected_ = choice
    with pytest.raises(ParameterError, match="not a fitted selection"):
        graph_verdict(sachs, "mean")


def test_sachs_models_and_figures(sachs):
    assert {"conditional GRN (consensus graph)", "conditional GRN (learned graph)",
            SELECTED} <= set(sachs.predictions)
    assert set(sachs.networks) == {"conditional GRN (consensus graph)",
                                   "conditional GRN (learned graph)"}
    learned = sachs.fold_networks["conditional GRN (learned graph)"]
    assert len(learned) == 5
    assert all(g.number_of_edges() > 0 for g in learned)
    fig = plot.conditioning_comparison(sachs.table)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3  # pearson_delta, mse, retrieval_rank on Sachs (no top-k DE)
    assert all(len(ax.lines) == len(sachs.predictions) for ax in panels)
    plt.close(fig)
    ax = plot.predicted_vs_observed(sachs.predictions["conditional GRN (consensus graph)"],
                                    sachs.observed, "pkc [inhibition]")
    assert len(ax.collections[0].get_offsets()) == 10  # 11 proteins, pkc is the target
    assert len(ax.collections[1].get_offsets()) == 1
    plt.close(ax.figure)


def test_verdicts_need_a_baseline(simulated):
    table = simulated.table[simulated.table["model"] != "mean"]
    with pytest.raises(ParameterError, match="no baseline 'mean'"):
        verdicts(dataclasses.replace(simulated, table=table))
    assert np.isfinite(simulated.table["p_value [targeted]"]).all()


def test_default_text_is_short_and_puts_the_comparison_first(sachs_run):
    text = render_text(sachs_run)
    lines = text.splitlines()
    assert lines[0].startswith("Models of P(X | T) on Sachs et al. 2005")
    assert lines[1].startswith("-- targeted genes excluded (conditioned, causalcell)")
    assert len(lines) <= 35
    assert "calibrated (0 = mean baseline" not in text  # behind --verbose
    assert "pearson_delta (n=7)" in text
    # The verdicts over all metrics, the graph verdict and the target verdict, computed.
    for line in verdicts(sachs_run.comparison):
        assert (line in lines) == (line.startswith("=>") or line.startswith("No order"))
    assert graph_verdict(sachs_run.comparison) in lines
    assert target_verdict("sachs2005", sachs_run.sections[0].table) in lines
    assert "1 further target is not among the measured genes; --verbose lists it." in text
    assert "--verbose adds" in lines[-1]


def test_verbose_adds_the_long_tables_and_quiet_keeps_the_verdicts(sachs_run):
    short, long = render_text(sachs_run), render_text(sachs_run, verbose=True)
    pointers = ("--verbose", "  (sachs2005")  # the short text's notes of what --verbose adds
    kept = {line for line in short.splitlines() if not line.startswith(pointers)}
    assert kept <= set(long.splitlines())
    assert "calibrated (0 = mean baseline" in long
    assert "sachs2005: the targeted gene's own change ranks first among 11 genes in" in long
    assert "ICAM2" in long
    assert "ICAM2" not in short
    assert "== Sachs et al. 2005, signalling inhibitors/activators (real): 7466 cells" in long
    quiet = render_text(sachs_run, quiet=True).splitlines()
    assert quiet[0].startswith("=> targeted genes excluded")
    assert not any(line.startswith(("--", "conditional GRN")) for line in quiet)


def test_a_missing_value_is_printed_na_with_a_footnote(sachs):
    text = format_comparison(sachs)
    assert "n/a" not in text
    assert NAN_FOOTNOTE not in text
    table = sachs.table.copy()
    row = (table["metric"] == "mse") & (table["model"] == "control")
    table.loc[row, ["value [none]", "ci_low [none]", "ci_high [none]"]] = np.nan
    text = format_comparison(dataclasses.replace(sachs, table=table))
    blocks = text.split("-- nothing excluded")
    assert NAN_FOOTNOTE not in blocks[0]  # only under the table that has one
    assert NAN_FOOTNOTE in blocks[1]
    control = next(line for line in blocks[1].splitlines() if line.startswith("control"))
    assert " n/a " in control


def test_figures_are_name_builder_pairs(sachs_run):
    names = [name for name, _ in FIGURES]
    assert names == ["target_effect", "conditioning_comparison", "retrieval_ranks",
                     "rank_matrix", "predicted_vs_observed", "intervention_graph"]
    files = []
    for _, build in FIGURES:
        for file_name, fig in build(sachs_run):
            files.append(file_name)
            plt.close(fig)
    assert files == ["target_effect_sachs2005.png", "conditioning_comparison_sachs.png",
                     "retrieval_ranks_sachs.png", "rank_matrix_sachs.png",
                     "predicted_vs_observed_sachs.png", "intervention_graph_sachs.png"]
    assert set(sachs_run.tables) == {"target_effect_sachs2005.csv", "model_comparison_sachs.csv",
                                     "retrieval_sachs.csv"}
    with pytest.raises(ParameterError, match="Unknown data='nope'"):
        run("nope")


def test_graph_verdict_counts_the_unoriented_pairs_of_the_learned_graphs(sachs):
    """learn_network's per-call warning is replaced by one computed sentence."""
    counts = [len(g.graph["unoriented"])
              for g in sachs.fold_networks["conditional GRN (learned graph)"]]
    text = graph_verdict(sachs)
    spread = (f"{min(counts)}" if min(counts) == max(counts)
              else f"{min(counts)} to {max(counts)}")
    assert f"left {spread} selected gene pairs" in text
    learned = [g.copy() for g in sachs.fold_networks["conditional GRN (learned graph)"]]
    for g in learned:
        g.graph["unoriented"] = g.graph["unoriented"].iloc[:0]
    networks = {**sachs.fold_networks, "conditional GRN (learned graph)": learned}
    none = dataclasses.replace(sachs, fold_networks=networks)
    assert "left 0 selected gene pairs" in graph_verdict(none)


def test_the_best_model_is_judged_with_holm_adjusted_p_values(simulated):
    """The best model is picked on the scored perturbations: its test against the
    baseline is one of several, so a raw p of 0.04 among four models whose others
    have p = 0.04, 0.5, 0.6 does not make a verdict (Holm: 0.16)."""
    table = simulated.table.copy()
    cond, metric = "targeted", "mse"
    rows = (table["metric"] == metric) & (table["model"] != "mean")
    models = table.loc[rows, "model"].tolist()
    assert len(models) == 4
    best = table.loc[rows].sort_values(f"value [{cond}]").index[0]  # lowest mse
    others = [i for i in table.index[rows] if i != best]
    table.loc[best, [f"diff_ci_low [{cond}]", f"diff_ci_high [{cond}]"]] = [-0.3, -0.1]
    table.loc[best, f"p_value [{cond}]"] = 0.04
    table.loc[others, f"p_value [{cond}]"] = [0.04, 0.5, 0.6]
    lines = verdicts(dataclasses.replace(simulated, table=table), metrics=[metric])
    line = next(line for line in lines if line.startswith("targeted genes excluded"))
    assert "is indistinguishable from the mean baseline" in line
    assert "p = 0.04; Holm-adjusted over 4 models 0.16" in line
    # A raw p of 0.001 (Holm: 4 x 0.001) makes the verdict.
    table.loc[best, f"p_value [{cond}]"] = 0.001
    lines = verdicts(dataclasses.replace(simulated, table=table), metrics=[metric])
    line = next(line for line in lines if line.startswith("targeted genes excluded"))
    assert "beats the mean baseline" in line
    assert "Holm-adjusted over 4 models 0.004" in line
