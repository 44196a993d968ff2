"""The schema comes from Alembic migrations; upgrades keep the user's rows."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from advisor.errors import DatabaseError
from catalog import migrate
from catalog.session import make_engine, open_catalog
from support import Template

EXPECTED_SCHEMA = {
    "alembic_version": ["version_num"],
    "catalog_meta": ["key", "value"],
    "gpu": [
        "origin",
        "user_modified",
        "slug",
        "name",
        "vendor",
        "architecture",
        "market",
        "memory_bytes",
        "memory_type",
        "bandwidth_bytes_per_s",
        "fp16_tflops",
        "fp8_tflops",
        "int8_tops",
        "interconnect",
        "interconnect_bytes_per_s",
        "release_year",
        "list_price_usd",
        "list_price_date",
        "cloud_price_per_hour_usd",
        "cloud_price_date",
        "usable_memory_fraction",
        "source",
        "notes",
        "id",
        "max_per_node",
        "link",
        "multi_node",
        "default_set",
        "default_set_reason",
        "origin_ref",
    ],
    "gpu_alias": ["id", "key", "name", "gpu_id"],
    "model": [
        "origin",
        "user_modified",
        "slug",
        "name",
        "model_type",
        "params",
        "params_published",
        "active_params",
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
        "attention",
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
        "native_dtype",
        "arch_options",
        "source",
        "notes",
        "id",
        "family_id",
    ],
    "model_alias": ["id", "key", "name", "model_id"],
    "model_family": [
        "origin",
        "user_modified",
        "slug",
        "name",
        "organisation",
        "licence",
        "kind",
        "source",
        "id",
    ],
    "quant_format": [
        "origin",
        "user_modified",
        "slug",
        "name",
        "kind",
        "bits_per_weight",
        "block_bits_per_weight",
        "scope",
        "applies_to",
        "source",
        "notes",
        "id",
        "gguf_rules",
    ],
    "recipe": [
        "origin",
        "user_modified",
        "slug",
        "name",
        "framework",
        "description",
        "source",
        "method",
        "precision",
        "optimizer",
        "optimizer_in_backward",
        "checkpointing",
        "loss",
        "offload",
        "lora_dtype",
        "lora_targets",
        "lora_rank",
        "attention",
        "parallel",
        "batch",
        "seq",
        "notes",
        "id",
    ],
    "removed_bundled_row": ["id", "kind", "slug"],
}


def _schema(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    inspector = inspect(engine)
    schema = {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}
    engine.dispose()
    return schema


def test_empty_to_head_gives_exact_schema(blank_database: str) -> None:
    """Upgrading an empty database gives exactly the expected tables and columns."""
    url = blank_database
    engine = make_engine(url, foreign_keys=False)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()
    assert _schema(url) == EXPECTED_SCHEMA


def test_single_head() -> None:
    """The revisions form one line: one head, the one opening checks without Alembic."""
    from catalog.session import SCHEMA_HEAD

    assert migrate.head_revision() == SCHEMA_HEAD
    history = migrate.history()
    assert [r.revision for r in history if r.is_head] == [migrate.head_revision()]
    assert history[0].down_revision is None
    assert all(b.down_revision == a.revision for a, b in itertools.pairwise(history))


def test_models_match_migrations(blank_database: str) -> None:
    """The table models and the migrated schema agree: autogenerate finds nothing to do."""
    engine = make_engine(blank_database, foreign_keys=False)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_upgrade_round_trip(blank_database: str) -> None:
    """Down to nothing and back up gives the same schema."""
    url = blank_database
    engine = make_engine(url, foreign_keys=False)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert inspect(engine).get_table_names() == ["alembic_version"]
    migrate.upgrade(engine)
    engine.dispose()
    assert _schema(url) == EXPECTED_SCHEMA


def _database_at_first_revision(path: Path) -> None:
    """A catalog file made by the first release, holding a GPU the user added, with an alias."""
    _first_revision_with_user_rows(f"sqlite:///{path}")


def _first_revision_with_user_rows(url: str) -> None:
    """The database at `url` as the first release left it, holding a GPU the user added, with
    two aliases (plain SQL that SQLite and PostgreSQL both take)."""
    engine = make_engine(url, foreign_keys=False)
    first = migrate.history()[0].revision
    migrate.upgrade(engine, first)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO gpu (origin, user_modified, slug, name, vendor, architecture, market, "
                "memory_bytes, bandwidth_bytes_per_s, source) VALUES ('user', false, 'my-card', "
                "'My Card', 'nvidia', 'Ada Lovelace', 'consumer', 25769803776, 1008000000000, "
                "'my own measurement')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO gpu_alias (key, name, gpu_id) SELECT 'mycard', 'My Card', id FROM gpu "
                "UNION ALL SELECT 'mc', 'mc', id FROM gpu"
            )
        )
    engine.dispose()


def test_every_revision_upgrades_and_downgrades_one_step(blank_database: str) -> None:
    """Each revision, one at a time from base to head, upgrades and downgrades on the back end
    (real ALTERs on PostgreSQL, batch copies on SQLite), then upgrades again."""
    engine = make_engine(blank_database, foreign_keys=False)
    try:
        previous: str | None = None
        for revision in migrate.history():
            migrate.upgrade(engine, revision.revision)
            assert migrate.current_revision(engine) == revision.revision
            migrate.downgrade(engine, previous or "base")
            assert migrate.current_revision(engine) == previous
            migrate.upgrade(engine, revision.revision)
            previous = revision.revision
        assert previous == migrate.head_revision()
    finally:
        engine.dispose()
    assert _schema(blank_database) == EXPECTED_SCHEMA


def test_user_rows_from_first_revision_to_head(blank_database: str) -> None:
    """A catalog made by the first release, holding a user's GPU and its aliases, upgraded to
    head (step by step, as `advisor db upgrade` does), keeps them and opens at head."""
    _first_revision_with_user_rows(blank_database)
    engine = make_engine(blank_database, foreign_keys=False)
    migrate.upgrade(engine)
    engine.dispose()
    catalog = open_catalog(blank_database, upgrade=False)
    try:
        assert migrate.current_revision(catalog.engine) == migrate.head_revision()
        from catalog import queries

        with catalog.reading() as session:
            gpu = queries.get_gpu(session, name="MC")
            assert (gpu.slug, gpu.memory_bytes, gpu.origin) == ("my-card", 25769803776, "user")
            assert queries.gpu_public(session, gpu=gpu).aliases == ["mc"]
    finally:
        catalog.close()


def test_user_rows_survive_upgrade_with_backup(tmp_path: Path) -> None:
    """Opening an old catalog backs it up, upgrades it, and keeps the user's rows."""
    path = tmp_path / "old.db"
    _database_at_first_revision(path)
    catalog = open_catalog(str(path))
    try:
        assert catalog.report.upgraded_from == "0001"
        assert catalog.report.backup is not None and catalog.report.backup.exists()
        assert migrate.current_revision(catalog.engine) == migrate.head_revision()
        from catalog import queries

        with catalog.session() as session:
            gpu = queries.get_gpu(session, name="MC")
            assert (gpu.slug, gpu.memory_bytes) == ("my-card", 25769803776)
            assert queries.gpu_public(session, gpu=gpu).aliases == ["mc"]
    finally:
        catalog.close()
    backup = sqlite3.connect(catalog.report.backup)
    assert backup.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    backup.close()


def test_corrupt_file_refused_and_untouched(tmp_path: Path) -> None:
    """A file that is not SQLite is refused and left byte for byte as it was."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"my precious notes\n" * 10)
    with pytest.raises(DatabaseError) as error:
        open_catalog(str(path))
    assert str(error.value) == f"{path} is not a SQLite database; refusing to use or overwrite it"
    assert path.read_bytes() == b"my precious notes\n" * 10


def test_foreign_database_refused(tmp_path: Path) -> None:
    """A SQLite database of another program is refused and not changed."""
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    with pytest.raises(DatabaseError) as error:
        open_catalog(str(path))
    assert str(error.value) == (
        f"the database at sqlite:///{path} holds tables that are not an advisor catalog; "
        "refusing to use or change it"
    )
    connection = sqlite3.connect(path)
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    connection.close()
    assert tables == [("invoices",)]


def test_newer_database_refused(tmp_path: Path, seeded_template: Template) -> None:
    """A catalog made by a newer advisor (unknown revision) is refused."""
    path = seeded_template.copy_to(tmp_path / "newer.db")
    connection = sqlite3.connect(path)
    connection.execute("UPDATE alembic_version SET version_num = '9999'")
    connection.commit()
    connection.close()
    with pytest.raises(DatabaseError) as error:
        open_catalog(str(path))
    assert str(error.value) == (
        f"the database at sqlite:///{path} is at revision 9999, made by a newer advisor "
        f"(this one knows revisions up to {migrate.head_revision()}); upgrade advisor to use it"
    )


def test_wal_and_busy_timeout(tmp_path: Path, seeded_template: Template) -> None:
    """File catalogs run in WAL mode with a busy timeout and foreign keys on."""
    catalog = open_catalog(str(seeded_template.copy_to(tmp_path / "w.db")))
    with catalog.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
    catalog.close()
    assert (mode, timeout, keys) == ("wal", 5000, 1)


def test_0003_keeps_user_rows_from_0002(tmp_path: Path) -> None:
    """Upgrading a 0002 catalog to 0003 keeps a user's GPU and its aliases, and gives it the
    market's rule (null combine fields) and no place in the default set."""
    path = tmp_path / "second.db"
    _database_at_first_revision(path)
    engine = make_engine(f"sqlite:///{path}", foreign_keys=False)
    migrate.upgrade(engine, "0002")
    migrate.upgrade(engine, "0003")
    with engine.connect() as connection:
        gpu = connection.execute(
            text(
                "SELECT slug, memory_bytes, origin, max_per_node, link, multi_node, default_set, "
                "default_set_reason FROM gpu"
            )
        ).all()
        aliases = connection.execute(text("SELECT key, gpu_id FROM gpu_alias ORDER BY key")).all()
    engine.dispose()
    assert [tuple(row) for row in gpu] == [
        ("my-card", 25769803776, "user", None, None, None, 0, None)
    ]
    assert [tuple(row) for row in aliases] == [("mc", 1), ("mycard", 1)]


def _revision_adding(column: str, table: str) -> tuple[str, str]:
    """(the revision whose upgrade adds `column` to `table`, the revision before it), found in
    the migration scripts (no literal revision ids: the chain may be re-ordered)."""
    script = migrate.script_directory()
    for revision in script.walk_revisions():
        source = Path(revision.path).read_text(encoding="utf-8")
        upgrade_body = source.split("def upgrade", 1)[1].split("def downgrade", 1)[0]
        if f'"{column}"' in upgrade_body and f'"{table}"' in upgrade_body:
            assert isinstance(revision.down_revision, str)
            return revision.revision, revision.down_revision
    raise AssertionError(f"no migration adds {table}.{column}")


def test_gguf_rules_migration_keeps_user_quant_rows(tmp_path: Path) -> None:
    """Upgrading a catalog from before per-tensor GGUF rules keeps a quantization format the
    user added (one bits-per-weight figure, no rules), and the upgraded row still estimates."""
    adding, before = _revision_adding("gguf_rules", "quant_format")
    path = tmp_path / "quants.db"
    engine = make_engine(f"sqlite:///{path}", foreign_keys=False)
    migrate.upgrade(engine, before)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO quant_format (origin, user_modified, slug, name, kind, "
                "bits_per_weight, scope, applies_to, source, id) VALUES ('user', 0, 'my-q4', "
                "'My Q4 GGUF', 'gguf', 4.8, 'all', 'weights', 'my own file', 1)"
            )
        )
    migrate.upgrade(engine, adding)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT slug, bits_per_weight, scope, origin, gguf_rules FROM quant_format")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("my-q4", 4.8, "all", "user", None)]
    catalog = open_catalog(str(path))
    try:
        from catalog import queries

        with catalog.session() as session:
            quant = queries.get_quant(session, name="my-q4")
            assert (quant.bits_per_weight, quant.gguf_rules) == (4.8, None)
    finally:
        catalog.close()


def _revision_saying(message: str) -> migrate.Revision:
    """The revision whose message is `message` (found by message, not by id, so that the
    test survives the revisions being re-chained)."""
    found = [r for r in migrate.history() if r.message == message]
    assert len(found) == 1, found
    return found[0]


def test_origin_ref_keeps_user_rows(tmp_path: Path) -> None:
    """The revision adding gpu.origin_ref keeps a user's GPU, its aliases and its origin, and
    gives it no reference into an outside database; downgrading drops only the column."""
    adding = _revision_saying("record where an imported card came from")
    assert adding.down_revision is not None
    path = tmp_path / "before.db"
    _database_at_first_revision(path)
    engine = make_engine(f"sqlite:///{path}", foreign_keys=False)
    migrate.upgrade(engine, adding.down_revision)
    migrate.upgrade(engine, adding.revision)
    with engine.connect() as connection:
        gpu = connection.execute(
            text("SELECT slug, name, memory_bytes, origin, user_modified, origin_ref FROM gpu")
        ).all()
        aliases = connection.execute(text("SELECT key, gpu_id FROM gpu_alias ORDER BY key")).all()
    migrate.downgrade(engine, adding.down_revision)
    columns = [c["name"] for c in inspect(engine).get_columns("gpu")]
    engine.dispose()
    assert [tuple(row) for row in gpu] == [("my-card", "My Card", 25769803776, "user", 0, None)]
    assert [tuple(row) for row in aliases] == [("mc", 1), ("mycard", 1)]
    assert "origin_ref" not in columns and "origin" in columns


def test_recipes_revision_keeps_user_rows_and_brings_bundled_recipes(tmp_path: Path) -> None:
    """Opening a catalog one revision before the recipes table (holding a user's GPU with its
    aliases) upgrades it to the head: the user's rows stay as they were, the recipe table
    exists, empty until `catalog sync` brings the bundled recipes in beside them."""
    path = tmp_path / "before-recipes.db"
    _database_at_first_revision(path)
    engine = make_engine(f"sqlite:///{path}", foreign_keys=False)
    before = _revision_saying("add training recipes").down_revision
    assert isinstance(before, str)
    migrate.upgrade(engine, before)
    engine.dispose()
    catalog = open_catalog(str(path))
    try:
        assert catalog.report.upgraded_from == before
        from catalog import bundled, queries

        with catalog.session() as session:
            gpu = queries.get_gpu(session, name="mc")
            assert (gpu.slug, gpu.origin, gpu.memory_bytes) == ("my-card", "user", 25769803776)
            assert queries.gpu_public(session, gpu=gpu).aliases == ["mc"]
            assert queries.list_recipes(session) == []
            assert bundled.has_unsynced_changes(session)
            bundled.sync(session)
            slugs = [r.slug for r in queries.list_recipes(session)]
            assert slugs == sorted(r.slug for r in bundled.load().recipes)
            assert queries.get_gpu(session, name="mc").slug == "my-card"
            assert "torchtitan" in slugs and "common-finetune" in slugs
    finally:
        catalog.close()
