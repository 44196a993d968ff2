"""The README's example outputs are what the commands print today.

How an example is recognised: a fenced ```sh block holding exactly one line, an `advisor …`
command (optionally spelled `.venv/bin/advisor …`), followed, with only blank lines between,
by a fenced block with no language: the output. Each such command runs in process against
a fresh copy of the bundled catalog, at README_COLUMNS wide without colour, and must exit 0,
write nothing to stderr and print exactly the block's lines. Only trailing spaces are
dropped, on both sides: rich pads table rows with them, and editors strip them. Every other
output block must be listed in NOT_RUN with the reason, so a new example cannot go unchecked
by accident.

When a change alters an output on purpose, regenerate the blocks in one step and review the
diff:

    ADVISOR_UPDATE_README=1 .venv/bin/pytest tests/test_readme.py
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import invoke

README = Path(__file__).resolve().parents[1] / "README.md"
# The width the examples are rendered at: what a reader's 100-column view shows unwrapped.
README_COLUMNS = 100
UPDATE_ENV = "ADVISOR_UPDATE_README"
# The one program an example may run, as the README spells it.
PROGRAMS = ("advisor", ".venv/bin/advisor")
FENCE = re.compile(r"^```(\S*)\s*$")

# Output blocks the test does not run, keyed by the command block before them, each with why.
NOT_RUN = {
    ".venv/bin/pip install torch==2.13.0 '.[trace]'   # or: pip install 'gpu-fit-advisor[trace]'\n"
    ".venv/bin/advisor trace --model qwen2.5-0.5b --stage finetune --method full "
    "--precision bf16 --batch 8 --seq 1024": "it installs the trace extra first, takes a "
    "minute of CPU and prints the installed torch and transformers versions; "
    "tests/test_trace.py checks the trace against the estimate",
}


@dataclass(frozen=True)
class Block:
    """One fenced block: its language tag, its text, and the lines of its body in the file."""

    info: str
    body: str
    first: int  # index of the first body line
    end: int  # index of the closing fence


@dataclass(frozen=True)
class Example:
    """A command block and the output block after it."""

    command: Block
    output: Block

    @property
    def args(self) -> list[str] | None:
        """The command's arguments if the example is one `advisor` command, else None."""
        if self.command.info != "sh" or "\n" in self.command.body:
            return None
        words = shlex.split(self.command.body)
        return words[1:] if words and words[0] in PROGRAMS else None


def _blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    opened: tuple[str, int] | None = None
    for index, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence is None:
            continue
        if opened is None:
            opened = (fence.group(1), index)
        else:
            info, start = opened
            blocks.append(Block(info, "\n".join(lines[start + 1 : index]), start + 1, index))
            opened = None
    assert opened is None, f"README.md: the block opened at line {opened[1] + 1} never closes"
    return blocks


def examples(text: str) -> list[Example]:
    """Every output block (no language tag) with the command block right before it."""
    lines = text.split("\n")
    blocks = _blocks(lines)
    found: list[Example] = []
    for before, block in itertools.pairwise(blocks):
        if block.info:
            continue
        between = lines[before.end + 1 : block.first - 1]
        assert before.info in ("sh", "bash") and not any(s.strip() for s in between), (
            f"README.md line {block.first}: an output block must follow its command block"
        )
        found.append(Example(before, block))
    return found


def shown(output: str) -> list[str]:
    """Output as the README shows it: its lines without trailing spaces."""
    return [line.rstrip() for line in output.removesuffix("\n").split("\n")]


def _replace_output(text: str, command: str, output: str) -> str:
    (example,) = [e for e in examples(text) if e.command.body == command]
    lines = text.split("\n")
    return "\n".join(lines[: example.output.first] + shown(output) + lines[example.output.end :])


README_EXAMPLES = examples(README.read_text(encoding="utf-8"))
RUN = [e for e in README_EXAMPLES if e.args is not None]


def test_every_output_block_is_run_or_excused() -> None:
    """Each output block follows one `advisor` command, or NOT_RUN says why not; and the
    README has the examples this test is for."""
    unchecked = {e.command.body for e in README_EXAMPLES if e.args is None}
    assert unchecked == set(NOT_RUN)
    assert len(RUN) >= 4


@pytest.mark.usefixtures("ready_catalog")
@pytest.mark.parametrize("example", RUN, ids=[e.command.body for e in RUN])
def test_readme_output_is_current(example: Example) -> None:
    """The command prints exactly the README's block (or rewrites it when updating)."""
    assert example.args is not None
    result = invoke(example.args, columns=README_COLUMNS)
    assert (result.exit_code, result.stderr) == (0, ""), example.command.body
    if os.environ.get(UPDATE_ENV) == "1":
        text = README.read_text(encoding="utf-8")
        README.write_text(
            _replace_output(text, example.command.body, result.stdout), encoding="utf-8"
        )
        return
    assert shown(result.stdout) == shown(example.output.body), (
        f"README.md line {example.output.first}: the output changed; if on purpose, "
        f"regenerate with {UPDATE_ENV}=1 .venv/bin/pytest tests/test_readme.py"
    )


def test_examples_found_and_replaced_exactly() -> None:
    """The parser finds each example's exact body, and replacing an output touches nothing
    else (so regeneration cannot damage the README)."""
    text = "intro\n\n```sh\nadvisor a --b\n```\n\n```\nold 1\nold 2\n```\n\n```sh\nls\n```\nend\n"
    (example,) = examples(text)
    assert (example.args, example.output.body) == (["a", "--b"], "old 1\nold 2")
    assert _replace_output(text, "advisor a --b", "new  \n\nlines\n") == (
        "intro\n\n```sh\nadvisor a --b\n```\n\n```\nnew\n\nlines\n```\n\n```sh\nls\n```\nend\n"
    )
