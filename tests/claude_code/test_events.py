"""POST /-/claude-mem/hooks in process (datasette.client), on a real memory file.

Every event of the corpus (tests/payloads), the rows each leaves, the answers Claude Code
reads, and what the route does with bad, odd and huge input.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows
from payloads import EVENT_FILES, EXPECTED_FILES, TOOL_FILES, Repo, load, make_repo, session_events

HOOKS = "/hooks"
SID = "5d0c8a52-3f1e-4b7a-9c2d-aa11bb22cc33"


async def post(ds: Datasette, token: str, payload: Any = None, **kwargs: Any):
    return await api_call(ds, "POST", HOOKS, payload, token=token, **kwargs)


async def events_of(ds: Datasette, session_id: str) -> list[dict[str, Any]]:
    rows = await query_rows(
        ds,
        "SELECT * FROM event_log WHERE session_id = ? ORDER BY created_at, id",
        [session_id],
    )
    for row in rows:
        row["data"] = json.loads(row["data"])
    return rows


async def queue_of(ds: Datasette, session_id: str) -> list[dict[str, Any]]:
    return await query_rows(
        ds,
        "SELECT q.*, p.tool_input, p.raw_output FROM pending_queue q "
        "JOIN pending_payloads p ON p.item_id = q.id WHERE q.session_id = ? "
        "ORDER BY q.created_at, q.id",
        [session_id],
    )


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "work")


@pytest_asyncio.fixture
async def corpus_session(ds: Datasette, token: str, repo: Repo) -> list[dict[str, Any]]:
    """Every corpus event posted, in order, for one session in the repository's root."""
    sent = session_events(SID, repo.main)
    for payload in sent:
        response = await post(ds, token, payload)
        assert response.status_code == 200, (payload["hook_event_name"], response.text)
        assert isinstance(response.json(), dict)
    return sent


# Every event of the corpus


@pytest.mark.asyncio
async def test_the_corpus_leaves_one_event_row_per_hook_in_order(
    ds: Datasette, corpus_session: list[dict[str, Any]], repo: Repo
) -> None:
    rows = await events_of(ds, SID)
    assert [r["event_type"] for r in rows] == [p["hook_event_name"] for p in corpus_session]
    for row in rows:
        assert row["project"] == str(repo.main)
        assert row["duration_ms"] is not None and row["duration_ms"] >= 0, row


@pytest.mark.asyncio
async def test_session_opened_with_the_repository_key_and_closed_by_session_end(
    ds: Datasette, corpus_session: list[dict[str, Any]], repo: Repo
) -> None:
    [session] = await query_rows(ds, "SELECT * FROM sessions WHERE id = ?", [SID])
    assert session["project"] == str(repo.main)
    assert session["project_dir"] == str(repo.main)
    assert session["status"] == "closed"
    assert session["ended_at"] is not None


@pytest.mark.asyncio
async def test_each_event_keeps_its_own_fields(
    ds: Datasette, corpus_session: list[dict[str, Any]]
) -> None:
    by_type: dict[str, dict] = {}
    for row in await events_of(ds, SID):
        by_type.setdefault(row["event_type"], row["data"])
    prompt = load("UserPromptSubmit.json")["prompt"]
    assert by_type["UserPromptSubmit"]["prompt"] == prompt
    assert by_type["SessionStart"]["source"] == "startup"
    assert by_type["Stop"] == {"stop_hook_active": False}
    assert by_type["SubagentStop"] == {"stop_hook_active": False}
    assert by_type["PreCompact"]["trigger"] == "manual"
    assert by_type["PreCompact"]["custom_instructions"].startswith("Keep the decisions")
    assert by_type["Notification"]["message"] == "Claude needs your permission to use Bash"
    assert by_type["SessionEnd"] == {"reason": "prompt_input_exit"}
    # The common fields are columns (or not kept), not repeated in data.
    for data in by_type.values():
        assert not {"session_id", "cwd", "transcript_path", "hook_event_name"} & set(data)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", TOOL_FILES)
async def test_each_tool_use_is_queued_with_its_files_and_payload(
    ds: Datasette, token: str, repo: Repo, name: str
) -> None:
    await post(ds, token, load("SessionStart.json", session_id=SID, cwd=str(repo.main)))
    payload = load(name, session_id=SID, cwd=str(repo.main))
    response = await post(ds, token, payload)
    assert response.status_code == 200 and response.json() == {}
    [item] = await queue_of(ds, SID)
    assert item["tool_name"] == payload["tool_name"]
    assert item["tool_use_id"] == payload["tool_use_id"]
    assert item["status"] == "raw"
    assert item["project"] == str(repo.main)
    assert json.loads(item["files_touched"]) == EXPECTED_FILES[payload["tool_name"]]
    assert json.loads(item["tool_input"]) == payload["tool_input"]
    response = payload["tool_response"]
    if isinstance(response, str):
        assert item["raw_output"] == response
    else:  # a structured response is kept as its JSON text
        assert json.loads(item["raw_output"]) == response
    assert item["truncated"] == 0
    [event] = [e for e in await events_of(ds, SID) if e["event_type"] == "PostToolUse"]
    assert event["data"] == {
        "tool_name": payload["tool_name"],
        "queue_item_id": item["id"],
        "truncated": False,
    }


@pytest.mark.asyncio
async def test_a_tool_use_posted_again_is_queued_once(
    ds: Datasette, token: str, repo: Repo
) -> None:
    payload = load("PostToolUse-Edit.json", session_id=SID, cwd=str(repo.main))
    for _ in range(3):
        assert (await post(ds, token, payload)).status_code == 200
    items = await queue_of(ds, SID)
    assert len(items) == 1
    events = [e for e in await events_of(ds, SID) if e["event_type"] == "PostToolUse"]
    assert {e["data"]["queue_item_id"] for e in events} == {items[0]["id"]}
    other = load("PostToolUse-Edit.json", session_id=SID, cwd=str(repo.main), tool_use_id="t2")
    await post(ds, token, other)
    assert len(await queue_of(ds, SID)) == 2


# Project identity


@pytest.mark.asyncio
async def test_subdirectory_and_worktree_share_the_repository_key(
    ds: Datasette, token: str, repo: Repo, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    places = {"main": repo.main, "sub": repo.sub, "wt": repo.worktree, "other": elsewhere}
    for key, cwd in places.items():
        payload = load("SessionStart.json", session_id=f"s-{key}", cwd=str(cwd))
        assert (await post(ds, token, payload)).status_code == 200
    rows = await query_rows(ds, "SELECT id, project, project_dir FROM sessions ORDER BY id")
    projects = {r["id"]: r["project"] for r in rows}
    assert projects == {
        "s-main": str(repo.main),
        "s-sub": str(repo.main),
        "s-wt": str(repo.main),
        "s-other": str(elsewhere),
    }
    dirs = {r["id"]: r["project_dir"] for r in rows}
    assert dirs["s-sub"] == str(repo.sub) and dirs["s-wt"] == str(repo.worktree)


# SessionStart's answer


@pytest.mark.asyncio
async def test_session_start_answers_context_naming_the_previous_session(
    ds: Datasette, token: str, repo: Repo
) -> None:
    first = await post(ds, token, load("SessionStart.json", session_id=SID, cwd=str(repo.main)))
    assert first.json() == {}  # nothing remembered yet
    for name in ("UserPromptSubmit.json", "PostToolUse-Read.json", "SessionEnd.json"):
        await post(ds, token, load(name, session_id=SID, cwd=str(repo.sub)))

    response = await post(
        ds, token, load("SessionStart.json", session_id="next", cwd=str(repo.sub))
    )
    assert response.status_code == 200
    output = response.json()
    assert set(output) == {"hookSpecificOutput"}
    specific = output["hookSpecificOutput"]
    assert specific["hookEventName"] == "SessionStart"
    context = specific["additionalContext"]
    assert SID in context
    assert "The orders endpoint logs no customer id" in context  # the session's first prompt
    assert "closed" in context
    assert len(context.encode("utf-8")) < 10_000
    assert "`next`" not in context  # the session starting now is not its own history


@pytest.mark.asyncio
async def test_only_session_start_answers_with_anything(
    ds: Datasette, token: str, corpus_session: list[dict[str, Any]], repo: Repo
) -> None:
    for name in EVENT_FILES:
        if name.startswith("SessionStart"):
            continue
        payload = load(name, session_id="again", cwd=str(repo.main))
        assert (await post(ds, token, payload)).json() == {}, name


@pytest.mark.asyncio
async def test_a_resumed_session_is_active_again(ds: Datasette, token: str, repo: Repo) -> None:
    cwd = str(repo.main)
    await post(ds, token, load("SessionStart.json", session_id=SID, cwd=cwd))
    await post(ds, token, load("SessionEnd.json", session_id=SID, cwd=cwd))
    await post(ds, token, load("SessionStart-resume.json", session_id=SID, cwd=cwd))
    [row] = await query_rows(ds, "SELECT status, ended_at FROM sessions WHERE id = ?", [SID])
    assert row == {"status": "active", "ended_at": None}
    await post(ds, token, load("SessionEnd.json", session_id=SID, cwd=cwd))
    [row] = await query_rows(ds, "SELECT status, ended_at FROM sessions WHERE id = ?", [SID])
    assert row["status"] == "closed" and row["ended_at"] is not None


# Unknown, malformed and hostile input


@pytest.mark.asyncio
async def test_an_unknown_event_answers_empty_and_is_recorded(
    ds: Datasette, token: str, repo: Repo
) -> None:
    payload = load(
        "Stop.json", session_id=SID, cwd=str(repo.main), hook_event_name="TeamMateIdle", x=[1]
    )
    del payload["stop_hook_active"]
    response = await post(ds, token, payload)
    assert response.status_code == 200 and response.json() == {}
    [row] = await events_of(ds, SID)
    assert row["event_type"] == "TeamMateIdle"
    assert row["data"] == {"unknown_event": True, "x": [1]}
    assert row["duration_ms"] is not None


@pytest.mark.asyncio
async def test_a_prompt_with_a_lone_surrogate_is_kept_not_dropped(
    ds: Datasette, token: str, repo: Repo
) -> None:
    """JSON may carry a lone surrogate that UTF-8 (and so SQLite) cannot: the event is still
    stored, with that one character replaced, since Claude Code was told it was taken."""
    payload = load("UserPromptSubmit.json", session_id=SID, cwd=str(repo.main))
    payload["prompt"] = "fix the \ud800 parser"
    body = json.dumps(payload).encode("ascii")
    response = await post(ds, token, content=body)
    assert response.status_code == 200, response.text
    [row] = [r for r in await events_of(ds, SID) if r["event_type"] == "UserPromptSubmit"]
    assert row["data"]["prompt"] == "fix the ? parser"


@pytest.mark.asyncio
async def test_a_bash_command_with_a_quoted_password_is_queued_without_it(
    ds: Datasette, token: str, repo: Repo
) -> None:
    payload = load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main))
    payload.update(
        tool_name="Bash",
        tool_input={"command": 'mysql --password "Sup3r-s3cret-pw" shop < dump.sql'},
        tool_response={"stdout": "ok", "stderr": "", "interrupted": False},
        tool_use_id="toolu_quoted_password",
    )
    response = await post(ds, token, payload)
    assert response.status_code == 200, response.text
    [item] = await queue_of(ds, SID)
    assert json.loads(item["tool_input"])["command"] == (
        'mysql --password "[REDACTED:password]" shop < dump.sql'
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b"[]", b'"text"', b"42", b"null", b"", b"   ", b"\xff\xfe{}", b"{'a': 1}"],
)
async def test_malformed_json_is_400(ds: Datasette, token: str, body: bytes) -> None:
    response = await post(ds, token, content=body)
    assert_error(response, 400)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"session_id": None},
        {"session_id": ""},
        {"session_id": 12},
        {"hook_event_name": None},
        {"hook_event_name": ""},
    ],
)
async def test_missing_session_id_or_event_name_is_400(
    ds: Datasette, token: str, repo: Repo, change: dict[str, Any]
) -> None:
    payload = load("UserPromptSubmit.json", cwd=str(repo.main))
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    body = assert_error(await post(ds, token, payload), 400)
    assert next(iter(change)) in body["error"]
    assert await query_rows(ds, "SELECT * FROM event_log") == []


@pytest.mark.asyncio
async def test_hooks_need_a_token(ds: Datasette, repo: Repo) -> None:
    payload = load("SessionStart.json", cwd=str(repo.main))
    response = await api_call(ds, "POST", HOOKS, payload)
    assert_error(response, 401)
    assert await query_rows(ds, "SELECT * FROM sessions") == []


def _odd_values(rng: random.Random) -> list[Any]:
    return [
        None,
        True,
        0,
        -1,
        2**63 - 1,
        3.5,
        "",
        " ",
        "x" * rng.randint(1, 5000),
        "ünïcødé ✓ 漢字 🙂",
        "a\x00b",
        "../../../etc/passwd",
        "/" + "é" * 3000,
        [],
        [1, "two", None],
        {},
        {"nested": {"deeper": [{"k": "v"}] * 3}},
        {"file_path": 5},
    ]


def _mutate(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    keep = ("session_id", "hook_event_name")
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(sorted(payload) + ["tool_input", "tool_response", "extra"])
        roll = rng.random()
        if roll < 0.2 and key not in keep:
            payload.pop(key, None)
        else:
            value = rng.choice(_odd_values(rng))
            if key in keep and not (isinstance(value, str) and value.strip()):
                value = f"fuzz-{rng.randint(0, 9)}"
            payload[key] = value
    return payload


@pytest.mark.asyncio
async def test_fuzzed_payloads_never_make_a_500(ds: Datasette, token: str, repo: Repo) -> None:
    rng = random.Random(20240611)
    statuses: dict[int, int] = {}
    for i in range(240):
        payload = load(rng.choice(EVENT_FILES), cwd=str(repo.main), session_id=f"fz-{i % 7}")
        payload = _mutate(payload, rng)
        response = await post(ds, token, payload)
        assert response.status_code < 500, (payload, response.text)
        assert isinstance(response.json(), dict)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert statuses.get(200, 0) > 100  # most odd payloads are taken, not refused
    # The route still works afterwards.
    ok = await post(ds, token, load("SessionStart.json", session_id="after", cwd=str(repo.main)))
    assert ok.status_code == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cwd",
    ["/tmp/" + "é" * 3000, "/tmp/" + "/".join(["d" * 200] * 30), "relative/dir", "/tmp/a\x00b"],
    ids=["name-too-long", "path-too-long", "relative", "nul"],
)
async def test_a_cwd_the_system_cannot_look_at_is_not_a_500(
    ds: Datasette, token: str, cwd: str
) -> None:
    response = await post(ds, token, load("SessionStart.json", session_id="odd", cwd=cwd))
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        [row] = await query_rows(ds, "SELECT project FROM sessions WHERE id = 'odd'")
        assert row["project"]


@pytest.mark.asyncio
async def test_json_nested_too_deep_to_serialise_is_not_a_500(
    ds: Datasette, token: str, repo: Repo
) -> None:
    payload = load("Notification.json", session_id=SID, cwd=str(repo.main), message="X")
    for depth in (300, 990, 1100, 5000):
        # Written by hand: the standard library cannot write JSON this deep.
        body = json.dumps(payload).replace('"X"', "[" * depth + '"leaf"' + "]" * depth)
        response = await post(ds, token, content=body)
        assert response.status_code < 500, (depth, response.text)


# Big tool outputs: the queue keeps the head and tail up to the cap (64 KB by default)

CAP = 64 * 1024


@pytest.mark.asyncio
async def test_a_tool_response_under_the_cap_is_stored_whole(
    ds: Datasette, token: str, repo: Repo
) -> None:
    line = "    total = sum(row['amount'] for row in rows)  # a line of a big generated file\n"
    content = line * (50 * 1024 // len(line))
    payload = load(
        "PostToolUse-Bash.json",
        session_id=SID,
        cwd=str(repo.main),
        tool_response={"stdout": content, "stderr": "", "interrupted": False, "isImage": False},
    )
    assert (await post(ds, token, payload)).status_code == 200
    [item] = await queue_of(ds, SID)
    assert item["truncated"] == 0
    assert json.loads(item["raw_output"])["stdout"] == content
    assert item["raw_bytes"] == len(item["raw_output"].encode("utf-8"))


@pytest.mark.asyncio
async def test_a_5_mb_json_response_keeps_its_structure_head_and_tail(
    ds: Datasette, token: str, repo: Repo
) -> None:
    lines = [f"tests/test_{n}.py::test_case PASSED\n" for n in range(150_000)]
    content = "".join(lines) + "1 failed, 149999 passed in 12.5s\n"
    response = {"stdout": content, "stderr": "boom\n", "interrupted": False, "isImage": False}
    payload = load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main))
    payload["tool_response"] = response
    assert (await post(ds, token, payload)).status_code == 200
    [item] = await queue_of(ds, SID)
    assert item["truncated"] == 1
    assert item["raw_bytes"] == len(json.dumps(response, separators=(",", ":")))
    assert len(item["raw_output"].encode("utf-8")) <= CAP
    kept = json.loads(item["raw_output"])  # still JSON: only the long string was cut
    assert {k: v for k, v in kept.items() if k != "stdout"} == {
        "stderr": "boom\n",
        "interrupted": False,
        "isImage": False,
    }
    head, marker, tail = kept["stdout"].partition("\n[truncated: ")
    # Whole lines at each end; the summary at the very end is there for compression.
    assert content.startswith(head) and head.endswith("\n") and len(head) > CAP // 2
    assert content.endswith(tail.split("]\n", 1)[1])
    assert tail.endswith("1 failed, 149999 passed in 12.5s\n")
    assert marker and f"{len(content)} bytes in all" in tail
    [event] = await events_of(ds, SID)
    assert event["data"]["truncated"] is True


@pytest.mark.asyncio
async def test_a_9_mb_text_response_keeps_its_head_and_tail(
    ds: Datasette, token: str, repo: Repo
) -> None:
    text = "0123456789abcdef" * (9 * 1024 * 1024 // 16)
    payload = load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main), tool_response=text)
    assert (await post(ds, token, payload)).status_code == 200
    [item] = await queue_of(ds, SID)
    assert item["truncated"] == 1 and item["raw_bytes"] == len(text)
    stored = item["raw_output"]
    head, _, rest = stored.partition("\n[truncated: ")
    assert rest.startswith(f"{len(text)} bytes in all")
    assert text.startswith(head) and text.endswith(rest.split("]\n", 1)[1])
    assert CAP // 2 < len(stored.encode("utf-8")) <= CAP


@pytest.mark.asyncio
async def test_truncation_never_splits_a_multibyte_character(
    ds: Datasette, token: str, repo: Repo
) -> None:
    text = "é漢🙂" * (CAP // 9 + 10_000)  # 9 bytes a round
    payload = load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main), tool_response=text)
    assert (await post(ds, token, payload)).status_code == 200
    [item] = await queue_of(ds, SID)
    assert item["truncated"] == 1 and item["raw_bytes"] == len(text.encode("utf-8"))
    head, _, rest = item["raw_output"].partition("\n[truncated:")
    tail = rest.split("]\n", 1)[1]
    assert text.startswith(head) and text.endswith(tail) and head and tail
    assert len(item["raw_output"].encode("utf-8")) <= CAP


@pytest.mark.asyncio
async def test_the_cap_is_configurable(
    make_ds, memory_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_RAW_OUTPUT_CAP", "8192")
    ds = await make_ds(memory_path)
    token = await ds.create_token("claude-mem")
    text = "".join(f"line {n}\n" for n in range(5000))
    payload = load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main), tool_response=text)
    assert (await post(ds, token, payload)).status_code == 200
    [item] = await queue_of(ds, SID)
    assert item["truncated"] == 1 and item["raw_bytes"] == len(text)
    assert len(item["raw_output"]) <= 8192
    assert item["raw_output"].startswith("line 0\nline 1\n")
    assert item["raw_output"].endswith("line 4998\nline 4999\n")


# Excluded projects


@pytest.mark.asyncio
async def test_an_excluded_project_is_answered_but_not_remembered(
    make_ds, memory_path: Path, repo: Repo
) -> None:
    ds = await make_ds(memory_path, plugin={"excluded_projects": [str(repo.main.parent)]})
    token = await ds.create_token("claude-mem")
    for payload in session_events(SID, repo.sub):
        response = await post(ds, token, payload)
        assert response.status_code == 200 and response.json() == {}
    for table in ("sessions", "event_log", "pending_queue"):
        assert await query_rows(ds, f"SELECT * FROM {table}") == []
