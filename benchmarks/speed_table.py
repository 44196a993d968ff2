"""Print the speed calibration table of docs/estimates.md: every published speed record
(tests/data/speed.jsonl), its prediction and error, or why it cannot be expressed.

Run: python benchmarks/speed_table.py > /tmp/table.md   (then paste under "Speed calibration")

Prints figures; not a test (tests/test_speed_calibration.py holds the bounds).
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from speed_cases import PREDICTED, Case, cases


def _row(c: Case) -> str:
    assert c.predicted is not None
    return (
        f"| {c.id.replace('llamacpp_xiongjiedai', 'llamacpp')} | {c.kind} | "
        f"{c.model.split('/')[-1][:28]} | {c.quant[:14]} | {c.gpu[:30]} | {c.gpus} | "
        f"{c.measured:,.1f} | {c.predicted:,.1f} | {c.ratio:.2f} |"
    )


def main() -> None:
    every = cases()
    expressed = [c for c in every if c.predicted is not None]
    out = sys.stdout
    out.write("| kind | cases | median error | within 15 % | within 2x | worst |\n")
    out.write("|---|---:|---:|---:|---:|---:|\n")
    for kind in PREDICTED:
        mine = [c for c in expressed if c.kind == kind]
        if not mine:
            continue
        errors = [c.error for c in mine]
        factors = [max(c.ratio, 1 / c.ratio) for c in mine]
        out.write(
            f"| {kind} | {len(mine)} | {statistics.median(errors):.1%} | "
            f"{sum(e <= 0.15 for e in errors)} | {sum(f <= 2 for f in factors)} | "
            f"{max(factors):.2f}x |\n"
        )
    out.write("\nNot expressed:\n\n")
    for reason, n in Counter(c.reason for c in every if c.predicted is None).most_common():
        out.write(f"- {n}: {reason}\n")
    out.write("\n<details><summary>Every expressed case</summary>\n\n")
    out.write("| id | kind | model | format | card | n | measured | predicted | ratio |\n")
    out.write("|---|---|---|---|---|---:|---:|---:|---:|\n")
    for c in expressed:
        out.write(_row(c) + "\n")
    out.write("\n</details>\n")


if __name__ == "__main__":
    main()
