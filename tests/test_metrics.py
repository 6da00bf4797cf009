"""causalcell.evaluate (metrics): per-perturbation metrics against a naive per-row reference."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate import _metrics as metrics_module
from causalcell.evaluate._metrics import (
    CONSTANT_RTOL,
    higher_is_better,
    metric_names,
    perturbation_metrics,
    targets_matrix,
)


def _corr(a, b, kind="pearson", tol=0.0):
    if len(a) < 2 or np.std(a) <= tol or np.std(b) <= tol:
        return np.nan
    if kind == "spearman":
        return stats.spearmanr(a, b).statistic
    return stats.pearsonr(a, b).statistic


def _top(score, keep, k):
    """Indices of the k kept genes with the largest score (stable: lower index first)."""
    idx = np.flatnonzero(keep)
    order = sorted(idx, key=lambda j: (-score[j], j))
    return set(order[:k])


def _valid_top_sets(score, keep, k):
    """Every k-set of kept genes that some tie-breaking order makes the top k."""
    idx = np.flatnonzero(keep)
    return [set(c) for c in itertools.combinations(idx, k)
            if min(score[list(c)]) >= max(score[sorted(set(idx) - set(c))], default=-np.inf)]


def _settled(x, tol):
    """One side under the tolerance rules: tiny entries are 0, a flat side is its mean."""
    x = np.where(np.abs(x) <= tol, 0.0, x)
    if len(x) and np.std(x) <= tol:
        mean = x.mean()
        x = np.full_like(x, 0.0 if abs(mean) <= tol else mean)
    return x


def naive_metrics(P, T, targets, exclude, top_k, de_score=None, significant=None):
    """One perturbation at a time, with plain numpy / scipy calls; top-k overlaps
    averaged over every tie-breaking (all valid k-sets of both sides)."""
    n, g = P.shape
    tol = CONSTANT_RTOL * np.abs(T).max()
    rows = []
    for i in range(n):
        keep = np.ones(g, dtype=bool)
        if exclude == "targeted":
            keep[list(targets[i])] = False
        p, o = _settled(P[i, keep], tol), _settled(T[i, keep], tol)
        zero = (len(p) == 0 or np.sqrt(np.mean(p * p)) <= tol
                or np.sqrt(np.mean(o * o)) <= tol)
        flat = len(p) > 0 and (np.std(p) <= tol or np.std(o) <= tol)
        row = {
            "n_genes_scored": keep.sum(),
            "mae": np.mean(np.abs(P[i, keep] - T[i, keep])),
            "mse": np.mean((P[i, keep] - T[i, keep]) ** 2),
            "pearson_delta": _corr(p, o, tol=tol),
            "spearman_delta": np.nan if flat else _corr(p, o, "spearman"),
            "cosine_delta": np.nan if zero else p @ o / np.sqrt((p @ p) * (o @ o)),
            "direction_agreement": np.nan if zero else np.mean(
                [1.0 if a == b else 0.0 if a * b < 0 else 0.5
                 for a, b in zip(np.sign(p), np.sign(o), strict=True)]),
        }
        full_p = np.zeros(g)
        full_p[keep], full_o = p, np.zeros(g)
        full_o[keep] = o
        score = np.abs(T[i]) if de_score is None else de_score[i]
        ks = [(f"top{k}", k) for k in top_k if k < g]
        if significant is not None:
            ks.append(("sig", int((significant[i] & keep).sum())))
        for name, k in ks:
            if k == 0 or k > keep.sum():
                row[f"de_overlap_{name}"] = row[f"de_pearson_{name}"] = np.nan
                continue
            if name == "sig":
                observed_sets = [set(np.flatnonzero(significant[i] & keep))]
                top_o = observed_sets[0]
            else:
                observed_sets = _valid_top_sets(score, keep, k)
                top_o = _top(score, keep, k)
            predicted_sets = _valid_top_sets(np.abs(full_p), keep, k)
            row[f"de_overlap_{name}"] = np.mean(
                [len(a & b) / k for a in observed_sets for b in predicted_sets])
            cols = sorted(top_o)
            row[f"de_pearson_{name}"] = _corr(full_p[cols], full_o[cols], tol=tol)
        rows.append(row)
    return rows


def _compare(result, rows):
    assert len(result) == len(rows)
    for i, row in enumerate(rows):
        for name, value in row.items():
            np.testing.assert_allclose(result[name].iloc[i], value, rtol=1e-9, atol=1e-12,
                                       err_msg=f"row {i}, {name}")


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 6),
    g=st.integers(2, 12),
    exclude=st.sampled_from(["targeted", "none"]),
    ties=st.booleans(),
    with_de=st.booleans(),
)
def test_equal_to_naive_reference(seed, n, g, exclude, ties, with_de):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: ties in ranks, zeros, constant rows
        P = rng.choice([-1.0, 0.0, 0.5, 2.0], size=(n, g))
        T = rng.choice([-1.0, 0.0, 1.0], size=(n, g))
    else:
        P = rng.normal(size=(n, g))
        T = rng.normal(size=(n, g))
    # Single targets, combinations, empty sets; sometimes every gene targeted.
    targets = [set(rng.choice(g, size=rng.integers(0, min(3, g) + 1), replace=False).tolist())
               for _ in range(n)]
    if n > 1 and seed % 5 == 0:
        targets[0] = set(range(g))
    de_score = rng.normal(size=(n, g)) if with_de else None
    significant = rng.random((n, g)) < 0.4 if with_de else None
    top_k = (1, 3, 5)
    result = perturbation_metrics(P, T, targets, exclude=exclude, top_k=top_k,
                                  de_score=de_score, significant=significant)
    # Rows with no scored gene are NaN everywhere (numpy means of empty arrays).
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = naive_metrics(P, T, targets, exclude, top_k, de_score, significant)
    _compare(result, expected)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), g=st.integers(2, 12),
       exclude=st.sampled_from(["targeted", "none"]), ties=st.booleans(),
       with_de=st.booleans())
def test_observed_scored_as_its_own_prediction_shares_its_work(seed, n, g, exclude, ties,
                                                                with_de):
    """evaluate scores the observed changes as a prediction (what the data leave
    undefined): passed as the same array, one side's work serves both, with the
    numbers of an equal copy, NaN for NaN."""
    rng = np.random.default_rng(seed)
    T = (rng.choice([-1.0, 0.0, 1e-17, 1.0], size=(n, g)) if ties
         else rng.normal(size=(n, g)))
    targets = [rng.choice(g, size=rng.integers(0, 3), replace=False).tolist() for _ in range(n)]
    options = {"exclude": exclude, "top_k": (1, 3), "scale": 1.0,
               "de_score": rng.normal(size=(n, g)) if with_de else None,
               "significant": rng.random((n, g)) < 0.4 if with_de else None}
    same = perturbation_metrics(T, T, targets, **options)
    copy = perturbation_metrics(T.copy(), T, targets, **options)
    np.testing.assert_array_equal(same.to_numpy(), copy.to_numpy())


def test_blocks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(0)
    P, T = rng.normal(size=(30, 50)), rng.normal(size=(30, 50))
    targets = [[i % 50, (3 * i) % 50] for i in range(30)]
    whole = perturbation_metrics(P, T, targets, top_k=[5, 20])
    monkeypatch.setattr(metrics_module, "_BLOCK_ENTRIES", 120)  # 2 rows per block
    blocked = perturbation_metrics(P, T, targets, top_k=[5, 20])
    np.testing.assert_allclose(blocked.to_numpy(), whole.to_numpy(), rtol=1e-12)


def test_targeted_gene_is_removed_before_top_k():
    """A huge target change dominates the unconditioned top-k; excluded, it is never chosen."""
    rng = np.random.default_rng(1)
    n, g = 8, 60
    T = rng.normal(scale=0.3, size=(n, g))
    targets = [[i] for i in range(n)]
    T[np.arange(n), np.arange(n)] = -5.0  # the knockdown itself
    # A predictor that knows only the target: the target change, nothing else.
    target_only = np.zeros((n, g))
    target_only[np.arange(n), np.arange(n)] = -5.0
    off = perturbation_metrics(target_only, T, targets, exclude="none", top_k=[1])
    on = perturbation_metrics(target_only, T, targets, exclude="targeted", top_k=[1])
    assert (off["de_overlap_top1"] == 1.0).all()  # "finds" the top DE gene every time
    assert off["pearson_delta"].mean() > 0.8
    assert on["de_overlap_top1"].mean() < 0.5  # its top-1 is now an arbitrary gene
    assert on["pearson_delta"].isna().all()  # a constant prediction carries no signal
    assert (on["n_genes_scored"] == g - 1).all()


def test_significant_metrics_and_undefined_values():
    P = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    T = np.array([[1.0, 2.5, 2.0, 5.0], [0.5, 1.0, 1.5, 2.0]])
    significant = np.array([[True, False, True, True], [False, False, False, False]])
    out = perturbation_metrics(P, T, [[0], []], significant=significant, top_k=[2, 4, 10])
    assert "de_overlap_top4" not in out.columns  # k >= n_genes: "top" would be everything
    assert list(out.columns) == ["n_genes_scored", *metric_names([2], significant=True)]
    # Row 0: gene 0 is targeted; the significant genes left are {2, 3}; the two
    # largest predicted changes among genes 1-3 are genes 3 and 2.
    assert out.loc[0, "de_overlap_sig"] == 1.0
    # The observed top-2 by |change| is {1, 3}: half of it is predicted.
    assert out.loc[0, "de_overlap_top2"] == 0.5
    assert np.isnan(out.loc[1, "de_overlap_sig"])  # no significant gene
    assert np.isnan(out.loc[1, "pearson_delta"])  # constant prediction


def test_metric_registry():
    assert not higher_is_better("mae")
    assert not higher_is_better("retrieval_rank")
    assert higher_is_better("de_overlap_top20")
    assert metric_names([20], significant=False)[-2:] == ["de_overlap_top20", "de_pearson_top20"]


def test_targets_matrix_forms():
    dense = np.array([[True, False, False], [False, True, True]])
    from_list = targets_matrix([[0], {1, 2}], (2, 3))
    from_sparse = targets_matrix(sp.csr_matrix(dense), (2, 3))
    np.testing.assert_array_equal(from_list.toarray(), dense)
    np.testing.assert_array_equal(from_sparse.toarray(), dense)
    np.testing.assert_array_equal(targets_matrix(dense, (2, 3)).toarray(), dense)
    assert targets_matrix(None, (2, 3)).nnz == 0
    with pytest.raises(ParameterError, match="outside"):
        targets_matrix([[3], []], (2, 3))
    with pytest.raises(ParameterError, match="one per row"):
        targets_matrix([[0]], (2, 3))
    with pytest.raises(ParameterError, match="shape"):
        targets_matrix(sp.csr_matrix((3, 3), dtype=bool), (2, 3))


def test_bad_input():
    P = np.zeros((3, 4))
    with pytest.raises(ParameterError, match="exclude='all'"):
        perturbation_metrics(P, P, [[], [], []], exclude="all")
    with pytest.raises(ParameterError, match="needs the targets"):
        perturbation_metrics(P, P)
    with pytest.raises(ParameterError, match="shape"):
        perturbation_metrics(P, np.zeros((3, 5)), exclude="none")
    with pytest.raises(ParameterError, match="positive integers"):
        perturbation_metrics(P, P, exclude="none", top_k=[0])
    bad = P.copy()
    bad[[0, 2], 1] = np.nan
    with pytest.raises(DataContractError, match=r"predicted has NaN .* 2 row\(s\) \[0, 2\]"):
        perturbation_metrics(bad, P, exclude="none")


def test_rounding_noise_is_not_a_correlation():
    """A zero change computed as the difference of one mean summed in two orders
    (|change| ~ 1e-15) is undefined for every correlation-type metric, and its
    top-k sets are all ties: exactly the chance overlap."""
    rng = np.random.default_rng(0)
    g = 50
    X = rng.normal(2.0, 0.5, size=(301, g))
    reference = X.mean(axis=0)
    other_order = X[::-1].sum(axis=0) / len(X)
    zero = np.tile(other_order - reference, (4, 1))
    assert np.abs(zero).max() > 0  # rounding noise, not an exact zero
    observed = rng.normal(scale=0.3, size=(4, g))
    out = perturbation_metrics(zero, observed, [[0], [1], [], [2, 3]], top_k=[5])
    for name in ("pearson_delta", "spearman_delta", "cosine_delta", "direction_agreement",
                 "de_pearson_top5"):
        assert out[name].isna().all(), name
    np.testing.assert_allclose(out["de_overlap_top5"], 5 / out["n_genes_scored"], rtol=1e-12)


def test_constant_prediction_scores_chance_and_keeps_its_direction():
    rng = np.random.default_rng(1)
    g = 40
    observed = rng.normal(scale=0.3, size=(3, g))
    constant = 0.5 + rng.normal(scale=1e-16, size=(3, g))
    out = perturbation_metrics(constant, observed, [[0], [], [5]], top_k=[4, 10])
    assert out["pearson_delta"].isna().all()
    assert out["spearman_delta"].isna().all()
    np.testing.assert_allclose(out["de_overlap_top4"], 4 / out["n_genes_scored"])
    np.testing.assert_allclose(out["de_overlap_top10"], 10 / out["n_genes_scored"])
    # A constant non-zero change is a prediction ("every gene goes up"): the
    # cosine and the direction agreement are defined.
    keep = [np.delete(np.arange(g), t) for t in ([0], [], [5])]
    up = [np.mean(observed[i, k] > 0) for i, k in enumerate(keep)]
    np.testing.assert_allclose(out["direction_agreement"], up)
    assert out["cosine_delta"].notna().all()


def test_no_skill_values():
    from causalcell.evaluate._metrics import no_skill

    assert no_skill("pearson_delta") == no_skill("de_pearson_top20") == 0.0
    assert no_skill("direction_agreement") == 0.5
    assert no_skill("mae") is None
    assert no_skill("de_overlap_top20") is None
    assert no_skill("retrieval_rank") is None


def test_scale_must_be_a_finite_non_negative_number():
    P = np.ones((1, 3))
    with pytest.raises(ParameterError, match="scale"):
        perturbation_metrics(P, P, exclude="none", scale=-1.0)


def test_direction_agreement_counts_a_one_sided_zero_as_a_coin_flip():
    observed = np.array([[1.0, -1.0, 2.0, 0.0, -0.5]])
    sparse = np.array([[0.7, 0.0, 0.0, 0.0, 0.4]])  # right, no change x2, both 0, wrong
    out = perturbation_metrics(sparse, observed, exclude="none", top_k=[])
    assert out["direction_agreement"][0] == pytest.approx((1 + 0.5 + 0.5 + 1 + 0) / 5)
