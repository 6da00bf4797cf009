"""Uncertainty over perturbations: paired bootstrap intervals and a paired sign-flip test.

Every model of a comparison is scored on the same perturbations, so its
uncertainty is that of a mean over perturbations, and two models are
compared perturbation by perturbation (paired).

- **Bootstrap.** One matrix of resampling counts ``C`` (``n_resamples`` x
  ``n``: how often each perturbation is drawn in each resample, n draws with
  replacement) is drawn once and shared by every model and metric, so every
  difference between two models is paired. The resampled means of all
  columns of a values matrix ``V`` (perturbations x columns) are one product
  ``C @ V`` divided by ``C @ defined``: a column defined on a subset of the
  perturbations (NaN elsewhere) uses the resampled perturbations of that
  subset. Intervals are percentile intervals (Efron & Tibshirani 1993,
  ch. 13).
- **Paired test.** The difference of two models' means is tested with a
  sign-flip randomization test (Fisher 1935; the paired case of
  :func:`scipy.stats.permutation_test`, whose p-value convention it follows):
  under the null hypothesis that the two models are exchangeable on every
  perturbation, each per-perturbation difference keeps its size and has a
  random sign. With at most ``log2(n_resamples)`` perturbations every sign
  pattern is enumerated (an exact test), otherwise ``n_resamples`` random
  patterns are drawn. All columns are tested with one product ``S @ D``.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["bootstrap_means", "interval", "resample_counts", "sign_flip_pvalues"]


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` perturbations is drawn in each bootstrap resample.

    Returns an int (n_resamples, n) array whose rows sum to ``n``.
    """
    if n == 0:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples)


def bootstrap_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means of every column of ``values`` (NaN: not defined there).

    Parameters
    ----------
    values
        (n, k) per-perturbation values; NaN entries are left out of their
        column's mean.
    counts
        (n_resamples, n) output of :func:`resample_counts`.

    Returns
    -------
    numpy.ndarray
        (n_resamples, k); NaN where a resample holds none of a column's
        defined perturbations.
    """
    defined = ~np.isnan(values)
    weights = counts.astype(np.float64)
    total = weights @ np.where(defined, values, 0.0)
    size = weights @ defined.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / size


def interval(samples: np.ndarray, confidence_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring NaN resamples.

    Columns with no finite resample get NaN bounds.
    """
    tail = 100.0 * (1.0 - confidence_level) / 2.0
    finite = np.isfinite(samples).any(axis=0)
    low = np.full(samples.shape[1:], np.nan)
    high = np.full(samples.shape[1:], np.nan)
    if finite.any():
        picked = samples[:, finite]
        low[finite] = np.nanpercentile(picked, tail, axis=0)
        high[finite] = np.nanpercentile(picked, 100.0 - tail, axis=0)
    return low, high


def sign_flip_pvalues(
    differences: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Two-sided p-values of the mean of each column of paired differences.

    Parameters
    ----------
    differences
        (n, k) per-perturbation differences of two models; NaN entries are
        left out of their column (a zero difference contributes nothing to
        any sign pattern, so they count as 0 in the sums and the mean is
        taken over the defined entries).
    n_resamples
        Random sign patterns when ``2**n > n_resamples``; otherwise all
        ``2**n`` patterns are enumerated and the p-value is exact.
    rng
        Generator of the random patterns.

    Returns
    -------
    numpy.ndarray
        (k,) p-values: ``2 * min(P(null >= observed), P(null <= observed))``
        clipped to 1, with the observed pattern counted once in numerator
        and denominator for random patterns (as :func:`scipy.stats.
        permutation_test`). NaN for a column without defined entries.
    """
    n = differences.shape[0]
    defined = ~np.isnan(differences)
    d = np.where(defined, differences, 0.0)
    observed = d.sum(axis=0)
    exact = n <= 30 and 2**n <= n_resamples
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n))).reshape(-1, n)
    else:
        signs = rng.choice(np.array([1.0, -1.0]), size=(n_resamples, n))
    null = signs @ d
    # Relative slack so that patterns equal to the observed sum up to rounding
    # count as "as extreme" (scipy's rule).
    slack = 100 * np.finfo(np.float64).eps * np.abs(observed)
    greater = (null >= observed - slack).sum(axis=0)
    less = (null <= observed + slack).sum(axis=0)
    if exact:
        p_greater, p_less = greater / len(signs), less / len(signs)
    else:
        p_greater, p_less = (greater + 1) / (n_resamples + 1), (less + 1) / (n_resamples + 1)
    p = np.minimum(1.0, 2.0 * np.minimum(p_greater, p_less))
    p[~defined.any(axis=0)] = np.nan
    return p
