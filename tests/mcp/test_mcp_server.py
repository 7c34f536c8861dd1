"""The MCP endpoint of a real `datasette claude-mem serve`, reached over HTTP on a loopback
port by the SDK's client, after a session came in through the hooks as Claude Code sends
it; and the install commands that point Claude Code at it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import db_rows, mcp_client
from payloads import load, make_repo

from datasette_claude_mem.cli import claude_mem
from datasette_claude_mem.names import MCP_PATH

ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.asyncio
async def test_every_tool_over_a_real_server(mem_server, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "work")
    for name in ("SessionStart.json", "UserPromptSubmit.json"):
        assert mem_server.hook(load(name, session_id="live", cwd=str(repo.sub))).is_success
    made = mem_server.request(
        "POST",
        "/-/claude-mem/observations",
        json={
            "session_id": "live",
            "tool_name": "Edit",
            "title": "Retry budget moved to settings",
            "summary": "RetryPolicy.delay reads the budget from settings",
            "detail": "long " * 50,
            "files_touched": ["src/retry.py"],
            "functions_changed": ["RetryPolicy.delay"],
        },
    )
    assert made.status_code == 201, made.text  # fmt: skip
    observation = made.json()["row"]["id"]

    async with mcp_client(mem_server.url, mem_server.token) as client:
        assert client.server_info.name == "claude-mem"
        assert len((await client.list_tools()).tools) == 7

        async def text(tool: str, **arguments) -> str:
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, (tool, result.content[0].text)
            return result.content[0].text

        found = await text("search", query="retry budget", session_id="live")
        assert observation in ID.findall(found)
        around = await text("timeline", id=observation, session_id="live")
        assert f"→ {observation}" in around
        full = await text("get", ids=[observation], session_id="live")
        assert "long long" in full and "src/retry.py" in full
        about = await text("about", function="delay", session_id="live")
        assert observation in about
        saved = await text("remember", text="Retries back off exponentially", kind="learning",
                           category="pattern", session_id="live")  # fmt: skip
        learning = ID.findall(saved)[0]
        assert "Retries back off" in await text("context", session_id="live")
        assert await text("forget", id=learning, reason="duplicate", session_id="live")
        assert "Retries back off" not in await text("context", session_id="live")
        bad = await client.call_tool("get", {"ids": "not-a-list"})
        assert bad.is_error

    rows = db_rows(mem_server.db_path, "SELECT is_active, forgotten_by, forgotten_reason "
                   "FROM learnings WHERE id = ?", [learning])  # fmt: skip
    assert rows == [{"is_active": 0, "forgotten_by": "claude-mem", "forgotten_reason": "duplicate"}]
    anonymous = httpx.post(mem_server.url + MCP_PATH, json={}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["ok"] is False

    started = mem_server.hook(load("SessionStart.json", session_id="next", cwd=str(repo.sub)))
    context = started.json()["hookSpecificOutput"]["additionalContext"]
    closing = context.splitlines()[-1]
    assert "search → timeline → get" in closing and 'session_id="next"' in closing


def test_install_registers_the_mcp_server_and_uninstall_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    home.mkdir()
    user_file = home / ".claude.json"
    user_file.write_text(json.dumps({"numStartups": 3, "mcpServers": {"other": {"type": "stdio",
                         "command": "other-server"}}}))  # fmt: skip
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    runner = CliRunner()

    result = runner.invoke(claude_mem, ["install", "--url", "http://127.0.0.1:9999"])
    assert result.exit_code == 0, result.output
    assert f"MCP server added to {user_file}" in result.output
    written = json.loads(user_file.read_text())
    assert written["numStartups"] == 3 and written["mcpServers"]["other"]["command"]
    assert written["mcpServers"]["claude-mem"] == {
        "type": "http",
        "url": "http://127.0.0.1:9999/-/claude-mem/mcp",
        "headers": {"Authorization": "Bearer ${CLAUDE_MEM_TOKEN}"},
    }
    again = runner.invoke(claude_mem, ["install", "--url", "http://127.0.0.1:9999"])
    assert "MCP server already in" in again.output
    assert json.loads(user_file.read_text()) == written

    result = runner.invoke(claude_mem, ["install", "--project"])
    assert result.exit_code == 0, result.output
    project_file = project / ".mcp.json"
    assert json.loads(project_file.read_text())["mcpServers"]["claude-mem"]["url"] == (
        "http://127.0.0.1:8765/-/claude-mem/mcp"
    )

    result = runner.invoke(claude_mem, ["uninstall"])
    assert result.exit_code == 0 and f"Removed the MCP server from {user_file}" in result.output
    assert json.loads(user_file.read_text()) == {
        "numStartups": 3, "mcpServers": {"other": {"type": "stdio", "command": "other-server"}}
    }  # fmt: skip
    result = runner.invoke(claude_mem, ["uninstall", "--project"])
    assert json.loads(project_file.read_text()) == {}
    result = runner.invoke(claude_mem, ["uninstall", "--project"])
    assert "No memory MCP server in" in result.output

    skipped = runner.invoke(claude_mem, ["install", "--project", "--no-mcp"])
    assert skipped.exit_code == 0 and "MCP" not in skipped.output
    assert json.loads(project_file.read_text()) == {}


def test_a_broken_mcp_file_is_reported_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "mcp.json"
    target.write_text('{"mcpServers": []}')
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        claude_mem, ["install", "--mcp-config", str(target), "--settings", str(tmp_path / "s.json")]
    )
    assert result.exit_code != 0 and "mcpServers is not a JSON object" in result.output
    assert target.read_text() == '{"mcpServers": []}'
    assert not (tmp_path / "s.json").exists()  # the hooks were not installed either
