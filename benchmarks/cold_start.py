"""Cold start: a read-only command in a fresh process, against bare imports of its toolkit.

Each sample starts a new Python process, as a user's shell does. The baseline is
`python -c 'import typer, rich.table, sqlite3'`, what any Typer + Rich CLI over SQLite pays
before its first line; the commands run on the bundled catalog in a temporary SQLite file
(created and seeded once, before timing). Runs are interleaved so that a slow moment of the
machine hits every command alike, and medians are compared.

The project's modules are byte-compiled first, as `pip install` does for an installed wheel
and as any first run does for a checkout: the baseline's packages come compiled from
site-packages, and a shell with PYTHONDONTWRITEBYTECODE set would otherwise charge the
commands for compiling about 20 modules from source on every run (some 70 ms).

Run: python benchmarks/cold_start.py [--runs N] [--limit RATIO]
Exits 1, saying which, when a command's median exceeds `limit` x the baseline's median.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The goal of issue 10 ("Cold start"): a read-only command within twice the bare imports.
RATIO_LIMIT = 2.0
DEFAULT_RUNS = 15

BASELINE = (
    "import typer, rich.table, sqlite3",
    [sys.executable, "-c", "import typer, rich.table, sqlite3"],
)
COMMANDS = (
    ["fit", "--model", "llama-65b", "--gpu", "rtx4090", "--json"],
    ["which-models", "--gpu", "rtx4090", "--json"],
)


def advisor_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m advisor`."""
    script = Path(sys.executable).with_name("advisor")
    if script.is_file():
        return [str(script)]
    found = shutil.which("advisor")
    return [found] if found else [sys.executable, "-m", "advisor"]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning the process to its exit; a failing or silent command aborts."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    if argv[0] != sys.executable:
        json.loads(done.stdout)  # the command really answered
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="samples per command")
    parser.add_argument("--limit", type=float, default=RATIO_LIMIT, help="largest ratio allowed")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    advisor = advisor_command()
    root = Path(__file__).resolve().parents[1]
    for package in ("advisor", "catalog"):
        compileall.compile_dir(str(root / package), quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "ADVISOR_DB": str(Path(folder) / "catalog.db"), "COLUMNS": "120"}
        # Create and seed the catalog once: the timed runs measure reading, not first use.
        run_once([*advisor, *COMMANDS[0]], env)
        labelled = [BASELINE, *((" ".join(["advisor", *c]), [*advisor, *c]) for c in COMMANDS)]
        samples: dict[str, list[float]] = {label: [] for label, _ in labelled}
        for _ in range(args.runs):
            for label, argv in labelled:
                samples[label].append(run_once(argv, env))

    base = statistics.median(samples[BASELINE[0]])
    print(f"{args.runs} interleaved runs each, medians (min-max), {sys.version.split()[0]}")
    print(f"  {statistics.median(samples[BASELINE[0]]) * 1000:7.1f} ms  python -c '{BASELINE[0]}'")
    failed: list[str] = []
    for label, _ in labelled[1:]:
        median = statistics.median(samples[label])
        ratio = median / base
        low, high = min(samples[label]), max(samples[label])
        print(
            f"  {median * 1000:7.1f} ms  {label}  "
            f"({low * 1000:.0f}-{high * 1000:.0f} ms)  ratio {ratio:.2f}"
        )
        if ratio > args.limit:
            failed.append(f"{label}: {ratio:.2f} x the baseline")
    if failed:
        print(f"FAIL: over {args.limit:.2f} x the baseline: " + "; ".join(failed), file=sys.stderr)
        return 1
    print(f"ok: every command within {args.limit:.2f} x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
