"""metadata.yml: a title and a description for the instance, the memory, every table and every
column of the schema, and nothing that is configuration rather than metadata.

Facets and sort orders are table configuration in Datasette 1.0 (datasette.yaml, under
databases.claude-mem.tables): TABLE_CONFIG is the configuration proposed for it, checked here
against the schema and through Datasette's table pages.
"""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasette.app import Datasette
from datasette.utils import _table_config_keys

from datasette_claude_mem.names import SERVE_CONFIG
from datasette_claude_mem.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
METADATA = ROOT / "metadata.yml"
PACKAGED = METADATA
DB = "claude-mem"
TABLES = (
    "sessions", "observations", "function_map", "call_graph", "learnings",
    "pending_queue", "pending_payloads", "event_log", "memory_entries", "prompts",
    "embeddings", "documents", "doc_chunks", "index_runs", "tombstones",
)  # fmt: skip

# Newest first, and the facets people filter by: for datasette.yaml, databases.claude-mem.tables.
TABLE_CONFIG: dict[str, dict[str, Any]] = {
    "sessions": {"sort_desc": "started_at", "facets": ["status", "project"]},
    "observations": {"sort_desc": "created_at", "facets": ["type", "tool_name", "project"]},
    "function_map": {"sort_desc": "updated_at", "facets": ["change_type", "kind", "project"]},
    "call_graph": {"sort_desc": "created_at", "facets": ["resolution", "source", "project"]},
    "learnings": {"sort_desc": "updated_at", "facets": ["category", "is_active", "project"]},
    "pending_queue": {"sort_desc": "created_at", "facets": ["status", "tool_name", "project"]},
    "prompts": {"sort_desc": "created_at", "facets": ["project"]},
    "embeddings": {"sort_desc": "created_at", "facets": ["kind", "model"]},
    "documents": {"sort_desc": "indexed_at", "facets": ["project"]},
    "doc_chunks": {"sort_desc": "created_at", "facets": ["project", "path"]},
    "index_runs": {"sort_desc": "started_at", "facets": ["status", "project"]},
    "pending_payloads": {"sort_desc": "item_id"},
    "event_log": {"sort_desc": "created_at", "facets": ["event_type", "project"]},
    "memory_entries": {"sort_desc": "created_at", "facets": ["namespace", "kind", "project"]},
    "tombstones": {"sort_desc": "created_at", "facets": ["kind", "forgotten_by"]},
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every table of a freshly migrated memory and its columns."""
    path = tmp_path_factory.mktemp("schema") / "claude-mem.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    names = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith(("sqlite_", "_sqlite_")) and "_fts" not in r[0]
    ]
    columns = {n: [c[1] for c in conn.execute(f"PRAGMA table_info([{n}])")] for n in names}
    conn.close()
    return columns


def test_the_package_carries_the_same_file() -> None:
    assert PACKAGED.resolve() == METADATA.resolve()


def test_instance_and_memory_have_a_title_and_a_description() -> None:
    metadata = load(METADATA)
    assert metadata["title"] and metadata["description"]
    memory = metadata["databases"][DB]
    assert memory["title"] and memory["description"]


def test_every_table_and_column_is_described(schema: dict[str, list[str]]) -> None:
    tables = load(METADATA)["databases"][DB]["tables"]
    assert set(schema) == set(TABLES)
    assert set(tables) == set(schema), "a table described that does not exist, or one missing"
    for table, columns in schema.items():
        described = tables[table]
        assert described.get("title") and described.get("description"), table
        assert list(described["columns"]) == columns, f"{table}: columns out of step"
        for column, text in described["columns"].items():
            assert isinstance(text, str) and len(text) > 8, f"{table}.{column}"


def test_metadata_holds_no_configuration() -> None:
    """Datasette 1.0 reads facets, sorts, permissions and plugins from datasette.yaml."""
    metadata = load(METADATA)
    text = METADATA.read_text(encoding="utf-8")
    assert "plugins" not in metadata and "allow" not in text and "queries" not in text
    for table, described in metadata["databases"][DB]["tables"].items():
        for key in _table_config_keys:
            assert key not in described, f"{table}.{key} belongs in datasette.yaml"
    assert "description_html" not in text, "descriptions are text, escaped by Datasette"


@pytest.mark.parametrize(
    "tables",
    [
        TABLE_CONFIG,
        load(SERVE_CONFIG).get("databases", {}).get(DB, {}).get("tables", {}),
    ],
    ids=["proposed", "packaged datasette.yaml"],
)
def test_table_configuration_names_real_columns(
    schema: dict[str, list[str]], tables: dict[str, Any]
) -> None:
    for table, config in tables.items():
        assert table in schema, table
        named = [*config.get("facets", []), config.get("sort"), config.get("sort_desc")]
        for column in filter(None, named):
            assert column in schema[table], f"{table}: no column {column}"


@pytest.mark.asyncio
async def test_table_pages_show_descriptions_sorts_and_facets(
    memory_path: Path, serve_config: dict[str, Any]
) -> None:
    config = copy.deepcopy(serve_config)
    config["plugins"]["datasette-claude-mem"]["worker"] = False
    config["databases"][DB].setdefault("tables", {}).update(copy.deepcopy(TABLE_CONFIG))
    ds = Datasette([str(memory_path)], config=config, metadata=load(METADATA), secret="s")
    try:
        await ds.invoke_startup()
        cookies = {"ds_actor": ds.client.actor_cookie({"id": "root"})}
        response = await ds.client.get("/claude-mem/pending_queue", cookies=cookies)
        assert response.status_code == 200
        page = response.text
        assert "a durable queue with leases" in page
        assert '<dl class="column-descriptions">' in page
        assert "<dt>lease_owner</dt><dd>The worker holding it while processing</dd>" in page
        assert "sorted by created_at descending" in page
        for facet in ("status", "tool_name", "project"):
            assert f'data-column="{facet}"' in page
        data = (
            await ds.client.get(
                "/claude-mem/pending_queue.json?_extra=facet_results", cookies=cookies
            )
        ).json()
        assert set(data["facet_results"]["results"]) == {"status", "tool_name", "project"}
        home = (await ds.client.get("/", cookies=cookies)).text
        assert "Memory for coding agents, kept in one SQLite file" in home
        database = (await ds.client.get("/claude-mem", cookies=cookies)).text
        assert "What Claude Code sessions remembered." in database
    finally:
        ds.close()
