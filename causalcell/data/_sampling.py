"""Cells from per-perturbation predictions, for tools that expect cells.

A model of P(X | T) predicts one mean profile per perturbation; cell-eval,
GEARS and the Virtual Cell Challenge read cells. :func:`sample_cells` turns
each predicted profile into cells with the cell-to-cell variation of the
observed control cells.

Noise model ("shifted control cells")
-------------------------------------
For perturbation p with predicted profile ``mu_p`` and ``n_p`` cells to draw:

1. draw ``n_p`` observed control cells ``c_1 ... c_n`` at random (without
   replacement when there are enough controls, else with replacement);
2. cell k is ``x_kg = max(f, c_kg + s_pg)``: a control cell moved by a
   per-gene shift ``s_pg``, never below the floor ``f`` (0 for
   log-normalized expression, which cannot be negative);
3. the shift is the unique value for which the cells average exactly to the
   prediction: ``mean_k x_kg = max(mu_pg, f)``. Without truncation this is
   ``s_pg = mu_pg - mean_k c_kg``; where the floor truncates, the shift is
   larger so that the truncation does not bias the mean.

Each sampled cell is a real control cell plus the predicted change: its
spread, its gene-gene correlations and (away from the floor) its shape are
those of the controls, and the pseudobulk of the sampled cells is the
prediction, so pseudobulk scores of the cells equal those of the prediction.
The noise comes from control cells only: nothing of the held-out perturbed
cells leaks into a prediction. A predicted value below the floor is raised
to it (counted in ``uns["sample_cells"]["n_raised"]`` and warned about).

The shift is found exactly, not by iteration: with the values of a gene
sorted in decreasing order ``u_(1) >= ... >= u_(n)`` (after subtracting the
floor) and their partial sums ``S_m``, ``mean_k max(0, u_k + s)`` is
``(S_m + m s) / n`` on the interval where exactly the m largest values are
above the floor, so ``s = (n t - S_m) / m`` with m the largest index for
which ``u_(m) + (n t - S_m) / m > 0`` (the same rule as the Euclidean
projection onto a simplex; Duchi et al. 2008).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data._interventions import Interventions
from causalcell.data._tidy import tidy_obs
from causalcell.data.contract import (
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
)
from causalcell.data.lazy import compute_if_small
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError

__all__ = ["sample_cells"]

_BLOCK_ELEMENTS = 1 << 22  # elements of the (cells x genes) work arrays of one batch
_SHOWN = 10


def _shift_to_mean(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-column shift s with ``mean(max(0, values + s), axis=-2) == target``.

    Parameters
    ----------
    values
        Shape ``(..., n, g)``: n values per column (any sign).
    target
        Shape ``(..., g)``, non-negative: the wanted mean of each column.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., g)``. Where ``target`` is 0 the shift brings every value
        to 0 or below (``-max``).

    Examples
    --------
    >>> import numpy as np
    >>> u = np.array([[0.0], [0.0], [3.0]])
    >>> s = _shift_to_mean(u, np.array([0.5]))  # 3 - 1.5 = 1.5 alone carries the mean
    >>> s.tolist(), float(np.maximum(u + s, 0).mean())
    ([-1.5], 0.5)
    """
    values = np.asarray(values, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n = values.shape[-2]
    # Work with the n values of each column contiguous (sorting along a strided axis
    # is several times slower), in decreasing order.
    ordered = np.ascontiguousarray(np.swapaxes(values, -1, -2))
    ordered.sort(axis=-1)
    ordered = ordered[..., ::-1]
    partial = np.cumsum(ordered, axis=-1)
    m = np.arange(1, n + 1, dtype=np.float64)
    shifts = (n * target[..., None] - partial) / m
    # Candidates m with u_(m) + s_m > 0 form a prefix 1..m*: count them.
    active = (ordered + shifts > 0).sum(axis=-1, keepdims=True)
    chosen = np.take_along_axis(shifts, np.maximum(active - 1, 0), axis=-1)[..., 0]
    return np.where(target > 0, chosen, -ordered[..., 0])


def _check_random_state(random_state: object) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, int | np.integer)
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise ParameterError(
        f"random_state must be None, an int or a numpy Generator; got {random_state!r}."
    )


def _names(values, limit: int = _SHOWN) -> str:
    values = [str(v) for v in values]
    more = len(values) - limit
    return ", ".join(values[:limit]) + (f" ... and {more} more" if more > 0 else "")


def _control_rows(observed: AnnData, iv: Interventions, control_label: str | None) -> np.ndarray:
    rows = iv.is_control.copy()
    if control_label is not None:
        rows &= iv.labels == control_label
    rows = np.flatnonzero(rows)
    if not len(rows):
        labels = sorted(set(iv.labels[iv.is_control].tolist()))
        which = f" with label {control_label!r}" if control_label is not None else ""
        raise DataContractError(
            f"The observed data has no control cells{which} (control labels: "
            f"{labels or 'none'}); sample_cells draws its noise from them."
            + (" Pass control_label= one of those labels." if labels else "")
        )
    return rows


def _cell_counts(pred_keys: pd.Index, obs_iv: Interventions, n_cells: object) -> np.ndarray:
    if isinstance(n_cells, str):
        if n_cells != "observed":
            raise ParameterError(f"n_cells must be a positive int or 'observed'; got "
                                 f"{n_cells!r}.")
        perturbed = obs_iv.conditions[~obs_iv.conditions[IS_CONTROL].to_numpy()]
        counts = perturbed["n_samples"].reindex(pred_keys)
        missing = pred_keys[counts.isna().to_numpy()]
        if len(missing):
            raise DataContractError(
                f"{len(missing)} predicted perturbation(s) have no observed cells to take "
                f"their number from: {_names(missing)}. Pass n_cells=<int>."
            )
        return counts.to_numpy(dtype=np.int64)
    if (isinstance(n_cells, bool) or not isinstance(n_cells, int | np.integer)
            or n_cells < 1):
        raise ParameterError(f"n_cells must be a positive int or 'observed'; got {n_cells!r}.")
    return np.full(len(pred_keys), int(n_cells), dtype=np.int64)


def sample_cells(
    predicted: AnnData,
    observed: AnnData,
    *,
    n_cells: int | str = "observed",
    random_state: int | np.random.Generator | None = None,
    control_label: str | None = None,
    include_controls: bool = True,
    floor: float | str | None = "auto",
    layer: str | None = None,
    dtype: np.dtype | type | None = None,
) -> AnnData:
    """Cells whose mean is each predicted profile, with the noise of the observed controls.

    See the module documentation for the noise model ("shifted control
    cells"): each sampled cell is an observed control cell plus the
    predicted change, truncated at the floor, with the shift chosen so that
    the cells of a perturbation average exactly to its prediction.

    Parameters
    ----------
    predicted
        Predicted profiles, one row per perturbation (obs contract), e.g.
        the output of a model's ``predict``. Control rows are skipped.
    observed
        Observed cells (obs contract) with control cells, on at least the
        predicted genes.
    n_cells
        Cells per perturbation: an int, or ``"observed"`` (default): as many
        as were observed for that perturbation.
    random_state
        Seed or numpy Generator of the draws of control cells.
    control_label
        Draw only the control cells with this ``perturbation`` label
        (default: every control cell).
    include_controls
        Append the observed control cells unchanged (default), so that a
        tool taking changes against the control mean of the file (cell-eval)
        uses the same reference as the observed file.
    floor
        Lowest value a cell can take: ``"auto"`` is 0 when every observed
        control value is non-negative (log-normalized expression) and no
        floor otherwise; a number; or None.
    layer
        Layer of ``observed`` holding the expression (default ``X``); the
        result stores it in ``X``.
    dtype
        dtype of the result (default: that of the observed expression).

    Returns
    -------
    AnnData
        Cells x predicted genes, obs with the contract columns (sampled
        cells: the predicted row's, named ``"<row>-<k>"``; controls: the
        observed ones) and ``source`` (``"sampled"`` or ``"observed"``).
        ``X`` is sparse CSR when the observed expression is sparse, else
        dense. ``uns["sample_cells"]`` records the noise model, the floor,
        the seed and ``n_raised``, the number of predicted values below the
        floor that were raised to it.

    Raises
    ------
    DataContractError
        Data breaking the contract, observed data without controls or that
        is pseudobulk (obs ``n_cells``), predicted genes that were not
        observed, a perturbation predicted twice, or no observed cells to
        count with ``n_cells="observed"``.
    ParameterError
        An invalid ``n_cells``, ``floor`` or ``random_state``.

    Examples
    --------
    >>> import numpy as np, causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> truth = sim.truth[~sim.truth.obs["is_control"]]  # known do() means
    >>> cells = cc.data.sample_cells(truth, sim.adata, random_state=0, dtype=np.float64)
    >>> cells.obs["source"].value_counts().to_dict()
    {'sampled': 1000, 'observed': 300}
    >>> means = cc.data.pseudobulk(cells[cells.obs["source"] == "sampled"])
    >>> bool(np.allclose(means.X, truth.X, rtol=0, atol=1e-12))
    True
    """
    for name, value in (("predicted", predicted), ("observed", observed)):
        if not isinstance(value, AnnData):
            raise DataContractError(f"{name} must be an AnnData object, got "
                                    f"{type(value).__name__}.")
    if "n_cells" in observed.obs.columns:
        raise DataContractError(
            "observed holds pseudobulk profiles (obs has 'n_cells'); sample_cells needs the "
            "observed cells, whose controls give the cell-to-cell noise."
        )
    rng = _check_random_state(random_state)
    pred_iv = Interventions.from_adata(predicted, warn_unmeasured=False)
    obs_iv = Interventions.from_adata(observed, warn_unmeasured=False)
    genes = predicted.var_names
    cols = observed.var_names.get_indexer(genes)
    if (cols < 0).any():
        raise DataContractError(
            f"{int((cols < 0).sum())} predicted gene(s) are not in the observed data: "
            f"{_names(genes[cols < 0])}. Predict on the observed genes."
        )
    rows = np.flatnonzero(~pred_iv.is_control)
    keys = pred_iv.conditions.index[pred_iv.codes[rows]]
    if keys.duplicated().any():
        raise DataContractError(
            f"predicted has several rows for the perturbation(s) "
            f"{_names(keys[keys.duplicated()].unique())}; give one profile per perturbation."
        )
    counts = _cell_counts(keys, obs_iv, n_cells)
    controls = _control_rows(observed, obs_iv, control_label)
    X_obs = expression_matrix(observed, layer, what="the observed data")
    ctrl = compute_if_small(X_obs[controls], "sample_cells")  # the controls are drawn from
    ctrl = sp.csr_array(ctrl)[:, cols] if sp.issparse(ctrl) else np.asarray(ctrl)[:, cols]
    floor_value = _check_floor(floor, _lowest(ctrl))
    out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(X_obs.dtype)
    if out_dtype.kind != "f":
        out_dtype = np.dtype(np.float64)

    pred_X = expression_matrix(predicted, None, what="the predicted data")
    mu = compute_if_small(pred_X[rows], "sample_cells")
    mu = mu.toarray() if sp.issparse(mu) else np.asarray(mu, dtype=np.float64)
    if not np.isfinite(mu).all():
        bad = np.flatnonzero(~np.isfinite(mu).all(axis=1))
        raise DataContractError(
            f"predicted has NaN or infinite values for {_names(keys[bad])}; fill or drop "
            f"those perturbations first."
        )
    n_raised = 0
    if floor_value is not None:
        n_raised = int((mu < floor_value).sum())
        mu = np.maximum(mu, floor_value)
    if n_raised:
        warnings.warn(
            f"sample_cells: {n_raised} predicted value(s) below the floor {floor_value:g} "
            f"were raised to it (cells cannot go below it); pass floor=None to keep them.",
            CausalCellWarning,
            stacklevel=2,
        )

    blocks = []
    for r in range(len(rows)):  # one draw per perturbation (not per cell or gene)
        n = int(counts[r])
        take = rng.choice(len(controls), size=n, replace=n > len(controls))
        drawn = ctrl[take]
        drawn = drawn.toarray() if sp.issparse(drawn) else np.asarray(drawn, dtype=np.float64)
        blocks.append(_shifted(drawn.astype(np.float64, copy=False), mu[r], floor_value))
    sampled = _stack(blocks, sparse=sp.issparse(ctrl), dtype=out_dtype, n_genes=len(genes))

    src = predicted.obs.iloc[rows]
    repeat = np.repeat(np.arange(len(rows)), counts)
    obs = pd.DataFrame(
        {name: src[name].to_numpy()[repeat] for name in (PERTURBATION, IS_CONTROL,
                                                        PERTURBATION_TYPE)}
    )
    obs[LEVEL] = src[LEVEL].to_numpy()[repeat] if LEVEL in src.columns else np.nan
    within = np.arange(len(repeat)) - np.repeat(np.cumsum(counts) - counts, counts)
    obs.index = pd.Index(np.char.add(np.char.add(src.index.to_numpy(dtype=str)[repeat], "-"),
                                     within.astype(str)))
    obs["source"] = "sampled"
    X = sampled
    if include_controls:
        ctrl_obs = observed.obs.iloc[controls]
        extra = pd.DataFrame(
            {name: ctrl_obs[name].to_numpy() for name in (PERTURBATION, IS_CONTROL,
                                                         PERTURBATION_TYPE)},
            index=ctrl_obs.index.astype(str),
        )
        extra[LEVEL] = ctrl_obs[LEVEL].to_numpy() if LEVEL in ctrl_obs.columns else np.nan
        extra["source"] = "observed"
        clash = extra.index.intersection(obs.index)
        if len(clash):
            raise DataContractError(
                f"Sampled cell names clash with observed control cell names "
                f"({_names(clash)}); rename the predicted rows."
            )
        obs = pd.concat([obs, extra])
        ctrl_out = ctrl.astype(out_dtype)
        X = (sp.vstack([sampled, sp.csr_array(ctrl_out)], format="csr")
             if sp.issparse(sampled) else np.vstack([sampled, np.asarray(ctrl_out)]))
    obs[IS_CONTROL] = obs[IS_CONTROL].astype(bool)
    obs["source"] = pd.Categorical(obs["source"], categories=["sampled", "observed"])
    tidy_obs(obs)
    out = AnnData(X=X, obs=obs, var=predicted.var.copy())
    seed = random_state if isinstance(random_state, int | np.integer) else None
    out.uns["sample_cells"] = {
        "noise_model": "shifted control cells", "floor": floor_value,
        "random_state": None if seed is None else int(seed), "n_raised": n_raised,
        "n_controls_drawn_from": len(controls),
    }
    return out


def _lowest(values) -> float:
    """Smallest value of a dense or sparse matrix (implicit zeros count)."""
    if not sp.issparse(values):
        return float(values.min()) if values.size else 0.0
    lowest = float(values.data.min()) if values.nnz else 0.0
    return min(lowest, 0.0) if values.nnz < values.shape[0] * values.shape[1] else lowest


def _check_floor(floor: float | str | None, lowest: float) -> float | None:
    if floor == "auto":
        return 0.0 if lowest >= 0 else None
    if floor is None:
        return None
    if isinstance(floor, bool) or not isinstance(floor, int | float | np.integer | np.floating) \
            or not np.isfinite(floor):
        raise ParameterError(f"floor must be 'auto', a finite number or None; got {floor!r}.")
    return float(floor)


def _shifted(drawn: np.ndarray, mu: np.ndarray, floor: float | None) -> np.ndarray:
    """Cells ``max(floor, drawn + s)`` whose column means are ``mu`` (>= floor)."""
    if floor is None:
        return drawn + (mu - drawn.mean(axis=0))
    out = np.empty_like(drawn)
    # Genes in column blocks: the sort needs a few (n, block) work arrays.
    width = max(1, _BLOCK_ELEMENTS // max(drawn.shape[0], 1))
    for lo in range(0, drawn.shape[1], width):
        u = drawn[:, lo : lo + width] - floor
        s = _shift_to_mean(u, mu[lo : lo + width] - floor)
        np.maximum(u + s, 0.0, out=out[:, lo : lo + width])
    out += floor
    return out


def _stack(blocks: list[np.ndarray], *, sparse: bool, dtype: np.dtype, n_genes: int):
    if not blocks:
        return sp.csr_array((0, n_genes), dtype=dtype) if sparse else np.zeros((0, n_genes),
                                                                              dtype=dtype)
    if sparse:
        return sp.vstack([sp.csr_array(b.astype(dtype)) for b in blocks], format="csr")
    return np.vstack(blocks).astype(dtype, copy=False)
