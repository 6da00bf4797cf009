"""Tests of causalcell.evaluate.pairwise_retrieval.

The fast implementation (one dense product plus gathered corrections) is
compared with a naive double loop over pairs that computes every distance on
the explicit gene set with scipy, for every distance x exclusion x
orientation, on data full of ties, combinations, overlapping and empty target
sets. Known answers and properties complete the picture.
"""

from __future__ import annotations

import contextlib
import itertools
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import distance as ssd

from causalcell.errors import CausalCellError, DataContractError, ParameterError
from causalcell.evaluate import RETRIEVAL_EXCLUDES as EXCLUSIONS
from causalcell.evaluate import _retrieval
from causalcell.evaluate._retrieval import (
    DISTANCES,
    ORIENTATIONS,
    TIE_RTOL,
    ZERO_RTOL,
    pairwise_retrieval,
)

COMBOS = list(itertools.product(DISTANCES, EXCLUSIONS, ORIENTATIONS))
# The documented tolerances, written out so that the reference does not follow
# a change of the implementation's constants.
TIE = 1e-10
ZERO = 1e-12


def test_documented_tolerances():
    assert (TIE_RTOL, ZERO_RTOL) == (TIE, ZERO)


# --------------------------------------------------------------------------- naive reference


def _similarity(x: np.ndarray, y: np.ndarray, x_full: np.ndarray, y_full: np.ndarray,
                pearson: bool) -> tuple[float, float]:
    """Similarity on the kept genes and its amplification kappa (module docstring rules)."""
    if pearson:
        x_full, y_full = x_full - x_full.mean(), y_full - y_full.mean()
        xr = x - x.mean() if x.size else x
        yr = y - y.mean() if y.size else y
    else:
        xr, yr = x, y
    nx, ny = float(xr @ xr), float(yr @ yr)
    fx, fy = float(x_full @ x_full), float(y_full @ y_full)
    if nx <= ZERO * fx or ny <= ZERO * fy:
        return 0.0, 0.0
    d = ssd.correlation(x, y) if pearson else ssd.cosine(x, y)
    return 1.0 - d, np.sqrt(fx * fy / (nx * ny))


def naive_retrieval(predicted, observed, targets, distance, exclusion, orientation):
    """The double loop over (i, j), each distance on the explicit gene set."""
    P, T = np.asarray(predicted, float), np.asarray(observed, float)
    Q, C = (P, T) if orientation == "prediction" else (T, P)
    n, g = Q.shape
    sets = [set(map(int, t)) for t in targets]
    union = set().union(*sets)
    mu = (P.mean(0) + T.mean(0)) / 2
    ranks = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            drop = {"targeted": sets[i] | sets[j], "query": sets[i], "none": set(),
                    "all": union}[exclusion]
            keep = np.array([k for k in range(g) if k not in drop], dtype=int)
            q, cj, ci = Q[i, keep], C[j, keep], C[i, keep]
            if distance in ("cosine", "pearson"):
                pearson = distance == "pearson"
                ra, ka = _similarity(q, cj, Q[i], C[j], pearson)
                rb, kb = _similarity(q, ci, Q[i], C[i], pearson)
                a, b, tol = -ra, -rb, TIE * (ka + kb)
            else:
                if distance == "manhattan":
                    dist, norm = ssd.cityblock, lambda v: np.abs(v).sum()
                else:  # euclidean ranks are decided on squared distances
                    dist, norm = ssd.sqeuclidean, lambda v: v @ v
                a = dist(q, cj) if keep.size else 0.0
                b = dist(q, ci) if keep.size else 0.0
                tol = TIE * (norm(Q[i] - mu) + norm(C[i] - mu) + norm(C[j] - mu))
            if abs(a - b) <= tol:
                ranks[i] += 0.5
            elif a < b:
                ranks[i] += 1.0
    return ranks / (n - 1)


# --------------------------------------------------------------------------- strategies


@st.composite
def retrieval_problems(draw, continuous: bool):
    """Small problems with many ties, combinations, overlaps and empty target sets."""
    n = draw(st.integers(2, 7))
    g = draw(st.integers(1, 7))
    if continuous:
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        offset = draw(st.sampled_from([0.0, 3.0, 100.0]))
        P = rng.normal(size=(n, g)) + offset
        T = rng.normal(size=(n, g)) + offset
    else:
        cell = st.integers(-3, 3).map(lambda v: v / 2)
        P = np.array(draw(st.lists(st.lists(cell, min_size=g, max_size=g), min_size=n,
                                   max_size=n)))
        T = np.array(draw(st.lists(st.lists(cell, min_size=g, max_size=g), min_size=n,
                                   max_size=n)))
    # Structural ties: duplicated rows, a constant or zero row, a predictor
    # that lives only on its own targets.
    for arr in (P, T):
        if n > 2 and draw(st.booleans()):
            arr[draw(st.integers(0, n - 1))] = arr[draw(st.integers(0, n - 1))]
        if draw(st.booleans()):
            arr[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0.0, 1.5]))
    if draw(st.booleans()):
        P = T.copy()
    targets = draw(st.lists(st.lists(st.integers(0, g - 1), max_size=min(g, 3)),
                            min_size=n, max_size=n))
    if draw(st.booleans()):
        target_only = np.zeros_like(P)
        for i, t in enumerate(targets):
            target_only[i, t] = T[i, t] + 1.0
        P = target_only
    return P, T, targets


def _candidate_chunks(pair_elements):
    """Candidate chunks of ``pair_elements // block_size`` rows (None: the default)."""
    if pair_elements is None:
        return contextlib.nullcontext()
    return mock.patch.object(_retrieval, "_PAIR_ELEMENTS", pair_elements)


def _check_equal(P, T, targets, distance, exclusion, orientation, block_size=None,
                 pair_elements=None):
    with _candidate_chunks(pair_elements):
        fast = pairwise_retrieval(P, T, targets, distance, exclusion, orientation,
                                  block_size=block_size)
    slow = naive_retrieval(P, T, targets, distance, exclusion, orientation)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9,
                               err_msg=f"{distance}/{exclusion}/{orientation}")


@pytest.mark.parametrize(("distance", "exclusion", "orientation"), COMBOS)
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(problem=retrieval_problems(continuous=False), block=st.sampled_from([None, 1, 2, 3]),
       pair_elements=st.sampled_from([None, 1, 3, 5]))
def test_equals_naive_on_grid_data_with_ties(distance, exclusion, orientation, problem, block,
                                             pair_elements):
    """Equal to the naive loop whatever the query blocks and candidate chunks."""
    P, T, targets = problem
    _check_equal(P, T, targets, distance, exclusion, orientation, block, pair_elements)


@pytest.mark.parametrize(("distance", "exclusion", "orientation"), COMBOS)
@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(problem=retrieval_problems(continuous=True))
def test_equals_naive_on_continuous_data(distance, exclusion, orientation, problem):
    P, T, targets = problem
    _check_equal(P, T, targets, distance, exclusion, orientation)


@pytest.mark.parametrize("distance", DISTANCES)
def test_equals_naive_on_wider_data_with_offset_and_duplicates(distance):
    """More genes, a large common offset (cancellation) and duplicated profiles."""
    rng = np.random.default_rng(3)
    n, g = 24, 300
    T = 50.0 + rng.normal(size=(n, g))
    targets = [list(rng.choice(g, size=rng.integers(0, 4), replace=False)) for _ in range(n)]
    targets[5] = targets[4] = [7, 8]  # same combination twice
    targets[6] = [8, 9]  # overlapping
    for i, t in enumerate(targets):
        T[i, t] -= 5.0  # strong target effects
    T[3] = T[2]  # duplicated observation
    P = T + 0.3 * rng.normal(size=(n, g))
    P[10] = P[11]
    for exclusion, orientation in itertools.product(EXCLUSIONS, ORIENTATIONS):
        _check_equal(P, T, targets, distance, exclusion, orientation, block_size=7)


# --------------------------------------------------------------------------- known answers


def _knockdown_data(n=12, g=40, seed=0):
    """Observed changes: small noise plus a large effect on each row's own target(s)."""
    rng = np.random.default_rng(seed)
    T = 0.1 * rng.normal(size=(n, g))
    targets = [[i] for i in range(n - 2)] + [[0, 1], [2, 3]]  # two combinations
    for i, t in enumerate(targets):
        T[i, t] -= 3.0
    return T, targets


@pytest.mark.parametrize(("distance", "exclusion", "orientation"), COMBOS)
def test_perfect_prediction_ranks_first(distance, exclusion, orientation):
    rng = np.random.default_rng(1)
    T = rng.normal(size=(9, 30))
    targets = [[i, i + 1] if i % 3 else [] for i in range(9)]
    ranks = pairwise_retrieval(T, T.copy(), targets, distance, exclusion, orientation)
    np.testing.assert_array_equal(ranks, np.zeros(9))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("exclusion", ["none", "targeted"])
def test_constant_predictor_is_chance_under_none_and_targeted(distance, exclusion):
    T, targets = _knockdown_data()
    P = np.tile(T.mean(axis=0), (len(T), 1))
    ranks = pairwise_retrieval(P, T, targets, distance, exclusion)
    # Under one shared gene set per comparison, "j beats i" and "i beats j"
    # are complementary for a constant query: the mean rank is exactly 1/2.
    assert ranks.mean() == pytest.approx(0.5, abs=1e-12)
    assert ranks.std() > 0.05  # individual ranks do vary
    # The other orientation compares T_i with one and the same prediction: all ties.
    observed_side = pairwise_retrieval(P, T, targets, distance, exclusion, "observed")
    np.testing.assert_allclose(observed_side, 0.5, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
def test_constant_predictor_is_far_from_chance_under_query_exclusion(distance):
    """cell-eval's rule spares only the true match its target effect.

    With distances, every candidate j carries its large target effect and the
    true match does not: the constant predictor looks far better than chance.
    With cosine / Pearson the mean profile carries a trace of every target
    effect, so it correlates with each candidate's and not with the true
    match's remaining noise: far worse than chance. Biased either way.
    """
    T, targets = _knockdown_data()
    P = np.tile(T.mean(axis=0), (len(T), 1))
    query = pairwise_retrieval(P, T, targets, distance, "query")
    if distance in ("cosine", "pearson"):
        assert query.mean() > 0.8
    else:
        assert query.mean() < 0.2


@pytest.mark.parametrize("distance", DISTANCES)
def test_target_only_predictor_falls_to_chance_under_pair(distance):
    T, targets = _knockdown_data()
    P = np.zeros_like(T)
    for i, t in enumerate(targets):
        P[i, t] = T[i, t]
    assert pairwise_retrieval(P, T, targets, distance, "none").mean() < 0.1
    pair = pairwise_retrieval(P, T, targets, distance, "targeted")
    if distance in ("cosine", "pearson"):
        # Zero (constant) on every comparison's genes: distance 1.0 everywhere, all ties.
        np.testing.assert_array_equal(pair, np.full(len(T), 0.5))
    else:
        assert pair.mean() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("distance", ["cosine", "pearson"])
def test_undefined_similarity_is_distance_one(distance):
    T = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]])
    P = T.copy()
    P[0] = 0.0 if distance == "cosine" else 4.0  # zero / constant prediction
    ranks = pairwise_retrieval(P, T, [[], [], []], distance, "none")
    assert ranks[0] == 0.5  # d = 1.0 to every observation: two ties
    # A constant whose mean is not exact in floating point, on many genes.
    rng = np.random.default_rng(2)
    T3 = rng.normal(size=(5, 37))
    P3 = T3 + rng.normal(scale=0.5, size=T3.shape)
    P3[1] = 0.0 if distance == "cosine" else 0.1 + 1 / 3
    for exclusion in EXCLUSIONS:
        ranks3 = pairwise_retrieval(P3, T3, [[0], [1], [2, 3], [], [4]], distance, exclusion)
        assert ranks3[1] == 0.5
    # A candidate that is constant (zero) is at distance 1.0 too; with an
    # anti-correlated true match (d > 1) it beats it.
    T2 = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 1.0]])
    if distance == "cosine":
        T2[1] = 0.0
    P2 = np.array([[3.0, 2.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    if distance == "cosine":
        P2[0] = -T2[0]
    ranks2 = pairwise_retrieval(P2, T2, [[], [], []], distance, "none")
    assert ranks2[0] == 1.0  # both candidates are closer than d = 2


@pytest.mark.parametrize(("distance", "exclusion", "orientation"), COMBOS)
def test_duplicated_profiles_tie_despite_rounding(distance, exclusion, orientation):
    """Mathematically equal distances computed by different formulas still tie."""
    rng = np.random.default_rng(11)
    n, g = 8, 50
    T = rng.normal(size=(n, g)) * rng.uniform(0.1, 10, size=g) + 7.0
    P = T + rng.normal(scale=2.0, size=(n, g))
    T[3] = T[2]  # candidate 3 equals the true match of query 2, and vice versa
    P[5] = P[4]
    T[5] = T[4]
    targets = [[0], [1, 2], [3], [3], [4, 5], [6], [], [1, 7]]
    ranks, beats = pairwise_retrieval(P, T, targets, distance, exclusion, orientation,
                                      return_matrix=True)
    np.testing.assert_allclose(ranks, naive_retrieval(P, T, targets, distance, exclusion,
                                                      orientation), atol=1e-9)
    if orientation == "prediction":
        assert beats[2, 3] == beats[3, 2] == 0.5
    assert beats[4, 5] == beats[5, 4]


@pytest.mark.parametrize("distance", ["cosine", "pearson"])
@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("base", [1 / 7, 0.1 + 1 / 3, 2.3, 1.7])
def test_profile_undefined_only_on_some_comparisons(distance, orientation, base):
    """Profiles that are zero / constant except on another perturbation's genes.

    On the comparisons that exclude those genes their similarity is undefined:
    it must come out as exactly 0, not as rounding noise of the subtraction
    (which the amplification factor kappa would turn into a spurious tie).
    """
    rng = np.random.default_rng(12)
    n, g = 6, 40
    T = rng.normal(size=(n, g))
    P = T + rng.normal(scale=0.3, size=(n, g))
    targets = [[0, 8], [1, 2, 3], [4], [5], [6, 7], []]
    base = 0.0 if distance == "cosine" else base
    P[5] = base
    P[5, [6, 7]] = [1 / 7, 5.3]  # row 4's genes: undefined query on comparison (5, 4)
    T[1] = base
    T[1, [0, 8]] = [0.7, -1.3]  # row 0's genes: undefined candidate in comparison (0, 1)
    ranks, beats = pairwise_retrieval(P, T, targets, distance, "targeted", orientation,
                                      return_matrix=True)
    np.testing.assert_allclose(ranks, naive_retrieval(P, T, targets, distance, "targeted",
                                                      orientation), atol=1e-9)
    if orientation == "prediction":
        assert beats[5, 4] == 0.5  # both distances of the comparison are 1.0
        assert beats[0, 1] == 0.0  # d = 1.0 loses to the well-predicted true match


def test_known_ranks_with_ties():
    """Hand-computed: query 0 ties with candidate 1, loses to 2 under 'none'."""
    T = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    P = np.array([[1.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    # d(P0,T0)^2 = 2, d(P0,T1)^2 = 2 (tie), d(P0,T2)^2 = 1 (beats)
    ranks = pairwise_retrieval(P, T, [[], [], []], "euclidean", "none")
    np.testing.assert_array_equal(ranks, [0.75, 0.0, 0.0])
    # Row 2 targets gene 0: every comparison with row 2 is on gene 1 alone.
    # Query 0: j=1 tie (both genes), j=2: d(P0,T0) = d(P0,T2) = 1 on gene 1, tie.
    # Query 1: j=0 loses, j=2: 0 = 0, tie. Query 2: all values 0 on gene 1, ties.
    ranks = pairwise_retrieval(P, T, [[], [], [0]], "euclidean", "targeted")
    np.testing.assert_array_equal(ranks, [0.5, 0.25, 0.5])


@pytest.mark.parametrize("pair_elements", [None, 1, 2])
def test_tie_scale_is_each_candidates_own(pair_elements):
    """Candidate 2's huge target effect (its own excluded gene) sets the tie scale of
    every comparison with it: a gap of 0.25 is then a tie, which it is not with another
    row's scale. Chunks of 1 and 2 candidates must pair each candidate with its own
    scale."""
    T = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.5, 1e5]])
    P = np.array([[1.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.5, 0.0]])
    targets = [[], [], [2]]
    # Query 0 on genes {0, 1}: d^2(P0, T0) = 1, d^2(P0, T2) = 1.25, a tie: the
    # scale, centred on the column means (gene 2: 1e5 / 6), is about 7.5e9, the
    # tolerance 0.75 (with row 0's scale in place of row 2's: 0.08, no tie).
    # d^2(P0, T1) = 41 loses.
    with _candidate_chunks(pair_elements):
        ranks = pairwise_retrieval(P, T, targets, "euclidean", block_size=1)
    expected = naive_retrieval(P, T, targets, "euclidean", "targeted", "prediction")
    assert expected[0] == 0.25
    np.testing.assert_array_equal(ranks, expected)


# --------------------------------------------------------------------------- properties


def test_euclidean_and_sqeuclidean_agree_and_orientation_swaps_roles():
    T, targets = _knockdown_data(seed=4)
    P = T + np.random.default_rng(5).normal(scale=0.5, size=T.shape)
    for exclusion in EXCLUSIONS:
        e = pairwise_retrieval(P, T, targets, "euclidean", exclusion)
        np.testing.assert_array_equal(e, pairwise_retrieval(P, T, targets, "sqeuclidean",
                                                            exclusion))
        np.testing.assert_array_equal(
            pairwise_retrieval(P, T, targets, "euclidean", exclusion, "observed"),
            pairwise_retrieval(T, P, targets, "euclidean", exclusion, "prediction"))


def test_sparse_targets_float32_and_no_mutation():
    T, targets = _knockdown_data(seed=6)
    P = (T + 0.3).astype(np.float32)
    P_before, T_before = P.copy(), T.copy()
    rows = np.repeat(np.arange(len(targets)), [len(t) for t in targets])
    mask = sp.csr_array((np.ones(rows.size, bool), (rows, np.concatenate(targets))),
                        shape=T.shape)
    for distance in DISTANCES:
        from_list = pairwise_retrieval(P, T, targets, distance)
        np.testing.assert_array_equal(from_list, pairwise_retrieval(P, T, mask, distance))
        np.testing.assert_array_equal(
            from_list, pairwise_retrieval(P, T, sp.csr_matrix(mask), distance))
        np.testing.assert_array_equal(
            from_list, pairwise_retrieval(P.astype(np.float64), T, mask.toarray(), distance))
        # Duplicated indices and sets are accepted.
        messy = [list(t) + list(t) for t in targets[:-1]] + [set(targets[-1])]
        np.testing.assert_array_equal(from_list, pairwise_retrieval(P, T, messy, distance))
    np.testing.assert_array_equal(P, P_before)
    np.testing.assert_array_equal(T, T_before)


def test_return_matrix_and_block_size_invariance():
    T, targets = _knockdown_data(n=15, seed=7)
    P = T + np.random.default_rng(8).normal(scale=1.0, size=T.shape)
    ranks, beats = pairwise_retrieval(P, T, targets, "pearson", return_matrix=True)
    assert beats.shape == (15, 15)
    assert beats.dtype == np.float32
    assert set(np.unique(beats)) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(np.diag(beats), 0.0)
    np.testing.assert_allclose(beats.sum(axis=1) / 14, ranks, atol=1e-12)
    for block in (1, 4, 15, 100):
        np.testing.assert_array_equal(
            pairwise_retrieval(P, T, targets, "pearson", block_size=block), ranks)
    # Candidate chunks of 1, 2 and 3 rows against blocks of 4 (chunk edges
    # cut through the blocks' own diagonals) give the same matrix.
    for pair_elements in (4, 8, 12):
        with _candidate_chunks(pair_elements):
            chunked = pairwise_retrieval(P, T, targets, "pearson", block_size=4,
                                         return_matrix=True)
        np.testing.assert_array_equal(chunked[0], ranks)
        np.testing.assert_array_equal(chunked[1], beats)


def test_all_genes_excluded_gives_ties():
    P = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 5.0]])
    T = P[::-1].copy()
    for distance in DISTANCES:
        ranks = pairwise_retrieval(P, T, [[0], [1], []], distance, "all")
        np.testing.assert_array_equal(ranks, [0.5, 0.5, 0.5])


# --------------------------------------------------------------------------- errors


GOOD = np.arange(12, dtype=float).reshape(3, 4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"predicted": GOOD[:, :3]}, DataContractError, r"shape \(3, 3\).*shape \(3, 4\)"),
    ({"predicted": GOOD[:1], "observed": GOOD[:1], "targets": [[]]}, DataContractError,
     "at least 2 perturbations"),
    ({"predicted": np.where(np.arange(12).reshape(3, 4) == 5, np.nan, GOOD)},
     DataContractError, r"predicted has NaN.*row\(s\): 1"),
    ({"observed": np.where(np.arange(12).reshape(3, 4) >= 8, np.inf, GOOD)},
     DataContractError, r"observed .* 1 row\(s\): 2"),
    ({"predicted": np.zeros(4)}, DataContractError, "2-dimensional"),
    ({"targets": [[0], [4], []]}, DataContractError, r"targets\[1\].*index 4.*0\.\.3"),
    ({"targets": [[0], [-1], []]}, DataContractError, r"targets\[1\].*-1"),
    ({"targets": [[0], [1.5], []]}, DataContractError, r"targets\[1\].*integer"),
    ({"targets": [[0], 2, []]}, DataContractError, r"targets\[1\] = 2.*\[2\]"),
    ({"targets": [[0], "AB", []]}, DataContractError, r"targets\[1\]"),
    ({"targets": [[0], [1]]}, DataContractError, "2 entries but there are 3"),
    ({"targets": sp.csr_array((3, 5), dtype=bool)}, DataContractError, r"\(3, 4\)"),
    ({"targets": 3}, DataContractError, "sequence of n collections"),
    ({"distance": "l2"}, ParameterError, "distance must be one of"),
    ({"exclude": "target"}, ParameterError, "exclude='target' is unknown"),
    ({"orientation": "truth"}, ParameterError, "orientation must be one of"),
    ({"block_size": 0}, ParameterError, "block_size"),
])
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = {"predicted": GOOD, "observed": GOOD + 1, "targets": [[0], [1], []]} | kwargs
    with pytest.raises(error, match=match) as info:
        pairwise_retrieval(**args)
    assert isinstance(info.value, CausalCellError)


def test_finite_values_whose_column_sum_overflows_are_accepted():
    # The finiteness check reads column sums first; an overflow of finite values
    # must send it to the row-by-row check, which finds nothing wrong.
    from causalcell.evaluate._retrieval import _as_profiles

    huge = np.full((3, 2), 1e308)
    array, sums = _as_profiles("predicted", huge)
    assert array is huge
    assert np.isinf(sums).all()
    with pytest.raises(DataContractError, match=r"row\(s\): 1"):
        _as_profiles("predicted", np.where([[False, False], [True, False], [False, False]],
                                           np.nan, huge))
