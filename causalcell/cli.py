"""The ``causalcell`` command.

Every failure the user can cause ends with one line on stderr naming the
problem and exit status 2; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from causalcell._version import __version__
from causalcell.errors import CausalCellError, DataFileError

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
    demo.add_argument("--out", type=Path, default=None, help="directory for the CSV tables")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    demo.add_argument("--quiet", action="store_true", help="print only the summary lines")
    return parser


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
    return out


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write atomically: a failed run leaves no partial table behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
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


def run_demo(args: argparse.Namespace) -> int:
    """``causalcell demo``: target-gene effect on embedded data."""
    from causalcell.data import Interventions
    from causalcell.evaluate import target_effect

    out = _check_out(args.out) if args.out is not None else None
    sections = _demo_sections(args.data, args.seed)
    summaries = []
    for key, title, load in sections:
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
        if out is not None:
            _write_csv(table, out / f"target_effect_{key}.csv")
    print()
    for line in summaries:
        print(line)
    print(
        "Models and metrics that include the targeted gene are rewarded for this obvious "
        "signal; causalcell conditions on it (P(X | T)) and scores the rest."
    )
    if out is not None:
        print(f"Tables written to {out}/")
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
