"""The ``causalcell`` command.

Every failure the user can cause ends with one line on stderr naming the
problem and exit status 2; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from causalcell._version import __version__
from causalcell.errors import CausalCellError, DataFileError, ParameterError

DATASETS = ("papalexi", "simulated", "sachs")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``causalcell`` command."""
    parser = _Parser(
        prog="causalcell",
        description=(
            "Causal modeling of genetic perturbation screens: models of P(X | T) on "
            "intervention graphs, scored without the targeted genes."
        ),
    )
    parser.add_argument("--version", action="version", version=f"causalcell {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="show, on embedded data, how far targeted genes move compared with all others",
        description=(
            "For each perturbation of an embedded data set, rank the targeted gene's own "
            "change (mean minus control) among the changes of all genes. Rank 1 means the "
            "obvious answer, 'the targeted gene moves', is the largest signal in the profile."
        ),
    )
    demo.add_argument(
        "--data",
        choices=DATASETS,
        default="papalexi",
        help="papalexi: real CRISPR knockout screen (default, shown with a simulation for "
        "comparison); simulated: data with a known network; sachs: real signalling data",
    )
    demo.add_argument("--out", type=Path, default=None,
                      help="directory for the CSV tables and PNG figures (created if its "
                      "parent exists)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    demo.add_argument("--quiet", action="store_true",
                      help="print only the summary lines (no tables, no progress bars)")
    _add_evaluate_parser(sub)
    return parser


CONVENTIONS = ("cell-eval", "gears", "scperturb")
EVALUATE_FILES = ("metrics.csv", "summary.csv", "retrieval.csv", "summary.png")


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="score predicted perturbation profiles against observed data, with and "
        "without the targeted genes",
        description=(
            "Score predictions per perturbation (errors, correlations, top-k DE genes, "
            "pairwise retrieval), once with each perturbation's targeted genes excluded and "
            "once with every gene, and write the tables and a summary figure to --out."
        ),
    )
    evaluate.add_argument("--predicted", type=Path, required=True,
                          help="predicted profiles (.h5ad), one row per perturbation")
    evaluate.add_argument("--observed", type=Path, required=True,
                          help="observed cells or pseudobulk profiles (.h5ad)")
    evaluate.add_argument("--out", type=Path, required=True,
                          help="directory for metrics.csv, summary.csv, retrieval.csv and "
                          "summary.png (created; its parent must exist)")
    evaluate.add_argument("--convention", choices=CONVENTIONS, default=None,
                          help="layout of both files when they do not follow the causalcell "
                          "contract (needs --perturbation-type)")
    evaluate.add_argument("--perturbation-type", default=None,
                          help="kind of every perturbation for --convention cell-eval / gears "
                          "(e.g. knockdown for CRISPRi, overexpression for CRISPRa)")
    evaluate.add_argument("--control-label", default=None,
                          help="perturbation label of the control cells to use")
    evaluate.add_argument("--reference", choices=("control", "perturbed_mean"),
                          default="control",
                          help="changes are taken against the control mean (default) or the "
                          "mean of all perturbation means (Systema)")
    evaluate.add_argument("--de-method", choices=("t-test", "wilcoxon"), default="t-test",
                          help="test choosing the observed top-k DE genes (default t-test)")
    evaluate.add_argument("--distance", default="euclidean",
                          choices=("euclidean", "sqeuclidean", "manhattan", "cosine", "pearson"),
                          help="distance of the pairwise retrieval (default euclidean)")
    evaluate.add_argument("--join", choices=("exact", "inner"), default="exact",
                          help="'inner' scores only the genes and perturbations both files "
                          "have (default: they must match)")
    evaluate.add_argument("--pseudobulk-predicted", action="store_true",
                          help="average predicted cells per perturbation first (cell-level "
                          "predictions)")


def _check_out(out: Path) -> Path:
    """Create ``out`` if its parent exists and make sure it is writable, before work starts."""
    if out.exists() and not out.is_dir():
        raise DataFileError(f"--out {str(out)!r} exists and is not a directory.")
    if not out.exists():
        if not out.parent.exists():
            raise DataFileError(
                f"--out {str(out)!r}: the parent directory {str(out.parent)!r} does not exist."
            )
        try:
            out.mkdir()
        except OSError as exc:
            raise DataFileError(f"--out {str(out)!r} cannot be created: {exc.strerror}.") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise DataFileError(f"--out {str(out)!r} is not writable.")
    try:  # permissions are not the whole story (read-only mounts, root, quotas): try it
        fd, probe = tempfile.mkstemp(prefix=".causalcell-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataFileError(
            f"--out {str(out)!r} is not writable ({exc.strerror or exc}). Choose another "
            f"directory."
        ) from exc
    return out


def _temp_beside(path: Path) -> str:
    """A temporary file in ``path``'s directory with the permissions of a normal new
    file (mkstemp makes it private to the user)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write atomically: a failed run leaves no partial table behind."""
    tmp = _temp_beside(path)
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _summary(name: str, table: pd.DataFrame) -> str:
    n = len(table)
    first = int((table["rank"] == 1).sum())
    top5 = int((table["rank"] <= 5).sum())
    median_ratio = float(np.median(table["ratio"][np.isfinite(table["ratio"])]))
    n_genes = int(table["n_genes"].iloc[0])
    return (
        f"{name}: the targeted gene's own change ranks first among {n_genes} genes in "
        f"{first} of {n} perturbed targets ({100 * first / n:.0f}%), in the top 5 in {top5}; "
        f"median |target change| / largest other |change| = {median_ratio:.1f}x."
    )


def _print_table(table: pd.DataFrame) -> None:
    shown = table.sort_values(["rank", "ratio"], ascending=[True, False])
    cols = ["perturbation", "perturbation_type", "target", "n_cells", "target_change", "rank",
            "max_other_change", "ratio"]
    with pd.option_context("display.width", 120, "display.max_rows", 40):
        print(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _demo_sections(data: str, seed: int) -> list[tuple[str, str, object]]:
    from causalcell import datasets

    if data == "papalexi":
        return [
            ("papalexi2021", "Papalexi et al. 2021, CRISPR knockout in THP-1 cells (real)",
             datasets.load_papalexi2021),
            ("simulated", "Simulation with a known network (knockdowns, default settings)",
             lambda: datasets.simulate(seed=seed).adata),
        ]
    if data == "simulated":
        return [("simulated", "Simulation with a known network (knockdowns, default settings)",
                 lambda: datasets.simulate(seed=seed).adata)]
    return [("sachs2005", "Sachs et al. 2005, signalling inhibitors/activators (real)",
             datasets.load_sachs2005)]


FIGURE_DPI = 120
GRN = "conditional GRN"


def _write_figure(fig, path: Path) -> None:
    """Save a PNG atomically (temp file beside it, then os.replace) and free the figure."""
    import matplotlib.pyplot as plt

    tmp = _temp_beside(path)
    try:
        fig.savefig(tmp, dpi=FIGURE_DPI, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


class _Writer:
    """Writes the demo's files into ``out`` and remembers them; a failed write
    becomes one DataFileError line instead of a traceback."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.written: list[Path] = []

    def __call__(self, name: str, write, obj) -> None:
        if self.out is None:
            return
        path = self.out / name
        try:
            write(obj, path)
        except OSError as exc:
            raise DataFileError(
                f"Could not write {str(path)!r}: {exc.strerror or exc}. Check that --out is "
                f"writable and the disk is not full."
            ) from exc
        self.written.append(path)

    def csv(self, table: pd.DataFrame, name: str) -> None:
        self(name, _write_csv, table)

    def figure(self, fig, name: str) -> None:
        self(name, _write_figure, fig)


def _grn_model(result) -> str:
    """The main conditional GRN model of a comparison (the first one)."""
    return next(m for m in result.predictions if m.startswith(GRN))


def _showcase(result) -> tuple[str, list[str]] | None:
    """The held-out perturbation drawn in detail: the largest observed change
    outside its targets, among those whose targets are all in the network and
    whose neighbourhood is small enough to draw."""
    from causalcell.evaluate import align

    main = _grn_model(result)
    network = result.networks[main]
    aligned = align(result.predictions[main], result.observed)
    moved = aligned.observed.copy()
    moved[aligned.targets.nonzero()] = 0.0  # the target's own change is not the point
    size = np.linalg.norm(moved, axis=1)
    for row in np.argsort(-size, kind="stable"):
        genes = [str(g) for g in aligned.genes[aligned.targets[[row]].indices]]
        if not genes or not all(g in network for g in genes):
            continue
        hood = set()
        undirected = network.to_undirected(as_view=True)
        for g in genes:
            hood |= set(undirected.neighbors(g)) | {g}
        if len(hood) <= 40:
            return str(aligned.perturbations[row]), genes
    return None


def _demo_figures(data: str, result, sections: list[tuple[str, object, pd.DataFrame]],
                  write: _Writer, quiet: bool) -> None:
    """Every figure of the demo, each saved as it is made."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never open a window
    import matplotlib.pyplot as plt

    from causalcell import plot
    from causalcell.evaluate import retrieval

    main = _grn_model(result)
    showcase = _showcase(result)
    steps = [f"target_effect_{key}" for key, _, _ in sections]
    steps += ["conditioning", "retrieval", "rank_matrix"]
    steps += ["predicted_vs_observed", "intervention_graph"] if showcase else []
    bar = _progress(steps, "figures", quiet)
    for step in bar:
        bar.set_postfix_str(step)
        if step.startswith("target_effect_"):
            key, adata, table = next(s for s in sections if f"target_effect_{s[0]}" == step)
            ax = plot.target_effect(adata)
            n, first = len(table), int((table["rank"] == 1).sum())
            ax.set_title(f"{key}: the targeted gene's own change (red) against all other genes "
                         f"(grey)\nlargest change of its profile in {first} of {n} perturbations",
                         fontsize=10)
            write.figure(ax.figure, f"{step}.png")
        elif step == "conditioning":
            fig = plot.conditioning_comparison(result.table)
            fig.suptitle(
                f"{data}: held-out perturbations scored with every gene (left end) and with "
                f"the targeted genes excluded (right end)\nup = better; a crossing line is a "
                f"reversal: the ranking of models changes once the targeted gene no longer "
                f"counts", fontsize=10)
            fig.tight_layout()
            write.figure(fig, f"conditioning_comparison_{data}.png")
        elif step == "retrieval" and len(result.held_out) >= 2:
            ranks = pd.concat(
                [retrieval(pred, result.observed, exclusion=("none", "query", "pair"))
                 .assign(model=name) for name, pred in result.predictions.items()],
                ignore_index=True)
            write.csv(ranks, f"retrieval_{data}.csv")
            ax = plot.retrieval_ranks(ranks)
            ax.set_title(f"{data}: does each prediction pick out its own held-out perturbation?"
                         f"\n(rank 0 = found first, 0.5 = chance; one dot per perturbation)",
                         fontsize=10)
            ax.tick_params(axis="x", labelrotation=30)
            write.figure(ax.figure, f"retrieval_ranks_{data}.png")
        elif step == "rank_matrix" and len(result.held_out) >= 2:
            ax = plot.pairwise_rank_matrix(result.predictions[main], result.observed)
            ax.set_title(f"{data}, {main}: which other perturbation's observed profile is "
                         f"closer to the prediction than its own? (fair pair exclusion)\n"
                         f"{ax.get_title()}", fontsize=9)
            write.figure(ax.figure, f"rank_matrix_{data}.png")
        elif step == "predicted_vs_observed":
            key, genes = showcase
            ax = plot.predicted_vs_observed(result.predictions[main], result.observed, key)
            ax.set_title(f"{data}, {main}, held-out {key}\n{ax.get_title()}", fontsize=9)
            write.figure(ax.figure, f"predicted_vs_observed_{data}.png")
        elif step == "intervention_graph":
            key, genes = showcase
            fig, axes = plt.subplots(1, len(result.networks),
                                     figsize=(7 * len(result.networks), 5), squeeze=False)
            for ax, (name, graph) in zip(axes[0], result.networks.items(), strict=True):
                plot.intervention_graph(graph, genes, ax=ax)
                ax.set_title(f"{name}: do({', '.join(genes)}), held-out {key}\nred: targets "
                             f"set by the tool; dashed: regulation cut by the intervention",
                             fontsize=9)
            fig.tight_layout()
            write.figure(fig, f"intervention_graph_{data}.png")


def _progress(items, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=quiet, leave=False, unit="step")


def _demo_models(args: argparse.Namespace) -> tuple[object, str]:
    """Cross-validate models on the chosen data and say what the numbers show."""
    from causalcell.demo import (
        FOLDS,
        SELECTED,
        demo_comparison,
        format_comparison,
        graph_verdict,
        verdicts,
    )

    if not args.quiet:
        print(f"\n== Models of P(X | T) on {args.data}")
    result, title = demo_comparison(args.data, random_state=args.seed, verbose=not args.quiet)
    if not args.quiet:
        print(f"  ({title}; fit + predict over {FOLDS} folds: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in result.fit_seconds.items()) + ")")
    held = result.held_out
    text = (
        f"\nCross-validation on {args.data}: all {len(held)} perturbations whose targets are "
        f"measured ({', '.join(held)}), in {FOLDS} folds; each is predicted once, by models "
        f"fitted without it and told the observed level T of its targeted genes "
        f"(retrieval_rank: 0 = the true perturbation is found first, 0.5 = chance).\n"
        f"{format_comparison(result)}\n" + "\n".join(verdicts(result))
    )
    if SELECTED in result.fitted:
        text += "\n" + graph_verdict(result)
    return result, text


def run_demo(args: argparse.Namespace) -> int:
    """``causalcell demo``: target-gene effect and model comparison on embedded data."""
    from causalcell.data import Interventions
    from causalcell.demo import target_verdict
    from causalcell.evaluate import target_effect

    if args.data not in DATASETS:  # argparse checks this; run_demo is also called directly
        raise ParameterError(f"Unknown --data {args.data!r}; choose one of {', '.join(DATASETS)}.")
    # Checked (and created when its parent exists) before any long work.
    out = _check_out(args.out) if args.out is not None else None
    write = _Writer(out)
    summaries = []
    sections = []
    for key, title, load in _progress(_demo_sections(args.data, args.seed), "target effect",
                                      args.quiet):
        with warnings.catch_warnings():
            # Unmeasured targets (e.g. IRF1 in Papalexi) are reported below instead.
            warnings.simplefilter("ignore", category=UserWarning)
            adata = load()
            table = target_effect(adata)
            unmeasured = Interventions.from_adata(adata, warn_unmeasured=False).unmeasured
        if not args.quiet:
            print(f"\n== {title}: {adata.n_obs} cells x {adata.n_vars} genes")
            _print_table(table)
        summaries.append(_summary(key, table))
        if unmeasured:
            summaries.append(
                f"  ({len(unmeasured)} further targets are not among the measured genes, so "
                f"their own change cannot be seen: {', '.join(unmeasured)}.)"
            )
        write.csv(table, f"target_effect_{key}.csv")
        sections.append((key, adata, table))
    result, comparison = _demo_models(args)
    write.csv(result.table, f"model_comparison_{args.data}.csv")
    if out is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            _demo_figures(args.data, result, sections, write, args.quiet)
    print()
    for line in summaries:
        print(line)
    print(comparison)
    for key, _, table in sections:
        print(target_verdict(key, table))
    if out is not None:
        print(f"Files written to {out}/:")
        for path in write.written:
            print(f"  {path.name}")
    return 0


def _check_parent(out: Path) -> None:
    """Fail before any work if ``out`` cannot become a directory of results."""
    if out.exists() and not out.is_dir():
        raise DataFileError(f"--out {str(out)!r} exists and is not a directory.")
    parent = out.parent
    if not parent.is_dir():
        raise DataFileError(
            f"--out {str(out)!r}: the parent directory {str(parent)!r} does not exist."
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and
                                                    not os.access(out, os.W_OK | os.X_OK)):
        raise DataFileError(f"--out {str(out)!r} is not writable.")


def _standardize_file(adata, args: argparse.Namespace, side: str):
    """Convert obs / var of another convention; prediction files need no controls."""
    from causalcell.data import standardize

    return standardize(
        adata,
        args.convention,
        perturbation_type=args.perturbation_type,
        control_label=args.control_label,
        require_controls=side != "predicted",
    )


def _by_conditioning(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric (rows, in order) per conditioning (columns, in order)."""
    table = summary.pivot(index="metric", columns="conditioning", values="mean")
    return table.reindex(index=list(dict.fromkeys(summary["metric"])),
                         columns=list(dict.fromkeys(summary["conditioning"])))


def _summary_figure(summary: pd.DataFrame, retrieval: pd.DataFrame | None, path: Path) -> None:
    """Bar charts of the mean scores per conditioning, and of the retrieval ranks."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend is involved

    table = _by_conditioning(summary[summary["higher_is_better"]])
    fig = Figure(figsize=(11, 0.35 * len(table) + 2.0), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[2, 1])
    height = 0.8 / max(len(table.columns), 1)
    y = np.arange(len(table))
    for k, cond in enumerate(table.columns):
        left.barh(y + k * height, table[cond].to_numpy(), height=height, label=cond)
    left.set_yticks(y + height * (len(table.columns) - 1) / 2, table.index)
    left.invert_yaxis()
    left.axvline(0, color="black", linewidth=0.8)
    left.set_xlabel("mean over perturbations (higher is better)")
    left.legend(title="conditioning", loc="upper center", bbox_to_anchor=(0.5, -0.12),
                ncols=len(table.columns))
    if retrieval is not None:
        ranks = retrieval.groupby("exclusion", sort=False)["rank"].mean()
        right.bar(ranks.index, ranks.to_numpy(), color="#4c72b0")
        right.axhline(0.5, color="#c0392b", linestyle="--", label="chance")
        right.set_ylim(0, 1)
        right.set_ylabel("mean retrieval rank (0 = perfect)")
        right.set_title("pairwise retrieval")
        right.legend()
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "retrieval needs\n2+ perturbations", ha="center", va="center")
    fig.savefig(path, dpi=120)


def _print_evaluation(summary: pd.DataFrame, retrieval: pd.DataFrame | None,
                      metrics: pd.DataFrame) -> None:
    table = _by_conditioning(summary)
    n = metrics.attrs.get("n_perturbations", metrics["perturbation"].nunique())
    print(f"{n} perturbations scored (reference: {metrics.attrs.get('reference')}, top-k "
          f"genes by {metrics.attrs.get('de')}). Mean over perturbations:")
    with pd.option_context("display.width", 120, "display.max_rows", 60):
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if retrieval is None:
        print("\nPairwise retrieval needs at least 2 perturbations; it was skipped.")
    else:
        means = retrieval.groupby("exclusion", sort=False)[["rank", "score"]].mean()
        print("\nPairwise retrieval, mean rank (0 = perfect, 0.5 = chance) and cell-eval score:")
        for excl, row in means.iterrows():
            print(f"  {excl:<6} rank {row['rank']:.3f}   score {row['score']:.3f}")
    unpredicted = metrics.attrs.get("unpredicted") or []
    if unpredicted:
        print(f"({len(unpredicted)} observed perturbations have no prediction and were left "
              f"out.)")


def run_evaluate(args: argparse.Namespace) -> int:
    """``causalcell evaluate``: score predictions, write tables and a figure atomically."""
    from causalcell.data import read_h5ad
    from causalcell.evaluate.report import evaluate, summarize
    from causalcell.evaluate.retrieval_table import retrieval

    out: Path = args.out
    if args.convention in ("cell-eval", "gears") and args.perturbation_type is None:
        raise ParameterError(
            f"--convention {args.convention} needs --perturbation-type: the layout does not "
            f"record how genes were perturbed (CRISPRi screens such as the Virtual Cell "
            f"Challenge: knockdown; CRISPRa: overexpression)."
        )
    _check_parent(out)
    predicted = read_h5ad(args.predicted)
    observed = read_h5ad(args.observed)
    if args.convention is not None:
        predicted = _standardize_file(predicted, args, "predicted")
        observed = _standardize_file(observed, args, "observed")
    options = {"reference": args.reference, "join": args.join,
               "control_label": args.control_label,
               "aggregate_predicted": args.pseudobulk_predicted}
    metrics = evaluate(predicted, observed, de_method=args.de_method, distance=args.distance,
                       **options)
    summary = summarize(metrics)
    ranks = None
    if metrics.attrs.get("n_perturbations", 0) >= 2:
        ranks = retrieval(predicted, observed, distance=args.distance,
                          exclusion=("pair", "query", "none", "all"), **options)
    # Everything is written to a scratch directory beside --out and moved in
    # only once every file exists: a failure leaves no partial result.
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise DataFileError(f"Cannot write next to --out {str(out)!r}: {exc}") from exc
    try:
        metrics.to_csv(scratch / "metrics.csv", index=False)
        summary.to_csv(scratch / "summary.csv", index=False)
        if ranks is not None:
            ranks.to_csv(scratch / "retrieval.csv", index=False)
        _summary_figure(summary, ranks, scratch / "summary.png")
        out.mkdir(exist_ok=True)
        for name in EVALUATE_FILES:
            if (scratch / name).exists():
                os.replace(scratch / name, out / name)
            elif (out / name).exists():  # a previous run's table that no longer applies
                (out / name).unlink()
    except OSError as exc:
        raise DataFileError(f"Could not write the results to {str(out)!r}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print_evaluation(summary, ranks, metrics)
    print(f"Tables and figure written to {out}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``causalcell`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            return run_demo(args)
        if args.command == "evaluate":
            return run_evaluate(args)
    except CausalCellError as exc:
        print(f"causalcell: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("causalcell: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
