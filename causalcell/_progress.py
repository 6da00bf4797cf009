"""Import tqdm.auto, causalcell's progress bars, without its "IProgress not found" warning.

In a Jupyter kernel without ipywidgets, importing ``tqdm.auto`` warns with a path
into site-packages and then falls back to text bars, which is what causalcell
wants. Every causalcell module that shows progress bars takes ``tqdm`` from here,
so the import happens once, here, and the message does not open every notebook that
uses causalcell. Other warnings are untouched.
"""

from __future__ import annotations

import importlib
import warnings

from tqdm.std import TqdmWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    tqdm = importlib.import_module("tqdm.auto").tqdm
