"""obs columns in the dtypes scanpy and pandas users expect.

scanpy groups by categorical obs columns (``sc.tl.rank_genes_groups(adata,
"perturbation")`` refuses plain strings), and a level column is easier to
plot and filter as numbers than as text. The tables causalcell builds
(predictions, pseudobulk) pass their obs through :func:`tidy_obs`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causalcell.data.contract import COMBINATION_SEPARATOR, LEVEL, PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError

__all__ = ["numeric_levels", "tidy_obs"]


def numeric_levels(values: pd.Series | np.ndarray) -> np.ndarray | None:
    """The level column as float64 when every value is one number (or NaN / empty).

    Returns None when a value lists several levels (a combination) or is not
    a number: the column then stays text, in the comma-separated form of the
    contract.
    """
    series = pd.Series(np.asarray(values, dtype=object))
    text = series.astype(str).str.strip()
    if text.str.contains(COMBINATION_SEPARATOR, regex=False).any():
        return None
    blank = series.isna() | text.str.lower().isin(["", "nan", "na", "none"])
    numbers = pd.to_numeric(text.where(~blank), errors="coerce")
    if numbers[~blank].isna().any():
        return None
    return numbers.to_numpy(dtype=np.float64)


def tidy_obs(obs: pd.DataFrame) -> pd.DataFrame:
    """``obs`` with categorical ``perturbation`` / ``perturbation_type`` and numeric levels.

    Parameters
    ----------
    obs
        An obs table with the contract columns; modified in place and
        returned.

    Returns
    -------
    pandas.DataFrame
        The same object: ``perturbation`` and ``perturbation_type`` as
        categoricals (categories in order of appearance), and
        ``expression_level_after_perturbation`` as float64 when every row has
        at most one target (text for combinations, ``"nan"`` where unknown).

    Raises
    ------
    DataContractError
        If ``obs`` is not a DataFrame.
    """
    if not isinstance(obs, pd.DataFrame):
        raise DataContractError(
            f"tidy_obs() takes an obs DataFrame (adata.obs), got {type(obs).__name__}."
        )
    for name in (PERTURBATION, PERTURBATION_TYPE):
        if name in obs.columns and not isinstance(obs[name].dtype, pd.CategoricalDtype):
            values = obs[name].astype(str)
            obs[name] = pd.Categorical(values, categories=pd.unique(values))
    if LEVEL in obs.columns and not pd.api.types.is_float_dtype(obs[LEVEL].dtype):
        levels = numeric_levels(obs[LEVEL])
        if levels is None:  # text throughout (h5ad cannot store mixed str / float columns)
            column = obs[LEVEL]
            levels = np.where(column.isna(), "nan", column.astype(str)).astype(object)
        obs[LEVEL] = levels
    return obs
