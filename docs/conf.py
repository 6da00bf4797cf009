"""Sphinx configuration for the causalcell documentation.

Build (warnings are errors; the tutorials are executed):

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Document the checked-out package even when it is not installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Tutorial kernels are separate processes: give them the same import path.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)

import causalcell  # noqa: E402

project = "causalcell"
author = "causalcell developers"
copyright = "causalcell developers"
version = release = causalcell.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "requirements.txt"]

# --- API reference: autosummary stubs from the numpydoc docstrings (napoleon) ---
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": False,
    # scikit-learn attaches metadata-routing setters to every estimator class;
    # their docstrings cross-reference sklearn's own glossary and do not build here.
    "exclude-members": "set_fit_request,set_predict_request,set_score_request",
}
autodoc_member_order = "bysource"
# Signatures carry the type hints; the parameter lists keep the prose.
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

# numpydoc "References" sections list ``.. [1]`` entries without citing them in
# the text; numpydoc's own extension renames them, napoleon leaves docutils to
# warn "Footnote [1] is not referenced". Only that footnote check is silenced.
suppress_warnings = ["ref.footnote"]

# --- MyST / MyST-NB: tutorials are executed on every build ---
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# --- HTML ---
html_theme = "furo"
html_title = f"causalcell {release}"


# docs/datasets.md links to causalcell/datasets/data/README.md, which sits
# outside the documentation source (the link is for readers on GitHub). Drop
# exactly that one warning; every other missing reference still fails -W.
_OUTSIDE_LINKS = ("causalcell/datasets/data/README",)


class _OutsideLinkFilter:
    def filter(self, record) -> bool:
        message = str(getattr(record, "msg", ""))
        return not (
            getattr(record, "type", None) == "myst"
            and getattr(record, "subtype", None) == "xref_missing"
            and any(link in message for link in _OUTSIDE_LINKS)
        )


def setup(app):
    import logging

    for handler in logging.getLogger("sphinx").handlers:
        # First in line, so Sphinx's warning-is-error filter never sees it.
        handler.filters.insert(0, _OutsideLinkFilter())
