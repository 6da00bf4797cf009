"""A package that installs and reads like a well-kept one: licence, lazy plot module,
quiet imports in notebooks, one-line warnings in the CLI, an install line that works."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

import causalcell as cc
from causalcell.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def test_license_file_is_packaged():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 causalcell developers" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert "LICENSE" in project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def test_plot_is_reachable_without_slowing_the_import():
    result = _python(
        "import sys, causalcell as cc\n"
        "assert 'matplotlib' not in sys.modules, 'import causalcell loaded matplotlib'\n"
        "assert 'plot' in dir(cc)\n"
        "import causalcell.plot\n"
        "assert cc.plot is causalcell.plot and callable(cc.plot.target_effect)\n"
        "try:\n"
        "    cc.nothing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "has no attribute 'nothing'" in result.stdout


def test_import_loads_no_heavy_library():
    """``import causalcell`` is fast because it loads none of the heavy libraries; the
    first use of a subpackage loads it."""
    result = _python(
        "import sys, causalcell as cc\n"
        "heavy = ['matplotlib', 'sklearn', 'scipy.stats', 'dask', 'pgmpy', 'statsmodels',\n"
        "         'anndata', 'pandas', 'numpy']\n"
        "print(*[m for m in heavy if m in sys.modules])\n"
        "cc.data.pseudobulk\n"
        "print('anndata' in sys.modules, cc.Interventions is cc.data.Interventions)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["", "True True"]


def test_help_parses_before_importing():
    """``causalcell --help`` prints without loading numpy, pandas or anndata."""
    result = _python(
        "import sys\n"
        "from causalcell.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED', *[m for m in ('numpy', 'pandas', 'anndata') if m in sys.modules])\n"
    )
    assert result.returncode == 0, result.stderr
    assert "usage: causalcell" in result.stdout
    assert result.stdout.splitlines()[-1] == "LOADED"


def test_no_tqdm_warning_in_a_notebook_without_ipywidgets():
    """Importing causalcell in a Jupyter kernel without ipywidgets (the docs build) must
    not print tqdm's "IProgress not found" warning with a site-packages path."""
    result = _python(
        "import sys, types, warnings\n"
        "class ZMQInteractiveShell: pass\n"
        "ipython = types.ModuleType('IPython')\n"
        "ipython.get_ipython = lambda: ZMQInteractiveShell()\n"
        "sys.modules['IPython'] = ipython\n"
        "sys.modules['ipykernel.zmqshell'] = types.ModuleType('ipykernel.zmqshell')\n"
        "sys.modules['ipywidgets'] = None\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import causalcell\n"
        "    causalcell.data.pseudobulk  # loads the modules that show progress bars\n"
        "    causalcell.models.ConditionalGRNRegressor\n"
        "print([f'{w.category.__name__}: {w.message}' for w in caught])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_shows_each_warning_once_in_one_line(tmp_path, capsys):
    """Targets that are not measured: one 'causalcell: warning:' line, no source line."""
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    observed = sim.adata[:, sim.adata.var_names != "TF01"].copy()  # TF01 not measured
    pb = cc.data.pseudobulk(observed)
    predicted = pb[~pb.obs["is_control"].to_numpy()].copy()
    predicted.X = np.asarray(predicted.X) + 0.1
    cc.data.write_h5ad(observed, tmp_path / "observed.h5ad")
    cc.data.write_h5ad(predicted, tmp_path / "predicted.h5ad")
    code = main(["evaluate", "--predicted", str(tmp_path / "predicted.h5ad"), "--observed",
                 str(tmp_path / "observed.h5ad"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith("causalcell: warning: ")]
    assert len(lines) == 1
    assert "TF01" in lines[0]


def test_install_lines_work_from_a_checkout():
    """causalcell is not on PyPI yet: no page tells readers to 'pip install causalcell'."""
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for page in pages:
        if "_build" in page.parts:
            continue
        assert not re.search(r"pip install causalcell\b", page.read_text()), page
    assert "pip install ." in (ROOT / "docs" / "index.md").read_text()
