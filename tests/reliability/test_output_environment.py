"""The environment around the output (issue 17): an ASCII or Latin-1 stdout, a stdout that
is full or closed, a `--model` too long to be a file name. Real processes where the stream
itself is the case; one line and an exit code, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]
COMMANDS = (
    ("fit", "--model", "llama-3.2-1b", "--gpu", "rtx4090"),
    ("estimate", "--model", "llama-3.2-1b"),
    ("catalog", "gpus"),
    ("catalog", "export"),
)


def _advisor(
    catalog: Path, *args: str, encoding: str = "utf-8", shell_redirect: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """`python -m advisor --db catalog args` in a real process, stdout in `encoding`; with
    `shell_redirect`, through sh so the redirect (>/dev/full, >&-) applies to the process."""
    env = {
        **os.environ,
        "PYTHONIOENCODING": encoding,
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "ADVISOR_DB": str(catalog),
    }
    argv = [sys.executable, "-m", "advisor", *args]
    if shell_redirect:
        quoted = " ".join(f"'{a}'" for a in argv)
        return subprocess.run(
            ["sh", "-c", f"exec {quoted} {shell_redirect}"],
            capture_output=True,
            env=env,
            timeout=120,
        )
    return subprocess.run(argv, capture_output=True, env=env, timeout=120)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_output_on_a_narrow_encoding(catalog_file: Path, encoding: str) -> None:
    """Issue 17: a non-UTF-8 locale or an ASCII stdout was a UnicodeEncodeError in fit,
    estimate, `catalog gpus` and export. Now tables fall back to ASCII boxes and stand-ins,
    and a JSON export escapes what stdout cannot hold: the same JSON value."""
    for args in COMMANDS:
        done = _advisor(catalog_file, *args, encoding=encoding)
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace"))
        assert b"Traceback" not in done.stderr
        done.stdout.decode(encoding)  # written in the stream's own encoding
        if args[0] == "fit":
            assert b"#" in done.stdout  # the bar, as ASCII
    utf8 = _advisor(catalog_file, "catalog", "export").stdout.decode("utf-8")
    narrow = _advisor(catalog_file, "catalog", "export", encoding=encoding).stdout
    assert json.loads(narrow.decode(encoding)) == json.loads(utf8)


def test_csv_export_on_ascii_stdout(catalog_file: Path) -> None:
    """A CSV export cannot escape a character: refused in one line, pointing at -o."""
    done = _advisor(catalog_file, "catalog", "export", "--format", "csv", encoding="ascii")
    utf8 = _advisor(catalog_file, "catalog", "export", "--format", "csv").stdout
    if utf8.isascii():
        assert done.returncode == 0 and done.stdout == utf8
    else:
        assert done.returncode == 2
        assert done.stderr.decode() == (
            "error: stdout's encoding cannot hold every character of this CSV export; "
            "use -o FILE (written as UTF-8) or a UTF-8 locale\n"
        )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", COMMANDS)
def test_stdout_full(catalog_file: Path, args: tuple[str, ...]) -> None:
    """Issue 17: stdout to /dev/full was a traceback. Now one line, exit 1."""
    done = _advisor(catalog_file, *args, shell_redirect=">/dev/full")
    assert (done.returncode, done.stderr.decode()) == (
        1,
        "error: cannot write the output to stdout: No space left on device\n",
    )


def test_stdout_closed(catalog_file: Path) -> None:
    """Issue 17: a closed stdout was a traceback. Now one line, exit 1."""
    done = _advisor(catalog_file, "catalog", "gpus", shell_redirect=">&-")
    assert (done.returncode, done.stderr.decode()) == (
        1,
        "error: cannot write the output to stdout: it is closed\n",
    )


def test_model_name_too_long_for_a_file(ready_catalog: Path, cli: Fixture) -> None:
    """Issue 17: a 300-character --model was "File name too long" as a traceback. Now a
    catalog look-up that names nothing, or, ending in .json, a file that cannot be read."""
    name = "m" * 300
    result = cli("estimate", "--model", name)
    assert (result.exit_code, result.traceback) == (1, None)
    assert result.stderr == f"error: unknown model {name!r}\n"
    result = cli("estimate", "--model", name + ".json")
    assert (result.exit_code, result.traceback) == (2, None)
    assert result.stderr == f"error: cannot read {name}.json: File name too long\n"
