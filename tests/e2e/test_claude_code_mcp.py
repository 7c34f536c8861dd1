"""The real Claude Code CLI recalls the memory mid-session through its MCP server.

A scripted model turn reads the session id off the SessionStart context's last line, calls
the memory's `search`, then `get` with an id the search answer listed, and the next model
request carries the remembered row. Once with the server registered by `datasette claude-mem
install` (user scope, in this world's HOME) and once through the plugin's own manifest
(`--plugin-dir`). Another project's row holding the same words never reaches the model, and
`uninstall` takes the registration out of what Claude Code sees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from claude_cli import ClaudeWorld, Session, require_claude
from fake_anthropic import FakeAnthropic, Script, ToolCall, request_text
from helpers import MemServer
from payloads import load

from datasette_claude_mem.names import MCP_SERVER_NAME

MARKER = "RECALL-8e2"
REPO_FILES = {"retry.py": "def delay(attempt):\n    return 2 ** attempt\n"}
ROW_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) · ", re.M)
SESSION_NAMED = re.compile(r'pass session_id="([^"]+)"')
OURS = "The retry budget moved into settings.toml after the outage"
THEIRS = "Retry budget of the billing service lives in vault"


# The turns below run inside the fake API's request handler, where a failed assert would only
# make Claude Code retry until it times out: they answer something that fails the checks.


def tool_named(body: dict[str, Any], tool: str) -> str:
    """The name Claude Code gives the memory server's tool: mcp__claude-mem__<tool> when
    registered by install, with the plugin's prefix when the plugin brings it."""
    names = [t.get("name", "") for t in body.get("tools", [])]
    ours = [n for n in names if n.endswith(f"{MCP_SERVER_NAME}__{tool}")]
    return ours[0] if ours else f"not-offered__{tool}"


def last_tool_result(body: dict[str, Any]) -> str:
    """The text of the newest tool_result in the conversation the model is sent."""
    for message in reversed(body.get("messages", [])):
        content = message.get("content")
        for block in reversed(content if isinstance(content, list) else []):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list):
                    return "\n".join(str(b.get("text", "")) for b in inner if isinstance(b, dict))
                return str(inner)
    return ""


def search_input(body: dict[str, Any]) -> dict[str, Any]:
    """What a model does with the context's last line: name the session it was given."""
    named = SESSION_NAMED.findall(request_text(body)) or ["no-session-named"]
    return {"query": "retry budget", "session_id": named[-1]}


def get_input(body: dict[str, Any]) -> dict[str, Any]:
    """`get` with the first id the search answer listed."""
    found = ROW_ID.findall(last_tool_result(body)) or ["none-listed"]
    named = SESSION_NAMED.findall(request_text(body)) or ["no-session-named"]
    return {"ids": found[:1], "session_id": named[-1]}


def recall_script() -> Script:
    return Script(
        MARKER,
        [
            ToolCall(lambda body: tool_named(body, "search"), search_input),
            ToolCall(lambda body: tool_named(body, "get"), get_input),
        ],
        "Recalled.",
    )


def remember_rows(server: MemServer, world: ClaudeWorld) -> tuple[str, str]:
    """An earlier session's observation in this repository, and one in another project
    with the same words; returns their ids."""
    other = world.root / "billing"
    other.mkdir(exist_ok=True)
    ids = []
    for session, cwd, title in (("earlier", world.repo, OURS), ("elsewhere", other, THEIRS)):
        assert server.hook(load("SessionStart.json", session_id=session, cwd=str(cwd))).is_success
        made = server.request(
            "POST",
            "/-/claude-mem/observations",
            json={
                "session_id": session,
                "tool_name": "Edit",
                "title": title,
                "summary": f"{title}; delay() reads it",
                "detail": f"DETAIL-{session}: the retry budget is read once at start",
                "files_touched": ["retry.py"],
            },
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["row"]["id"])
    return ids[0], ids[1]


def check_recall(session: Session, fake: FakeAnthropic, ours: str, theirs: str) -> None:
    """search then get really ran against the memory, and the model read the row."""
    assert session.returncode == 0, session.stderr
    uses = session.tool_uses()
    assert [u["name"].rsplit("__", 1)[-1] for u in uses] == ["search", "get"], uses
    assert not any(u["name"].startswith("not-offered") for u in uses), "no memory tools"
    results = session.tool_results()
    found = str(results[uses[0]["id"]]["content"])
    assert ours in found and theirs not in found
    assert uses[1]["input"]["ids"] == [ours]
    assert not results[uses[1]["id"]].get("is_error"), results[uses[1]["id"]]

    requests = fake.model_requests(MARKER)
    assert len(requests) == 3  # search, get, and the closing turn
    # The context the session started with closed with the way to ask the memory more.
    closing = SESSION_NAMED.search(request_text(requests[0].body))
    assert closing, "the SessionStart context named no session for the tools"
    line = request_text(requests[0].body)[: closing.end()].rsplit("\n", 1)[-1]
    assert "search → timeline → get" in line, line
    after_get = request_text(requests[-1].body)
    assert last_tool_result(requests[-1].body).startswith(f"## observation {ours}")
    assert OURS in after_get and "DETAIL-earlier" in after_get
    for request in fake.log:
        text = request_text(request.body)
        assert theirs not in text and THEIRS not in text and "DETAIL-elsewhere" not in text


@pytest.fixture
def world(tmp_path: Path):
    require_claude()
    fake = FakeAnthropic().start()
    world = ClaudeWorld(tmp_path, fake.url)
    world.make_repo(REPO_FILES)
    fake.scripts.append(recall_script())
    server = MemServer(world.mem_dir, tmp_path / "server.log").start()
    world.extra_env.update(CLAUDE_MEM_TOKEN=server.token, CLAUDE_MEM_URL=server.url)
    try:
        yield world, server, fake
    finally:
        server.stop()
        fake.stop()


def test_install_registers_the_server_and_a_session_recalls_through_it(world) -> None:
    world, server, fake = world
    ours, theirs = remember_rows(server, world)
    done = world.memory_cli("install", "--url", server.url)
    assert done.returncode == 0, done.stderr
    registered = json.loads((world.home / ".claude.json").read_text())["mcpServers"]
    assert registered[MCP_SERVER_NAME]["url"] == server.url + "/-/claude-mem/mcp"
    seen = world.cli("mcp", "get", MCP_SERVER_NAME)
    assert seen.returncode == 0 and server.url in seen.stdout, (seen.stdout, seen.stderr)

    session = world.run(f"{MARKER}: what do we know about the retry budget?")
    check_recall(session, fake, ours, theirs)
    assert any(u["name"] == f"mcp__{MCP_SERVER_NAME}__search" for u in session.tool_uses())

    done = world.memory_cli("uninstall")
    assert done.returncode == 0, done.stderr
    config = json.loads((world.home / ".claude.json").read_text())
    assert MCP_SERVER_NAME not in config.get("mcpServers", {})
    assert world.cli("mcp", "get", MCP_SERVER_NAME).returncode != 0


def test_the_plugin_brings_the_server_and_a_session_recalls_through_it(world) -> None:
    world, server, fake = world
    ours, theirs = remember_rows(server, world)
    market = world.root / "marketplace"
    wrote = world.memory_cli("plugin", str(market), "--url", server.url)
    assert wrote.returncode == 0, wrote.stderr
    assert not (world.home / ".claude.json").exists() or MCP_SERVER_NAME not in json.loads(
        (world.home / ".claude.json").read_text()
    ).get("mcpServers", {})

    session = world.run(
        f"{MARKER}: what do we know about the retry budget?", "--plugin-dir", str(market / "plugin")
    )
    check_recall(session, fake, ours, theirs)
    # Claude Code names a plugin's server after the plugin: the tools are its own.
    assert all(u["name"].startswith("mcp__plugin_") for u in session.tool_uses())
