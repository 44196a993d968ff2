"""The command line: exit codes, exact messages, JSON, and that it changes nothing on errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from catalog import bundled
from support import Run, invoke

pytestmark = pytest.mark.usefixtures("ready_catalog")

ADD_CARD = (
    "catalog",
    "add",
    "gpu",
    "--slug",
    "test-card",
    "--name",
    "Testing Card 9000",
    "--vendor",
    "nvidia",
    "--architecture",
    "Test",
    "--market",
    "workstation",
    "--memory",
    "48GiB",
    "--bandwidth",
    "960GB/s",
    "--fp16-tflops",
    "91.1",
    "--source",
    "a test",
    "--alias",
    "TC 9000",
    "--alias",
    "tc9k",
    "--usable-memory-fraction",
    "1",
)


def _card(run: Run) -> dict[str, Any]:
    result = run("catalog", "show", "gpu", "tc9k", "--json")
    assert result.exit_code == 0, result.stderr
    card: dict[str, Any] = json.loads(result.stdout)
    return card


@pytest.mark.sqlite_only("a new SQLite file is created on first use")
def test_first_use_creates_and_seeds(run: Run, tmp_path: Path) -> None:
    """The first command creates the catalog, says so on stderr, and lists the formats."""
    path = tmp_path / "first" / "new.db"
    result = run("--db", str(path), "catalog", "quants", "--json")
    assert result.exit_code == 0
    assert result.stderr.startswith(f"advisor: created the catalog at sqlite:///{path} with ")
    quants = {q["slug"]: q for q in json.loads(result.stdout)}
    assert quants["q4_k_m"]["bits_per_weight"] == 4.8944
    assert run("--db", str(path), "catalog", "quants").stderr == ""  # the second time: silent


def test_add_show_update_remove_gpu(run: Run) -> None:
    """A card added with one option per field persists, updates and goes away."""
    added = run(*ADD_CARD)
    assert (added.exit_code, added.stderr) == (0, "advisor: added GPU 'test-card'\n")
    card = _card(run)
    assert (card["memory_bytes"], card["bandwidth_bytes_per_s"], card["fp16_tflops"]) == (
        48 * 2**30,
        960_000_000_000,
        91.1,
    )
    assert card["aliases"] == ["TC 9000", "tc9k"]
    updated = run(
        "catalog",
        "update",
        "gpu",
        "TC-9000",
        "--memory",
        "32GiB",
        "--add-alias",
        "nine-thousand",
        "--remove-alias",
        "tc9k",
    )
    assert (updated.exit_code, updated.stderr) == (0, "advisor: updated GPU 'test-card'\n")
    card = json.loads(run("catalog", "show", "gpu", "nine thousand", "--json").stdout)
    assert (card["memory_bytes"], card["aliases"]) == (32 * 2**30, ["TC 9000", "nine-thousand"])
    assert run("catalog", "remove", "gpu", "test-card", "--yes").exit_code == 0
    gone = run("catalog", "show", "gpu", "test-card")
    assert (gone.exit_code, gone.stderr) == (1, "error: unknown GPU 'test-card'\n")


def test_remove_asks_first(run: Run) -> None:
    """Without --yes, remove asks; answering no keeps the row."""
    run(*ADD_CARD)
    result = run("catalog", "remove", "gpu", "tc9k", input="n\n")
    assert result.exit_code == 1
    assert "Remove GPU 'test-card' (Testing Card 9000) from the catalog?" in result.stderr
    assert _card(run)["slug"] == "test-card"


def test_unknown_name_did_you_mean(run: Run) -> None:
    """An unknown card exits 1 with one line naming the closest cards."""
    run(*ADD_CARD)
    result = run("catalog", "show", "gpu", "test-crad")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "error: unknown GPU 'test-crad'; did you mean 'test-card'?\n",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("--memory", "-24GiB"),
            "error: invalid --memory '-24GiB': write a number and a unit, e.g. 24GiB or 24GB\n",
        ),
        (
            ("--memory", "80G"),
            "error: ambiguous unit in --memory '80G': write GB (powers of "
            "1000) or GiB (powers of 1024)\n",
        ),
        (("--memory", "0GB"), "error: invalid --memory '0GB': must be greater than zero\n"),
        (
            ("--slug", "Bad Slug"),
            "error: --slug: slug 'Bad Slug' must be lowercase letters, "
            "digits, '.', '_' and '-', starting with a letter or digit\n",
        ),
        (
            ("--usable-memory-fraction", "1.5"),
            "error: --usable-memory-fraction: Input should be less than or equal to 1\n",
        ),
    ],
)
def test_invalid_gpu_values_rejected(run: Run, change: tuple[str, str], message: str) -> None:
    """Impossible values exit 2 with one line on stderr and add nothing."""
    args = list(ADD_CARD)
    index = args.index(change[0])
    args[index + 1] = change[1]
    result = run(*args)
    assert (result.exit_code, result.stderr) == (2, message)
    assert run("catalog", "show", "gpu", "tc9k").exit_code == 1


def test_unknown_vendor_rejected(run: Run) -> None:
    """A vendor outside the closed set is a usage error."""
    args = list(ADD_CARD)
    args[args.index("--vendor") + 1] = "3dfx"
    result = run(*args)
    assert result.exit_code == 2
    assert "'3dfx' is not one of 'nvidia', 'amd', 'intel', 'apple'" in result.stderr


def test_missing_field_named_by_option(run: Run) -> None:
    """Adding a card without its memory names the option."""
    args = list(ADD_CARD)
    del args[args.index("--memory") : args.index("--memory") + 2]
    result = run(*args)
    assert (result.exit_code, result.stderr) == (2, "error: --memory: required\n")


def test_add_model_from_config(run: Run) -> None:
    """A config.json becomes a model with its exact computed count and its attention kind."""
    config = Path(__file__).parent / "data" / "configs" / "qwen2.5-0.5b.json"
    families = run("catalog", "families", "--json")
    assert families.exit_code == 0, families.stderr
    assert "qwen2.5" in [f["slug"] for f in json.loads(families.stdout)]
    result = run(
        "catalog",
        "add",
        "model",
        "--from-config",
        str(config),
        "--slug",
        "my-qwen",
        "--family",
        "qwen2.5",
    )
    assert (result.exit_code, result.stderr) == (
        0,
        "advisor: added model 'my-qwen' (494,032,768 parameters)\n",
    )
    shown = json.loads(run("catalog", "show", "model", "my-qwen", "--json").stdout)
    assert shown["family"] == "qwen2.5"
    assert {
        k: shown[k]
        for k in (
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "attention",
            "tie_word_embeddings",
        )
    } == {
        "num_hidden_layers": 24,
        "hidden_size": 896,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "attention": "gqa",
        "tie_word_embeddings": True,
    }


def test_add_model_config_errors(run: Run, tmp_path: Path) -> None:
    """A malformed or incomplete config.json is refused with what is wrong."""
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    result = run(
        "catalog", "add", "model", "--from-config", str(bad), "--slug", "x", "--family", "x"
    )
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {bad}: malformed JSON at line 1 column 2: Expecting property name enclosed "
        "in double quotes\n",
    )
    bad.write_text('{"model_type": "llama", "hidden_size": 64}')
    result = run(
        "catalog", "add", "model", "--from-config", str(bad), "--slug", "x", "--family", "x"
    )
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {bad}: config.json is missing required field 'num_hidden_layers'\n",
    )


def test_export_import_files(run: Run, tmp_path: Path) -> None:
    """Export to a file, remove the row, import the file: the row is back as it was."""
    run(*ADD_CARD)
    before = _card(run)
    out = tmp_path / "gpus.csv"
    exported = run("catalog", "export", "--format", "csv", "--kind", "gpus", "--output", str(out))
    shipped = len(bundled.load().gpus)  # the seeded cards, besides the one added here
    assert (exported.exit_code, exported.stderr) == (
        0,
        f"advisor: exported {shipped + 1} rows to {out}\n",
    )
    assert out.read_text().startswith("table,slug,name,vendor,")
    run("catalog", "remove", "gpu", "test-card", "--yes")
    imported = run("catalog", "import", str(out))
    assert (imported.exit_code, imported.stderr) == (
        0,
        f"advisor: imported gpus.csv: 1 added, 0 updated, {shipped} unchanged, 0 removed\n",
    )
    assert _card(run) == before


def test_import_bad_file_changes_nothing(run: Run, tmp_path: Path) -> None:
    """A file with one bad row is refused whole, naming the row and field."""
    bad = tmp_path / "bad.json"
    card = {
        "slug": "ok-card",
        "name": "OK",
        "vendor": "amd",
        "architecture": "CDNA 3",
        "market": "datacenter",
        "memory_bytes": 2**30,
        "bandwidth_bytes_per_s": 10**9,
        "source": "s",
    }
    bad.write_text(
        json.dumps(
            {
                "format": "gpu-fit-advisor-catalog",
                "version": 1,
                "gpus": [card, {**card, "slug": "broken", "name": "Broken", "market": "moon"}],
            }
        )
    )
    result = run("catalog", "import", str(bad))
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2,
        "error: bad.json gpus[1] (broken): market: Input should be 'consumer', 'laptop', "
        "'workstation', 'datacenter' or 'unified-memory'",
    )
    assert run("catalog", "show", "gpu", "ok-card").exit_code == 1


def test_min_memory_filter_and_units(run: Run) -> None:
    """--min-memory takes explicit units and filters; the table says its unit."""
    run(*ADD_CARD)
    listed = run("catalog", "gpus", "--vendor", "nvidia", "--min-memory", "48GiB", "--json")
    assert "test-card" in [g["slug"] for g in json.loads(listed.stdout)]
    listed = run("catalog", "gpus", "--vendor", "nvidia", "--min-memory", "49GiB", "--json")
    assert "test-card" not in [g["slug"] for g in json.loads(listed.stdout)]
    table = run("catalog", "gpus", "--vendor", "nvidia", "--min-memory", "48GiB")
    assert "Memory (GiB)" in table.stdout and "48.0" in table.stdout
    bad = run("catalog", "gpus", "--min-memory", "48")
    assert (bad.exit_code, bad.stderr) == (
        2,
        "error: missing unit in --min-memory '48': write e.g. 48GiB or 48GB\n",
    )


@pytest.mark.sqlite_only("a SQLite file of its own (tests/test_postgres.py has the server's)")
def test_db_commands(run: Run, tmp_path: Path) -> None:
    """db current, history and upgrade report the schema revision."""
    history = run("db", "history", "--json")
    revisions = json.loads(history.stdout)
    assert [r["head"] for r in revisions][-1] is True
    head = revisions[-1]["revision"]
    db = str(tmp_path / "later.db")
    assert json.loads(run("--db", db, "db", "current", "--json").stdout)["current"] is None
    assert not Path(db).exists()  # looking changes nothing
    assert (
        run("--db", db, "db", "upgrade").stdout == f"sqlite:///{db} is at revision {head} (head)\n"
    )
    assert json.loads(run("--db", db, "db", "current", "--json").stdout)["current"] == head


@pytest.mark.sqlite_only("a damaged SQLite file")
def test_corrupt_database_error(run: Run, tmp_path: Path) -> None:
    """A corrupt catalog file gives a one-line error and stays untouched."""
    path = tmp_path / "broken.db"
    path.write_bytes(b"garbage" * 100)
    result = run("--db", str(path), "catalog", "gpus")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {path} is not a SQLite database; refusing to use or overwrite it\n",
    )
    assert path.read_bytes() == b"garbage" * 100


def _commands(
    command: TyperCommand | TyperGroup, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], TyperCommand | TyperGroup]]:
    """Every command and group under `command`, with the words that invoke it."""
    found = [(path, command)]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            assert isinstance(sub, TyperCommand | TyperGroup), name
            found += _commands(sub, (*path, name))
    return found


# Wide enough that rich wraps no help line: each option is then one row holding its flags
# and its help text (a narrower width wraps a long metavar into the help text's lines).
HELP_COLUMNS = 400


def _words(text: str) -> str:
    """Text as a run of words: line wrapping and indentation undone."""
    return " ".join(text.split())


def _first_word(row: str) -> str | None:
    """The first word of a help row inside its box, past the mark of a required option."""
    words = [w for w in row.split() if w not in ("│", "*")]
    return words[0] if words else None


@pytest.mark.sqlite_only("no catalog: the back end does not matter")
def test_every_command_has_help() -> None:
    """Each command's --help shows its own usage line and the first paragraph of its
    docstring, and every option and argument it takes on a row with its own help text."""
    import typer.main

    from advisor.cli import app

    commands = _commands(typer.main.get_group(app))
    assert len(commands) > 15
    for path, command in commands:
        result = invoke([*path, "--help"], columns=HELP_COLUMNS)
        assert (result.exit_code, result.stderr) == (0, ""), path
        rows = [_words(line) for line in result.stdout.splitlines()]
        usage = _words(f"Usage: advisor {' '.join(path)} [OPTIONS]")
        assert next(r for r in rows if r).startswith(usage), path
        assert command.help, f"{path}: no docstring"
        assert _words(command.help.split("\n\n")[0]) in rows, path
        for param in command.params:
            assert isinstance(param, TyperOption | TyperArgument), (path, param.name)
            assert param.help and param.help.strip(), f"{path} {param.name}: no help text"
            name = param.opts[0] if isinstance(param, TyperOption) else param.metavar or param.name
            named = [r for r in rows if _first_word(r) == name]
            assert len(named) == 1, f"{path} {param.name}: {len(named)} rows name it"
            assert _words(param.help) in named[0], f"{path} {param.name}: help not on its row"


@pytest.mark.sqlite_only("no catalog: the back end does not matter")
def test_help_does_not_import_the_orm() -> None:
    """`advisor --help` loads neither the ORM nor the catalog (fast start)."""
    code = (
        "import sys\nfrom advisor.cli import main\ntry:\n    main(['--help'])\n"
        "finally:\n    print(sorted(m for m in ('sqlmodel', 'sqlalchemy', 'alembic', "
        "'catalog') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.sqlite_only("no catalog: the back end does not matter")
def test_python_dash_m(tmp_path: Path) -> None:
    """`python -m advisor` is the same program."""
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "advisor 0.1.0\n")


@pytest.mark.sqlite_only("no catalog: the back end does not matter")
def test_unusable_database_url(run: Run) -> None:
    """A URL whose database driver does not exist is one line on stderr, exit 1."""
    result = run("--db", "nosuchdb://somewhere", "catalog", "gpus")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: cannot use the database URL 'nosuchdb://somewhere': Can't load plugin: "
        "sqlalchemy.dialects:nosuchdb\n",
    )
