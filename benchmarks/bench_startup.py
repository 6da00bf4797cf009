"""Start-up time of ``import causalcell`` and ``causalcell --help`` in fresh processes.

Each command runs ``--repeats`` times (default 5) in a new interpreter; the median
wall time is printed next to the bare interpreter's (``python -c pass``, the
reference measured in the same run) and the targets of issue 16: ``import
causalcell`` under 0.5 s, ``causalcell --help`` under 0.3 s. The last line lists
the heavy libraries ``import causalcell`` loaded (none expected). Run from the
repository root, in the environment with the dev extras installed:

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("numpy", "pandas", "anndata", "scipy", "sklearn", "matplotlib", "dask", "pgmpy",
         "statsmodels", "networkx", "tqdm")


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = shutil.which("causalcell")
    cli = [script, "--help"] if script else [sys.executable, "-m", "causalcell.cli", "--help"]
    bare = median_seconds([sys.executable, "-c", "pass"], args.repeats)
    rows = [
        ("import causalcell", [sys.executable, "-c", "import causalcell"], 0.5),
        ("causalcell --help", cli, 0.3),
    ]
    print(f"fresh processes, median of {args.repeats}; bare interpreter {bare:.3f} s")
    for name, command, target in rows:
        seconds = median_seconds(command, args.repeats)
        verdict = "meets" if seconds < target else "MISSES"
        print(f"{name:<20} {seconds:6.3f} s  {seconds / bare:5.1f}x bare   target < {target} s: "
              f"{verdict}")
    probe = ("import sys, causalcell; print(' '.join(m for m in " + repr(HEAVY)
             + " if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                            text=True).stdout.split()
    print("heavy libraries loaded by 'import causalcell':", ", ".join(loaded) or "none")


if __name__ == "__main__":
    main()
