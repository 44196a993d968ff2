"""Export → import → export is byte-identical in JSON and CSV; `catalog import` of any input
ends in success or one line and an exit code, never a traceback and never a partial write."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import bundled

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]

USER_ROWS = (
    (
        "catalog", "add", "gpu", "--slug", "test-card", "--name", "Testing Card 9000",
        "--vendor", "nvidia", "--architecture", "Test", "--market", "workstation",
        "--memory", "48GiB", "--bandwidth", "960GB/s", "--source", "a test, with \"quotes\"",
        "--alias", "TC 9000", "--alias", "tc9k", "--notes", "line one\nline two, é",
    ),
)  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_round_trip_is_byte_identical(
    fmt: str, catalog_file: Path, template_catalog: Path, cli: Fixture, tmp_path: Path
) -> None:
    """A catalog with a user's row (quotes, a newline, an accent, aliases) exported, imported
    into a fresh catalog and exported again gives the same bytes; re-importing changes
    nothing."""
    db = str(catalog_file)
    for row in USER_ROWS:
        assert cli("--db", db, *row).exit_code == 0
    first = tmp_path / f"first.{fmt}"
    assert cli("--db", db, "catalog", "export", "--format", fmt, "-o", str(first)).exit_code == 0
    fresh = tmp_path / "fresh.db"
    shutil.copyfile(template_catalog, fresh)
    imported = cli("--db", str(fresh), "catalog", "import", str(first))
    assert imported.exit_code == 0, imported.stderr
    second = tmp_path / f"second.{fmt}"
    assert (
        cli("--db", str(fresh), "catalog", "export", "--format", fmt, "-o", str(second)).exit_code
        == 0
    )
    assert second.read_bytes() == first.read_bytes()
    again = cli("--db", db, "catalog", "import", str(first))
    assert again.stderr.startswith(f"advisor: imported first.{fmt}: 0 added, 0 updated, ")
    assert again.stderr.endswith(" unchanged, 0 removed\n")


def test_csv_with_a_byte_order_mark(catalog_file: Path, cli: Fixture, tmp_path: Path) -> None:
    """A CSV saved by a spreadsheet starts with a byte-order mark: it is read as the same
    file without one."""
    db = str(catalog_file)
    plain = tmp_path / "q.csv"
    assert (
        cli(
            "--db", db, "catalog", "export", "--format", "csv", "--kind", "quants", "-o", str(plain)
        ).exit_code
        == 0
    )
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    result = cli("--db", db, "catalog", "import", str(marked))
    assert (result.exit_code, result.traceback) == (0, None), result.stderr
    quants = len(bundled.load().quants)
    assert result.stderr == (
        f"advisor: imported marked.csv: 0 added, 0 updated, {quants} unchanged, 0 removed\n"
    )


# --- fuzz ----------------------------------------------------------------------------------

FUZZ_EXAMPLES = 40
NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
GPU_ROW = {
    "slug": "fuzz-card", "name": "Fuzz Card", "vendor": "nvidia", "architecture": "Test",
    "market": "workstation", "memory_bytes": 2**34, "bandwidth_bytes_per_s": 10**12,
    "source": "a test",
}  # fmt: skip


@st.composite
def import_files(draw: st.DrawFn) -> str:
    """Text of a file to import: noise, a malformed export, or a real-looking export with
    one field of one row replaced by a nasty value, or nested deep."""
    choice = draw(st.integers(min_value=0, max_value=4))
    if choice == 0:
        return draw(st.text(max_size=200))
    if choice == 1:
        depth = draw(st.integers(min_value=1, max_value=100_000))
        return '{"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": ' + "[" * depth
    row = dict(GPU_ROW)
    field = draw(st.sampled_from([*GPU_ROW, "aliases", "fp16_tflops", "release_year", "x"]))
    row[field] = draw(NASTY)
    data: dict[str, Any] = {"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": [row]}
    if choice == 3:
        data[draw(st.sampled_from(["models", "families", "quants", "format", "version"]))] = draw(
            NASTY
        )
    if choice == 4:
        header = "table," + ",".join(GPU_ROW) + "," + field
        cells = ["gpu", *(str(v) for v in GPU_ROW.values()), str(row[field])]
        return header + "\n" + ",".join(cells) + "\n"
    return json.dumps(data, allow_nan=True)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=import_files())
def test_import_of_any_input(
    text: str, catalog_file: Path, cli: Fixture, snapshot: Fixture, tmp_path: Path
) -> None:
    """Any input: success, or exit 1 or 2 with exactly one line on stderr and the catalog
    unchanged; never a traceback."""
    path = tmp_path / "fuzz.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = snapshot(catalog_file)
    result = cli("--db", str(catalog_file), "catalog", "import", str(path))
    assert result.traceback is None, repr(result.traceback)
    if result.exit_code == 0:
        cli("--db", str(catalog_file), "catalog", "remove", "gpu", "fuzz-card", "--yes")
        return
    assert result.exit_code in (1, 2)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert snapshot(catalog_file) == before
