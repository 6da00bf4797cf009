"""The ``causalcell`` command.

Every failure the user can cause ends with one line on stderr naming the
problem and exit status 2; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from causalcell._outdir import OutputDirectory
from causalcell._version import __version__
from causalcell.errors import CausalCellError, DataFileError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

# numpy and pandas are imported inside the commands: ``causalcell --help`` parses first.
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
        help="on embedded data: how far targeted genes move, and models of P(X | T) "
        "compared with and without the targeted genes scored",
        description=(
            "Two parts on an embedded data set. (1) For each perturbation, rank the targeted "
            "gene's own change (mean minus control) among the changes of all genes: rank 1 "
            "means the obvious answer, 'the targeted gene moves', is the largest signal in "
            "the profile. (2) Cross-validate the conditional GRN model of P(X | T) and four "
            "baselines over every perturbation whose targets are measured, score them with "
            "the targeted genes excluded and with every gene, and say from the numbers "
            "(paired intervals and p-values) whether any model beats the mean baseline and "
            "whether a ranking reverses. Prints the comparison and the verdicts; --verbose "
            "adds the long tables; --out writes every table as CSV and the figures as PNG."
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
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and folds")
    loudness = demo.add_mutually_exclusive_group()
    loudness.add_argument("--verbose", action="store_true",
                          help="also print the calibrated scores, the verdict per metric, "
                          "the fit times and the per-perturbation target-effect tables")
    loudness.add_argument("--quiet", action="store_true",
                          help="print only the verdict sentences and the files written (no "
                          "tables, no progress bars)")
    _add_output_flags(demo)
    _add_evaluate_parser(sub)
    _add_export_parser(sub)
    return parser


CONVENTIONS = ("cell-eval", "gears", "scperturb")


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
    _add_output_flags(evaluate)


FIGURE_DPI = 120


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def _write_figure(fig, path: Path) -> None:
    """Save a PNG and free the figure."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=FIGURE_DPI, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)


class _Writer:
    """Writes a command's files into its output directory (built in scratch and
    swapped in whole by :meth:`commit`) and remembers them; a failed write becomes
    one DataFileError line instead of a traceback. With no ``--out`` it writes
    nothing."""

    def __init__(self, target: OutputDirectory | None) -> None:
        self.target = target

    @property
    def written(self) -> list[str]:
        return list(self.target.written) if self.target is not None else []

    def __call__(self, name: str, write, obj) -> None:
        if self.target is None:
            return
        path = self.target.path(name)
        try:
            write(obj, path)
        except OSError as exc:
            raise DataFileError(
                f"Could not write {name!r} for {self.target.flag} {str(self.target.out)!r}: "
                f"{exc.strerror or exc}. Check that the disk is not full; the previous "
                f"result is unchanged."
            ) from exc

    def csv(self, table: pd.DataFrame, name: str) -> None:
        self(name, _write_csv, table)

    def figure(self, fig, name: str) -> None:
        self(name, _write_figure, fig)

    def commit(self) -> None:
        if self.target is not None:
            self.target.commit()


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an existing --out that causalcell did not write "
                        "(files of yours that it does not replace are kept)")
    parser.add_argument("--no-wait", action="store_true",
                        help="fail at once, instead of waiting, when another causalcell run "
                        "is writing the same --out")


def _output_directory(args: argparse.Namespace) -> OutputDirectory | None:
    """The ``--out`` of a command, checked (and locked) before any long work."""
    if getattr(args, "out", None) is None:
        return None
    return OutputDirectory(args.out, command=["causalcell", *getattr(args, "argv", [])],
                           overwrite=getattr(args, "overwrite", False),
                           wait=not getattr(args, "no_wait", False))


def _progress(items, desc: str, quiet: bool):
    from causalcell._progress import tqdm

    return tqdm(items, desc=desc, disable=quiet, leave=False, unit="step")


def run_demo(args: argparse.Namespace) -> int:
    """``causalcell demo``: target-gene effect and model comparison on embedded data."""
    if args.data not in DATASETS:  # argparse checks this; run_demo is also called directly
        raise ParameterError(f"Unknown --data {args.data!r}; choose one of {', '.join(DATASETS)}.")
    # --out is checked and locked before any long work; its files appear all at once.
    target = _output_directory(args)
    with target if target is not None else contextlib.nullcontext():
        return _run_demo(args, _Writer(target))


def _run_demo(args: argparse.Namespace, write: _Writer) -> int:
    from causalcell import demo

    quiet, verbose = args.quiet, getattr(args, "verbose", False)
    result = demo.run(args.data, random_state=args.seed, verbose=not quiet)
    for name, table in result.tables.items():
        write.csv(table, name)
    if write.target is not None:
        import matplotlib

        matplotlib.use("Agg", force=True)  # files only: never open a window
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            bar = _progress(demo.FIGURES, "figures", quiet)
            for name, build in bar:
                bar.set_postfix_str(name)
                for file_name, fig in build(result):
                    write.figure(fig, file_name)
    write.commit()
    print(demo.render_text(result, verbose=verbose, quiet=quiet))
    if write.target is not None:
        print(f"Files written to {write.target.out}/:")
        for name in write.written:
            print(f"  {name}")
    return 0


def _standardize_file(adata, args: argparse.Namespace, side: str):
    """Convert obs / var of another convention; prediction files need no controls."""
    from causalcell._validation import naming
    from causalcell.data import standardize

    with naming(f"the {side} data"):
        return standardize(
            adata,
            args.convention,
            perturbation_type=args.perturbation_type,
            control_label=args.control_label,
            require_controls=side != "predicted",
        )


def _summary_figure(summary: pd.DataFrame, retrieval: pd.DataFrame | None, path: Path,
                    title: str | None = None) -> None:
    """The summary figure (:func:`causalcell.plot.evaluation_summary`) as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never open a window
    from causalcell.plot import evaluation_summary

    evaluation_summary(summary, retrieval, title=title).savefig(path, dpi=FIGURE_DPI)


def _print_evaluation(summary: pd.DataFrame, retrieval: pd.DataFrame | None,
                      metrics: pd.DataFrame) -> None:
    import pandas as pd

    from causalcell.evaluate._exclude import means_by_exclude

    table = means_by_exclude(summary)
    n = metrics.attrs.get("n_perturbations", metrics["perturbation"].nunique())
    print(f"{n} perturbations scored (reference: {metrics.attrs.get('reference')}, top-k "
          f"genes by {metrics.attrs.get('de')}). Mean over perturbations:")
    with pd.option_context("display.width", 120, "display.max_rows", 60):
        print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    if table.isna().any(axis=None):
        print("n/a: no perturbation defines the metric under that exclusion rule (e.g. no gene "
              "is significant, or fewer genes than the top k).")
    if retrieval is None:
        print("\nPairwise retrieval needs at least 2 perturbations; it was skipped.")
    else:
        means = retrieval.groupby("exclude", sort=False)[["rank", "score"]].mean()
        print("\nPairwise retrieval, mean rank (0 = perfect, 0.5 = chance) and cell-eval score:")
        for excl, row in means.iterrows():
            print(f"  {excl:<8} rank {row['rank']:.3f}   score {row['score']:.3f}")
    unpredicted = metrics.attrs.get("unpredicted") or []
    if unpredicted:
        print(f"({len(unpredicted)} observed perturbations have no prediction and were left "
              f"out.)")


def run_evaluate(args: argparse.Namespace) -> int:
    """``causalcell evaluate``: score predictions, write tables and a figure atomically."""
    from causalcell.evaluate import evaluate, retrieval, summarize
    from causalcell.evaluate._align import align_cells
    from causalcell.evaluate._report import cells_pass, observed_de

    if args.convention in ("cell-eval", "gears") and args.perturbation_type is None:
        raise ParameterError(
            f"--convention {args.convention} needs --perturbation-type: the layout does not "
            f"record how genes were perturbed (CRISPRi screens such as the Virtual Cell "
            f"Challenge: knockdown; CRISPRa: overexpression)."
        )
    # --out is checked and locked before the inputs are read; its files appear all at once.
    with _output_directory(args) as target:
        predicted, observed = _read_inputs(args)
        if args.convention is not None:
            predicted = _standardize_file(predicted, args, "predicted")
            observed = _standardize_file(observed, args, "observed")
        options = {"reference": args.reference, "join": args.join,
                   "control_label": args.control_label,
                   "aggregate_predicted": args.pseudobulk_predicted}
        # Aligned once, for every score; the pass over the observed cells serves the
        # DE test too (their per-condition sums, merged), so they are read once.
        aligned, cells = align_cells(predicted, observed, **options,
                                     **cells_pass(None, args.de_method))
        de = observed_de(observed, None, args.de_method, None, args.control_label, cells)
        del cells
        metrics = evaluate(aligned, observed, de_method=args.de_method, de=de,
                           distance=args.distance)
        summary = summarize(metrics)
        ranks = None
        if metrics.attrs.get("n_perturbations", 0) >= 2:
            ranks = retrieval(aligned, distance=args.distance,
                              exclude=("targeted", "query", "none", "all"))
        write = _Writer(target)
        write.csv(metrics, "metrics.csv")
        write.csv(summary, "summary.csv")
        if ranks is not None:
            write.csv(ranks, "retrieval.csv")
        title = f"{args.predicted.name} vs {args.observed.name}"
        write("summary.png", _summary_figure_file, (summary, ranks, title))
        write.commit()
    _print_evaluation(summary, ranks, metrics)
    print(f"Tables and figure written to {args.out}/")
    return 0


def _read_inputs(args: argparse.Namespace) -> tuple:
    """The ``--predicted`` and ``--observed`` files; an error names the flag and the file."""
    from causalcell._validation import naming
    from causalcell.data import read_h5ad

    sides = []
    for side in ("predicted", "observed"):
        with naming(f"the {side} data"):
            sides.append(read_h5ad(getattr(args, side)))
    return tuple(sides)


def _summary_figure_file(tables: tuple, path: Path) -> None:
    summary, ranks, title = tables
    _summary_figure(summary, ranks, path, title)


# How to score the exported files with each tool (printed after the export).
_NEXT_STEP = {
    "cell-eval": "cell-eval run -ap {out}/predicted.h5ad -ar {out}/observed.h5ad "
                 "--control-pert non-targeting --pert-col target_gene",
}


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="write predictions and observed cells in the layout of cell-eval, GEARS or "
        "scPerturb, sampling cells from per-perturbation predictions",
        description=(
            "Write a pair of files another tool reads as they are: --out/predicted.h5ad "
            "and --out/observed.h5ad, in the layout of --convention (cell-eval: obs "
            "'target_gene', controls 'non-targeting', as read by 'cell-eval run' and the "
            "Virtual Cell Challenge). Predictions with one row per perturbation (a model's "
            "predict() output) become cells: each cell is an observed control cell plus the "
            "predicted change, truncated at 0, with the change set per gene so that the "
            "cells of a perturbation average exactly to its prediction "
            "(causalcell.data.sample_cells). Predictions that are already cells are "
            "converted as they are. Both files get the observed control cells, unchanged, "
            "so a tool taking changes against the control mean of each file uses the same "
            "reference on both sides; the observed file keeps the predicted perturbations "
            "and the controls, on the predicted genes in the same order."
        ),
    )
    export.add_argument("--predicted", type=Path, required=True,
                        help="predictions (.h5ad, causalcell contract): one row per "
                        "perturbation, or cells")
    export.add_argument("--observed", type=Path, required=True,
                        help="observed cells (.h5ad, causalcell contract) with controls")
    export.add_argument("--out", type=Path, required=True,
                        help="directory for predicted.h5ad and observed.h5ad (created; its "
                        "parent must exist)")
    export.add_argument("--convention", choices=CONVENTIONS, default="cell-eval",
                        help="layout to write (default cell-eval)")
    export.add_argument("--n-cells", default="observed",
                        help="cells sampled per predicted perturbation: an integer, or "
                        "'observed' (default) for as many as were observed")
    export.add_argument("--random-state", type=int, default=0,
                        help="seed of the draws of control cells (default 0)")
    export.add_argument("--control-label", default=None,
                        help="keep and draw from only the control cells with this label "
                        "(default: every control cell)")
    export.add_argument("--layer", default=None,
                        help="layer of --observed holding log-normalized expression "
                        "(default X)")
    _add_output_flags(export)


def _observed_side(predicted, observed, args: argparse.Namespace):
    """Observed cells of the predicted perturbations and the controls, on the predicted
    genes in their order; expression from --layer in X."""
    import numpy as np

    from causalcell.data import Interventions
    from causalcell.data.contract import expression_matrix

    pred_iv = Interventions.from_adata(predicted, warn_unmeasured=False)
    obs_iv = Interventions.from_adata(observed, warn_unmeasured=False)
    wanted = pred_iv.conditions.index[pred_iv.codes[~pred_iv.is_control]].unique()
    keys = obs_iv.conditions.index[obs_iv.codes]
    missing = wanted.difference(keys[~obs_iv.is_control])
    if len(missing):
        shown = ", ".join(missing[:10]) + (f" ... and {len(missing) - 10} more"
                                           if len(missing) > 10 else "")
        raise DataFileError(
            f"--observed {str(args.observed)!r} has no cells of {len(missing)} predicted "
            f"perturbation(s): {shown}. Both files must hold the same perturbations (cell-eval "
            f"refuses others): predict only observed perturbations."
        )
    control = obs_iv.is_control.copy()
    if args.control_label is not None:
        control &= obs_iv.labels == args.control_label
    if not control.any():
        which = f" labelled {args.control_label!r}" if args.control_label is not None else ""
        raise DataFileError(f"--observed {str(args.observed)!r} has no control cells{which}.")
    absent = predicted.var_names.difference(observed.var_names)
    if len(absent):
        raise DataFileError(
            f"--observed {str(args.observed)!r} lacks {len(absent)} predicted gene(s), e.g. "
            f"{list(absent[:5])}: predict on the observed genes."
        )
    rows = np.flatnonzero(control | (~obs_iv.is_control & keys.isin(wanted)))
    out = observed[rows][:, predicted.var_names].copy()
    if args.layer is not None:
        out.X = expression_matrix(out, args.layer, what="--observed")
    out.layers.clear()
    return out


def _export_cells(predicted, observed_side, args: argparse.Namespace):
    """The predicted cells, and whether they were sampled: one-row-per-perturbation
    profiles become cells (with the observed controls); cells are kept as given (the
    observed controls are added when they have none)."""
    import anndata as ad

    from causalcell.data import Interventions, sample_cells

    iv = Interventions.from_adata(predicted, warn_unmeasured=False)
    keys = iv.conditions.index[iv.codes[~iv.is_control]]
    if not keys.duplicated().any():
        n_cells = args.n_cells
        if n_cells != "observed":
            try:
                n_cells = int(n_cells)
            except ValueError:
                raise ParameterError(
                    f"--n-cells must be an integer or 'observed'; got {args.n_cells!r}."
                ) from None
        return sample_cells(predicted, observed_side, n_cells=n_cells,
                            random_state=args.random_state), True
    if iv.is_control.any():
        return predicted, False
    controls = observed_side[observed_side.obs["is_control"].to_numpy(dtype=bool)]
    return ad.concat([predicted, controls], join="outer", merge="first"), False


def run_export(args: argparse.Namespace) -> int:
    """``causalcell export``: a predicted and an observed file in another tool's layout."""
    from causalcell.data import to_convention, write_h5ad

    out: Path = args.out
    # --out is checked and locked before the inputs are read; both files appear at once,
    # so a failure never leaves a partial file or a mismatched pair.
    with _output_directory(args) as target:
        predicted, observed = _read_inputs(args)
        observed_side = _observed_side(predicted, observed, args)
        cells, sampled = _export_cells(predicted, observed_side, args)
        write = _Writer(target)
        write("predicted.h5ad", write_h5ad, to_convention(cells, args.convention))
        write("observed.h5ad", write_h5ad, to_convention(observed_side, args.convention))
        write.commit()
    n_perturbed = int((~cells.obs["is_control"].to_numpy(dtype=bool)).sum())
    what = (f"{n_perturbed} cells sampled from the {predicted.n_obs} predicted profiles "
            f"(noise of the observed controls, --random-state {args.random_state})" if sampled
            else f"{n_perturbed} predicted cells as given")
    print(f"Wrote {out}/predicted.h5ad: {what}, plus the observed control cells; "
          f"{cells.n_obs} cells x {cells.n_vars} genes ({args.convention} layout).")
    print(f"Wrote {out}/observed.h5ad: {observed_side.n_obs} observed cells of the same "
          f"perturbations and the controls, {observed_side.n_vars} genes.")
    if args.convention in _NEXT_STEP:
        print("Score them with:\n  " + _NEXT_STEP[args.convention].format(out=out))
    return 0


@contextlib.contextmanager
def _one_line_warnings(words=str):
    """Show causalcell's warnings as ``causalcell: warning: ...`` lines, each text once per
    command and without a source line, in the command's words (``words``: see
    :func:`in_cli_words`), as the CLI's errors are; other libraries' warnings are shown as
    Python shows them."""
    from causalcell.errors import CausalCellWarning

    shown: set[str] = set()
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, CausalCellWarning):
            original(message, category, filename, lineno, file, line)
        elif str(message) not in shown:
            shown.add(str(message))
            print(f"causalcell: warning: {words(str(message))}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


# Library parameters whose flag has another name (the rest: --name-with-dashes).
_FLAG_OF_PARAMETER = {"aggregate_predicted": "pseudobulk_predicted"}
# "The observed data" in a library message: the file of --observed in the CLI.
_SIDE = re.compile(r"\b[Tt]he (predicted|observed) data\b")


def in_cli_words(message: str, parser: argparse.ArgumentParser,
                 args: argparse.Namespace) -> str:
    """A library error message in the words of the command line, on one line.

    The library names its parameters (``control_label='x'``, ``join='inner'``)
    and its inputs (``the observed data``); the command has flags
    (``--control-label x``) and files (``--observed 'obs.h5ad'``). This is the
    one place that translates, so no message is written twice.

    Parameters
    ----------
    message
        The error message.
    parser
        The parser of the command that ran (its flags are looked up).
    args
        The parsed arguments (for the file of each side).
    """
    flags = {action.dest: action for action in parser._actions if action.option_strings}
    names = {dest: dest for dest in flags} | {
        name: dest for name, dest in _FLAG_OF_PARAMETER.items() if dest in flags}
    for name in sorted(names, key=len, reverse=True):
        action = flags[names[name]]
        flag = max(action.option_strings, key=len)
        takes_value = action.nargs != 0

        def to_flag(match: re.Match, flag: str = flag, takes_value: bool = takes_value,
                    choices: bool = bool(action.choices)) -> str:
            value = match.group(1)
            if value.startswith("None"):  # the default: the flag left out
                return f"no {flag}{value[len('None'):]}"
            if takes_value and value:
                if choices:  # a choice is typed bare: --join inner
                    value = re.sub(r"^'([\w.-]+)'", r"\1", value)
                return f"{flag} {value}"
            return flag + (value[len("True"):] if value.startswith("True") else "")

        message = re.sub(rf"(?<![\w.-]){name}=(\S*)", to_flag, message)

    def to_file(match: re.Match) -> str:
        side = match.group(1)
        path = getattr(args, side, None)
        return f"--{side} {str(path)!r}" if path is not None else match.group(0)

    message = _SIDE.sub(to_file, message)
    return " ".join(message.split())


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-parser of ``command`` (its flags)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``causalcell`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    command = _command_parser(parser, args.command)
    try:
        args.argv = list(sys.argv[1:] if argv is None else argv)
        with _one_line_warnings(lambda text: in_cli_words(text, command, args)):
            if args.command == "demo":
                return run_demo(args)
            if args.command == "evaluate":
                return run_evaluate(args)
            if args.command == "export":
                return run_export(args)
    except CausalCellError as exc:
        words = in_cli_words(str(exc), command, args)
        print(f"causalcell: error: {words}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("causalcell: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
