"""The keyword search's plan over a memory with the size spread of a real one: each kind
ranks its own full-text matches and keeps its best rows before they are combined, every
table is reached through its index, and the per-kind limit changes no answer."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from datasette_claude_mem.storage.models import new_id
from datasette_claude_mem.storage.search import KINDS, SOURCES, fts_query, keyword_hits, keyword_sql
from datasette_claude_mem.storage.store import Store

PROJECT, OTHER = "/src/alpha", "/src/beta"
WORDS = [f"w{i:03d}" for i in range(60)]
TABLES = {source.table for source in SOURCES}


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Many observations, fewer learnings, sessions, prompts and notes, two projects,
    statistics gathered as `PRAGMA optimize` leaves them in a file that has been used."""
    path = tmp_path_factory.mktemp("plan") / "memory.db"
    Store(path).close()
    rng = random.Random(12)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    def at(i: int) -> str:
        return f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.000Z"

    sessions = [(f"s{i}", PROJECT if i % 4 else OTHER) for i in range(60)]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO sessions (id, project, project_dir, started_at, status, summary) "
            "VALUES (?, ?, '/src', ?, 'closed', ?)",
            [(sid, project, at(i), text(10)) for i, (sid, project) in enumerate(sessions)],
        )
        conn.executemany(
            "INSERT INTO event_log (id, project, session_id, event_type, data, created_at) "
            "VALUES (?, ?, ?, 'UserPromptSubmit', ?, ?)",
            [(new_id(), p, sid, json.dumps({"prompt": text(8)}), at(i))
             for i, (sid, p) in enumerate(sessions)],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO observations (id, project, session_id, tool_name, title, summary, "
            "files_touched, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(new_id(), sessions[i % 60][1], sessions[i % 60][0],
              rng.choice(["Edit", "Read", "Bash"]), text(5), text(20), '["src/a.py"]', at(i))
             for i in range(3000)],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO learnings (id, project, category, content, created_at, updated_at) "
            "VALUES (?, ?, 'pattern', ?, ?, ?)",
            [(new_id(), PROJECT, text(40), at(i), at(i)) for i in range(300)],
        )
        conn.executemany(
            "INSERT INTO memory_entries (id, namespace, key, version, kind, value, project, "
            "created_at) VALUES (?, ?, ?, 1, 'note', ?, ?, ?)",
            [(new_id(), f"project:{PROJECT}/notes", f"k{i}", text(10), PROJECT, at(i))
             for i in range(40)],
        )  # fmt: skip
    conn.execute("ANALYZE")
    conn.close()
    return path


def plan(path: Path, sql: str, params: dict) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        conn.close()


PARAMS = {"match": '"w001"', "project": PROJECT, "since": "", "limit": 10, "kinds": "", "types": ""}


@pytest.mark.parametrize("kinds", [None, KINDS, ("observation", "learning")])
def test_every_kind_is_ranked_from_its_index_and_no_table_is_scanned(
    memory: Path, kinds: tuple[str, ...] | None
) -> None:
    """kinds None is the stored query's form, picking kinds by parameter when it runs."""
    steps = plan(memory, keyword_sql(kinds=kinds), PARAMS)
    wanted = [s for s in SOURCES if kinds is None or s.kind in kinds]
    for source in wanted:
        fts = next(i for i, s in enumerate(steps) if s.startswith(f"SCAN {source.table}_fts "))
        # The full-text matches drive the join: the row is looked up by rowid, after them.
        row = steps.index("SEARCH t USING INTEGER PRIMARY KEY (rowid=?)", fts)
        assert row == fts + 1, steps
    scanned = [s for s in steps if s.split(" ")[:2] in (["SCAN", t] for t in TABLES)]
    assert scanned == [], steps
    assert not any("event_log" in s for s in steps), steps
    # Each kind sorts only its own matches and keeps its best (then they are combined).
    sorts = [s for s in steps if s == "USE TEMP B-TREE FOR ORDER BY"]
    assert len(sorts) >= len(wanted), steps


def test_the_sql_keeps_the_best_rows_of_each_kind_before_combining_them() -> None:
    sql = keyword_sql(kinds=("observation", "learning"), limit="7")
    assert sql.count("LIMIT 7") == 3  # one per kind, one for the whole answer


@pytest.mark.parametrize("query", ["w048", "w003", "w006 w009", "w059 w001"])
def test_the_per_kind_limit_changes_no_answer(memory: Path, query: str) -> None:
    """The best ten of all kinds are the best ten of the rows each kind ranked alone."""
    store = Store(memory)
    try:
        hits = keyword_hits(store.conn, query, project=PROJECT, limit=10)
        every = [
            hit
            for kind in KINDS
            for hit in keyword_hits(store.conn, query, project=PROJECT, kinds=(kind,), limit=200)
        ]
    finally:
        store.close()
    every.sort(key=lambda h: (h.rank, -h.created_at.timestamp(), h.id))
    assert fts_query(query) and len(hits) == 10
    assert [(h.kind, h.id) for h in hits] == [(h.kind, h.id) for h in every[:10]]
    assert len({h.kind for h in hits}) >= 2  # a real mix of kinds to order
    assert all(h.project in (PROJECT, None) for h in hits)
