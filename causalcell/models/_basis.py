"""B-spline bases of regulator levels, every regulator at once.

:class:`SplineBasis` expands each regulator's level x in the B-spline basis
that scikit-learn's :class:`~sklearn.preprocessing.SplineTransformer` defines
with ``extrapolation="linear"`` and ``include_bias=False``:

- ``n_knots`` base knots per regulator, uniform between its smallest and
  largest training value (``knots="uniform"``) or at its quantiles
  (``knots="quantile"``), extended by ``degree`` knots on each side with the
  spacing of the first / last interval;
- ``n_knots + degree - 1`` basis functions of degree ``degree``; the last one
  of each regulator is dropped (the functions sum to one, and the
  regression has its own intercept), leaving ``n_knots + degree - 2``;
- outside the training range every function continues as the straight line
  of its value and slope at the boundary (linear extrapolation), so a
  response curve extrapolates as a line, never as a polynomial.

The functions are evaluated by de Boor's recursion (de Boor 1978, *A
Practical Guide to Splines*; Piegl & Tiller 1997, algorithm A2.2) vectorized
over every (sample, regulator) entry: no loop over regulators or samples,
only over the degree. With uniform knots (the default) every knot difference
in the recursion is a multiple of the knot spacing, which cancels: each of
the degree + 1 functions that are non-zero on a span is one fixed polynomial
of the position within the span (a piece of the cardinal B-spline, computed
once by running the recursion on polynomials), evaluated by Horner's rule
without reading the knots. The test suite checks equality with
``SplineTransformer`` itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.polynomial import polynomial as P

from causalcell.errors import ParameterError

__all__ = ["KNOT_PLACEMENTS", "SplineBasis"]

KNOT_PLACEMENTS = ("uniform", "quantile")
# A regulator whose training values span less than this (relative to their
# magnitude, plus an absolute floor) is constant: it gets a unit-wide range.
_CONSTANT_SPAN = 1e-12


@dataclass(frozen=True)
class SplineBasis:
    """The B-spline basis of every regulator (see the module docstring).

    Attributes
    ----------
    knots : numpy.ndarray
        (u, n_knots) base knots of each regulator (sorted; the first and last
        are the boundaries of its training range).
    degree : int
    """

    knots: np.ndarray
    degree: int

    # ------------------------------------------------------------------ build
    @classmethod
    def from_values(
        cls,
        values: np.ndarray,
        n_knots: int,
        degree: int,
        placement: Literal["uniform", "quantile"] = "uniform",
    ) -> SplineBasis:
        """Knots from training values (samples x regulators), as ``SplineTransformer.fit``."""
        values = np.asarray(values, dtype=np.float64)
        if placement == "quantile":
            knots = np.quantile(values, np.linspace(0.0, 1.0, n_knots), axis=0).T
        else:
            knots = np.linspace(values.min(axis=0), values.max(axis=0), n_knots, axis=1)
        return cls.from_knots(knots, degree)

    @classmethod
    def from_ranges(
        cls, low: np.ndarray, high: np.ndarray, n_knots: int, degree: int
    ) -> SplineBasis:
        """Uniform knots between per-regulator bounds (e.g. running minima and maxima)."""
        return cls.from_knots(np.linspace(low, high, n_knots, axis=1), degree)

    @classmethod
    def from_knots(cls, knots: np.ndarray, degree: int) -> SplineBasis:
        """The basis of given base knots (u, n_knots); constant regulators are widened."""
        knots = np.array(knots, dtype=np.float64, ndmin=2)
        span = knots[:, -1] - knots[:, 0]
        flat = span <= _CONSTANT_SPAN * (1.0 + np.abs(knots[:, 0]))
        if flat.any():
            # One value in training: a unit-wide range around it (its basis is
            # then constant over the data, absorbed by the intercept).
            knots[flat] = knots[flat, :1] + np.linspace(-0.5, 0.5, knots.shape[1])[None, :]
        if np.any(np.diff(knots, axis=1) <= 0):
            row = int(np.flatnonzero(np.any(np.diff(knots, axis=1) <= 0, axis=1))[0])
            raise ParameterError(
                f"The spline knots of regulator #{row} are not strictly increasing "
                f"({knots[row].tolist()}): its training values take fewer distinct values "
                f"than n_knots. Use knots='uniform' or fewer knots (n_knots)."
            )
        return cls(knots=knots, degree=int(degree))

    # ------------------------------------------------------------------ shape
    @property
    def n_regulators(self) -> int:
        return self.knots.shape[0]

    @property
    def n_knots(self) -> int:
        return self.knots.shape[1]

    @property
    def n_basis(self) -> int:
        """Basis functions per regulator (the last one is dropped)."""
        return self.n_knots + self.degree - 2

    @property
    def n_features(self) -> int:
        return self.n_regulators * self.n_basis

    @property
    def low(self) -> np.ndarray:
        """Lower end of each regulator's training range."""
        return self.knots[:, 0]

    @property
    def high(self) -> np.ndarray:
        """Upper end of each regulator's training range."""
        return self.knots[:, -1]

    def full_knots(self) -> np.ndarray:
        """(u, n_knots + 2 degree) knot vectors, extended as scikit-learn does."""
        d = self.degree
        k = self.knots
        first = k[:, 1] - k[:, 0]
        last = k[:, -1] - k[:, -2]
        before = k[:, :1] - first[:, None] * np.arange(d, 0, -1)[None, :]
        after = k[:, -1:] + last[:, None] * np.arange(1, d + 1)[None, :]
        return np.hstack([before, k, after])

    # ------------------------------------------------------------------ evaluate
    def transform(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n, u) regulator levels -> (n, u * n_basis) features (regulator-major).

        ``out`` (n, u * n_basis), e.g. a column slice of a wider block, receives
        the features (and is returned) without an intermediate copy.
        """
        values = np.asarray(values, dtype=np.float64)
        n, u = values.shape
        if u != self.n_regulators:
            raise ValueError(f"expected {self.n_regulators} regulator columns, got {u}")
        which = np.broadcast_to(np.arange(u), (n, u)).ravel()
        features = self.evaluate(values.ravel(), which).reshape(n, u, self.n_basis)
        if out is None:
            return features.reshape(n, u * self.n_basis)
        target = out.reshape(n, u, self.n_basis)
        if not np.may_share_memory(target, out):  # reshape had to copy: not a view
            raise ValueError("transform(out=): out must have contiguous rows")
        np.copyto(target, features)
        return out

    def evaluate(self, x: np.ndarray, which: np.ndarray, derivative: bool = False) -> np.ndarray:
        """Basis values (or first derivatives) of entries x (N,) of regulators ``which`` (N,).

        Returns (N, n_basis). Outside a regulator's range, the linear
        continuation (the derivative is then the boundary slope).
        """
        x = np.asarray(x, dtype=np.float64)
        which = np.asarray(which, dtype=np.int64)
        t = self.full_knots()
        low, high = self.low[which], self.high[which]
        inside = np.clip(x, low, high)
        if derivative:
            return self._derivatives(inside, which, t)
        out = self._values(inside, which, t)
        outside = (x < low) | (x > high)
        if outside.any():
            # Linear continuation: value at the boundary + slope * distance.
            rows = np.flatnonzero(outside)
            slope = self._derivatives(inside[rows], which[rows], t)
            out[rows] += slope * (x[rows] - inside[rows])[:, None]
        return out

    def _interval(self, x: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Index i of the knot span t[i] <= x < t[i + 1] (x in range; the right end
        belongs to the last span), as an index into the full knot vector."""
        interior = self.knots[which, 1:-1]  # (N, n_knots - 2)
        return self.degree + np.sum(interior <= x[:, None], axis=1)

    @property
    def uniform(self) -> bool:
        """Every regulator's base knots are evenly spaced (``knots="uniform"``)."""
        step = np.diff(self.knots, axis=1)
        return bool(np.all(np.abs(step - step[:, :1]) <= 1e-12 * np.abs(step[:, :1])))

    def _local(self, x: np.ndarray, which: np.ndarray, t: np.ndarray,
               degree: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``degree + 1`` non-zero functions of degree ``degree`` at x and the span i.

        de Boor's recursion: values (N, degree + 1) of functions i - degree .. i.
        """
        if self.uniform:
            return self._local_uniform(x, which, degree)
        i = self._interval(x, which)
        n = len(x)
        values = np.zeros((n, degree + 1))
        values[:, 0] = 1.0
        left = np.zeros((n, degree + 1))
        right = np.zeros((n, degree + 1))
        for j in range(1, degree + 1):
            left[:, j] = x - t[which, i + 1 - j]
            right[:, j] = t[which, i + j] - x
            saved = np.zeros(n)
            for r in range(j):
                temp = values[:, r] / (right[:, r + 1] + left[:, j - r])
                values[:, r] = saved + right[:, r + 1] * temp
                saved = left[:, j - r] * temp
            values[:, j] = saved
        return values, i

    def _local_uniform(self, x: np.ndarray, which: np.ndarray,
                       degree: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_local` for evenly spaced knots.

        With u the position of x in its span (0 to 1), de Boor's recursion has
        ``right[r+1] = (r + 1 - u) h``, ``left[j-r] = (u + j - r - 1) h`` and
        their sum ``j h``: h cancels, and each of the ``degree + 1`` non-zero
        functions is one fixed polynomial in u (a piece of the cardinal
        B-spline, :func:`_cardinal_pieces`), evaluated by Horner's rule.
        """
        low = self.knots[:, 0]
        h = self.knots[:, 1] - low
        position = (x - low[which]) / h[which]
        span = np.clip(np.floor(position), 0, self.n_knots - 2)  # right end: last span
        u = position - span
        pieces = _cardinal_pieces(degree)
        values = np.empty((degree + 1, len(x)))  # one contiguous row per function
        for r in range(degree + 1):
            v = values[r]
            v.fill(pieces[r, degree])
            for k in range(degree - 1, -1, -1):
                v *= u
                v += pieces[r, k]
        return values.T, self.degree + span.astype(np.int64)

    def _scatter(self, local: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Place the values of functions i - degree .. i into (N, n_basis): the kept
        functions (the last one of each regulator is dropped, as in the module
        docstring).

        Written into one padding column more, where the dropped function lands,
        so that every value is placed without a test; the result is a view
        without that column.
        """
        n = len(i)
        width = self.n_basis + 1
        out = np.zeros((n, width))
        first = np.arange(0, n * width, width) + (i - self.degree)
        flat = out.reshape(-1)
        for r in range(self.degree + 1):
            flat[first + r] = local[:, r]
        return out[:, :-1]

    def _values(self, x: np.ndarray, which: np.ndarray, t: np.ndarray) -> np.ndarray:
        local, i = self._local(x, which, t, self.degree)
        return self._scatter(local, i)

    def _derivatives(self, x: np.ndarray, which: np.ndarray, t: np.ndarray) -> np.ndarray:
        """B'_k(x) = d (B_{k,d-1}(x) / (t[k+d] - t[k]) - B_{k+1,d-1}(x) / (t[k+d+1] - t[k+1]))."""
        d = self.degree
        lower, i = self._local(x, which, t, d - 1)  # functions i-d+1 .. i of degree d-1
        n = len(x)
        # Padded: position 0 is function i-d (zero), positions 1..d functions i-d+1..i,
        # position d+1 is function i+1 (zero).
        padded = np.zeros((n, d + 2))
        padded[:, 1 : d + 1] = lower
        k = (i - d)[:, None] + np.arange(d + 1)[None, :]  # functions i-d .. i of degree d
        rows = np.arange(n)[:, None]
        w = which[:, None]
        span_a = t[w, k + d] - t[w, k]
        span_b = t[w, k + d + 1] - t[w, k + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(span_a > 0, padded[rows, np.arange(d + 1)[None, :]] / span_a, 0.0)
            b = np.where(span_b > 0, padded[rows, np.arange(1, d + 2)[None, :]] / span_b, 0.0)
        return self._scatter(d * (a - b), i)


@functools.cache
def _cardinal_pieces(degree: int) -> np.ndarray:
    """(degree + 1, degree + 1): row r holds the coefficients (powers of u, ascending)
    of the r-th non-zero B-spline of degree ``degree`` on a span of evenly spaced
    knots, u the position in the span (e.g. cubic: (1 - u)^3 / 6, ..., u^3 / 6).

    Built by running de Boor's recursion of :meth:`SplineBasis._local` (uniform
    form: h cancels) on polynomials instead of numbers.
    """
    values = [np.array([1.0])]
    for j in range(1, degree + 1):
        saved = np.zeros(1)
        for r in range(j):
            temp = values[r] / j
            values[r] = P.polyadd(saved, P.polymul([r + 1.0, -1.0], temp))
            saved = P.polymul([j - r - 1.0, 1.0], temp)
        values.append(saved)
    out = np.zeros((degree + 1, degree + 1))
    for r, coefficients in enumerate(values):
        out[r, : len(coefficients)] = coefficients
    return out
