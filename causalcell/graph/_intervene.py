"""The do-operator on a network: the intervention graph.

Intervening on a gene (knocking it out, knocking it down, overexpressing it)
sets its level from outside: its regulators no longer determine it. In the
graph this is Pearl's do-operator (Pearl 2009, *Causality*, 2nd ed., §3.2.1):
every edge *into* a targeted gene is cut, and nothing else changes. The
models fit and propagate on this graph.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TypeVar

import networkx as nx

from causalcell.errors import ParameterError
from causalcell.graph._io import require_digraph

__all__ = ["intervene"]

G_ = TypeVar("G_", bound=nx.DiGraph)

# networkx's own per-instance state; anything else a subclass stores on the
# instance is copied over to the new graph.
_NX_STATE = frozenset({"graph", "_node", "_adj", "_succ", "_pred", "__networkx_cache__"})
_FACTORIES = (
    "node_dict_factory",
    "node_attr_dict_factory",
    "adjlist_outer_dict_factory",
    "adjlist_inner_dict_factory",
    "edge_attr_dict_factory",
    "graph_attr_dict_factory",
)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large graph is allocated.

    Building ~1e6 attribute dicts triggers many generation-2 collections, each
    walking every object of the (large) graph; pausing them makes intervene
    1.2-1.5x faster on a 1e6-edge network. Nothing here creates reference cycles to collect, and
    the previous collector state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _as_target_set(targets: Hashable | Iterable[Hashable]) -> frozenset:
    if targets is None:
        raise ParameterError(
            "intervene: targets=None names no gene. Give the targeted gene (a symbol) or "
            "genes (a list of symbols); an empty list cuts nothing."
        )
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Iterable):
        targets = [targets]
    try:
        return frozenset(targets)
    except TypeError:
        odd = next(t for t in targets if not isinstance(t, Hashable))
        raise ParameterError(
            f"intervene: targets holds {odd!r}, a {type(odd).__name__}, which cannot be a "
            f"node; give gene symbols, e.g. targets=['STAT1', 'JAK2']."
        ) from None


def _copy_instance_state(G: nx.DiGraph, H: nx.DiGraph) -> None:
    """Copy attributes a DiGraph subclass keeps on the instance, skipping
    networkx's own state and the cached views bound to G."""
    cls = type(H)
    for key, value in vars(G).items():
        if key in _NX_STATE or isinstance(getattr(cls, key, None), cached_property):
            continue
        setattr(H, key, copy.copy(value))


def intervene(G: G_, targets: Hashable | Iterable[Hashable]) -> G_:
    """Intervention graph: remove every edge into the targeted genes.

    Parameters
    ----------
    G : networkx.DiGraph
        The network, or any DiGraph subclass (e.g. a pgmpy ``DAG``). It is not
        modified.
    targets : str or iterable of str
        The targeted gene (a single symbol) or genes. Targets that are not
        nodes of G are allowed: there is nothing to cut for them.

    Returns
    -------
    networkx.DiGraph
        A new graph of the same class as G with the same nodes (targets and
        isolated nodes included) and every edge except those ending in a
        target. Edge and graph attribute dicts are new dicts holding the same
        values (as :meth:`networkx.DiGraph.copy` does); node attribute dicts
        are deep copies (pgmpy keeps its latent / exposure / outcome role
        sets there). Attributes a subclass keeps on the instance are copied
        (shallow) too. Unlike pgmpy's ``DAG.do``, edge weights and other edge
        attributes are kept.

    Raises
    ------
    NetworkError
        G is not a DiGraph (e.g. undirected or a MultiDiGraph).
    ParameterError
        ``targets`` is None, or holds something that cannot be a node (a list).

    Notes
    -----
    Speed: a 20,000-gene, 1,000,000-edge network takes about 1.5-1.7 s on a
    2-core machine, 0.7-0.85x the time of ``G.copy()`` alone (see
    ``benchmarks/bench_graph.py``). For graphs with networkx's default dict
    storage (DiGraph, pgmpy DAG) the new adjacency is built in one
    dict-comprehension pass over G's adjacency and written into the new
    graph's private storage dicts (``_succ``/``_adj``, ``_pred``, ``_node``,
    the layout described under "Subclasses (Advanced)" in the
    :class:`networkx.DiGraph` docstring), about twice as fast as
    ``add_edges_from``. A subclass with custom storage factories goes
    through ``networkx.DiGraph.add_edges_from`` instead (the base-class
    method, because pgmpy's override drops edge attributes).

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("A", "B", {"weight": 2.0}), ("B", "C", {"weight": -1.0})])
    >>> H = intervene(G, "B")
    >>> list(H.edges(data="weight")), sorted(H.nodes)
    ([('B', 'C', -1.0)], ['A', 'B', 'C'])
    """
    require_digraph(G, "intervene")
    cut = _as_target_set(targets)
    H = G.__class__()
    _copy_instance_state(G, H)
    with _gc_paused():
        H.graph.update(G.graph)
        node_attrs = {n: copy.deepcopy(d) if d else {} for n, d in G.nodes(data=True)}
        if all(getattr(G, name) is dict for name in _FACTORIES):
            _fill_fast(G, H, cut, node_attrs)
        else:
            H.add_nodes_from(node_attrs.items())
            nx.DiGraph.add_edges_from(
                H,
                ((u, v, d) for u, nbrs in G.adjacency() for v, d in nbrs.items() if v not in cut),
            )
    # H's storage was written directly: drop anything a backend may have cached
    # on it meanwhile (what networkx's own mutating methods do).
    nx._clear_cache(H)
    return H


def _fill_fast(G: nx.DiGraph, H: nx.DiGraph, cut: frozenset, node_attrs: dict) -> None:
    """Fill the empty graph H with G minus the edges into ``cut``, writing its
    storage dicts directly (all plain dicts, checked by the caller).

    networkx's DiGraph storage: ``_node[n]`` is n's attribute dict;
    ``_succ[u][v]`` (``_adj`` is the same dict) is the attribute dict of
    ``u -> v`` and ``_pred[v][u]`` is that same dict object.
    """
    succ = {
        u: (
            {v: d.copy() for v, d in nbrs.items()}
            if cut.isdisjoint(nbrs)
            else {v: d.copy() for v, d in nbrs.items() if v not in cut}
        )
        for u, nbrs in G.adjacency()
    }
    # The predecessor dicts must hold the very same attribute dicts as succ.
    pred = {v: {} if v in cut else {u: succ[u][v] for u in preds} for v, preds in G.pred.items()}
    # Update (not replace) H's dicts: views cached on H by its __init__ hold them.
    H._node.update(node_attrs)
    H._succ.update(succ)
    H._pred.update(pred)
