"""The demo's figures: a list of (name, builder) pairs, each builder drawing from
a :class:`~causalcell.demo.DemoResult` and returning ``(file name, Figure)`` pairs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from matplotlib.figure import Figure

from causalcell import plot
from causalcell.demo._run import DemoResult

__all__ = ["FIGURES", "figures"]

Builder = Callable[[DemoResult], list[tuple[str, Figure]]]


def _target_effect(result: DemoResult) -> list[tuple[str, Figure]]:
    out = []
    for section in result.sections:
        table = section.table
        ax = plot.target_effect(section.adata)
        first = int((table["rank"] == 1).sum())
        ax.set_title(f"{section.key}: the targeted gene's own change (red) against all other "
                     f"genes (grey)\nthe largest change of its profile for {first} of "
                     f"{len(table)} measured targets", fontsize=10)
        out.append((f"target_effect_{section.key}.png", ax.figure))
    return out


def _conditioning(result: DemoResult) -> list[tuple[str, Figure]]:
    fig = plot.conditioning_comparison(result.comparison.table)
    n = len(result.comparison.held_out)
    fig.suptitle(f"{result.data}: {n} held-out perturbations scored with every gene (left) "
                 f"and without the targeted genes (right)\nup = better; a crossing line is a "
                 f"reversal of the ranking once the targeted gene no longer counts",
                 fontsize=10)
    return [(f"conditioning_comparison_{result.data}.png", fig)]


def _retrieval(result: DemoResult) -> list[tuple[str, Figure]]:
    if result.retrieval is None:
        return []
    ax = plot.retrieval_ranks(result.retrieval)
    ax.set_title(f"{result.data}: does each prediction pick out its own held-out "
                 f"perturbation?\n{ax.get_title()}", fontsize=10)
    return [(f"retrieval_ranks_{result.data}.png", ax.figure)]


def _rank_matrix(result: DemoResult) -> list[tuple[str, Figure]]:
    if result.retrieval is None:
        return []
    main = result.main_model
    ax = plot.pairwise_rank_matrix(result.comparison.predictions[main],
                                   result.comparison.observed)
    ax.set_title(f"{result.data}, {main}: observed profiles closer to a prediction than its "
                 f"own\n{ax.get_title()}", fontsize=9)
    return [(f"rank_matrix_{result.data}.png", ax.figure)]


def _predicted_vs_observed(result: DemoResult) -> list[tuple[str, Figure]]:
    if result.showcase is None:
        return []
    key, _ = result.showcase
    main = result.main_model
    ax = plot.predicted_vs_observed(result.comparison.predictions[main],
                                    result.comparison.observed, key)
    ax.set_title(f"{result.data}, {main}, held-out {key}\n{ax.get_title()}", fontsize=9)
    return [(f"predicted_vs_observed_{result.data}.png", ax.figure)]


def _intervention_graph(result: DemoResult) -> list[tuple[str, Figure]]:
    if result.showcase is None:
        return []
    import matplotlib.pyplot as plt

    key, genes = result.showcase
    networks = result.comparison.networks
    fig, axes = plt.subplots(1, len(networks), figsize=(7 * len(networks), 5.5),
                             squeeze=False)
    for ax, (name, graph) in zip(axes[0], networks.items(), strict=True):
        plot.intervention_graph(graph, genes, ax=ax)
        ax.set_title(f"{name}: held-out {key}\n{ax.get_title()}", fontsize=9)
    fig.tight_layout()
    return [(f"intervention_graph_{result.data}.png", fig)]


FIGURES: list[tuple[str, Builder]] = [
    ("target_effect", _target_effect),
    ("conditioning_comparison", _conditioning),
    ("retrieval_ranks", _retrieval),
    ("rank_matrix", _rank_matrix),
    ("predicted_vs_observed", _predicted_vs_observed),
    ("intervention_graph", _intervention_graph),
]


def figures(result: DemoResult) -> Iterator[tuple[str, Figure]]:
    """Every figure of the demo as ``(file name, Figure)``, each built when asked
    for (close it once saved)."""
    for _, build in FIGURES:
        yield from build(result)
