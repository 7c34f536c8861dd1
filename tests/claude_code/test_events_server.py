"""The hooks route over a real `datasette claude-mem serve`, as Claude Code's http hooks use it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import CONTEXT_SECTIONS, db_rows
from payloads import (
    EVENT_FILES,
    EXPECTED_FILES,
    Repo,
    load,
    make_repo,
    scripted_session,
    session_events,
)

from datasette_claude_mem.settings import Config
from datasette_claude_mem.worker.session_summary import SUMMARY_TOOL

BUDGET = Config().context_budget


def session_rows(server, session_id: str) -> tuple[list[dict], list[dict], dict | None]:
    events = db_rows(
        server.db_path,
        "SELECT * FROM event_log WHERE session_id = ? ORDER BY created_at, id",
        [session_id],
    )
    queue = db_rows(
        server.db_path,
        "SELECT * FROM pending_queue WHERE session_id = ? ORDER BY created_at, id",
        [session_id],
    )
    found = db_rows(server.db_path, "SELECT * FROM sessions WHERE id = ?", [session_id])
    return events, queue, found[0] if found else None


def tool_uses_and_summaries(queue: list[dict]) -> tuple[list[dict], list[dict]]:
    """The queue's tool uses, and the summary items Stops left beside them."""
    summaries = [q for q in queue if q["tool_name"] == SUMMARY_TOOL]
    return [q for q in queue if q["tool_name"] != SUMMARY_TOOL], summaries


def tokens_of(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "work")


def test_the_corpus_over_a_real_server(mem_server, repo: Repo) -> None:
    sent = session_events("corpus", repo.sub)
    for payload in sent:
        response = mem_server.hook(payload)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(response.json(), dict)
    events, queue, session = session_rows(mem_server, "corpus")
    assert [e["event_type"] for e in events] == [p["hook_event_name"] for p in sent]
    assert all(e["duration_ms"] is not None for e in events)
    assert session["project"] == str(repo.main) and session["project_dir"] == str(repo.sub)
    assert session["status"] == "closed"
    tools = [p for p in sent if p["hook_event_name"] == "PostToolUse"]
    queue, summaries = tool_uses_and_summaries(queue)
    said = [p for p in sent if p["hook_event_name"] == "Stop" and p.get("last_assistant_message")]
    assert len(summaries) == len(said)  # each Stop that says something queues a summary
    assert [q["tool_use_id"] for q in queue] == [p["tool_use_id"] for p in tools]
    for item, payload in zip(queue, tools, strict=True):
        assert json.loads(item["files_touched"]) == EXPECTED_FILES[payload["tool_name"]]


def test_subdirectories_and_worktrees_are_one_project_over_http(mem_server, repo: Repo) -> None:
    for name, cwd in (("m", repo.main), ("s", repo.sub), ("w", repo.worktree)):
        assert mem_server.hook(load("SessionStart.json", session_id=name, cwd=str(cwd))).is_success
    found = db_rows(mem_server.db_path, "SELECT DISTINCT project FROM sessions")
    assert found == [{"project": str(repo.main)}]


def test_bad_requests_over_http_are_4xx_never_5xx(mem_server, repo: Repo) -> None:
    for body in (b"{", b"[]", b"", b"\xff"):
        assert mem_server.hook(content=body).status_code == 400
    no_id = load("Stop.json", cwd=str(repo.main))
    del no_id["session_id"]
    assert mem_server.hook(no_id).status_code == 400
    unknown = load("Stop.json", session_id="u", cwd=str(repo.main), hook_event_name="Later")
    response = mem_server.hook(unknown)
    assert response.status_code == 200 and response.json() == {}
    assert db_rows(mem_server.db_path, "SELECT event_type FROM event_log") == [
        {"event_type": "Later"}
    ]
    import httpx

    anonymous = httpx.post(mem_server.url + "/-/claude-mem/hooks", json=unknown, timeout=30)
    assert anonymous.status_code == 401

    rng = random.Random(7)
    oddities = [None, 0, "", "x" * 1000, [], {}, {"a": [1, {"b": None}]}, "é漢🙂", 1.5]
    for i in range(40):
        payload = load(rng.choice(EVENT_FILES), session_id=f"f{i % 3}", cwd=str(repo.main))
        key = rng.choice(sorted(set(payload) - {"session_id", "hook_event_name"}))
        payload[key] = rng.choice(oddities)
        assert mem_server.hook(payload).status_code < 500, payload


def test_big_tool_outputs_over_http(mem_server, repo: Repo) -> None:
    five = "line of a big file\n" * (5 * 1024 * 1024 // 19)
    nine = "0123456789" * (9 * 1024 * 1024 // 10)
    for tool_use_id, text in (("big", five), ("huge", nine)):
        payload = load(
            "PostToolUse-Read.json",
            session_id="big",
            cwd=str(repo.main),
            tool_use_id=tool_use_id,
            tool_response=text,
        )
        response = mem_server.hook(payload)
        assert response.status_code == 200, response.text[:300]
    found = db_rows(
        mem_server.db_path,
        "SELECT q.tool_use_id, q.truncated, q.raw_bytes, p.raw_output FROM pending_queue q "
        "JOIN pending_payloads p ON p.item_id = q.id ORDER BY q.created_at",
    )
    # Both are over the 64 KB cap: their head and tail are kept, their full size recorded.
    assert [(r["tool_use_id"], r["truncated"]) for r in found] == [("big", 1), ("huge", 1)]
    for row, text in zip(found, (five, nine), strict=True):
        assert row["raw_bytes"] == len(text)
        head, marker, rest = row["raw_output"].partition("\n[truncated: ")
        assert marker and rest.startswith(f"{len(text)} bytes in all")
        assert text.startswith(head) and text.endswith(rest.split("]\n", 1)[1])
        assert len(row["raw_output"].encode("utf-8")) <= 64 * 1024


def test_a_scripted_session_over_http_hooks_then_the_next_start(mem_server, repo: Repo) -> None:
    events = scripted_session("scripted", repo.main, tools=50)
    for payload in events:
        response = mem_server.hook(payload)
        assert response.status_code == 200, response.text[:300]
    stored, queue, session = session_rows(mem_server, "scripted")
    assert session["status"] == "closed" and session["ended_at"] is not None
    assert [e["event_type"] for e in stored] == [p["hook_event_name"] for p in events]
    tool_uses = [p for p in events if p["hook_event_name"] == "PostToolUse"]
    queue, _ = tool_uses_and_summaries(queue)
    assert [q["tool_use_id"] for q in queue] == [p["tool_use_id"] for p in tool_uses]
    assert {q["status"] for q in queue} == {"raw"}  # the worker is off in this server
    for item, payload in zip(queue, tool_uses, strict=True):
        path = payload["tool_input"].get("file_path")
        assert json.loads(item["files_touched"]) == ([path] if path else [])

    response = mem_server.hook(load("SessionStart.json", session_id="next", cwd=str(repo.sub)))
    context = response.json()["hookSpecificOutput"]["additionalContext"]
    assert "`scripted`" in context and "Add customer ids to the order logs" in context
    assert len(context.encode("utf-8")) < 10_000
    *blocks, closing = context.split("\n\n")[1:]
    assert closing.startswith("Ask the memory more") and 'session_id="next"' in closing
    for block in blocks:
        key = CONTEXT_SECTIONS[block.split("\n", 1)[0][3:]]
        assert tokens_of(block) <= BUDGET[key], key

    by_route = mem_server.request("GET", f"/-/claude-mem/context?project={repo.main}").json()
    assert "`scripted`" in by_route["markdown"] and "`next`" in by_route["markdown"]
    assert by_route["bytes"] < 10_000
