"""Semantic and hybrid search with the real all-MiniLM-L6-v2 model (the embeddings extra).

CI installs the extra for one Python and sets CLAUDE_MEM_REQUIRE_EMBEDDINGS there, so these
tests must run there; elsewhere they skip when the extra is not installed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import db_rows

from datasette_claude_mem.storage.models import LearningCreate, ObservationCreate, SessionStart
from datasette_claude_mem.storage.search import missing_extra, search
from datasette_claude_mem.storage.store import Store

if missing_extra() and not os.environ.get("CLAUDE_MEM_REQUIRE_EMBEDDINGS"):
    pytest.skip(
        f"the embeddings extra is not installed: {missing_extra()}", allow_module_level=True
    )

from datasette_claude_mem.storage.embeddings import backfill, embed_new  # noqa: E402
from datasette_claude_mem.storage.vectors import (  # noqa: E402
    SemanticSearch,
    SentenceTransformerEmbedder,
    from_blob,
)

PROJECT = "/src/shop"
NOTES = {
    "discount": ("Fixed discount rounding in the cart", "round once, after the total"),
    "websocket": ("Added a retry to the websocket client", "reconnect with backoff"),
    "config": ("Moved config parsing into its own module", "one loader for all settings"),
    "dates": ("Stored timestamps as UTC ISO text", "sorts the same in every client"),
}


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def memory(store: Store) -> dict[str, str]:
    store.create_session(SessionStart(id="s1", project_dir=PROJECT, project=PROJECT))
    ids = {}
    for key, (title, summary) in NOTES.items():
        ids[key] = store.create_observation(
            ObservationCreate(session_id="s1", tool_name="Edit", title=title, summary=summary)
        ).row.id
    return ids


def titles(result) -> list[str]:
    return [hit.title for hit in result.hits]


def test_a_paraphrase_finds_what_keywords_miss(store: Store, memory, embedder) -> None:
    assert backfill(store, embedder) == len(NOTES)
    semantic = SemanticSearch(embedder)
    question = "price reduction computed incorrectly"
    assert titles(search(store.conn, question, mode="keyword", semantic=semantic)) == []
    found = search(store.conn, question, mode="semantic", semantic=semantic, limit=2)
    assert found.mode == "semantic" and found.semantic_model == "all-MiniLM-L6-v2"
    assert found.hits[0].id == memory["discount"]
    assert found.hits[0].score > found.hits[1].score
    network = search(store.conn, "the network connection keeps dropping", mode="semantic",
                     semantic=semantic)  # fmt: skip
    assert network.hits[0].id == memory["websocket"]


def test_hybrid_fuses_both_rankings(store: Store, memory, embedder) -> None:
    backfill(store, embedder)
    semantic = SemanticSearch(embedder)
    found = search(store.conn, "websocket reconnect", semantic=semantic)  # hybrid by default
    assert found.mode == "hybrid" and found.notice is None
    assert found.hits[0].id == memory["websocket"]  # first in both rankings
    assert "[websocket]" in found.hits[0].snippet  # the keyword side's marked snippet
    assert {hit.id for hit in found.hits} == set(memory.values())  # the rest from meaning
    scores = [hit.score for hit in found.hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(2 / 61)  # rank 1 in both: 1/(60+1) twice


def test_filters_apply_to_semantic_hits(store: Store, memory, embedder) -> None:
    store.create_session(SessionStart(id="s2", project_dir="/other", project="/other"))
    store.create_observation(
        ObservationCreate(session_id="s2", tool_name="Edit", title="Discount codes", summary="x")
    )
    store.create_learning(LearningCreate(category="gotcha", content="Discounts before tax"))
    backfill(store, embedder)
    semantic = SemanticSearch(embedder)
    found = search(store.conn, "price reduction", project=PROJECT, mode="semantic",
                   semantic=semantic)  # fmt: skip
    assert {hit.project for hit in found.hits} == {PROJECT, None}  # its own, and global
    only = search(store.conn, "price reduction", kinds="learning", mode="semantic",
                  semantic=semantic)  # fmt: skip
    assert [hit.kind for hit in only.hits] == ["learning"]
    later = search(store.conn, "price", since="2999-01-01", mode="semantic", semantic=semantic)
    assert later.hits == []


def test_vectors_are_float32_blobs_with_their_model(store: Store, memory, embedder) -> None:
    backfill(store, embedder)
    row = store.conn.execute(
        "SELECT model, version, dims, vector FROM embeddings WHERE item_id = ?",
        [memory["dates"]],
    ).fetchone()
    assert row[:3] == ("all-MiniLM-L6-v2", embedder.version, 384)
    assert len(row[3]) == 384 * 4
    text = "\n".join(NOTES["dates"])
    assert from_blob(row[3]) == pytest.approx(embedder.embed([text])[0], abs=1e-5)


def test_vectors_of_another_model_are_never_compared(store: Store, memory, embedder) -> None:
    backfill(store, embedder)
    question = "price reduction computed incorrectly"
    perfect = embedder.embed([question])[0].astype("<f4").tobytes()
    store.conn.execute(
        "INSERT INTO embeddings (kind, item_id, model, version, dims, vector, text_hash) "
        "VALUES ('observation', ?, 'another-model', '1', 384, ?, '')",
        [memory["config"], perfect],
    )
    found = search(store.conn, question, mode="semantic", semantic=SemanticSearch(embedder))
    assert found.hits[0].id == memory["discount"]
    assert all(hit.score < 0.99 for hit in found.hits)


def test_new_and_changed_rows_reach_a_running_index(store: Store, memory, embedder) -> None:
    backfill(store, embedder)
    semantic = SemanticSearch(embedder)
    assert semantic.count(store.conn) == len(NOTES)
    made = store.create_observation(
        ObservationCreate(
            session_id="s1",
            tool_name="Edit",
            title="Cached the font files",
            summary="served with a long max-age",
        )  # fmt: skip
    ).row
    assert embed_new(store, embedder) == 1
    assert embed_new(store, embedder) == 0
    found = search(store.conn, "typeface assets kept in the browser", mode="semantic",
                   semantic=semantic)  # fmt: skip
    assert found.hits[0].id == made.id
    store.conn.execute(
        "UPDATE observations SET title = 'Tuned the SQLite pragmas', summary = 'WAL' WHERE id = ?",
        [made.id],
    )
    assert backfill(store, embedder) == 0  # every row has a vector
    assert backfill(store, embedder, everything=True) == 1  # only the changed text
    again = search(store.conn, "database journal settings", mode="semantic", semantic=semantic)
    assert again.hits[0].id == made.id
    assert semantic.count(store.conn) == len(NOTES) + 1


def test_nothing_embedded_yet_falls_back_to_keyword_and_says_so(
    store: Store, memory, embedder
) -> None:
    found = search(store.conn, "discount", mode="semantic", semantic=SemanticSearch(embedder))
    assert found.mode == "keyword" and "datasette claude-mem embed" in found.notice
    assert [hit.id for hit in found.hits] == [memory["discount"]]


def test_the_embed_command_backfills(config, memory, store: Store) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["claude-mem", "embed", str(config.db_path)])
    assert result.exit_code == 0, result.output
    assert f"{len(NOTES)} vectors written with all-MiniLM-L6-v2" in result.output
    store.conn.execute("UPDATE observations SET summary = 'changed' WHERE id = ?",
                       [memory["config"]])  # fmt: skip
    again = runner.invoke(cli, ["claude-mem", "embed", "--all", str(config.db_path)])
    assert again.exit_code == 0 and "1 vectors written" in again.output
    missing = runner.invoke(cli, ["claude-mem", "embed", str(config.db_path) + ".nope"])
    assert missing.exit_code != 0 and "no such file" in missing.output


def test_the_servers_worker_embeds_new_rows_and_the_api_searches_them(
    mem_server_factory, tmp_path: Path
) -> None:
    server = mem_server_factory(worker=True)
    body = {"category": "gotcha", "content": "Money is kept in cents", "project": PROJECT}
    assert server.request("POST", "/-/claude-mem/learnings", json=body).status_code == 201
    for _ in range(1200):  # bounded: at most two minutes for the model to load and run
        if db_rows(server.db_path, "SELECT item_id FROM embeddings"):
            break
        time.sleep(0.1)
    response = server.request(
        "GET", "/-/claude-mem/search?q=currency+stored+as+integers&mode=semantic"
    )
    found = response.json()
    assert found["mode"] == "semantic", found
    assert [hit["title"] for hit in found["hits"]] == ["gotcha"]
