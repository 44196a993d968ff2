"""The wheel ships what an installed advisor needs: migrations and bundled data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.packaging
def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    """Build the wheel, install it without dev dependencies in a new venv, run two commands."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("gpu_fit_advisor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "catalog/migrations/env.py" in names
    assert any(n.startswith("catalog/migrations/versions/") for n in names)
    assert "catalog/data/quants.json" in names
    assert any(n.startswith("catalog/data/gpus/") for n in names)
    assert not any(n.startswith(("tests/", "migrations/")) for n in names)

    # A bare venv, filled by this environment's pip (`--python`): bootstrapping a pip into it
    # would cost a third of the test. Byte-compiling every dependency is skipped too; the
    # commands below compile what they import.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "--quiet",
            "--no-compile",
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "ADVISOR_DB": str(tmp_path / "installed.db"), "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    help_run = subprocess.run(
        [str(bin_dir / "advisor"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "catalog" in help_run.stdout
    gpus = subprocess.run(
        [str(bin_dir / "advisor"), "catalog", "gpus"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert gpus.returncode == 0, gpus.stderr
    assert gpus.stderr.startswith("advisor: created the catalog at sqlite:///")
    from catalog import bundled

    count = re.search(r"^(\d+) GPUs", gpus.stdout, re.MULTILINE)
    assert count is not None and int(count.group(1)) == len(bundled.load().gpus)


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command and .ci/run's stay the same."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Run the tests\n+```(?:sh|bash)?\n(.+?)\n```", readme, re.DOTALL)
    assert match is not None, "README has no '## Run the tests' code block"
    assert match.group(1).strip() in (ROOT / ".ci" / "run").read_text()
