"""Wall times of `advisor fit` and `advisor which-models`, in process, after their imports.

Two catalogs: the bundled one, and a large one built here (2,000 cards and 200 models, the
bundled rows plus copies with other slugs, sizes and layer counts). Prints, for each command,
the time to import what it needs and the median time of its work over several runs.

Run: python benchmarks/fit_speed.py   (prints figures; not a test)
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

CARDS = 2000
MODELS = 200
RUNS = 5


def timed_import() -> float:
    start = time.perf_counter()
    import rich.table  # noqa: F401

    import advisor.cli
    import advisor.cli.fit_cmd
    import advisor.cli.which_models_cmd
    import advisor.fit  # noqa: F401
    import catalog.queries
    import catalog.session  # noqa: F401

    return time.perf_counter() - start


def build_large(path: Path) -> None:
    """The bundled catalog plus synthetic cards and models up to CARDS and MODELS."""
    from catalog import queries
    from catalog.session import open_catalog
    from catalog.tables import GPUCreate, ModelCreate

    opened = open_catalog(str(path))
    try:
        with opened.session() as session:
            gpus = queries.list_gpus(session)
            for i in range(CARDS - len(gpus)):
                base = queries.gpu_public(session, gpu=gpus[i % len(gpus)]).model_dump()
                base.update(
                    slug=f"{base['slug']}-x{i}",
                    name=f"{base['name']} x{i}",
                    aliases=[],
                    # Sizes a vendor could ship: the base card's memory plus 0-7 GiB.
                    memory_bytes=base["memory_bytes"] + (i % 8) * 2**30,
                )
                queries.add_gpu(session, data=GPUCreate.model_validate(base))
            models = queries.list_models(session)
            for i in range(MODELS - len(models)):
                row = models[i % len(models)]
                base = queries.model_public(session, model=row).model_dump()
                base.update(
                    slug=f"{base['slug']}-x{i}",
                    name=f"{base['name']} x{i}",
                    aliases=[],
                    params=0,
                    active_params=0,
                    attention=None,
                    params_published=False,
                    num_hidden_layers=base["num_hidden_layers"] + 1 + i % 4,
                )
                if base.get("first_k_dense_replace"):
                    base["first_k_dense_replace"] = min(
                        base["first_k_dense_replace"], base["num_hidden_layers"]
                    )
                if base.get("num_sliding_layers"):
                    base["num_sliding_layers"] = None
                    base["sliding_window"] = None
                queries.add_model(session, data=ModelCreate.model_validate(base))
    finally:
        opened.close()


def median_run(args: list[str]) -> float:
    from advisor.cli import main

    times = []
    for _ in range(RUNS):
        sink = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
            code = main(args)
        times.append(time.perf_counter() - start)
        if code != 0:
            raise SystemExit(f"advisor {' '.join(args)} exited {code}")
    return statistics.median(times)


def main() -> None:
    print(f"imports of fit/which-models and their dependencies: {timed_import():.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        bundled = Path(tmp) / "bundled.db"
        large = Path(tmp) / "large.db"
        os.environ["ADVISOR_DB"] = str(bundled)
        median_run(["catalog", "families"])  # creates and seeds the catalog, not timed
        start = time.perf_counter()
        build_large(large)
        print(
            f"built a {CARDS}-card x {MODELS}-model catalog in {time.perf_counter() - start:.1f} s"
        )
        cases = [
            # The cost every command pays (typer's start, opening the catalog): the baseline.
            ("baseline: db current", ["db", "current"]),
            ("fit --model llama-65b (current cards)", ["fit", "--model", "llama-65b"]),
            ("fit --model llama-65b --all", ["fit", "--model", "llama-65b", "--all"]),
            (
                "fit --model llama-2-7b --stage finetune --all",
                ["fit", "--model", "llama-2-7b", "--stage", "finetune", "--all"],
            ),
            ("which-models --gpu rtx4090", ["which-models", "--gpu", "rtx4090"]),
            (
                "which-models --gpu rtx4090 --stage finetune",
                ["which-models", "--gpu", "rtx4090", "--stage", "finetune"],
            ),
        ]
        for db, label in ((bundled, "bundled catalog"), (large, f"{CARDS} x {MODELS} catalog")):
            os.environ["ADVISOR_DB"] = str(db)
            for name, args in cases:
                for fmt in ([], ["--json"]):
                    seconds = median_run([*args, *fmt])
                    shown = f"{name}{' --json' if fmt else ''}"
                    print(f"{label:>22} | {shown:<52} | {seconds * 1000:7.1f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
