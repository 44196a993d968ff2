"""Regenerate the calibration table: each case traced (`advisor trace`) beside the estimate.

Run: python benchmarks/calibrate.py                       (the tiny configs of tests/data/trace)
     python benchmarks/calibrate.py --cases tests/data/calibration/traced.jsonl \
         --configs tests/data/configs [--only ID ...]     (a calibration set: its configs and
                                                           flags, and its recorded peaks)

A case file holds one JSON object a line: `id`, `config` (a config.json path, relative to the
file, or a catalog model name) and `advisor_estimate_flags`; `peak_bytes`, where present, is
checked against the trace. Prints figures (needs the `trace` extra); not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

from advisor.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "trace"
# The workloads every tiny config is traced with.
TINY_WORKLOADS = {
    "inf": ["--stage", "inference", "--batch", "2", "--seq", "256"],
    "ft": ["--stage", "finetune", "--batch", "2", "--seq", "256"],
    "pt32": ["--stage", "pretrain", "--precision", "fp32", "--batch", "2", "--seq", "256"],
    "lora": ["--stage", "finetune", "--method", "lora", "--batch", "2", "--seq", "256"],
}
GROUPS = ("parameters", "gradients", "optimizer", "activations", "total")


def tiny_cases() -> list[dict[str, Any]]:
    return [
        {
            "id": f"{path.stem}-{name}",
            "config": str(path),
            "advisor_estimate_flags": flags,
        }
        for path in sorted(TINY.glob("tiny-*.json"))
        for name, flags in TINY_WORKLOADS.items()
    ]


def file_cases(path: Path, configs: Path | None) -> list[dict[str, Any]]:
    """The cases of `path`; configs relative to the file, or by file name in `configs`."""
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for case in cases:
        config = Path(case["config"])
        if config.suffix == ".json":  # else a catalog name
            case["config"] = str(configs / config.name if configs else path.parent / config)
    return cases


def run_case(case: dict[str, Any]) -> tuple[dict[str, Any] | None, str, float]:
    """`advisor trace --json` on one case: (its JSON or None, stderr, seconds)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    args = ["trace", "--model", case["config"], *case["advisor_estimate_flags"], "--json"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(args)
        except Exception as error:  # a failure of one case is a row of the table
            print(f"error: {type(error).__name__}: {error}", file=stderr)
            code = 1
    seconds = time.perf_counter() - start
    return (json.loads(stdout.getvalue()) if code == 0 else None), stderr.getvalue(), seconds


def _pct(value: float | None) -> str:
    return "      —" if value is None else f"{value:+7.2f}"


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, help="a traced.jsonl-style case file")
    parser.add_argument("--configs", type=Path, help="directory of the case file's configs")
    parser.add_argument("--only", nargs="*", default=[], help="case ids to run")
    args = parser.parse_args()
    cases = file_cases(args.cases, args.configs) if args.cases else tiny_cases()
    if args.only:
        cases = [c for c in cases if c["id"] in args.only]
    print(
        f"{'case':32} {'traced bytes':>16} {'estimate':>16} "
        + " ".join(f"{g[:7]:>7}" for g in GROUPS)
        + f" {'recorded':>9} {'s':>6}"
    )
    for case in cases:
        result, errors, seconds = run_case(case)
        if result is None:
            print(f"{case['id']:32} {errors.strip()}")
            continue
        traced = result["traced"]["peak_bytes"]
        estimated = result["per_gpu_bytes"] - result["components"]["runtime_overhead"]
        recorded = case.get("peak_bytes")
        check = "" if recorded is None else f"{(traced - recorded) / recorded * 100:+8.3f}%"
        print(
            f"{case['id']:32} {traced:16,} {estimated:16,} "
            + " ".join(_pct(result["error_pct"][g]) for g in GROUPS)
            + f" {check:>9} {seconds:6.1f}"
        )
    print(
        "error columns: (estimate - trace) / trace in %, by group (see advisor/trace.py "
        "COMPARED_GROUPS); recorded: the trace against the case file's peak_bytes"
    )


if __name__ == "__main__":
    main_()
