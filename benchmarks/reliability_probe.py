"""Re-run issue 17's five categories of hostile and concurrent cases; count tried/good/bad.

Each case runs the real CLI on its own copy of a seeded catalog: in this process (`main`,
streams captured) where the case is an argument or a file, in a child process where the
case is the process's own stdout, and in several forked processes at once for concurrency.
A case is good when it gives what issue 17 asks: success, or one line on stderr with the
expected exit code, no traceback, and the catalog (or file) unchanged or changed as asked.

Run: python benchmarks/reliability_probe.py [-v]   (prints a table; not a test)
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA = json.loads((ROOT / "tests/data/configs/llama-3.2-1b.json").read_text(encoding="utf-8"))
MIXTRAL = json.loads((ROOT / "tests/data/configs/mixtral-8x7b.json").read_text(encoding="utf-8"))
GEMMA3 = {
    "model_type": "gemma3_text",
    "num_hidden_layers": 26,
    "hidden_size": 1152,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "intermediate_size": 6912,
    "vocab_size": 262144,
    "max_position_embeddings": 32768,
    "sliding_window": 512,
}
# How long one case may run before it counts as a hang (in process: interrupted by SIGALRM).
HANG_SECONDS = 60
# Address space the probe may use: a case that blows memory up meets MemoryError here instead
# of the machine's out-of-memory killer.
MEMORY_LIMIT_BYTES = 4 * 2**30


class Hang(Exception):
    """A case ran past HANG_SECONDS."""


def _interrupt(signum: int, frame: object) -> None:
    raise Hang(f"still running after {HANG_SECONDS} s")


@dataclass
class Ran:
    code: int
    out: str
    err: str
    escaped: str | None = None  # an exception that left the CLI: always bad


@dataclass
class Tally:
    tried: int = 0
    good: int = 0
    bad: list[str] = field(default_factory=list)


def run(db: Path, *args: str, stdin: str | None = None) -> Ran:
    """The CLI in this process on `db`."""
    from advisor.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin if stdin is not None else "")
    signal.signal(signal.SIGALRM, _interrupt)
    signal.alarm(HANG_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--db", str(db), *args])
    except BaseException as error:  # the probe records what escaped the CLI
        return Ran(-1, out.getvalue(), err.getvalue(), f"{type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        sys.stdin = old_stdin
    return Ran(code, out.getvalue(), err.getvalue())


def child(db: Path, *args: str, encoding: str = "utf-8", redirect: str = "") -> Ran:
    """The CLI in a real process; `redirect` (>/dev/full, >&-) applies to its stdout."""
    env = {**os.environ, "PYTHONIOENCODING": encoding, "ADVISOR_DB": str(db), "COLUMNS": "120"}
    argv = " ".join(f"'{a}'" for a in (sys.executable, "-m", "advisor", *args))
    done = subprocess.run(
        ["sh", "-c", f"exec {argv} {redirect}"],
        capture_output=True,
        env=env,
        timeout=HANG_SECONDS,
        cwd=ROOT,
    )
    out = done.stdout.decode(encoding, errors="strict") if not redirect else ""
    err = done.stderr.decode("utf-8", errors="replace")
    escaped = err if "Traceback" in err else None
    return Ran(done.returncode, out, err, escaped)


def one_line(ran: Ran, code: int) -> bool:
    return (
        ran.escaped is None
        and ran.code == code
        and ran.err.count("\n") == 1
        and ran.err.startswith("error: ")
    )


def rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        names = [
            n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {n: sorted(connection.execute(f'SELECT * FROM "{n}"'), key=repr) for n in names}
    finally:
        connection.close()


class Probe:
    def __init__(self, work: Path, template: Path, verbose: bool) -> None:
        self.work, self.template, self.verbose = work, template, verbose
        self.tallies: dict[str, Tally] = {}
        self.serial = 0

    def fresh(self) -> Path:
        self.serial += 1
        folder = self.work / f"case{self.serial}"
        folder.mkdir()
        db = folder / "catalog.db"
        shutil.copyfile(self.template, db)
        return db

    def config(self, base: dict[str, object], **changes: object) -> str:
        self.serial += 1
        path = self.work / f"config{self.serial}.json"
        path.write_text(json.dumps({**base, **changes}), encoding="utf-8")
        return str(path)

    def case(self, category: str, name: str, check: Callable[[], bool]) -> None:
        tally = self.tallies.setdefault(category, Tally())
        tally.tried += 1
        start = time.perf_counter()
        try:
            good = check()
        except Exception as error:
            good = False
            name += f" ({type(error).__name__}: {error})"
        if time.perf_counter() - start > HANG_SECONDS:
            good = False
        if good:
            tally.good += 1
        else:
            tally.bad.append(name)
        if self.verbose:
            print(f"{'ok ' if good else 'BAD'} {category}: {name}")

    def refused(self, category: str, name: str, args: Sequence[str], code: int = 2) -> None:
        """A case that must be one line with `code`, the catalog unchanged."""

        def check() -> bool:
            db = self.fresh()
            before = rows(db)
            return one_line(run(db, *args), code) and rows(db) == before

        self.case(category, name, check)


def bad_input(p: Probe) -> None:
    c = "bad CLI input and config.json files"
    big = str(10**19)
    counts = [
        ("fit --max-gpus 10^9", ["fit", "--model", "llama-3.2-1b", "--max-gpus", "1000000000"]),
        (
            "fit --max-gpus 10^9 finetune",
            ["fit", "--model", "llama-3.2-1b", "--stage", "finetune", "--max-gpus", "1000000000"],
        ),
        ("fit --count 10^9", ["fit", "--model", "llama-3.2-1b", "--count", "1000000000"]),
        (
            "which-models --count 10^9",
            ["which-models", "--gpu", "rtx4090", "--count", "1000000000"],
        ),
        (
            "which-models --context 10^40",
            ["which-models", "--gpu", "rtx4090", "--context", str(10**40)],
        ),
        ("estimate --gpus 10^9", ["estimate", "--model", "llama-3.2-1b", "--gpus", "1000000000"]),
        ("estimate --batch 10^19", ["estimate", "--model", "llama-3.2-1b", "--batch", big]),
        ("estimate --seq 10^19", ["estimate", "--model", "llama-3.2-1b", "--seq", big]),
        ("estimate --batch 0", ["estimate", "--model", "llama-3.2-1b", "--batch", "0"]),
        ("estimate --seq -1", ["estimate", "--model", "llama-3.2-1b", "--seq", "-1"]),
        ("fit --max-gpus 0", ["fit", "--model", "llama-3.2-1b", "--max-gpus", "0"]),
        (
            "--lora-rank 10^19",
            [
                "estimate",
                "--model",
                "llama-3.2-1b",
                "--stage",
                "finetune",
                "--method",
                "lora",
                "--lora-rank",
                big,
            ],
        ),
        (
            "--trainable-layers beyond the model",
            [
                "estimate",
                "--model",
                "llama-3.2-1b",
                "--stage",
                "finetune",
                "--method",
                "freeze",
                "--trainable-layers",
                "17",
            ],
        ),
        (
            "--trainable-layers 10^19",
            [
                "estimate",
                "--model",
                "llama-3.2-1b",
                "--stage",
                "finetune",
                "--method",
                "freeze",
                "--trainable-layers",
                big,
            ],
        ),
        (
            "--trainable-layers at inference",
            ["estimate", "--model", "llama-3.2-1b", "--trainable-layers", "2"],
        ),
        ("fit --all with --gpu", ["fit", "--model", "llama-3.2-1b", "--gpu", "rtx4090", "--all"]),
        ("catalog gpus --min-memory ''", ["catalog", "gpus", "--min-memory", ""]),
        (
            "catalog gpus --min-memory 10^99GiB",
            ["catalog", "gpus", "--min-memory", "9" * 99 + "GiB"],
        ),
        (
            "update gpu --fp16-tflops inf",
            ["catalog", "update", "gpu", "rtx4090", "--fp16-tflops", "inf"],
        ),
        (
            "update gpu --fp16-tflops nan",
            ["catalog", "update", "gpu", "rtx4090", "--fp16-tflops", "nan"],
        ),
        (
            "update gpu --cloud-price Infinity",
            ["catalog", "update", "gpu", "rtx4090", "--cloud-price", "Infinity"],
        ),
        (
            "update gpu --memory beyond 64 bits",
            ["catalog", "update", "gpu", "rtx4090", "--memory", "99999999999999999999GiB"],
        ),
        (
            "update model --num-hidden-layers 10^19",
            ["catalog", "update", "model", "llama-3.2-1b", "--num-hidden-layers", big],
        ),
        (
            "update model --hidden-size 2^70",
            ["catalog", "update", "model", "llama-3.2-1b", "--hidden-size", str(2**70)],
        ),
        (
            "update gpu 10,000-character alias",
            ["catalog", "update", "gpu", "rtx4090", "--add-alias", "a" * 10_000],
        ),
    ]
    for name, args in counts:
        p.refused(c, name, args)
    configs = [
        ("config num_hidden_layers 10^9", LLAMA, {"num_hidden_layers": 10**9}),
        ("config num_hidden_layers 10^19", LLAMA, {"num_hidden_layers": 10**19}),
        ("config hidden_size 2^70", LLAMA, {"hidden_size": 2**70}),
        ("config vocab_size 10^12", LLAMA, {"vocab_size": 10**12}),
        ("config experts 10^9", MIXTRAL, {"num_local_experts": 10**9}),
        ('config tie_word_embeddings "no"', LLAMA, {"tie_word_embeddings": "no"}),
        ("config num_key_value_heads 0", LLAMA, {"num_key_value_heads": 0}),
        ("config Gemma-3 sliding_window_pattern 0", GEMMA3, {"sliding_window_pattern": 0}),
        ('config Gemma-3 sliding_window_pattern "six"', GEMMA3, {"sliding_window_pattern": "six"}),
        ("config hidden_size 2048.5", LLAMA, {"hidden_size": 2048.5}),
        ('config attention_bias "yes"', LLAMA, {"attention_bias": "yes"}),
        ("config model_type a list", LLAMA, {"model_type": ["llama"]}),
        (
            "config layer_types of the wrong length",
            GEMMA3,
            {"layer_types": ["sliding_attention"] * 10**5},
        ),
    ]
    for name, base, changes in configs:
        path = p.config(base, **changes)
        for command in (
            ["estimate", "--model", path],
            ["fit", "--model", path],
            ["catalog", "add", "model", "--from-config", path, "--slug", "x", "--family", "llama"],
        ):
            p.refused(c, f"{name}: {command[0]} {command[1]}", command)
    nested = p.work / "nested.json"
    nested.write_text('{"model_type": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    digits = p.work / "digits.json"
    digits.write_text('{"num_hidden_layers": ' + "9" * 5000 + "}", encoding="utf-8")
    noise = p.work / "noise.json"
    noise.write_bytes(b"\xff\xfe not json")
    for name, path in (
        ("nested 100,000 deep", nested),
        ("5,000-digit integer", digits),
        ("not UTF-8", noise),
    ):
        p.refused(c, f"config {name}", ["estimate", "--model", str(path)])
    p.refused(c, "config that does not exist", ["estimate", "--model", "missing.json"])
    p.refused(c, "unknown model name", ["estimate", "--model", "no-such-model"], code=1)


def catalog_writes(p: Probe) -> None:
    c = "catalog writes, import/export, sync"

    def replace_mirrors_only_its_kinds() -> bool:
        db = p.fresh()
        models = rows(db)["model"]
        out = db.parent / "g.json"
        exported = run(db, "catalog", "export", "--kind", "gpus", "-o", str(out))
        imported = run(db, "catalog", "import", "--replace", "--yes", str(out))
        return exported.code == 0 and imported.code == 0 and rows(db)["model"] == models

    def replace_asks_first() -> bool:
        db = p.fresh()
        out = db.parent / "g.json"
        run(db, "catalog", "export", "--kind", "gpus", "-o", str(out))
        data = json.loads(out.read_text(encoding="utf-8"))
        data["gpus"] = data["gpus"][1:]
        out.write_text(json.dumps(data), encoding="utf-8")
        before = rows(db)
        answered_no = run(db, "catalog", "import", "--replace", str(out), stdin="n\n")
        return answered_no.code == 1 and rows(db) == before

    def export_onto_catalog() -> bool:
        db = p.fresh()
        data = db.read_bytes()
        ran = run(db, "catalog", "export", "-o", str(db), "--force")
        return one_line(ran, 1) and db.read_bytes() == data

    def export_onto_existing_file() -> bool:
        db = p.fresh()
        other = db.parent / "notes.txt"
        other.write_text("keep", encoding="utf-8")
        return (
            one_line(run(db, "catalog", "export", "-o", str(other)), 1)
            and other.read_text(encoding="utf-8") == "keep"
        )

    def round_trip(fmt: str) -> Callable[[], bool]:
        def check() -> bool:
            db = p.fresh()
            first = run(db, "catalog", "export", "--format", fmt).out
            path = db.parent / f"x.{fmt}"
            path.write_text(first, encoding="utf-8")
            fresh = p.fresh()
            run(fresh, "catalog", "import", "--replace", "--yes", str(path))
            return run(fresh, "catalog", "export", "--format", fmt).out == first

        return check

    def import_refused(content: str, name: str) -> Callable[[], bool]:
        def check() -> bool:
            db = p.fresh()
            path = db.parent / name
            path.write_text(content, encoding="utf-8")
            before = rows(db)
            ran = run(db, "catalog", "import", str(path))
            return (
                ran.escaped is None
                and ran.code in (1, 2)
                and ran.err.count("\n") == 1
                and rows(db) == before
            )

        return check

    def sync_after_rename() -> bool:
        db = p.fresh()
        run(db, "catalog", "update", "gpu", "rtx4090", "--slug", "my4090")
        connection = sqlite3.connect(db)
        connection.execute("UPDATE catalog_meta SET value = 'older' WHERE key = 'bundled_digest'")
        connection.commit()
        connection.close()
        synced = run(db, "catalog", "sync")
        after = run(db, "catalog", "gpus")
        return (
            synced.code == 0
            and "rtx4090" in synced.out + synced.err
            and "catalog sync" not in after.err
        )

    def add_then_show() -> bool:
        db = p.fresh()
        added = run(
            db,
            "catalog",
            "add",
            "gpu",
            "--slug",
            "rtx-6090",
            "--name",
            "RTX 6090",
            "--vendor",
            "nvidia",
            "--architecture",
            "Next",
            "--market",
            "consumer",
            "--memory",
            "32GiB",
            "--bandwidth",
            "1792GB/s",
            "--source",
            "probe",
        )
        return added.code == 0 and run(db, "catalog", "show", "gpu", "rtx-6090").code == 0

    p.case(
        c,
        "export --kind gpus then import --replace: other kinds kept",
        replace_mirrors_only_its_kinds,
    )
    p.case(c, "replace that removes rows asks first; 'n' changes nothing", replace_asks_first)
    p.case(c, "export -o onto the catalog (even --force)", export_onto_catalog)
    p.case(c, "export -o onto an existing file without --force", export_onto_existing_file)
    p.case(c, "JSON export/import/export byte-identical", round_trip("json"))
    p.case(c, "CSV export/import/export byte-identical", round_trip("csv"))
    p.case(c, "import of nested JSON", import_refused("[" * 100_000 + "]" * 100_000, "deep.json"))
    p.case(
        c,
        "import of inf memory",
        import_refused('{"gpus": [{"slug": "x", "memory_bytes": Infinity}]}', "inf.json"),
    )
    p.case(
        c,
        "import of a 70-bit integer",
        import_refused('{"gpus": [{"slug": "x", "memory_bytes": ' + str(2**70) + "}]}", "big.json"),
    )
    p.case(c, "import of noise", import_refused("\x00\x01garbage", "noise.json"))
    p.case(c, "sync after renaming a bundled card", sync_after_rename)
    p.case(c, "add gpu (README example) then show", add_then_show)


def database_faults(p: Probe) -> None:
    c = "database faults"

    def foreign(revision: str | None) -> Callable[[], bool]:
        def check() -> bool:
            db = p.fresh().parent / "foreign.db"
            connection = sqlite3.connect(db)
            connection.execute("CREATE TABLE notes (body TEXT)")
            if revision is not None:
                connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
                connection.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
            connection.commit()
            connection.close()
            data = db.read_bytes()
            ran = run(db, "catalog", "gpus")
            extra = [f for f in db.parent.iterdir() if f.name.startswith("foreign.db") and f != db]
            return one_line(ran, 1) and db.read_bytes() == data and not extra

        return check

    def damaged(how: str) -> Callable[[], bool]:
        def check() -> bool:
            db = p.fresh()
            if how == "pages":
                size = db.stat().st_size
                with db.open("r+b") as handle:
                    handle.seek(4096)
                    handle.write(b"\xff" * (size - 4096))
            elif how == "truncated":
                with db.open("r+b") as handle:
                    handle.truncate(db.stat().st_size // 2)
            else:
                db.write_bytes(b"not a database at all" * 100)
            data = db.read_bytes()
            ran = run(db, "catalog", "gpus")
            return one_line(ran, 1) and db.read_bytes() == data

        return check

    def read_only_file() -> bool:
        db = p.fresh()
        db.chmod(0o444)
        ran = run(db, "catalog", "update", "gpu", "rtx4090", "--notes", "x")
        db.chmod(0o644)
        return os.geteuid() == 0 or one_line(ran, 1)

    for revision in (None, "0001", "0002", "ffff"):
        p.case(c, f"foreign SQLite file (alembic {revision})", foreign(revision))
    for how in ("pages", "truncated", "not sqlite"):
        p.case(c, f"damaged catalog ({how})", damaged(how))
    p.case(c, "read-only catalog file on update (as a user)", read_only_file)
    p.refused(
        c,
        "--db folder under a plain file",
        ["--db", "/etc/hostname/sub/catalog.db", "catalog", "gpus"],
        code=1,
    )


def _writer(db: str, index: int, log: str) -> None:
    from advisor.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(
                ["--db", db, "catalog", "update", "gpu", "rtx4090", "--notes", f"writer {index}"]
            )
    except BaseException as error:
        Path(log).write_text(repr(error), encoding="utf-8")
        os._exit(99)
    Path(log).write_text(err.getvalue(), encoding="utf-8")
    os._exit(code)


def _first_use(db: str, index: int, log: str) -> None:
    from advisor.cli import main

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["--db", db, "catalog", "gpus"])
    except BaseException:
        os._exit(99)
    os._exit(code)


def concurrency(p: Probe, processes: int) -> None:
    c = "concurrency (one case = one process)"
    fork = multiprocessing.get_context("fork")
    for target, make in ((_writer, p.fresh), (_first_use, lambda: p.fresh().parent / "new.db")):
        db = make()
        jobs = [
            fork.Process(target=target, args=(str(db), i, str(db) + f".{i}.log"))
            for i in range(processes)
        ]
        for job in jobs:
            job.start()
        for index, job in enumerate(jobs):
            job.join(HANG_SECONDS)
            code = job.exitcode
            p.case(c, f"{target.__name__.strip('_')} process {index}", lambda code=code: code == 0)


def environment(p: Probe) -> None:
    c = "environment"
    commands = [
        ["fit", "--model", "llama-3.2-1b", "--gpu", "rtx4090"],
        ["estimate", "--model", "llama-3.2-1b"],
        ["catalog", "gpus"],
        ["catalog", "export"],
    ]
    for encoding in ("ascii", "latin-1"):
        for args in commands:
            db = p.fresh()
            p.case(
                c,
                f"{encoding} stdout: {' '.join(args[:2])}",
                lambda db=db, args=args, e=encoding: child(db, *args, encoding=e).code == 0,
            )
    for args in commands:
        db = p.fresh()
        p.case(
            c,
            f"stdout /dev/full: {' '.join(args[:2])}",
            lambda db=db, args=args: one_line(child(db, *args, redirect=">/dev/full"), 1),
        )
    db = p.fresh()
    p.case(
        c,
        "stdout closed: catalog gpus",
        lambda: one_line(child(db, "catalog", "gpus", redirect=">&-"), 1),
    )
    p.refused(c, "300-character --model", ["estimate", "--model", "m" * 300], code=1)
    p.refused(c, "300-character --model ending .json", ["estimate", "--model", "m" * 300 + ".json"])

    def stdin_closed_at_remove() -> bool:
        db = p.fresh()
        env = {**os.environ, "ADVISOR_DB": str(db)}
        done = subprocess.run(
            [sys.executable, "-m", "advisor", "catalog", "remove", "gpu", "rtx4090"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=HANG_SECONDS,
            cwd=ROOT,
        )
        return (
            done.returncode == 2
            and done.stderr.decode().count("\n") <= 2
            and b"Traceback" not in done.stderr
        )

    def csv_bom() -> bool:
        db = p.fresh()
        text = run(db, "catalog", "export", "--format", "csv", "--kind", "gpus").out
        path = db.parent / "bom.csv"
        path.write_text("\ufeff" + text, encoding="utf-8")
        return run(db, "catalog", "import", str(path)).code == 0

    p.case(c, "stdin closed at the remove prompt", stdin_closed_at_remove)
    p.case(c, "CSV with a byte-order mark", csv_bom)


def main(argv: Sequence[str]) -> int:
    verbose = "-v" in argv
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from catalog.session import open_catalog

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        template = work / "template.db"
        open_catalog(str(template)).close()
        probe = Probe(work, template, verbose)
        bad_input(probe)
        catalog_writes(probe)
        database_faults(probe)
        concurrency(probe, processes=8)
        environment(probe)
    print("| category | tried | good | bad |\n|---|---|---|---|")
    for category, tally in probe.tallies.items():
        print(f"| {category} | {tally.tried} | {tally.good} | {len(tally.bad)} |")
    total = sum(t.tried for t in probe.tallies.values())
    print(f"\n{total} cases in {time.perf_counter() - start:.0f} s")
    for category, tally in probe.tallies.items():
        for name in tally.bad:
            print(f"bad: {category}: {name}")
    return 1 if any(t.bad for t in probe.tallies.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
