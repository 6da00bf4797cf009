"""Train / test splits that hold out whole perturbations."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from anndata import AnnData

from causalcell._validation import DEPRECATED, check_random_state, renamed
from causalcell.data._interventions import Interventions
from causalcell.data.contract import PERTURBATION
from causalcell.data.lazy import in_memory_copy
from causalcell.errors import DataContractError

__all__ = ["split_by_perturbation"]


def split_by_perturbation(
    adata: AnnData,
    test_size: float | int = 0.2,
    random_state: int | np.random.Generator | None = 0,
    *,
    measured_only: bool = False,
    seed: Any = DEPRECATED,
) -> tuple[AnnData, AnnData]:
    """Split samples so that every perturbation lies wholly in train or in test.

    A perturbation is a set of targeted genes: ``"A,B"`` and ``"B,A"`` are
    one, and the same genes perturbed by different kinds (knocked down in
    some cells, overexpressed in others) go to the same side, so that no
    targeted gene set is seen in training and scored in test. Controls always
    train. Combinations are perturbations of their own: a combination can be
    held out while its single-gene parts train.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract.
    test_size
        Fraction (0 < f < 1) of the perturbations to hold out, or their
        number (int). At least one perturbation is held out and at least one
        trains.
    random_state
        Seed of the random choice (``numpy.random.default_rng``): an integer,
        None or a Generator.
    measured_only
        Hold out only perturbations whose every targeted gene is measured
        (among ``var_names``); the others always train. A model can clamp
        only measured genes at their level T, so held-out perturbations of
        unmeasured genes could not be predicted. ``test_size`` then counts
        the eligible perturbations.
    seed
        Deprecated name of ``random_state`` (a ``FutureWarning``; removed in
        the next release).

    Returns
    -------
    train, test : AnnData
        New AnnData objects (copies); ``adata`` is not modified. The held-out
        perturbations are listed in ``test.uns["split"]["test_perturbations"]``.

    Raises
    ------
    DataContractError
        If obs breaks the contract, there are fewer than 2 perturbations, or
        ``test_size`` is out of range.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> train, test = cc.data.split_by_perturbation(sim.adata, test_size=0.25, random_state=1)
    >>> bool(test.obs["is_control"].any())
    False
    """
    random_state = renamed("split_by_perturbation", "seed", seed, "random_state", random_state, 0)
    random_state = check_random_state(random_state)
    interventions = Interventions.from_adata(adata, warn_unmeasured=False)
    # Group by canonical target set, ignoring the kind.
    target_sets = interventions.conditions[PERTURBATION].to_numpy()[interventions.codes]
    perturbed = ~interventions.is_control
    eligible = perturbed
    if measured_only:
        cond = interventions.conditions
        measured = (cond["n_measured"] == cond["n_targets"]).to_numpy()
        eligible = perturbed & measured[interventions.codes]
    names = np.unique(target_sets[eligible].astype(str))
    n = len(names)
    if n < 2:
        which = " with every target measured" if measured_only else ""
        raise DataContractError(
            f"split_by_perturbation needs at least 2 distinct perturbations{which}; found {n}."
        )
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise DataContractError(f"test_size must be a number, got {test_size!r}.")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
        if not 1 <= n_test <= n - 1:
            raise DataContractError(
                f"test_size={n_test} perturbations is out of range: choose 1 to {n - 1} "
                f"({n} perturbations)."
            )
    else:
        if not 0.0 < float(test_size) < 1.0:
            raise DataContractError(
                f"test_size={test_size} is out of range: give a fraction in (0, 1) or a "
                f"number of perturbations."
            )
        n_test = min(max(round(float(test_size) * n), 1), n - 1)
    rng = np.random.default_rng(random_state)
    held_out = np.sort(rng.choice(names, size=n_test, replace=False))
    in_test = perturbed & np.isin(target_sets.astype(str), held_out)
    train = in_memory_copy(adata[~in_test])
    test = in_memory_copy(adata[in_test])
    info: dict[str, object] = {"test_perturbations": held_out.tolist(), "n_test": n_test}
    if random_state is not None and not isinstance(random_state, np.random.Generator):
        info["random_state"] = int(random_state)
    train.uns["split"] = dict(info)
    test.uns["split"] = dict(info)
    return train, test
