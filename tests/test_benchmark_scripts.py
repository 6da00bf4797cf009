"""The benchmark scripts still run against the current API (their quick modes).

Benchmarks are not imported by the package, so an API change can leave one
broken without any other test noticing (bench_genome read the ``conditioning``
column of evaluate's table for a release after it became ``exclude``). These
runs check that each script completes and prints its verdict line; the figures
themselves are the benchmarks' business, not the tests'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: (script and its quick arguments, a line the complete run prints)
QUICK_RUNS = [
    (["bench_genome.py", "--quick"], "measured extrapolation to scale 1"),
    (["bench_parse.py", "--cells", "2000", "--perturbations", "50"], "categorical columns"),
    (["bench_edistance.py", "--quick"], "ours / floor"),
    (["bench_pseudobulk.py", "--quick"], "dense"),
    (["bench_fit.py", "--quick", "--processes", "1"], "quick    tf"),
    (["bench_de.py", "--quick"], "max diff over"),
]


@pytest.mark.parametrize(("command", "last_words"), QUICK_RUNS,
                         ids=[command[0] for command, _ in QUICK_RUNS])
def test_benchmark_script_runs(command, last_words, tmp_path):
    args = list(command)
    if command[0] == "bench_genome.py":
        args += ["--workdir", str(tmp_path)]
    # A deprecated spelling in a benchmark is an error here, as in the suite.
    env = {**os.environ, "PYTHONWARNINGS": "error::FutureWarning"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert last_words in run.stdout, run.stdout[-3000:]
