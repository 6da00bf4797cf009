"""Baselines that any model of P(X | T) has to beat.

All four follow the estimator protocol of :mod:`causalcell.models._base`
(``fit(adata, network=None)`` returns ``self``; ``predict(perturbations)``
returns an AnnData with the request's obs and the model's genes; ``save`` /
``load`` through a pickle-free ``.npz`` file). None of them uses a network:
the argument is accepted so that they can stand in for any model.

=============================  ===============================================
model                          predicted profile of a perturbed sample
=============================  ===============================================
:class:`ControlBaseline`       the training control mean ("nothing happens")
:class:`MeanBaseline`          per gene, the training mean over the samples
                               that did not target that gene
:class:`TargetOnlyBaseline`    the control (or mean) profile with the targeted
                               genes set to their level T: it knows P(T) only
:class:`LinearEmbeddingBaseline`  Ahlmann-Eltze et al.'s linear model on a PCA
                               gene embedding
=============================  ===============================================

Every model predicts the training control mean for control rows of a request:
that is the best available estimate of an unperturbed sample, whatever the
model does with perturbations.

Sample weights: data that is already pseudobulk carries ``obs["n_cells"]``
(as written by :func:`causalcell.data.pseudobulk`); rows are then weighted by
it, as :func:`causalcell.data.control_mean` does, so that cells and their
pseudobulk give the same baselines.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.sparse.linalg import svds

from causalcell._validation import check_choice, check_layer, is_int, is_real
from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.data._pseudobulk import changes, control_mean, row_weights
from causalcell.errors import DataContractError, ParameterError
from causalcell.models._base import (
    PerturbationModel,
    make_prediction,
    observed_target_levels,
    prediction_request,
    resolve_levels,
    training_data,
)
from causalcell.models._model_file import (
    BASELINE_LEVELS_N,
    ArraySpec,
    check_arrays,
    check_genes,
    level_arrays_spec,
    levels_from_arrays,
    levels_to_arrays,
    load_arrays,
    model_from_header,
    save_arrays,
)

__all__ = [
    "ControlBaseline",
    "LinearEmbeddingBaseline",
    "MeanBaseline",
    "TargetOnlyBaseline",
]

# Above this size of the smaller side of the change matrix, the top
# components come from a truncated (ARPACK) SVD instead of a full one.
_FULL_SVD_MAX = 1000


# --------------------------------------------------------------------------- helpers
def _mean_profile(
    adata: AnnData,
    X: Any,
    interventions: Interventions,
    over: str,
    layer: str | None,
    control: np.ndarray,
) -> np.ndarray:
    """The per-gene excluded mean of :class:`MeanBaseline` (see its docstring)."""
    perturbed = ~interventions.is_control
    if not perturbed.any():
        raise DataContractError(
            "The training data has no perturbed sample (is_control is True everywhere): a "
            "mean of perturbed samples cannot be computed. Fit ControlBaseline instead, or "
            "add perturbed samples."
        )
    if over == "samples":
        weights = np.where(perturbed, row_weights(adata), 0.0)
        return Design(X, interventions).included_means(weights, control)
    # over == "perturbations": one profile per perturbation, each weighing 1.
    delta = changes(adata, layer=layer)
    delta_iv = Interventions.from_adata(delta, warn_unmeasured=False)
    zero = np.zeros(delta.n_vars)
    return control + Design(delta.X, delta_iv).included_means(np.ones(delta.n_obs), zero)


# --------------------------------------------------------------------------- base class
class _Baseline(PerturbationModel):
    """Shared fit / predict / save / load plumbing of the baselines.

    Subclasses set ``_vectors`` (fitted per-gene vectors, saved as arrays),
    implement ``_fit(adata, X, interventions)`` and ``_perturbed(interventions)``
    (the predicted rows of the request; control rows are overwritten by
    ``control_mean_`` afterwards).
    """

    _vectors: ClassVar[tuple[str, ...]] = ("control_mean_",)
    _matrices: ClassVar[tuple[str, ...]] = ()

    def fit(self, adata: AnnData, network: Any = None) -> Self:
        """Fit on cells or pseudobulk rows following the data contract.

        Parameters
        ----------
        adata
            Training data with control samples. Expression in ``X`` or in
            the layer named by the model's ``layer`` parameter.
        network
            Ignored: baselines use no network. Accepted so that a baseline
            can replace any model.

        Returns
        -------
        self

        Raises
        ------
        DataContractError
            If ``adata`` breaks the data contract or has no control sample.
        ParameterError
            If a parameter of the model is out of range.
        """
        self._check_params()
        X, interventions = training_data(adata, layer=self.layer)
        state = self._fit(adata, X, interventions)
        for name, value in state.items():
            setattr(self, name, value)
        self._set_genes(adata.var_names)
        return self

    def predict(self, perturbations: AnnData | pd.DataFrame) -> AnnData:
        """Predict the expression profile of each requested sample.

        Parameters
        ----------
        perturbations
            An AnnData (its obs is used) or a DataFrame with the obs contract
            columns ``perturbation``, ``is_control``, ``perturbation_type``
            and optionally ``expression_level_after_perturbation``.

        Returns
        -------
        AnnData
            One row per request row (same obs, same order), the model's
            genes as var, predicted log-normalized expression in ``X``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        PredictionError
            If the request targets a gene the model does not know, or (for
            models that need it) a level T is missing and cannot be
            estimated from training.
        DataContractError
            If the request breaks the obs contract.
        """
        self._check_fitted()
        obs, interventions = prediction_request(perturbations, self.genes_)
        values = self._perturbed(interventions)
        values[interventions.is_control] = self.control_mean_
        return make_prediction(obs, self.genes_, values)

    # -- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted model as a ``.npz`` file (no pickle; written atomically).

        Parameters
        ----------
        path
            Destination; ``.npz`` is appended when missing.

        Returns
        -------
        pathlib.Path
            The file written.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        DataFileError
            If the destination directory does not exist.
        """
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {"genes": self.genes_.to_numpy(dtype=str)}
        for name in (*self._vectors, *self._matrices):
            arrays[name] = np.asarray(getattr(self, name))
        arrays.update(self._extra_arrays())
        return save_arrays(path, self, arrays, meta={})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Load a model written by :meth:`save`; never executes code.

        Raises
        ------
        DataFileError
            If the file is missing, truncated, of another model class or
            format version, or lacks an array this model needs.
        """
        arrays, header = load_arrays(path, cls.__name__)
        model = model_from_header(cls, header, path)
        spec = {"genes": ("U", ("genes",)),
                **{name: ("fiu", ("genes",)) for name in cls._vectors},
                **model._arrays_spec()}
        n_genes = len(arrays["genes"]) if "genes" in arrays else 0
        check_arrays(arrays, spec, path, {"genes": n_genes})
        genes = pd.Index(check_genes(arrays["genes"], path).astype(str), dtype=str)
        for name in (*cls._vectors, *cls._matrices):
            setattr(model, name, np.asarray(arrays[name], dtype=np.float64))
        model._restore_extra(arrays, path)
        model._set_genes(genes)
        return model

    @property
    def control_(self) -> np.ndarray:
        """Deprecated name of :attr:`control_mean_` (removed in the next release)."""
        warnings.warn(
            f"{type(self).__name__}.control_ is renamed control_mean_ (the name every "
            f"causalcell model uses); control_ will stop working in the next release.",
            FutureWarning,
            stacklevel=2,
        )
        return self.control_mean_

    # -- hooks
    def _check_params(self) -> None:
        check_layer(self.layer, type(self).__name__)

    def _fit(self, adata: AnnData, X: Any, interventions: Interventions) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    def _perturbed(self, interventions: Interventions) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _arrays_spec(self) -> dict[str, ArraySpec]:
        """dtype kinds and shapes of the arrays beyond genes and vectors (see
        :func:`~causalcell.models._model_file.check_arrays`)."""
        return {}

    def _restore_extra(self, arrays: dict[str, np.ndarray], path: object) -> None:
        return None


# --------------------------------------------------------------------------- models
class ControlBaseline(_Baseline):
    """Predict the training control mean for every request ("nothing happens").

    Parameters
    ----------
    layer
        Layer of the training data holding log-normalized expression;
        ``None`` uses ``X``.

    Attributes
    ----------
    genes_ : pandas.Index
        The genes of the training data.
    control_mean_ : numpy.ndarray
        The training control mean (weighted by ``obs["n_cells"]`` for
        pseudobulk rows).

    Examples
    --------
    >>> from causalcell.datasets import simulate
    >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = ControlBaseline().fit(sim.adata)
    >>> model.predict(sim.adata.obs.iloc[:3]).shape
    (3, 30)
    """

    def __init__(self, layer: str | None = None) -> None:
        self.layer = layer

    def _fit(self, adata: AnnData, X: Any, interventions: Interventions) -> dict[str, Any]:
        return {"control_mean_": control_mean(adata, layer=self.layer)}

    def _perturbed(self, interventions: Interventions) -> np.ndarray:
        return np.tile(self.control_mean_, (interventions.n_samples, 1))


class MeanBaseline(_Baseline):
    """Predict, for each gene, the training mean over samples that did not target it.

    Gene g's prediction averages the perturbed training samples in which g is
    not targeted (alone or in a combination): a perturbation's effect on its
    own target does not leak into the prediction of that gene. This "mean of
    perturbed" profile is the baseline that published benchmarks find hard to
    beat (e.g. Ahlmann-Eltze, Huber & Anders 2025, Nature Methods; Wong et
    al. 2025, Bioinformatics); it is the same profile for every perturbation.

    Parameters
    ----------
    over
        ``"samples"`` (default): average the perturbed training rows as given
        (cells, or pseudobulk rows weighted by ``obs["n_cells"]``), so
        perturbations with many cells weigh more. ``"perturbations"``: first
        average each perturbation (:func:`causalcell.data.changes`), then
        average those profiles with equal weight, as the field's "mean of
        perturbed" / "mean" baselines do. Data that is already pseudobulk
        is taken row by row (one row per perturbation, as
        :func:`causalcell.data.pseudobulk` writes it).
    layer
        Layer of the training data holding log-normalized expression;
        ``None`` uses ``X``.

    Attributes
    ----------
    genes_ : pandas.Index
    control_mean_ : numpy.ndarray
        Training control mean (predicted for control rows of a request).
    mean_ : numpy.ndarray
        The predicted profile of every perturbed request.

    Notes
    -----
    Controls are not part of the mean in either mode: the baseline stands for
    "an average perturbation", and a screen's control cells (often the
    largest group) would otherwise pull it towards the control profile. A
    gene targeted in every perturbed training sample has nothing to average
    and takes the control mean.

    The computation is vectorized: weighted column sums minus the
    contributions of the targeted entries (the stored entries of
    ``Interventions.mask``), never a loop over genes. Targeted genes of a
    request are not set to T; :class:`TargetOnlyBaseline` with
    ``start="mean"`` does that.

    Examples
    --------
    >>> from causalcell.datasets import simulate
    >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = MeanBaseline(over="perturbations").fit(sim.adata)
    >>> model.mean_.shape
    (30,)
    """

    _vectors: ClassVar[tuple[str, ...]] = ("control_mean_", "mean_")

    def __init__(self, over: str = "samples", layer: str | None = None) -> None:
        self.over = over
        self.layer = layer

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("over", self.over, ("samples", "perturbations"), type(self).__name__)

    def _fit(self, adata: AnnData, X: Any, interventions: Interventions) -> dict[str, Any]:
        control = control_mean(adata, layer=self.layer)
        mean = _mean_profile(adata, X, interventions, self.over, self.layer, control)
        return {"control_mean_": control, "mean_": mean}

    def _perturbed(self, interventions: Interventions) -> np.ndarray:
        return np.tile(self.mean_, (interventions.n_samples, 1))


class TargetOnlyBaseline(_Baseline):
    """The control profile with every targeted gene set to its level T.

    This model knows P(T) and nothing about regulation: every non-targeted
    gene keeps its starting value. Scores that include the targeted genes
    reward it for reproducing the intervention itself, which is how much an
    unconditioned metric credits a model for P(T) alone.

    T is resolved by ``causalcell.models._base.resolve_levels``:
    knockouts 0, a level given in the request as given, otherwise the mean
    level of that gene observed in the training samples of the same
    perturbation.

    Parameters
    ----------
    start
        ``"control"`` (default): start from the training control mean.
        ``"mean"``: start from the :class:`MeanBaseline` profile, which gives
        the "CRISPR-informed mean" baseline of Wong, D. R. et al. 2025,
        "Simple controls exceed best deep learning algorithms and reveal
        foundation model effectiveness for predicting genetic
        perturbations", Bioinformatics.
    over
        With ``start="mean"``: how the mean is taken (see
        :class:`MeanBaseline`); ignored otherwise.
    layer
        Layer of the training data holding log-normalized expression;
        ``None`` uses ``X``.

    Attributes
    ----------
    genes_ : pandas.Index
    control_mean_ : numpy.ndarray
        Training control mean (predicted for control rows of a request).
    start_ : numpy.ndarray
        The profile the targeted genes are set in.
    target_levels_ : pandas.DataFrame
        Mean observed level per training perturbation and targeted gene
        (``causalcell.models._base.observed_target_levels``).

    Examples
    --------
    >>> import pandas as pd
    >>> from causalcell.datasets import simulate
    >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = TargetOnlyBaseline().fit(sim.adata)
    >>> request = pd.DataFrame({"perturbation": ["TF01"], "is_control": [False],
    ...                         "perturbation_type": ["knockout"]}, index=["q1"])
    >>> float(model.predict(request)[:, "TF01"].X[0, 0])
    0.0
    """

    _vectors: ClassVar[tuple[str, ...]] = ("control_mean_", "start_")

    def __init__(
        self, start: str = "control", over: str = "samples", layer: str | None = None
    ) -> None:
        self.start = start
        self.over = over
        self.layer = layer

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("start", self.start, ("control", "mean"), type(self).__name__)
        check_choice("over", self.over, ("samples", "perturbations"), type(self).__name__)

    def _fit(self, adata: AnnData, X: Any, interventions: Interventions) -> dict[str, Any]:
        control = control_mean(adata, layer=self.layer)
        start = (
            control
            if self.start == "control"
            else _mean_profile(adata, X, interventions, self.over, self.layer, control)
        )
        return {
            "control_mean_": control,
            "start_": start,
            "target_levels_": observed_target_levels(X, interventions),
        }

    def _perturbed(self, interventions: Interventions) -> np.ndarray:
        levels = resolve_levels(interventions, self.target_levels_)
        values = np.tile(self.start_, (interventions.n_samples, 1))
        values[interventions.entry_rows, interventions.mask.indices] = levels
        return values

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return levels_to_arrays(self.target_levels_, BASELINE_LEVELS_N)

    def _arrays_spec(self) -> dict[str, ArraySpec]:
        return level_arrays_spec(BASELINE_LEVELS_N)

    def _restore_extra(self, arrays: dict[str, np.ndarray], path: object) -> None:
        self.target_levels_ = levels_from_arrays(arrays, BASELINE_LEVELS_N)


class LinearEmbeddingBaseline(_Baseline):
    """Linear model on a PCA gene embedding (Ahlmann-Eltze, Huber & Anders 2025).

    Reference: Ahlmann-Eltze, C., Huber, W. & Anders, S. (2025). "Deep-
    learning-based gene perturbation effect prediction does not yet
    outperform simple linear baselines". Nature Methods. Their linear model
    writes the genes x perturbations matrix of training profiles as

        Y ≈ G K Pᵀ + b 1ᵀ,

    with G (genes x k) a gene embedding, P (perturbations x k) a
    perturbation embedding, b the row means of Y and K (k x k) solved in
    closed form with a ridge penalty on both sides:

        K = (GᵀG + λI)⁻¹ Gᵀ (Y − b 1ᵀ) P (PᵀP + λI)⁻¹.

    Here, as in the paper's default, G holds the top-k principal components
    of the training data and P takes the rows of the same G at each
    perturbed gene, so a perturbation never seen in training is predicted
    from its gene's embedding. Our choices within that formulation:

    - Y holds the training pseudobulk *changes* against the control mean
      (:func:`causalcell.data.changes`; one column per perturbation and
      kind). Row-centering makes this equivalent to using the profiles
      themselves; the prediction is control mean + b + G K p.
    - G = U_k S_k from the SVD of the centered matrix Y − b 1ᵀ (the
      principal-component scores of the genes), so G spans the leading
      column space of exactly the matrix the model fits. The paper's code
      may center differently; the scores are what "top principal
      components" gives in the usual PCA convention.
    - A combination's embedding p is the *sum* of the rows of G of its
      measured targets (an additive guess; the paper scores single
      perturbations). Training combinations enter Y with that p.
    - Perturbations whose targets are all unmeasured have no embedding and
      are left out of Y (and of b). The perturbation kind is not used: the
      paper treats one kind per screen; mixing knockdown and
      overexpression of one gene in training averages opposite effects.
    - Targeted genes are not set to T: the model predicts them like any
      other gene.

    Parameters
    ----------
    n_components
        k, the embedding dimension (the paper's default: 10). Capped at the
        number of training perturbations and of genes.
    ridge
        λ >= 0 (the paper's default: 0.1). With 0 the pseudo-inverse is
        used.
    layer
        Layer of the training data holding log-normalized expression;
        ``None`` uses ``X``.

    Attributes
    ----------
    genes_ : pandas.Index
    control_mean_ : numpy.ndarray
        Training control mean.
    offset_ : numpy.ndarray
        b, the mean change over the training perturbations.
    gene_embedding_ : numpy.ndarray, shape (n_genes, k)
        G.
    coef_ : numpy.ndarray, shape (k, k)
        K.
    n_components_ : int
        The k used.

    Raises
    ------
    PredictionError
        (at predict) For a perturbation of a gene that is not among the
        model's genes: it has no embedding.

    Examples
    --------
    >>> from causalcell.datasets import simulate
    >>> sim = simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = LinearEmbeddingBaseline(n_components=5).fit(sim.adata)
    >>> model.gene_embedding_.shape, model.coef_.shape
    ((30, 5), (5, 5))
    """

    _vectors: ClassVar[tuple[str, ...]] = ("control_mean_", "offset_")
    _matrices: ClassVar[tuple[str, ...]] = ("gene_embedding_", "coef_")

    def __init__(
        self, n_components: int = 10, ridge: float = 0.1, layer: str | None = None
    ) -> None:
        self.n_components = n_components
        self.ridge = ridge
        self.layer = layer

    def _check_params(self) -> None:
        super()._check_params()
        k = self.n_components
        if not is_int(k) or k < 1:
            raise ParameterError(
                f"LinearEmbeddingBaseline: n_components={k!r} must be an integer >= 1."
            )
        lam = self.ridge
        if not is_real(lam) or lam < 0:
            raise ParameterError(
                f"LinearEmbeddingBaseline: ridge={lam!r} must be a finite number >= 0."
            )

    def _fit(self, adata: AnnData, X: Any, interventions: Interventions) -> dict[str, Any]:
        delta = changes(adata, layer=self.layer)
        delta_iv = Interventions.from_adata(delta, warn_unmeasured=False)
        # Perturbations with no measured target have no embedding: leave them out.
        keep = np.diff(delta_iv.mask.indptr) > 0
        if not keep.any():
            raise DataContractError(
                "LinearEmbeddingBaseline needs training perturbations of measured genes; "
                "none of the perturbed samples targets a gene in var_names."
            )
        Y = np.asarray(delta.X, dtype=np.float64)[keep].T  # genes x perturbations
        offset = Y.mean(axis=1)
        centered = Y - offset[:, None]
        G = _top_components(centered, int(self.n_components))
        P = delta_iv.mask[np.flatnonzero(keep)].astype(np.float64) @ G
        left = _ridge_solve(G.T @ G, G.T @ centered, float(self.ridge))  # (GᵀG+λI)⁻¹Gᵀ(Y−b)
        # K = left P (PᵀP + λI)⁻¹; the inverse is symmetric, so solve for Kᵀ.
        coef = _ridge_solve(P.T @ P, (left @ P).T, float(self.ridge)).T
        return {
            "control_mean_": np.asarray(delta.uns["control_mean"], dtype=np.float64),
            "offset_": offset,
            "gene_embedding_": G,
            "coef_": coef,
            "n_components_": G.shape[1],
        }

    def _perturbed(self, interventions: Interventions) -> np.ndarray:
        embedding = interventions.mask.astype(np.float64) @ self.gene_embedding_
        change = (embedding @ self.coef_.T) @ self.gene_embedding_.T
        return self.control_mean_ + self.offset_ + change

    def _arrays_spec(self) -> dict[str, ArraySpec]:
        return {"gene_embedding_": ("fiu", ("genes", "k")), "coef_": ("fiu", ("k", "k"))}

    def _restore_extra(self, arrays: dict[str, np.ndarray], path: object) -> None:
        self.n_components_ = int(self.gene_embedding_.shape[1])


def _top_components(centered: np.ndarray, k: int) -> np.ndarray:
    """Principal-component scores U_k S_k of ``centered`` (rows are genes).

    A full SVD for moderate sizes; above ``_FULL_SVD_MAX`` on the smaller
    side, a truncated ARPACK SVD of the k leading triplets (deterministic
    start vector, so fits are reproducible).
    """
    k = min(k, *centered.shape)
    small = min(centered.shape)
    if small <= _FULL_SVD_MAX or k >= small - 1:
        U, S, _ = np.linalg.svd(centered, full_matrices=False)
        return U[:, :k] * S[:k]
    v0 = np.random.default_rng(0).standard_normal(small)
    U, S, _ = svds(centered, k=k, v0=v0, solver="arpack")
    order = np.argsort(S)[::-1]
    return U[:, order] * S[order]


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    """(gram + ridge I)⁻¹ rhs for a symmetric positive semi-definite ``gram``."""
    if ridge > 0:
        return np.linalg.solve(gram + ridge * np.eye(len(gram)), rhs)
    return np.linalg.pinv(gram, hermitian=True) @ rhs
