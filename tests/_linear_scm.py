"""A linear structural causal model for tests, with exact interventional means.

``x = W^T x + mu + e`` (``W[r, g]``: the weight of regulator r in gene g, e
Gaussian with standard deviation ``noise``). A perturbation does(x_t = v) for
its targets t: their incoming edges are removed and they are held at v. The
cells of a condition solve ``(I - W_do^T) x = c + e`` with ``c_t = v``,
``e_t = 0`` and ``c_g = mu_g`` otherwise, so the exact mean of the condition
is ``(I - W_do^T)^{-1} c``: nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def gene_names(p: int) -> list[str]:
    return [f"G{j}" for j in range(p)]


def random_dag(p: int, rng: np.random.Generator, *, density: float = 0.25,
               low: float = 0.4, high: float = 0.9) -> np.ndarray:
    """Weights of a random acyclic network (edges from lower to higher index),
    signs random, magnitudes in [low, high]."""
    W = np.zeros((p, p))
    upper = np.triu(rng.random((p, p)) < density, k=1)
    W[upper] = rng.uniform(low, high, upper.sum()) * rng.choice([-1.0, 1.0], upper.sum())
    return W


def random_feedback(p: int, rng: np.random.Generator, *, radius: float = 0.7,
                    density: float = 0.3) -> np.ndarray:
    """Weights of a random network with feedback loops, scaled to ``radius``
    (spectral radius of W), with at least one loop through every gene."""
    W = np.where(rng.random((p, p)) < density, rng.normal(size=(p, p)), 0.0)
    np.fill_diagonal(W, 0.0)
    ring = np.arange(p)
    W[ring, (ring + 1) % p] = rng.choice([-1.0, 1.0], p) * rng.uniform(0.5, 1.0, p)
    return W * (radius / np.max(np.abs(np.linalg.eigvals(W))))


def intervention_matrix(W: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """``I - W_do^T``: the targets' incoming edges removed."""
    Wdo = W.copy()
    Wdo[:, list(targets)] = 0.0
    return np.eye(len(W)) - Wdo.T


def exact_mean(W: np.ndarray, mu: np.ndarray, targets: Sequence[int],
               level: float = 0.0) -> np.ndarray:
    """The exact mean under do(x_t = level for t in targets)."""
    c = mu.copy()
    c[list(targets)] = level
    return np.linalg.solve(intervention_matrix(W, targets), c)


def exact_sd(W: np.ndarray, noise: float) -> np.ndarray:
    """Per-gene standard deviation in the control (unperturbed) condition."""
    A_inv = np.linalg.inv(np.eye(len(W)) - W.T)
    return noise * np.sqrt(np.sum(A_inv**2, axis=1))


def sample(W: np.ndarray, mu: np.ndarray, conditions: Sequence[Sequence[int]], n_cells: int,
           rng: np.random.Generator, *, noise: float = 1.0, n_controls: int | None = None,
           level: float = 0.0) -> AnnData:
    """Cells of every condition (a tuple of target indices; () is control),
    ``n_cells`` each (``n_controls`` for the control), as a contract AnnData
    (knockouts at ``level``; T = 0 when level is 0)."""
    p = len(W)
    names = gene_names(p)
    blocks, labels = [], []
    for targets in conditions:
        n = n_controls if (not targets and n_controls is not None) else n_cells
        c = mu.copy()
        c[list(targets)] = level
        E = rng.normal(scale=noise, size=(n, p))
        E[:, list(targets)] = 0.0
        A = intervention_matrix(W, targets)
        blocks.append(np.linalg.solve(A, (c + E).T).T)
        labels += [",".join(names[t] for t in targets) or "control"] * n
    X = np.vstack(blocks)
    labels = np.array(labels, dtype=object)
    control = labels == "control"
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": control,
            "perturbation_type": np.where(control, "control", "knockout"),
        },
        index=[f"c{i}" for i in range(len(labels))],
    )
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=names))


def network(W: np.ndarray) -> nx.DiGraph:
    """The true network as a weighted DiGraph of gene symbols."""
    names = gene_names(len(W))
    G = nx.DiGraph()
    G.add_nodes_from(names)
    C = sp.coo_array(W)
    G.add_weighted_edges_from((names[r], names[g], float(w))
                              for r, g, w in zip(C.row, C.col, C.data, strict=True))
    return G


def request(conditions: Sequence[Sequence[int]], p: int) -> pd.DataFrame:
    """A prediction request (one row per condition)."""
    names = gene_names(p)
    labels = [",".join(names[t] for t in targets) or "control" for targets in conditions]
    control = np.array([lab == "control" for lab in labels])
    return pd.DataFrame(
        {"perturbation": labels, "is_control": control,
         "perturbation_type": np.where(control, "control", "knockout")},
        index=[f"r{i}" for i in range(len(labels))],
    )
