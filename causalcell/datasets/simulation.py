"""Simulated perturb-seq screens with a known answer.

:func:`simulate` draws a random gene regulatory network, perturbs it with the
do-operator and samples single-cell counts, so that tests, tutorials and the
demo have data whose true post-intervention profiles are known exactly.

The model
---------
**Genes.** ``n_tfs`` transcription factors ``TF01`` ... followed by target
genes ``G001`` ... (zero-padded to the width needed). Only TFs regulate.

**Network.** Every gene, TFs included (TF -> TF cascades), receives
~Poisson(``mean_regulators``) regulators drawn among the TFs. Without
``feedback`` the TFs follow a hidden random order and a TF is only regulated
by TFs earlier in that order, so the network is a DAG. ``feedback=True`` then
adds up to ``ceil(n_tfs / 10)`` back edges ``v -> u`` from a TF ``v`` to one of
its TF ancestors ``u``, each closing a cycle (a two-TF loop when no TF cascade
was drawn). Weights are signed (60 % activating) with random magnitudes,
then scaled per gene ``g`` so that

    sum_p |w_pg| * max(1, x0_p / x0_g) = s_g,    s_g ~ Uniform(0.3, 0.7).

Hence sum_p |w_pg| <= s_g and sum_p |w_pg| x0_p <= s_g x0_g, which gives:

- a contraction (spectral radius <= 0.7): a steady state exists, with or
  without feedback;
- a non-targeted gene changes by at most 70 % of the largest change among the
  targeted genes, so under a knockdown or an overexpression the target's own
  change is the largest of its profile (a knocked-out target is *measured* at
  its residual level, so its downstream genes may move more than it does);
- relative changes are bounded the same way, so linear states stay
  >= (1 - s_g) x0_g > 0 under knockdowns, knockouts and overexpression up to
  a fold of e^1.5 ~ 4.5 (TF control levels are >= 1.5). Saturating states
  stay positive under any intervention.

**State.** Expression is modelled on the log-normalized scale x = log1p(CP10k).
Control levels are x0 ~ Uniform(1.5, 3) for TFs and Uniform(0.5, 3) for other
genes. Basal rates b = x0 - W^T x0 make x0 the control steady state of

- ``regulation="linear"``: x = b + W^T x;
- ``regulation="saturating"``: x_g = b_g + sum_p w_pg h_p(x_p) with the Hill
  function h_p(x) = x0_p (1 + s^n) u^n / (s^n + u^n), u = max(x, 0) / x0_p,
  Hill coefficient n = ``hill_coefficient`` and half-saturation at s x0_p,
  s = ``half_saturation``. h_p(x0_p) = x0_p, so x0 stays the control state,
  and h_p saturates at (1 + s^n) x0_p. The default n = 2, s = 1 gives
  h_p(x) = 2 x0_p u^2 / (1 + u^2) with h_p'(x0_p) = 1: both models agree to
  first order around the control state. A steeper curve (larger n, s < 1:
  the control level on the plateau, regulation switching off once the
  regulator falls below s x0_p) is far from any straight line over a
  knockdown's range. The steady state is found by damped fixed-point
  iteration with a convergence check; with feedback and a steep curve
  (largest slope of h times the strength 0.7 above 1) it may not exist, and
  :func:`simulate` says so.

**Interventions** (do-operator): a targeted gene t loses its incoming edges and
its state is set to T.

- knockdown: T = log1p((1 - e) expm1(x0_t)), with a per-cell, per-target
  efficiency e ~ Beta of mean ``knockdown_efficiency`` and standard deviation
  ``efficiency_sd``; a share ``escaper_fraction`` of the (cell, target) pairs
  escape the knockdown (e = 0: T is the control level x0_t), as cells whose
  guide does not act do;
- knockout: the regulatory activity is T = 0 (what the downstream genes see),
  but the *measured* transcript keeps a fraction ``knockout_residual`` of its
  control expression, log1p(residual * expm1(x0_t)): a cut transcript is still
  detected (in Papalexi et al. 2021 knocked-out STAT1 and JAK2 drop to about a
  fifth);
- overexpression: T = log1p(``overexpression_fold`` * expm1(x0_t));
- combinations clamp every target at once.

**Cells.** Biological noise N(0, ``noise_sd``^2) is added to the basal rates of
each cell and propagated through the steady state. Counts are Poisson with
mean library_c * expm1(x) / 1e4, where library_c is lognormal with median
``library_size`` (log-scale sd 0.3) and is stored in ``obs["total_counts"]``:
the simulated genes are a small part of a cell's transcriptome, so each cell is
normalized by that total, X = log1p(counts / library_c * 1e4). States below 0
(through noise, or a strong linear overexpression) are read as no expression.

**Truth.** ``Simulation.truth`` holds, per perturbation, the expected state:
exact closed form for linear regulation (the state is linear in T, so the
expected T is plugged in; the expectation over the Beta efficiency is computed
by Gauss-Jacobi quadrature), and the noise-free fixed point at the expected T
for saturating regulation. For knockouts the target's own entry is the
expected measured transcript while its downstream effects use T = 0. The truth
is the expected *state*, before noise, counts and normalization: it is not
what the pseudobulk of the simulated cells estimates (the mean of a log of
counts is not the log of the mean state), and scored against the cells it can
lose to a baseline.

**Expected observed profile.** ``Simulation.expected`` holds, per
perturbation, E[X] of a simulated cell: the known answer of any prediction
of the pseudobulk. Per gene, a cell's value is log1p(K 1e4 / L) with
K ~ Poisson(L expm1(max(x, 0)) / 1e4), L lognormal and x its state, so

    E[X_g] = E_x[H(x_g)],  H(x) = E_L E_K[log1p(K 1e4 / L)].

H is tabulated once (Gauss-Hermite over log L, the Poisson summed over its
window, a cubic spline in x; the integer rounding of L, a relative change of
at most 0.5 / library_size, is ignored). For linear regulation x_g given the
knockdown efficiencies is normal: its mean is the clamped steady state, its
variance the noise propagated by the same steady-state solver (the state is
affine in the noise), so E_x is Gauss-Legendre quadrature over the normal
(starting at the kink of max(x, 0)) and Gauss-Jacobi quadrature over each
target's Beta efficiency (tensor products for combinations): exact up to
quadrature errors below 1e-8 (doubling every node count changes no value by
more than that; tested). For saturating regulation the TF noise and the
efficiencies are drawn (2,000 draws per perturbation) while the non-TF
genes' own noise and the counts stay exact; the Monte-Carlo standard error
of every entry is in ``expected.layers["standard_error"]``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats
from scipy.interpolate import CubicSpline
from scipy.special import gammaln, roots_jacobi

from causalcell._validation import DEPRECATED, check_level_grid, renamed
from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    KNOWN_KINDS,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    split_label,
)
from causalcell.errors import (
    CausalCellError,
    CausalCellWarning,
    DataContractError,
    ParameterError,
)

__all__ = ["Simulation", "simulate"]

CONTROL_LABEL = "control"

# Network and state constants (see the module docstring).
_TF_LEVELS = (1.5, 3.0)
_GENE_LEVELS = (0.5, 3.0)
_STRENGTH = (0.3, 0.7)
_WEIGHT_MAGNITUDE = (0.5, 1.5)
_P_ACTIVATING = 0.6
_FEEDBACK_EDGES_PER_TF = 0.1
_N_DEFAULT_NON_TF = 5
_LIBRARY_LOG_SD = 0.3

# Fixed-point iteration of the saturating model. The map is a contraction
# (Lipschitz constant of h <= 1.3, strength <= 0.7), so it converges; damping
# guards against oscillation through inhibitory cycles.
_DAMPING = 0.8
_TOLERANCE = 1e-12
_MAX_ITERATIONS = 10_000

# Quadrature for E[T] over the Beta efficiency. Gauss-Jacobi is exact for the
# Beta weight but its nodes overflow for very concentrated Betas; those are
# integrated by Gauss-Legendre on +-12 sd around the mean instead.
_QUAD_NODES = 64
_JACOBI_MAX_PARAMETER = 1000.0

# The expected observed profile (see the module docstring). Quadrature nodes
# of each knockdown efficiency (tensor products for combinations), of the
# standard normal state noise (Gauss-Legendre on +-_NORMAL_SPAN), of the log
# library size (Gauss-Hermite); the Poisson window in standard deviations;
# the grid step of the log-count table H(x); draws of the saturating model's
# Monte-Carlo. Chosen so that doubling any of them changes no value by more
# than 1e-8 (tested).
_EFFICIENCY_NODES = 12
_STATE_NODES = 48
_NORMAL_SPAN = 9.0
_LIBRARY_NODES = 16
_POISSON_SPAN = 8.0
_GRID_STEP = 0.01
_MONTE_CARLO_DRAWS = 2000

# Cells are simulated in blocks of about this many matrix entries so that the
# float64 intermediates stay small whatever the screen size.
_BLOCK_ENTRIES = 1 << 22
_LEVEL_FORMAT = "%.17g"  # round-trips float64 exactly

Kind = Literal["knockout", "knockdown", "overexpression"]
PerturbationSpec = str | tuple[str, str]


@dataclass(frozen=True, eq=False, repr=False)
class Simulation:
    """A simulated screen and its ground truth.

    Attributes
    ----------
    adata
        Cells x genes. ``X``: log1p(CP10k) as float32, ``layers["counts"]``:
        raw counts (int32); with ``record_states=True`` also
        ``layers["state"]``, each cell's state before count sampling. obs: the
        contract columns, ``total_counts``
        (library size used for normalization). var: ``is_tf``,
        ``control_level`` (x0). ``uns["simulation"]``: the parameters.
    network
        The true TF -> target network; every gene is a node (attributes
        ``is_tf``, ``control_level``), edges carry ``weight``.
    truth
        One row per distinct perturbation plus a first ``control`` row.
        ``X``: the expected post-intervention *state* (float64,
        log1p(CP10k)), before biological noise, count sampling and
        normalization. obs: the contract columns (levels are the expected T
        used) and ``n_cells``.
    expected
        The rows of ``truth``, with ``X`` the expected *observed* profile:
        the mean of ``adata.X`` over infinitely many cells of each
        perturbation, under the simulation's own noise, count and
        normalization model. It is what the pseudobulk of the simulated
        cells estimates without bias, hence the known answer to score
        predictions of ``adata`` against (``truth`` is not: the mean of a
        log of counts is not the log of the mean state). Exact up to
        quadrature (errors below 1e-8) for linear regulation; a Monte-Carlo
        estimate over the TF noise and the efficiencies (``layers
        ["standard_error"]``) for saturating regulation. Computed on first
        access. See the module docstring.
    params
        The arguments of :func:`simulate` that produced this simulation.
    """

    adata: AnnData
    network: nx.DiGraph
    truth: AnnData
    params: dict[str, Any]
    _net: _Network = field(repr=False)
    _design: _Design = field(repr=False)

    @cached_property
    def expected(self) -> AnnData:
        """The expected observed profile of every perturbation (see the class docstring)."""
        return _make_expected(self._net, self._design, self.params, self.truth)

    def expected_at(
        self, perturbation: str, levels: Sequence[float] | np.ndarray, *, kind: str | None = None
    ) -> AnnData:
        """The expected observed profile of a perturbation whose targets are held at T.

        :attr:`expected` averages over each perturbation's distribution of T
        (the knockdown efficiencies, escapers included); this is the profile
        of cells whose targets sit exactly at the given levels, E[X | T = t]:
        the known answer of a dose-response curve. Same model and method as
        :attr:`expected` (exact quadrature for linear regulation; Monte-Carlo
        over the TF noise, with ``layers["standard_error"]``, for saturating
        regulation), so that ``expected`` is the average of ``expected_at``
        over T (tested).

        Parameters
        ----------
        perturbation
            Label of the targeted gene(s), e.g. ``"TF01"`` or ``"TF01,TF03"``
            (any simulated genes, in the screen or not).
        levels
            The levels T (log-normalized scale, >= 0): shape ``(n,)`` for one
            target, ``(n, k)`` for k targets in the label's order.
        kind
            ``"knockdown"`` or ``"overexpression"`` (the target is held at T),
            or ``"knockout"`` (T must be 0; the target's own entry is its
            measured residual transcript). Default: the kind of that
            perturbation in the screen, else ``params["kind"]``.

        Returns
        -------
        anndata.AnnData
            One row per level: ``X`` the expected observed profile, obs the
            contract columns with T in ``expression_level_after_perturbation``.

        Raises
        ------
        DataContractError
            A label naming an unknown gene, or an unknown kind.
        ParameterError
            Levels of the wrong shape, negative or not finite; a knockout at
            T != 0; a label screened under several kinds without ``kind``.

        Examples
        --------
        >>> from causalcell.datasets import simulate
        >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
        >>> curve = sim.expected_at("TF01", [0.2, 0.8, 1.6])
        >>> curve.shape
        (3, 30)
        """
        return _expected_at(self, perturbation, levels, kind)

    def __repr__(self) -> str:
        p = self.params
        return (
            f"Simulation({self.adata.n_obs} cells x {self.adata.n_vars} genes, "
            f"{p['n_tfs']} TFs, {self.network.number_of_edges()} edges, "
            f"{self.truth.n_obs - 1} perturbations, regulation={p['regulation']!r}, "
            f"feedback={p['feedback']}, random_state={p['random_state']})"
        )


@dataclass(frozen=True)
class _Network:
    names: list[str]
    n_tfs: int
    x0: np.ndarray  # control state, (n_genes,)
    weights: sp.csr_matrix  # W[p, g]: TF p -> gene g, (n_tfs, n_genes)
    basal: np.ndarray  # b = x0 - W^T h(x0), (n_genes,)
    regulation: str
    hill: tuple[float, float] = (2.0, 1.0)  # Hill coefficient n, half-saturation s (x x0)

    @cached_property
    def w_tf_t(self) -> sp.csr_matrix:
        """W_TT^T (TF x TF, sparse), so that row states map as (W^T @ x.T).T."""
        return sp.csr_matrix(self.weights[:, : self.n_tfs].T)

    @cached_property
    def w_genes_t(self) -> sp.csr_matrix:
        """W_TG^T (non-TF genes x TFs, sparse)."""
        return sp.csr_matrix(self.weights[:, self.n_tfs :].T)


@dataclass(frozen=True)
class _Design:
    labels: list[str]
    kinds: list[str]
    targets: np.ndarray  # gene indices, (n_perturbations, max targets), -1 padded


def simulate(
    n_genes: int = 200,
    n_tfs: int = 20,
    *,
    perturbations: Sequence[PerturbationSpec] | None = None,
    kind: Kind = "knockdown",
    n_combinations: int = 10,
    n_cells_per_perturbation: int = 50,
    n_control_cells: int = 300,
    regulation: Literal["linear", "saturating"] = "linear",
    hill_coefficient: float = 2.0,
    half_saturation: float = 1.0,
    feedback: bool = False,
    mean_regulators: float = 2.0,
    knockdown_efficiency: float = 0.8,
    efficiency_sd: float = 0.1,
    escaper_fraction: float = 0.0,
    knockout_residual: float = 0.3,
    overexpression_fold: float = 4.0,
    noise_sd: float = 0.1,
    library_size: float = 10_000,
    record_levels: bool = True,
    record_states: bool = False,
    random_state: int | None = 0,
    seed: Any = DEPRECATED,
) -> Simulation:
    """Simulate a perturbation screen on a random gene regulatory network.

    The model (network, regulation, interventions, counts, truth) is described
    in the docstring of :mod:`causalcell.datasets.simulation`. The network
    depends only on ``n_genes``, ``n_tfs``, ``mean_regulators``, ``feedback``
    and ``random_state``, so screens of different designs can share one network.

    Parameters
    ----------
    n_genes
        Number of genes, TFs included.
    n_tfs
        Number of transcription factors (the only regulators), 1 to ``n_genes``.
    perturbations
        ``None`` for the default design: every TF singly, ``n_combinations``
        random TF pairs and up to 5 random non-TF genes (which have no
        downstream effect), all of type ``kind``. Otherwise a list whose items
        are labels (``"TF01"``, or ``"TF01,TF03"`` for a combination) of type
        ``kind``, or ``(label, kind)`` tuples to mix types. An empty list gives
        control cells only (observational data).
    kind
        ``"knockdown"``, ``"knockout"`` or ``"overexpression"``.
    n_combinations
        Number of TF pairs in the default design (at most all pairs).
    n_cells_per_perturbation, n_control_cells
        Cells per perturbation and control cells.
    regulation
        ``"linear"`` or ``"saturating"`` (Hill-type) regulation.
    hill_coefficient, half_saturation
        ``regulation="saturating"``: the Hill coefficient n (>= 1) and the
        half-saturation point as a fraction s of each regulator's control
        level (in (0, 1]); see the module docstring. The defaults (2, 1) are
        the mildest curve, tangent to the linear model at the control state.
    feedback
        Add TF -> TF back edges that close cycles (needs ``n_tfs >= 2``).
    mean_regulators
        Mean number of regulators per gene.
    knockdown_efficiency, efficiency_sd
        Mean and sd of the per-cell knockdown efficiency (Beta distributed);
        the mean in (0, 1), the sd in [0, sqrt(mean (1 - mean))).
    escaper_fraction
        Share of knockdown (cell, target) pairs that escape the knockdown
        (efficiency 0, T = the control level), in [0, 1); the others draw
        their efficiency from the Beta above.
    knockout_residual
        Fraction of the control expression still measured for a knocked-out
        gene, in [0, 1].
    overexpression_fold
        Fold change of expression (CP10k scale) of an overexpressed gene, > 1.
    noise_sd
        Standard deviation of the biological noise on basal rates, >= 0.
    library_size
        Median total counts per cell, > 0.
    record_levels
        Store the per-cell levels T in ``obs["expression_level_after_perturbation"]``
        (knockouts record 0). The column is float when no perturbation is a
        combination, otherwise strings such as ``"0.31"``, ``"0.2,0.5"`` and
        ``"nan"`` (controls). With False the column is left out.
    record_states
        Also store each cell's state (log1p(CP10k), after the biological
        noise, before count sampling) in ``layers["state"]`` (float32): the
        noise-free values behind ``X``, e.g. to measure what the count noise
        of the measured regulators costs a model (errors in variables).
    random_state
        Seed of the numpy random generator. ``None`` draws a fresh seed and
        records it in ``params["random_state"]``.
    seed
        Deprecated name of ``random_state`` (a ``FutureWarning``; removed in
        the next release).

    Returns
    -------
    Simulation
        ``adata`` (cells), ``network``, ``truth`` (expected states),
        ``expected`` (expected observed profiles, computed on first access)
        and ``params``.

    Raises
    ------
    ParameterError
        An argument outside its valid range (the message names it and the
        range).
    DataContractError
        A perturbation naming an unknown gene or kind.
    CausalCellError
        The saturating steady state did not converge (not expected with the
        built-in weight scaling).

    Warns
    -----
    CausalCellWarning
        When a strong overexpression drives linear states below 0 (they are
        clipped at 0); lower ``overexpression_fold`` or use saturating
        regulation.

    Examples
    --------
    >>> from causalcell.datasets import simulate
    >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> sim.adata.shape
    (1300, 30)
    >>> sim.truth.obs_names[:3].tolist()
    ['control', 'TF01', 'TF02']
    """
    random_state = renamed("simulate", "seed", seed, "random_state", random_state, 0)
    params = {
        "n_genes": n_genes,
        "n_tfs": n_tfs,
        "perturbations": perturbations,
        "kind": kind,
        "n_combinations": n_combinations,
        "n_cells_per_perturbation": n_cells_per_perturbation,
        "n_control_cells": n_control_cells,
        "regulation": regulation,
        "hill_coefficient": hill_coefficient,
        "half_saturation": half_saturation,
        "feedback": feedback,
        "mean_regulators": mean_regulators,
        "knockdown_efficiency": knockdown_efficiency,
        "efficiency_sd": efficiency_sd,
        "escaper_fraction": escaper_fraction,
        "knockout_residual": knockout_residual,
        "overexpression_fold": overexpression_fold,
        "noise_sd": noise_sd,
        "library_size": library_size,
        "record_levels": record_levels,
        "record_states": record_states,
        "random_state": random_state,
    }
    _check_arguments(params)
    params["perturbations"] = _normalize_items(perturbations, kind)
    if random_state is None:
        # Draw a seed and record it so that the simulation can be reproduced.
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
        params["random_state"] = random_state
    # Independent streams: the network does not depend on the design or on
    # the number of cells.
    rng_network, rng_design, rng_cells, rng_counts = (
        np.random.default_rng(s) for s in np.random.SeedSequence(random_state).spawn(4)
    )
    net = _make_network(rng_network, n_genes, n_tfs, mean_regulators, feedback, regulation,
                        (float(hill_coefficient), float(half_saturation)))
    design = _make_design(params, net.names, n_tfs, rng_design)
    truth = _make_truth(net, design, params)
    adata = _make_cells(net, design, params, rng_cells, rng_counts)
    return Simulation(adata=adata, network=_to_graph(net), truth=truth, params=params, _net=net,
                      _design=design)


# --------------------------------------------------------------------------- arguments


def _fail(name: str, value: object, valid: str) -> ParameterError:
    return ParameterError(f"simulate(): {name}={value!r} is invalid; {name} must be {valid}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_arguments(p: dict[str, Any]) -> None:
    for name, low in (
        ("n_genes", 1),
        ("n_tfs", 1),
        ("n_combinations", 0),
        ("n_cells_per_perturbation", 1),
        ("n_control_cells", 1),
    ):
        if not _is_int(p[name]) or p[name] < low:
            raise _fail(name, p[name], f"an integer >= {low}")
    if p["n_tfs"] > p["n_genes"]:
        raise _fail("n_tfs", p["n_tfs"], f"at most n_genes ({p['n_genes']})")
    if p["kind"] not in KNOWN_KINDS:
        raise _fail("kind", p["kind"], f"one of {list(KNOWN_KINDS)}")
    if p["regulation"] not in ("linear", "saturating"):
        raise _fail("regulation", p["regulation"], "'linear' or 'saturating'")
    for name in ("feedback", "record_levels", "record_states"):
        if not isinstance(p[name], bool | np.bool_):
            raise _fail(name, p[name], "True or False")
    if p["feedback"] and p["n_tfs"] < 2:
        raise _fail("n_tfs", p["n_tfs"], ">= 2 with feedback=True (a cycle needs two TFs)")
    m, sd = p["knockdown_efficiency"], p["efficiency_sd"]
    if not _is_real(m) or not 0 < m < 1:
        raise _fail("knockdown_efficiency", m, "in the open interval (0, 1)")
    sd_max = math.sqrt(m * (1 - m))
    if not _is_real(sd) or not 0 <= sd < sd_max:
        raise _fail(
            "efficiency_sd", sd, f"in [0, {sd_max:.4g}) (a Beta with mean {m} has sd < that)"
        )
    checks = (
        ("hill_coefficient", lambda v: v >= 1, ">= 1"),
        ("half_saturation", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("mean_regulators", lambda v: v >= 0, ">= 0"),
        ("knockout_residual", lambda v: 0 <= v <= 1, "in [0, 1]"),
        ("escaper_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
        ("overexpression_fold", lambda v: v > 1, "> 1"),
        ("noise_sd", lambda v: v >= 0, ">= 0"),
        ("library_size", lambda v: v > 0, "> 0"),
    )
    for name, ok, valid in checks:
        if not _is_real(p[name]) or not ok(p[name]):
            raise _fail(name, p[name], f"a finite number {valid}")
    if p["random_state"] is not None and (not _is_int(p["random_state"])
                                          or p["random_state"] < 0):
        raise _fail("random_state", p["random_state"], "a non-negative integer or None")


def _normalize_items(
    perturbations: Sequence[PerturbationSpec] | None, kind: str
) -> list[tuple[str, str]] | None:
    """Return the perturbation list as (label, kind) pairs, labels stripped."""
    if perturbations is None:
        return None
    if isinstance(perturbations, str):
        raise _fail("perturbations", perturbations, "a list of labels, not a single string")
    items = []
    for item in perturbations:
        if isinstance(item, str):
            label, item_kind = item, kind
        elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
            label, item_kind = item[0], item[1]
        else:
            raise DataContractError(
                f"simulate(): perturbation {item!r} is neither a label such as 'TF01' or "
                f"'TF01,TF03' nor a (label, kind) tuple such as ('TF01', 'knockout')."
            )
        if item_kind not in KNOWN_KINDS:
            raise DataContractError(
                f"simulate(): perturbation {label!r} has kind {item_kind!r}; use one of "
                f"{list(KNOWN_KINDS)}."
            )
        items.append((COMBINATION_SEPARATOR.join(split_label(label)), str(item_kind)))
    return items


# --------------------------------------------------------------------------- network


def _gene_names(n_genes: int, n_tfs: int) -> list[str]:
    tf_width = max(2, len(str(n_tfs)))
    gene_width = max(3, len(str(n_genes - n_tfs)))
    return [f"TF{i:0{tf_width}d}" for i in range(1, n_tfs + 1)] + [
        f"G{i:0{gene_width}d}" for i in range(1, n_genes - n_tfs + 1)
    ]


def _distinct_slots(
    rng: np.random.Generator, n_choices: np.ndarray, owner: np.ndarray
) -> np.ndarray:
    """Draw ``slot[i]`` in ``[0, n_choices[i])``, distinct among entries of one owner.

    Uniform k-subsets for every owner at once: draw with replacement, then
    redraw the repeated entries until none is left (few rounds while each
    owner's k is small against its number of choices).
    """
    slot = rng.integers(0, n_choices)
    while True:
        order = np.lexsort((slot, owner))
        same = (owner[order[1:]] == owner[order[:-1]]) & (slot[order[1:]] == slot[order[:-1]])
        repeated = order[1:][same]
        if len(repeated) == 0:
            return slot
        slot[repeated] = rng.integers(0, n_choices[repeated])


def _make_network(
    rng: np.random.Generator,
    n_genes: int,
    n_tfs: int,
    mean_regulators: float,
    feedback: bool,
    regulation: str,
    hill: tuple[float, float] = (2.0, 1.0),
) -> _Network:
    x0 = np.concatenate(
        [rng.uniform(*_TF_LEVELS, n_tfs), rng.uniform(*_GENE_LEVELS, n_genes - n_tfs)]
    )
    # A TF may regulate another TF only if it comes earlier in a hidden random
    # order (the TF -> TF part is a DAG whatever the draw): the regulators of
    # a gene are drawn among the first n_eligible TFs of that order.
    position = rng.permutation(n_tfs)
    tf_at = np.argsort(position)
    n_eligible = np.concatenate([position, np.full(n_genes - n_tfs, n_tfs)])
    n_regulators = np.minimum(rng.poisson(mean_regulators, n_genes), n_eligible)
    target = np.repeat(np.arange(n_genes), n_regulators)
    source = tf_at[_distinct_slots(rng, n_eligible[target], target)]
    magnitude = rng.uniform(*_WEIGHT_MAGNITUDE, len(source))
    sign = np.where(rng.random(len(source)) < _P_ACTIVATING, 1.0, -1.0)
    strength = rng.uniform(*_STRENGTH, n_genes)
    if feedback:
        # Drawn after the DAG: feedback=True adds edges to the same network.
        back_source, back_target = _feedback_edges(rng, source, target, n_tfs)
        source = np.concatenate([source, back_source])
        target = np.concatenate([target, back_target])
        magnitude = np.concatenate([magnitude, rng.uniform(*_WEIGHT_MAGNITUDE, len(back_source))])
        sign = np.concatenate(
            [sign, np.where(rng.random(len(back_source)) < _P_ACTIVATING, 1.0, -1.0)]
        )
    # Scale each gene's incoming weights to its strength, counting a regulator
    # with a higher control level than the gene at its relative weight (see
    # the module docstring for why this keeps states positive).
    relative = np.maximum(1.0, x0[source] / x0[target])
    load = np.bincount(target, weights=magnitude * relative, minlength=n_genes)
    weight = sign * magnitude * strength[target] / load[target]
    weights = sp.csr_matrix((weight, (source, target)), shape=(n_tfs, n_genes))
    # h(x0) = x0 for both regulation models, so b is the same.
    basal = x0 - weights.T @ x0[:n_tfs]
    return _Network(_gene_names(n_genes, n_tfs), n_tfs, x0, weights, basal, regulation, hill)


def _feedback_edges(
    rng: np.random.Generator, source: np.ndarray, target: np.ndarray, n_tfs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Back edges v -> u from TFs v to one of their TF ancestors u (each closes a cycle)."""
    among_tfs = target < n_tfs
    cascade = nx.DiGraph()
    cascade.add_edges_from(zip(source[among_tfs].tolist(), target[among_tfs].tolist(), strict=True))
    downstream = np.unique(target[among_tfs])  # TFs with at least one TF ancestor
    if len(downstream) == 0:
        # No TF cascade was drawn: create a two-TF loop.
        u, v = rng.choice(n_tfs, 2, replace=False)
        return np.array([u, v]), np.array([v, u])
    n_back = min(len(downstream), math.ceil(_FEEDBACK_EDGES_PER_TF * n_tfs))
    ends = np.sort(rng.choice(downstream, n_back, replace=False))
    # One graph traversal per back edge (about n_tfs / 10 of them).
    starts = []
    for v in ends.tolist():
        ancestors = sorted(nx.ancestors(cascade, v))
        starts.append(ancestors[rng.integers(len(ancestors))])
    return ends, np.asarray(starts, dtype=np.int64)


def _to_graph(net: _Network) -> nx.DiGraph:
    graph = nx.DiGraph()
    is_tf = np.arange(len(net.names)) < net.n_tfs
    graph.add_nodes_from(
        (name, {"is_tf": bool(tf), "control_level": float(level)})
        for name, tf, level in zip(net.names, is_tf, net.x0, strict=True)
    )
    edges = net.weights.tocoo()
    names = np.asarray(net.names, dtype=object)
    graph.add_weighted_edges_from(
        zip(names[edges.row], names[edges.col], edges.data.tolist(), strict=True)
    )
    return graph


# --------------------------------------------------------------------------- design


def _unknown_gene_error(gene: str, label: str, names: list[str], n_tfs: int) -> DataContractError:
    examples = names[: min(3, n_tfs)] + names[n_tfs : n_tfs + 2]
    return DataContractError(
        f"simulate(): perturbation {label!r} names the unknown gene {gene!r}. The simulated "
        f"genes are {names[0]}..{names[n_tfs - 1]} (TFs) and non-TF genes "
        f"(e.g. {', '.join(examples)})."
    )


def _default_items(
    kind: str, names: list[str], n_tfs: int, n_combinations: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    n_pairs = n_tfs * (n_tfs - 1) // 2
    n_comb = min(n_combinations, n_pairs)
    if n_pairs <= 2_000_000:
        first, second = np.triu_indices(n_tfs, k=1)
        chosen = np.sort(rng.choice(n_pairs, n_comb, replace=False))
        pairs = np.column_stack([first[chosen], second[chosen]])
    else:
        # Too many pairs to enumerate: draw pairs until enough distinct ones.
        pairs = np.empty((0, 2), dtype=np.int64)
        while len(pairs) < n_comb:
            draw = np.sort(rng.integers(0, n_tfs, (2 * n_comb, 2)), axis=1)
            draw = draw[draw[:, 0] < draw[:, 1]]
            pairs = np.unique(np.vstack([pairs, draw]), axis=0)
        pairs = pairs[np.sort(rng.choice(len(pairs), n_comb, replace=False))]
    n_other = min(_N_DEFAULT_NON_TF, len(names) - n_tfs)
    others = np.sort(rng.choice(np.arange(n_tfs, len(names)), n_other, replace=False))
    labels = (
        names[:n_tfs]
        + [f"{names[a]}{COMBINATION_SEPARATOR}{names[b]}" for a, b in pairs]
        + [names[g] for g in others]
    )
    return [(label, kind) for label in labels]


def _make_design(
    p: dict[str, Any], names: list[str], n_tfs: int, rng: np.random.Generator
) -> _Design:
    items = p["perturbations"]
    if items is None:
        items = _default_items(p["kind"], names, n_tfs, p["n_combinations"], rng)
    index = {name: i for i, name in enumerate(names)}
    seen: set[tuple[str, str]] = set()
    targets = []
    for label, item_kind in items:
        genes = split_label(label)
        if not genes:
            raise DataContractError(
                f"simulate(): perturbation label {label!r} names no gene. Control cells are "
                f"added automatically (label {CONTROL_LABEL!r}); list targeted genes only."
            )
        for gene in genes:
            if gene not in index:
                raise _unknown_gene_error(gene, label, names, n_tfs)
        if len(set(genes)) < len(genes):
            raise DataContractError(
                f"simulate(): perturbation {label!r} names a gene twice; list each target once."
            )
        if (label, item_kind) in seen:
            raise DataContractError(
                f"simulate(): perturbation ({label!r}, {item_kind!r}) is listed twice; use "
                f"n_cells_per_perturbation for more cells."
            )
        seen.add((label, item_kind))
        targets.append([index[g] for g in genes])
    width = max((len(t) for t in targets), default=1)
    padded = np.full((len(targets), width), -1, dtype=np.int64)
    for row, t in enumerate(targets):
        padded[row, : len(t)] = t
    return _Design([lab for lab, _ in items], [k for _, k in items], padded)


# --------------------------------------------------------------------------- levels


def _beta_parameters(mean: float, sd: float) -> tuple[float, float]:
    concentration = mean * (1 - mean) / sd**2 - 1
    return mean * concentration, (1 - mean) * concentration


def _knockdown_level(x0: np.ndarray, efficiency: np.ndarray | float) -> np.ndarray:
    return np.log1p((1 - efficiency) * np.expm1(x0))


def _efficiency_nodes(
    mean: float, sd: float, n: int, escapers: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights (summing to 1) of the knockdown efficiency.

    e ~ Beta(mean, sd) with probability 1 - ``escapers``, else 0 (an extra
    node at 0 of weight ``escapers``). One Beta node (the mean) when
    ``sd == 0``.
    """
    e, w = _beta_nodes(mean, sd, n)
    if escapers > 0:
        return np.append(e, 0.0), np.append(w * (1.0 - escapers), escapers)
    return e, w


def _beta_nodes(mean: float, sd: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights (summing to 1) of e ~ Beta(mean, sd)."""
    if sd == 0:
        return np.array([mean]), np.ones(1)
    a, b = _beta_parameters(mean, sd)
    if max(a, b) <= _JACOBI_MAX_PARAMETER:
        # Weight (1 - z)^(b-1) (1 + z)^(a-1) on [-1, 1] is the Beta(a, b)
        # density of e = (1 + z) / 2 up to a constant.
        z, w = roots_jacobi(n, b - 1, a - 1)
        e = (1 + z) / 2
    else:
        z, w = np.polynomial.legendre.leggauss(n)
        lo, hi = max(0.0, mean - 12 * sd), min(1.0, mean + 12 * sd)
        e = lo + (z + 1) / 2 * (hi - lo)
        w = w * np.exp(stats.beta.logpdf(e, a, b))
    return e, w / w.sum()


def _expected_knockdown_level(x0: np.ndarray, mean: float, sd: float,
                              escapers: float = 0.0) -> np.ndarray:
    """E[log1p((1 - e) expm1(x0))] over the efficiency (Beta, and escapers), over x0."""
    x0 = np.asarray(x0, dtype=np.float64)
    e, w = _efficiency_nodes(mean, sd, _QUAD_NODES, escapers)
    return _knockdown_level(x0[..., None], e) @ w


def _measured_knockout(x0: np.ndarray, residual: float) -> np.ndarray:
    return np.log1p(residual * np.expm1(x0))


def _levels(
    net: _Network,
    targets: np.ndarray,
    kinds: np.ndarray,
    p: dict[str, Any],
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Regulatory levels T and measured knockout levels per (row, target).

    ``rng=None`` returns the expected levels (truth); otherwise knockdown
    efficiencies are drawn per row and target. Padding entries are NaN.
    """
    valid = targets >= 0
    x0_t = net.x0[np.where(valid, targets, 0)]
    kind = np.broadcast_to(kinds[:, None], targets.shape)
    levels = np.full(targets.shape, np.nan)
    measured = np.full(targets.shape, np.nan)
    kd = valid & (kind == "knockdown")
    m, sd = p["knockdown_efficiency"], p["efficiency_sd"]
    escapers = p.get("escaper_fraction", 0.0)
    if rng is None:
        levels[kd] = _expected_knockdown_level(x0_t[kd], m, sd, escapers)
    else:
        n_kd = int(kd.sum())
        efficiency = rng.beta(*_beta_parameters(m, sd), n_kd) if sd > 0 else np.full(n_kd, m)
        if escapers > 0:  # drawn only then: the default stream stays as it was
            efficiency[rng.random(n_kd) < escapers] = 0.0
        levels[kd] = _knockdown_level(x0_t[kd], efficiency)
    ko = valid & (kind == "knockout")
    levels[ko] = 0.0
    measured[ko] = _measured_knockout(x0_t[ko], p["knockout_residual"])
    oe = valid & (kind == "overexpression")
    levels[oe] = np.log1p(p["overexpression_fold"] * np.expm1(x0_t[oe]))
    return levels, measured


# --------------------------------------------------------------------------- steady state


def _hill(x: np.ndarray, x0: np.ndarray, hill: tuple[float, float] = (2.0, 1.0)) -> np.ndarray:
    """h(x) = x0 (1 + s^n) u^n / (s^n + u^n), u = max(x, 0) / x0 (h(x0) = x0)."""
    n, s = hill
    un = (np.maximum(x, 0.0) / x0) ** n
    sn = s**n
    return x0 * (1.0 + sn) * un / (sn + un)


def _tf_inverse(net: _Network) -> np.ndarray:
    """G = (I - W_TT^T)^-1: x_TF = G b_TF is the linear TF steady state."""
    return np.linalg.inv(np.eye(net.n_tfs) - net.weights[:, : net.n_tfs].T.toarray())


def _clamped_linear(
    inverse: np.ndarray, x_tf: np.ndarray, tf_targets: np.ndarray, levels: np.ndarray
) -> None:
    """Clamp TF targets of a linear model in place.

    do(x_S = T) on a linear system has the same solution as the original
    system with the basal rates of S shifted by delta, where
    G[S, S] delta = T - x_S: the other equations are unchanged and the shift
    puts x_S at T. So x = x(b) + G[:, S] delta, batched over rows with the
    same number of TF targets.
    """
    mask = tf_targets >= 0
    n_clamped = mask.sum(axis=1)
    for k in np.unique(n_clamped[n_clamped > 0]):
        rows = np.flatnonzero(n_clamped == k)
        sub = mask[rows]
        t = tf_targets[rows][sub].reshape(-1, k)
        level = levels[rows][sub].reshape(-1, k)
        block = inverse[t[:, :, None], t[:, None, :]]
        rhs = level - x_tf[rows[:, None], t]
        delta = np.linalg.solve(block, rhs[..., None])[..., 0]
        x_tf[rows] += np.einsum("rk,rkn->rn", delta, inverse.T[t])
        x_tf[rows[:, None], t] = level


def _clamped_saturating(
    net: _Network, b_tf: np.ndarray, tf_targets: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """Damped fixed-point iteration of the saturating TF system with clamps."""
    n_tfs = net.n_tfs
    x0_tf = net.x0[:n_tfs]
    rows, cols = np.nonzero(tf_targets >= 0)
    clamp = np.zeros(b_tf.shape, dtype=bool)
    value = np.zeros(b_tf.shape)
    clamp[rows, tf_targets[rows, cols]] = True
    value[rows, tf_targets[rows, cols]] = levels[rows, cols]
    x = np.where(clamp, value, np.broadcast_to(x0_tf, b_tf.shape))
    for _ in range(_MAX_ITERATIONS):
        update = b_tf + (net.w_tf_t @ _hill(x, x0_tf, net.hill).T).T
        new = x + _DAMPING * (update - x)
        new[clamp] = value[clamp]
        change = np.max(np.abs(new - x), initial=0.0)
        x = new
        if not math.isfinite(change):
            break
        if change <= _TOLERANCE * (1.0 + np.max(np.abs(x), initial=0.0)):
            return x
    n, s = net.hill
    steep = (n, s) != (2.0, 1.0)
    raise CausalCellError(
        f"simulate(): the saturating steady state did not converge within "
        f"{_MAX_ITERATIONS} iterations (last change {change:.3g}). "
        + (f"With hill_coefficient={n:g} and half_saturation={s:g} the Hill curve is steep "
           f"enough for feedback loops to have no stable state: lower hill_coefficient, raise "
           f"half_saturation towards 1 or use feedback=False."
           if steep else
           "Use regulation='linear' or report this as a bug: the weight scaling should "
           "guarantee convergence.")
    )


def _steady_state(
    net: _Network,
    targets: np.ndarray,
    levels: np.ndarray,
    measured: np.ndarray,
    noise: np.ndarray | None,
    inverse: np.ndarray | None,
) -> np.ndarray:
    """States (rows x genes) under per-row interventions.

    ``targets`` / ``levels`` / ``measured``: gene index, regulatory level T and
    measured knockout level (NaN if not a knockout) per (row, target), -1 / NaN
    padded. ``noise``: per-row perturbation of the basal rates (overwritten), or None.
    """
    n_rows, n_tfs = len(targets), net.n_tfs
    # The state array starts as the (noisy) basal rates and is filled in
    # place: at real size it is the largest intermediate.
    if noise is None:
        state = np.tile(net.basal, (n_rows, 1))
    else:
        state = noise
        state += net.basal
    tf_targets = np.where(targets < n_tfs, targets, -1)
    if net.regulation == "linear":
        assert inverse is not None
        x_tf = state[:, :n_tfs] @ inverse.T
        _clamped_linear(inverse, x_tf, tf_targets, levels)
        signal = x_tf
    else:
        x_tf = _clamped_saturating(net, state[:, :n_tfs], tf_targets, levels)
        signal = _hill(x_tf, net.x0[:n_tfs], net.hill)
    state[:, :n_tfs] = x_tf
    state[:, n_tfs:] += (net.w_genes_t @ signal.T).T
    rows, cols = np.nonzero(targets >= n_tfs)
    state[rows, targets[rows, cols]] = levels[rows, cols]
    # The measured transcript of a knocked-out gene is set after propagation:
    # downstream genes saw its regulatory level T = 0.
    rows, cols = np.nonzero(~np.isnan(measured))
    state[rows, targets[rows, cols]] = measured[rows, cols]
    return state


# --------------------------------------------------------------------------- outputs


def _level_column(levels: np.ndarray, is_control: np.ndarray, combos: bool) -> np.ndarray:
    """The LEVEL column: float without combinations, else comma-separated strings."""
    if not combos:
        out = np.full(len(levels), np.nan)
        out[~is_control] = levels[~is_control, 0]
        return out
    n_targets = (~np.isnan(levels)).sum(axis=1)
    text = np.full(len(levels), "nan", dtype=object)
    for k in np.unique(n_targets[~is_control]):
        rows = np.flatnonzero((n_targets == k) & ~is_control)
        joined = np.char.mod(_LEVEL_FORMAT, levels[rows, 0])
        for j in range(1, k):
            part = np.char.mod(_LEVEL_FORMAT, levels[rows, j])
            joined = np.char.add(np.char.add(joined, COMBINATION_SEPARATOR), part)
        text[rows] = joined.astype(object)
    return text


def _obs(
    labels: list[str],
    kinds: list[str],
    row_of: np.ndarray,
    levels: np.ndarray | None,
    combos: bool,
    index: pd.Index,
) -> pd.DataFrame:
    """obs for rows that point (``row_of``) into [control] + design rows."""
    all_labels = [CONTROL_LABEL, *labels]
    all_kinds = ["control", *kinds]
    is_control = row_of == 0
    label_codes, label_uniques = pd.factorize(pd.Series(all_labels))
    kind_codes, kind_uniques = pd.factorize(pd.Series(all_kinds))
    obs = pd.DataFrame(
        {
            PERTURBATION: pd.Categorical.from_codes(label_codes[row_of], label_uniques),
            IS_CONTROL: is_control,
            PERTURBATION_TYPE: pd.Categorical.from_codes(kind_codes[row_of], kind_uniques),
        },
        index=index,
    )
    if levels is not None:
        obs[LEVEL] = _level_column(levels, is_control, combos)
    return obs


def _var(net: _Network) -> pd.DataFrame:
    return pd.DataFrame(
        {"is_tf": np.arange(len(net.names)) < net.n_tfs, "control_level": net.x0},
        index=pd.Index(net.names),
    )


def _uns(p: dict[str, Any], design: _Design) -> dict[str, Any]:
    """Parameters as h5ad-writable values (no None, lists of strings)."""
    out = {k: v for k, v in p.items() if k != "perturbations" and v is not None}
    out["perturbation_labels"] = list(design.labels)
    out["perturbation_kinds"] = list(design.kinds)
    return out


def _unreached(net: _Network, targets: np.ndarray) -> np.ndarray:
    """(rows, genes) True where a gene is neither targeted nor downstream of a target."""
    n = len(net.names)
    A = sp.vstack([sp.csr_matrix(net.weights != 0),
                   sp.csr_matrix((n - net.n_tfs, n), dtype=bool)]).tocsr().astype(np.int8)
    reach = A.copy()  # transitive closure: add longer paths until nothing changes
    while True:
        longer = ((reach @ A + reach) > 0).astype(np.int8)
        if longer.nnz == reach.nnz:
            break
        reach = longer
    rows = np.repeat(np.arange(len(targets)), targets.shape[1])
    cols = targets.ravel()
    keep = cols >= 0
    hit = sp.csr_matrix((np.ones(keep.sum(), np.int8), (rows[keep], cols[keep])),
                        shape=(len(targets), n))
    touched = (hit @ reach + hit) > 0
    return ~touched.toarray()


def _make_truth(net: _Network, design: _Design, p: dict[str, Any]) -> AnnData:
    kinds = np.asarray(design.kinds, dtype=object)
    levels, measured = _levels(net, design.targets, kinds, p, rng=None)
    inverse = _tf_inverse(net) if net.regulation == "linear" else None
    state = _steady_state(net, design.targets, levels, measured, None, inverse)
    # Genes no target reaches keep the control state exactly (the solve would
    # leave rounding noise there, which a correlation metric would score).
    unaffected = _unreached(net, design.targets)
    state[unaffected] = np.broadcast_to(net.x0, state.shape)[unaffected]
    state = np.vstack([net.x0[None, :], state])
    negative = state < 0
    if negative.any():
        warnings.warn(
            f"simulate(): the linear model drives {int(negative.any(axis=0).sum())} gene(s) "
            f"below 0 under the requested perturbations (overexpression_fold="
            f"{p['overexpression_fold']}); those states are clipped at 0 (no expression). "
            f"Lower overexpression_fold or use regulation='saturating'.",
            CausalCellWarning,
            stacklevel=3,
        )
        state = np.maximum(state, 0.0)
    row_of = np.arange(len(design.labels) + 1)
    names = pd.Series([CONTROL_LABEL, *design.labels])
    duplicated = names.duplicated(keep=False).to_numpy()
    names[duplicated] = names[duplicated] + "_" + pd.Series(["control", *design.kinds])[duplicated]
    all_levels = np.vstack([np.full((1, levels.shape[1]), np.nan), levels])
    combos = design.targets.shape[1] > 1
    obs = _obs(design.labels, design.kinds, row_of, all_levels, combos, pd.Index(names))
    obs["n_cells"] = np.where(row_of == 0, p["n_control_cells"], p["n_cells_per_perturbation"])
    return AnnData(X=state, obs=obs, var=_var(net), uns={"simulation": _uns(p, design)})


# --------------------------------------------------------------------------- expected profile


def _log_count_table(library_size: float, x_max: float) -> CubicSpline:
    """H(x) = E[log1p(K * 1e4 / L)] for a cell whose state is x, as a spline on [0, x_max].

    K ~ Poisson(L expm1(x) / 1e4) and L lognormal with median ``library_size``
    (integer rounding of L ignored): Gauss-Hermite over log L, the Poisson
    summed over a window of +-``_POISSON_SPAN`` standard deviations (plus 10)
    around its mean (the mass outside is below 1e-15).
    """
    t, w = np.polynomial.hermite_e.hermegauss(_LIBRARY_NODES)
    library = library_size * np.exp(_LIBRARY_LOG_SD * t)
    w = w / w.sum()
    grid = np.linspace(0.0, max(x_max, _GRID_STEP), max(64, math.ceil(x_max / _GRID_STEP) + 1))
    rate = np.expm1(grid)[:, None] * (library / 1e4)[None, :]  # (grid, library nodes)
    scale = (1e4 / library)[None, :, None]
    # log(0) = -inf at x = 0 only, where K = 0 and log1p(0) = 0 contribute nothing.
    log_rate = np.log(np.maximum(rate, np.finfo(np.float64).tiny))
    lo = np.maximum(0.0, np.floor(rate - _POISSON_SPAN * np.sqrt(rate) - 10))
    hi = np.ceil(rate + _POISSON_SPAN * np.sqrt(rate) + 10)
    total = np.empty(rate.shape)
    # Rates grow with x: chunks of the grid, each with its own Poisson window.
    chunk = 64
    for start in range(0, len(grid), chunk):
        rows = slice(start, start + chunk)
        first = lo[rows].min()
        k = first + np.arange(int(hi[rows].max() - first) + 1)
        log_pmf = (k * log_rate[rows][..., None] - rate[rows][..., None]
                   - gammaln(k + 1)[None, None, :])
        total[rows] = (np.exp(log_pmf) * np.log1p(k * scale)).sum(axis=-1)
    return CubicSpline(grid, total @ w)


def _normal_expectation(table: CubicSpline, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[H(max(m + s Z, 0))] for Z ~ N(0, 1), entry by entry (H(x) = 0 for x <= 0).

    Gauss-Legendre on z in [max(-m/s, -span), span]: the integral starts at
    the kink of max(., 0), so the integrand is smooth on the interval. Many
    entries sharing one sd (the saturating model's) use one smoothed table
    of H instead, tabulated on the grid of H by the same quadrature.
    """
    out = np.zeros(mean.shape)
    fixed = sd <= 0
    positive = fixed & (mean > 0)
    out[positive] = table(mean[positive])
    values, counts = np.unique(sd[~fixed], return_counts=True)
    shared = values[counts > 4 * len(table.x)]
    for value in shared:
        these = sd == value
        grid = table.x
        smooth = CubicSpline(grid, _normal_quadrature(table, grid, np.full(len(grid), value)))
        inside = these & (mean >= grid[0]) & (mean <= grid[-1])
        out[inside] = smooth(mean[inside])
        rest = these & ~inside
        out[rest] = _normal_quadrature(table, mean[rest], sd[rest])
    direct = ~fixed & ~np.isin(sd, shared)
    out[direct] = _normal_quadrature(table, mean[direct], sd[direct])
    return out


def _normal_quadrature(table: CubicSpline, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    lo = np.clip(-m / s, -_NORMAL_SPAN, _NORMAL_SPAN)
    half = (_NORMAL_SPAN - lo) / 2
    t, w = np.polynomial.legendre.leggauss(_STATE_NODES)
    z = (lo + half)[:, None] + half[:, None] * t[None, :]
    x = np.maximum(m[:, None] + s[:, None] * z, 0.0)
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return half * ((w * density) * table(x)).sum(axis=1)


def _noise_sd(net: _Network, targets: np.ndarray, levels: np.ndarray, measured: np.ndarray,
              noise_sd: float, inverse: np.ndarray | None) -> np.ndarray:
    """Per row and gene, the sd of the state caused by the noise on the basal rates.

    Linear regulation: the state is affine in the noise, so it is the norm of
    the gene's row of the Jacobian, computed by :func:`_steady_state` itself
    (a unit noise on each TF's basal rate, and one on all non-TF genes, which
    regulate nothing). Saturating regulation: the non-TF genes' own noise
    only (the TF noise is drawn); TFs and targeted genes get 0.
    """
    n_rows, n_genes = len(targets), len(net.names)
    n_tfs = net.n_tfs
    if net.regulation != "linear":
        sd = np.zeros((n_rows, n_genes))
        sd[:, n_tfs:] = noise_sd
        rows, cols = np.nonzero(targets >= n_tfs)
        sd[rows, targets[rows, cols]] = 0.0
        return sd
    out = np.empty((n_rows, n_genes))
    probes = n_tfs + 1
    block = max(1, _BLOCK_ENTRIES // (probes * n_genes))
    for start in range(0, n_rows, block):
        rows = slice(start, min(start + block, n_rows))
        m = rows.stop - rows.start
        noise = np.zeros((m, probes, n_genes))
        noise[:, np.arange(n_tfs), np.arange(n_tfs)] = 1.0
        noise[:, n_tfs, n_tfs:] = 1.0
        rep = np.repeat(np.arange(rows.start, rows.stop), probes)
        moved = _steady_state(net, targets[rep], levels[rep], measured[rep],
                              noise.reshape(m * probes, n_genes), inverse)
        base = _steady_state(net, targets[rows], levels[rows], measured[rows], None, inverse)
        jacobian = moved.reshape(m, probes, n_genes) - base[:, None, :]
        out[rows] = noise_sd * np.sqrt((jacobian * jacobian).sum(axis=1))
    return out


def _node_rows(
    net: _Network, design_targets: np.ndarray, kinds: np.ndarray, p: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every row's quadrature nodes over its knockdown efficiencies.

    Returns (row, targets, levels, measured, weight) of the expanded rows,
    one per tensor-product node of the row's knockdown targets (a single
    node for other kinds); weights sum to 1 per row.
    """
    levels, measured = _levels(net, design_targets, kinds, p, rng=None)
    e, w = _efficiency_nodes(p["knockdown_efficiency"], p["efficiency_sd"], _EFFICIENCY_NODES,
                             p.get("escaper_fraction", 0.0))
    valid = design_targets >= 0
    n_targets = valid.sum(axis=1)
    knockdown = (kinds == "knockdown") & (n_targets > 0) & (len(e) > 1)
    parts = []
    for k in np.unique(n_targets[knockdown]):
        rows = np.flatnonzero(knockdown & (n_targets == k))
        combos = np.array(list(itertools.product(range(len(e)), repeat=int(k))))
        node_levels = _knockdown_level(net.x0[design_targets[rows, :k]][:, None, :],
                                       e[combos][None, :, :])  # (rows, nodes, k)
        full = np.full((len(rows), len(combos), design_targets.shape[1]), np.nan)
        full[:, :, :k] = node_levels
        parts.append((np.repeat(rows, len(combos)), full.reshape(-1, design_targets.shape[1]),
                      np.tile(np.prod(w[combos], axis=1), len(rows))))
    single = np.flatnonzero(~knockdown)
    parts.append((single, levels[single], np.ones(len(single))))
    row = np.concatenate([part[0] for part in parts])
    return (row, design_targets[row], np.concatenate([part[1] for part in parts]),
            measured[row], np.concatenate([part[2] for part in parts]))


def _make_expected(net: _Network, design: _Design, p: dict[str, Any],
                   truth: AnnData) -> AnnData:
    """The expected observed profile of every truth row (see the module docstring)."""
    width = design.targets.shape[1]
    targets = np.vstack([np.full((1, width), -1, dtype=np.int64), design.targets])
    kinds = np.asarray(["control", *design.kinds], dtype=object)
    if net.regulation == "linear":
        expected = _expected_linear(net, targets, kinds, p)
        info = {"method": "quadrature", "efficiency_nodes": _EFFICIENCY_NODES}
    else:
        expected, standard_error = _expected_saturating(net, targets, kinds, p)
        info = {"method": "monte-carlo", "draws": _MONTE_CARLO_DRAWS}
    out = AnnData(X=expected, obs=truth.obs.copy(), var=truth.var.copy(),
                  uns={"simulation": dict(truth.uns["simulation"]),
                       "expected": {**info, "state_nodes": _STATE_NODES,
                                    "library_nodes": _LIBRARY_NODES}})
    if net.regulation != "linear":
        out.layers["standard_error"] = standard_error
    return out


def _expected_linear(net: _Network, targets: np.ndarray, kinds: np.ndarray,
                     p: dict[str, Any]) -> np.ndarray:
    """Quadrature over the efficiencies (nodes), the state noise and the library."""
    inverse = _tf_inverse(net)
    n_rows, n_genes = len(targets), len(net.names)
    row, node_targets, node_levels, node_measured, weight = _node_rows(net, targets, kinds, p)
    mean = _steady_state(net, node_targets, node_levels, node_measured, None, inverse)
    sd = _noise_sd(net, targets, *_levels(net, targets, kinds, p, rng=None), p["noise_sd"],
                   inverse)[row]
    # A gene no knockdown target reaches has one state at every efficiency
    # node of its row: evaluated once, with weight 1.
    high = np.full((n_rows, n_genes), -np.inf)
    low = np.full((n_rows, n_genes), np.inf)
    np.maximum.at(high, row, mean)
    np.minimum.at(low, row, mean)
    varies = (high - low > 1e-12 * (1.0 + np.abs(high)))[row]
    first = np.r_[True, row[1:] != row[:-1]]
    entries = varies | first[:, None]
    factor = np.where(varies, weight[:, None], 1.0)[entries]
    table = _log_count_table(p["library_size"],
                             float(np.max(mean + _NORMAL_SPAN * sd, initial=0.0)))
    value = _normal_expectation(table, mean[entries], sd[entries])
    cells = np.nonzero(entries)
    flat = row[cells[0]] * n_genes + cells[1]
    return np.bincount(flat, weights=factor * value,
                       minlength=n_rows * n_genes).reshape(n_rows, n_genes)


def _expected_saturating(net: _Network, targets: np.ndarray, kinds: np.ndarray,
                         p: dict[str, Any],
                         fixed: tuple[np.ndarray, np.ndarray] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo over the TF noise and the efficiencies, drawn as the cells draw
    them; the non-TF genes' own noise and the counts by quadrature. Returns the
    mean over draws and its standard error. ``fixed``: (levels, measured) per
    row, held instead of drawn (:meth:`Simulation.expected_at`)."""
    n_rows, n_genes = len(targets), len(net.names)
    stream = 5 if fixed is None else 6  # expected_at draws its own noise
    rng = np.random.default_rng(np.random.SeedSequence(p["random_state"]).spawn(stream)[-1])
    total = np.zeros((n_rows, n_genes))
    squares = np.zeros((n_rows, n_genes))
    table = None
    per_block = max(1, _BLOCK_ENTRIES // max(1, n_rows * n_genes))
    for start in range(0, _MONTE_CARLO_DRAWS, per_block):
        draws = min(per_block, _MONTE_CARLO_DRAWS - start)
        row = np.tile(np.arange(n_rows), draws)
        if fixed is None:
            levels, measured = _levels(net, targets[row], kinds[row], p, rng)
        else:
            levels, measured = fixed[0][row], fixed[1][row]
        noise = np.zeros((len(row), n_genes))
        noise[:, : net.n_tfs] = rng.normal(0.0, p["noise_sd"], (len(row), net.n_tfs))
        mean = _steady_state(net, targets[row], levels, measured, noise, None)
        sd = _noise_sd(net, targets[row], levels, measured, p["noise_sd"], None)
        reach = float(np.max(mean + _NORMAL_SPAN * sd, initial=0.0))
        if table is None or reach > table.x[-1]:
            table = _log_count_table(p["library_size"], 1.25 * reach)
        value = _normal_expectation(table, mean.ravel(), sd.ravel()).reshape(draws, n_rows,
                                                                             n_genes)
        total += value.sum(axis=0)
        squares += (value * value).sum(axis=0)
    n = _MONTE_CARLO_DRAWS
    mean = total / n
    variance = np.maximum(squares / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return mean, np.sqrt(variance / n)


def _expected_at(sim: Simulation, perturbation: str, levels: Any, kind: str | None) -> AnnData:
    """:meth:`Simulation.expected_at` (argument checks, then the profiles)."""
    net, p = sim._net, sim.params
    names = {name: i for i, name in enumerate(net.names)}
    if not isinstance(perturbation, str):
        raise ParameterError(f"expected_at(): perturbation must be a label such as 'TF01', got "
                             f"{type(perturbation).__name__}.")
    genes = split_label(perturbation)
    for gene in genes:
        if gene not in names:
            raise _unknown_gene_error(gene, perturbation, net.names, net.n_tfs)
    if not genes:
        raise DataContractError(f"expected_at(): the label {perturbation!r} names no gene.")
    label = COMBINATION_SEPARATOR.join(genes)
    if kind is None:
        screened = sorted({k for lab, k in zip(sim._design.labels, sim._design.kinds,
                                               strict=True) if lab == label})
        if len(screened) > 1:
            raise ParameterError(
                f"expected_at(): {label!r} is screened as {screened}; say which with kind=."
            )
        kind = screened[0] if screened else p["kind"]
    if kind not in KNOWN_KINDS:
        raise DataContractError(f"expected_at(): kind={kind!r} is unknown; use one of "
                                f"{list(KNOWN_KINDS)}.")
    k = len(genes)
    values = check_level_grid(levels, k, label, "expected_at()")
    targets = np.broadcast_to(np.array([names[g] for g in genes], dtype=np.int64),
                              values.shape).copy()
    measured = np.full(values.shape, np.nan)
    if kind == "knockout":
        if (values != 0).any():
            raise ParameterError(
                "expected_at(): a knockout holds its targets at T = 0 (the cut gene has no "
                "activity); give levels of 0, or kind='knockdown' for a partial loss."
            )
        measured = _measured_knockout(net.x0[targets], p["knockout_residual"])
    if net.regulation == "linear":
        X = _expected_linear_at(net, targets, values, measured, p)
        error = None
    else:
        kinds = np.full(len(values), kind, dtype=object)
        X, error = _expected_saturating(net, targets, kinds, p, fixed=(values, measured))
    text = _level_column(values, np.zeros(len(values), dtype=bool), k > 1)
    shown = [",".join(f"{v:.4g}" for v in row) for row in values]
    obs = pd.DataFrame(
        {PERTURBATION: label, IS_CONTROL: False, PERTURBATION_TYPE: kind, LEVEL: text},
        index=pd.Index([f"{label}@{t}" for t in shown]),
    )
    out = AnnData(X=X, obs=obs, var=_var(net))
    if error is not None:
        out.layers["standard_error"] = error
    return out


def _expected_linear_at(net: _Network, targets: np.ndarray, levels: np.ndarray,
                        measured: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Linear regulation, targets held at given levels: the state noise and the
    library by quadrature (exact; no efficiency to integrate over)."""
    inverse = _tf_inverse(net)
    mean = _steady_state(net, targets, levels, measured, None, inverse)
    sd = _noise_sd(net, targets, levels, measured, p["noise_sd"], inverse)
    table = _log_count_table(p["library_size"],
                             float(np.max(mean + _NORMAL_SPAN * sd, initial=0.0)))
    return _normal_expectation(table, mean.ravel(), sd.ravel()).reshape(mean.shape)


def _make_cells(
    net: _Network,
    design: _Design,
    p: dict[str, Any],
    rng_cells: np.random.Generator,
    rng_counts: np.random.Generator,
) -> AnnData:
    n_per, n_ctrl = p["n_cells_per_perturbation"], p["n_control_cells"]
    n_design = len(design.labels)
    row_of = np.concatenate(
        [np.zeros(n_ctrl, dtype=np.int64), np.repeat(np.arange(1, n_design + 1), n_per)]
    )
    n_cells, n_genes = len(row_of), len(net.names)
    width = design.targets.shape[1]
    all_targets = np.vstack([np.full((1, width), -1, dtype=np.int64), design.targets])
    all_kinds = np.asarray(["control", *design.kinds], dtype=object)
    targets = all_targets[row_of]
    levels, measured = _levels(net, targets, all_kinds[row_of], p, rng_cells)
    library = np.maximum(
        1.0, np.rint(p["library_size"] * np.exp(rng_cells.normal(0.0, _LIBRARY_LOG_SD, n_cells)))
    )
    inverse = _tf_inverse(net) if net.regulation == "linear" else None
    X = np.empty((n_cells, n_genes), dtype=np.float32)
    counts = np.empty((n_cells, n_genes), dtype=np.int32)
    states = np.empty((n_cells, n_genes), dtype=np.float32) if p["record_states"] else None
    block = max(1, _BLOCK_ENTRIES // n_genes)
    for start in range(0, n_cells, block):
        cells = slice(start, min(start + block, n_cells))
        n_block = cells.stop - cells.start
        noise = rng_counts.normal(0.0, p["noise_sd"], (n_block, n_genes)) if p["noise_sd"] else None
        state = _steady_state(net, targets[cells], levels[cells], measured[cells], noise, inverse)
        # A state below 0 (noise on a lowly expressed gene) means no expression.
        np.maximum(state, 0.0, out=state)
        if states is not None:
            states[cells] = state
        rate = np.expm1(state)
        rate *= (library[cells] / 1e4)[:, None]
        sampled = rng_counts.poisson(rate)
        counts[cells] = sampled
        # Normalize straight into the float32 output (a view): no float64 copy.
        out = X[cells]
        np.multiply(sampled, (1e4 / library[cells])[:, None], out=out, casting="same_kind")
        np.log1p(out, out=out)
    digits = max(4, len(str(n_cells - 1)))
    index = pd.Index(np.char.add("cell", np.char.zfill(np.arange(n_cells).astype(str), digits)))
    combos = width > 1
    obs = _obs(
        design.labels, design.kinds, row_of, levels if p["record_levels"] else None, combos, index
    )
    obs["total_counts"] = library.astype(np.int64)
    return AnnData(
        X=X,
        obs=obs,
        var=_var(net),
        layers={"counts": counts} | ({} if states is None else {"state": states}),
        uns={"simulation": _uns(p, design)},
    )
