"""What Claude Code 2.1 sends beyond the basic events, through POST /-/claude-mem/hooks:
failed tool uses, subagents, summaries, compaction and resumed sessions.

The payloads follow the shapes the real CLI sent (field names and nesting as captured),
with this test's own session, directory and values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from helpers import api_call, query_rows
from payloads import Repo, load, make_repo

from datasette_claude_mem.claude_code.events import SUMMARY_MAX_CHARS
from datasette_claude_mem.storage.models import CLAUDE_CODE_EVENTS
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Worker

SID = "0b7e54f2-6c1d-4f0a-8e3b-5a9d2c7e1f40"
AGENT = "a41f0c9e27d5b6a83"
# A key of a shape the redactor knows, made up for the test.
SECRET = "sk-ant-api03-" + "Q" * 86 + "AA"


def event(name: str, cwd: Path, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": SID,
        "transcript_path": f"/home/dev/.claude/projects/x/{SID}.jsonl",
        "cwd": str(cwd),
        "permission_mode": "bypassPermissions",
        "hook_event_name": name,
        **fields,
    }


def failure(cwd: Path, **fields: Any) -> dict[str, Any]:
    return event(
        "PostToolUseFailure",
        cwd,
        prompt_id="c1a2b3c4-0000-4000-8000-000000000001",
        tool_name="Bash",
        tool_input={"command": "cat missing.txt", "description": "Show a missing file"},
        tool_use_id="toolu_fail_1",
        error="Exit code 1\ncat: missing.txt: No such file or directory",
        is_interrupt=False,
        duration_ms=121,
        **fields,
    )


def subagent_bash(cwd: Path) -> dict[str, Any]:
    return event(
        "PostToolUse",
        cwd,
        prompt_id="c1a2b3c4-0000-4000-8000-000000000001",
        agent_id=AGENT,
        agent_type="Explore",
        tool_name="Bash",
        tool_input={"command": "ls src | wc -l", "description": "Count files"},
        tool_response={"stdout": "3", "stderr": "", "interrupted": False, "isImage": False},
        tool_use_id="toolu_sub_1",
        duration_ms=18,
    )


async def post(ds: Datasette, token: str, payload: dict[str, Any]) -> Any:
    response = await api_call(ds, "POST", "/hooks", payload, token=token)
    assert response.status_code == 200, response.text
    return response.json()


async def queue(ds: Datasette) -> list[dict[str, Any]]:
    return await query_rows(
        ds,
        "SELECT q.*, p.raw_output FROM pending_queue q JOIN pending_payloads p "
        "ON p.item_id = q.id WHERE q.session_id = ? ORDER BY q.rowid",
        [SID],
    )


async def session_row(ds: Datasette) -> dict[str, Any]:
    [row] = await query_rows(ds, "SELECT * FROM sessions WHERE id = ?", [SID])
    return row


def context_of(answer: dict[str, Any]) -> str:
    return answer["hookSpecificOutput"]["additionalContext"] if answer else ""


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "work")


# Every event


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [e for e in CLAUDE_CODE_EVENTS if e != "SessionStart"])
async def test_every_event_claude_code_sends_is_taken_and_recorded(
    ds: Datasette, token: str, repo: Repo, name: str
) -> None:
    answer = await post(ds, token, event(name, repo.main, marker=name))
    assert answer == {}
    rows = await query_rows(
        ds, "SELECT event_type, data FROM event_log WHERE session_id = ?", [SID]
    )
    assert [r["event_type"] for r in rows] == [name]
    data = json.loads(rows[0]["data"])
    assert "unknown_event" not in data
    if name not in ("PostToolUse", "PostToolUseFailure"):
        assert data["marker"] == name


# Failed tool uses


@pytest.mark.asyncio
async def test_a_failed_tool_use_is_queued_with_its_error(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await post(ds, token, failure(repo.main))
    [item] = await queue(ds)
    assert item["tool_use_id"] == "toolu_fail_1"
    assert item["failure"] == "error"
    assert item["raw_output"] == "Exit code 1\ncat: missing.txt: No such file or directory"
    assert item["duration_ms"] == 121
    assert item["prompt_id"] == "c1a2b3c4-0000-4000-8000-000000000001"
    [logged] = await query_rows(ds, "SELECT data FROM event_log WHERE session_id = ?", [SID])
    assert json.loads(logged["data"])["failure"] == "error"


@pytest.mark.asyncio
async def test_an_interrupted_tool_use_is_marked_so(ds: Datasette, token: str, repo: Repo) -> None:
    await post(ds, token, failure(repo.main) | {"is_interrupt": True, "error": "Interrupted"})
    [item] = await queue(ds)
    assert item["failure"] == "interrupt"


@pytest.mark.asyncio
async def test_a_failure_becomes_an_observation_of_what_failed_and_why(
    ds: Datasette, token: str, repo: Repo, memory_path: Path
) -> None:
    await post(ds, token, failure(repo.main))
    with Store(memory_path) as store:
        report = Worker(index_code=False).run_once(store)
        assert report.done == 1
        [observation] = store.list_observations(SID)
    assert observation.title == "Bash failed: cat missing.txt"
    assert observation.summary.startswith("Failed: ")
    assert "No such file or directory" in observation.summary
    assert "Exit code 1" in observation.summary


@pytest.mark.asyncio
async def test_a_failure_repeated_is_queued_once(ds: Datasette, token: str, repo: Repo) -> None:
    await post(ds, token, failure(repo.main))
    await post(ds, token, failure(repo.main))
    assert len(await queue(ds)) == 1


# Subagents and the fields kept


@pytest.mark.asyncio
async def test_a_subagents_tool_use_belongs_to_its_parent_session_and_names_the_agent(
    ds: Datasette, token: str, repo: Repo, memory_path: Path
) -> None:
    await post(ds, token, event("SubagentStart", repo.main, agent_id=AGENT, agent_type="Explore"))
    await post(ds, token, subagent_bash(repo.main))
    [item] = await queue(ds)
    assert (item["session_id"], item["agent_id"], item["agent_type"]) == (SID, AGENT, "Explore")
    assert item["duration_ms"] == 18
    with Store(memory_path) as store:
        Worker(index_code=False).run_once(store)
        [observation] = store.list_observations(SID)
    assert (observation.agent_id, observation.agent_type) == (AGENT, "Explore")
    assert observation.session_id == SID
    sessions = await query_rows(ds, "SELECT id FROM sessions")
    assert sessions == [{"id": SID}]  # no session of its own for the subagent


@pytest.mark.asyncio
async def test_the_main_agents_observation_names_no_agent(
    ds: Datasette, token: str, repo: Repo, memory_path: Path
) -> None:
    await post(ds, token, load("PostToolUse-Bash.json", session_id=SID, cwd=str(repo.main)))
    with Store(memory_path) as store:
        Worker(index_code=False).run_once(store)
        [observation] = store.list_observations(SID)
    assert observation.agent_id is None and observation.agent_type is None


@pytest.mark.asyncio
async def test_the_session_page_shows_the_subagent(
    ds: Datasette, token: str, repo: Repo, memory_path: Path
) -> None:
    await post(ds, token, subagent_bash(repo.main))
    with Store(memory_path) as store:
        Worker(index_code=False).run_once(store)
    cookies = {"ds_actor": ds.client.actor_cookie({"id": "root"})}
    response = await ds.client.get(f"/-/claude-mem/sessions/{SID}", cookies=cookies)
    assert response.status_code == 200
    markup = response.text
    section = markup[markup.index('id="subagents"') :]
    assert "Explore" in section[:600] and AGENT in section[:600]
    assert markup.count(f"subagent Explore ({AGENT})") == 2  # its tool use and its observation


@pytest.mark.asyncio
async def test_an_mcp_tools_server_is_kept(ds: Datasette, token: str, repo: Repo) -> None:
    payload = event(
        "PostToolUse",
        repo.main,
        tool_name="mcp__pricing__lookup_price",
        tool_input={"sku": "apple"},
        tool_response=[{"type": "text", "text": "apple costs 3"}],
        tool_use_id="toolu_mcp_1",
        duration_ms=55,
        mcp_server={"name": "pricing", "source": "dynamic"},
    )
    await post(ds, token, payload)
    [item] = await queue(ds)
    assert item["mcp_server"] == "pricing"
    assert item["agent_id"] is None and item["failure"] is None


@pytest.mark.asyncio
async def test_odd_field_values_are_left_out_not_a_500(
    ds: Datasette, token: str, repo: Repo
) -> None:
    payload = subagent_bash(repo.main) | {"duration_ms": "slow", "mcp_server": [1], "agent_id": {}}
    await post(ds, token, payload)
    [item] = await queue(ds)
    assert (item["duration_ms"], item["mcp_server"], item["agent_id"]) == (None, None, None)


# Summaries and compaction


@pytest.mark.asyncio
async def test_each_stop_makes_its_last_message_the_summary(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await post(ds, token, event("Stop", repo.main, last_assistant_message="Added the parser."))
    assert (await session_row(ds))["summary"] == "Added the parser."
    await post(ds, token, event("Stop", repo.main, last_assistant_message="Parser and tests."))
    assert (await session_row(ds))["summary"] == "Parser and tests."
    await post(ds, token, event("Stop", repo.main, last_assistant_message="  "))
    assert (await session_row(ds))["summary"] == "Parser and tests."  # nothing said: kept


@pytest.mark.asyncio
async def test_a_subagents_stop_is_not_the_sessions_summary(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await post(ds, token, event("Stop", repo.main, last_assistant_message="Main work done."))
    await post(
        ds,
        token,
        event("SubagentStop", repo.main, agent_id=AGENT, last_assistant_message="3 files."),
    )
    assert (await session_row(ds))["summary"] == "Main work done."


@pytest.mark.asyncio
async def test_the_summary_is_redacted_and_bounded(ds: Datasette, token: str, repo: Repo) -> None:
    message = f"Set ANTHROPIC_API_KEY={SECRET} in the env. " + "More words. " * 2000
    await post(ds, token, event("Stop", repo.main, last_assistant_message=message))
    summary = (await session_row(ds))["summary"]
    assert SECRET not in summary
    assert summary.startswith("Set ANTHROPIC_API_KEY=")
    assert len(summary) <= SUMMARY_MAX_CHARS
    [logged] = await query_rows(ds, "SELECT data FROM event_log WHERE session_id = ?", [SID])
    assert SECRET not in logged["data"]


@pytest.mark.asyncio
async def test_the_compaction_summary_is_kept(ds: Datasette, token: str, repo: Repo) -> None:
    await post(ds, token, event("PreCompact", repo.main, trigger="manual", custom_instructions=""))
    summary = f"We fixed the parser; the token {SECRET} was rotated."
    await post(
        ds, token, event("PostCompact", repo.main, trigger="manual", compact_summary=summary)
    )
    kept = (await session_row(ds))["compact_summary"]
    assert kept.startswith("We fixed the parser; the token ")
    assert SECRET not in kept


# Context after compaction and resume


async def remember_something(ds: Datasette, token: str, repo: Repo, session: str) -> None:
    for name in ("UserPromptSubmit.json", "PostToolUse-Read.json", "SessionEnd.json"):
        await post(ds, token, load(name, session_id=session, cwd=str(repo.main)))


@pytest.mark.asyncio
async def test_after_compaction_the_context_is_answered_again(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await remember_something(ds, token, repo, "earlier-session")
    first = await post(ds, token, event("SessionStart", repo.main, source="startup"))
    again = await post(ds, token, event("SessionStart", repo.main, source="compact"))
    assert "earlier-session" in context_of(first)
    assert context_of(again) == context_of(first)


@pytest.mark.asyncio
async def test_a_resumed_session_is_told_nothing_when_nothing_is_new(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await remember_something(ds, token, repo, "earlier-session")
    assert context_of(await post(ds, token, event("SessionStart", repo.main, source="startup")))
    assert await post(ds, token, event("SessionStart", repo.main, source="resume")) == {}


@pytest.mark.asyncio
async def test_a_resumed_session_is_told_only_what_is_new(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await remember_something(ds, token, repo, "earlier-session")
    await post(ds, token, event("SessionStart", repo.main, source="startup"))
    await remember_something(ds, token, repo, "meanwhile-session")
    context = context_of(await post(ds, token, event("SessionStart", repo.main, source="resume")))
    assert "meanwhile-session" in context
    assert "earlier-session" not in context
    assert "new since" in context.splitlines()[0]


@pytest.mark.asyncio
async def test_a_session_resumed_before_it_ever_got_context_gets_all_of_it(
    ds: Datasette, token: str, repo: Repo
) -> None:
    await remember_something(ds, token, repo, "earlier-session")
    context = context_of(await post(ds, token, event("SessionStart", repo.main, source="resume")))
    assert "earlier-session" in context and "new since" not in context


def test_an_interrupted_tool_use_is_summarised_as_interrupted() -> None:
    from datasette_claude_mem.worker.compress import compress

    done = compress("Bash", {"command": "pytest -x"}, "", failure="interrupt")
    assert done.title == "Bash interrupted: pytest -x"
    assert done.summary == "Interrupted: interrupted by the user"
