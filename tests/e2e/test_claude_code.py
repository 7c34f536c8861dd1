"""The real Claude Code CLI, driven by a scripted fake Messages API, with the memory's hooks
installed as a user would install them: what reaches the memory, and what reaches the model.

Each session really runs Read, Edit, Write, Bash (once failing), Grep, Glob, an MCP tool and a
subagent in a small git repository. The checks read the memory file, the memory server's
access log, Claude Code's stream-json output and --debug log, and the fake API's request log.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from claude_cli import ClaudeWorld, Session, listening_pid, require_claude
from fake_anthropic import (
    COMPACT_SUMMARY,
    FakeAnthropic,
    Script,
    ToolCall,
    request_text,
    tool_session,
)
from helpers import MemServer, db_rows

from datasette_claude_mem.worker.session_summary import SUMMARY_TOOL

MODES = ["http", "command"]
CONTEXT_MARK = "SessionStart hook additional context: # Memory of"
MCP_SERVER = Path(__file__).with_name("mcp_pricing.py")
REPO_FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "README.md": "A small demo repository.\n",
}


def work_scripts(repo: Path) -> list[Script]:
    """A session that uses every kind of tool and an MCP tool, its subagent, and a second
    session with nothing to do."""
    mcp = [ToolCall("mcp__pricing__lookup_price", {"sku": "apple"})]
    return [
        *tool_session(
            repo, "FIRST-2c9", "SUBTASK-7f3", "Changed calc.py and wrote notes.txt.", extra=mcp
        ),
        Script("SECOND-5d1", [], "Nothing to do."),
    ]


def mcp_config(world: ClaudeWorld) -> Path:
    path = world.root / "mcp.json"
    server = {"command": sys.executable, "args": [str(MCP_SERVER)]}
    path.write_text(json.dumps({"mcpServers": {"pricing": server}}), encoding="utf-8")
    return path


def install_hooks(world: ClaudeWorld, server: MemServer, mode: str) -> None:
    """`datasette claude-mem install` into this world's user settings, as the README says."""
    args = ["install", "--settings", str(world.settings_path), "--url", server.url]
    done = world.memory_cli(*args, *(["--command"] if mode == "command" else []))
    assert done.returncode == 0, done.stderr
    world.extra_env.update(CLAUDE_MEM_TOKEN=server.token, CLAUDE_MEM_URL=server.url)


def queue_rows(server: MemServer, session_id: str) -> list[dict]:
    return db_rows(
        server.db_path,
        "select tool_use_id, tool_name from pending_queue where session_id = ? "
        "and tool_name != ? order by rowid",  # the tool uses, not the summary items of Stops
        [session_id, SUMMARY_TOOL],
    )


def hook_lines(server: MemServer) -> list[str]:
    """The server's access-log lines for hook calls."""
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "/-/claude-mem/hooks" in line]


@dataclass
class TwoSessions:
    mode: str
    world: ClaudeWorld
    server: MemServer
    fake: FakeAnthropic
    first: Session
    second: Session


@pytest.fixture(scope="module", params=MODES)
def two_sessions(request, tmp_path_factory):
    """Per install mode: a working session, then a second one in the same repository."""
    require_claude()
    mode = request.param
    root = tmp_path_factory.mktemp(f"claude-{mode}")
    fake = FakeAnthropic().start()
    world = ClaudeWorld(root, fake.url)
    world.make_repo(REPO_FILES)
    fake.scripts.extend(work_scripts(world.repo))
    server = MemServer(world.mem_dir, root / "server.log").start()
    try:
        install_hooks(world, server, mode)
        first = world.run("FIRST-2c9: tidy calc.py", "--mcp-config", str(mcp_config(world)))
        second = world.run("SECOND-5d1: what is left?")
        yield TwoSessions(mode, world, server, fake, first, second)
    finally:
        server.stop()
        fake.stop()


def test_sessions_ran_every_tool(two_sessions: TwoSessions) -> None:
    """The scripted turns really ran: every tool once, one Bash failure, the subagent too."""
    first = two_sessions.first
    assert first.returncode == 0, first.stderr
    names = sorted(use["name"] for use in first.tool_uses())
    expected = ["Agent", "Bash", "Bash", "Bash", "Edit", "Glob", "Grep", "Read", "Write"]
    assert names == sorted([*expected, "mcp__pricing__lookup_price"])
    results = first.tool_results()
    by_name = {use["name"]: use["id"] for use in first.tool_uses()}
    failing = next(u["id"] for u in first.tool_uses() if "no_such_file" in str(u["input"]))
    assert [r["tool_use_id"] for r in results.values() if r.get("is_error")] == [failing]
    assert "apple costs 3" in str(results[by_name["mcp__pricing__lookup_price"]]["content"])
    assert (two_sessions.world.repo / "notes.txt").read_text() == "notes\n"
    assert "return b + a" in (two_sessions.world.repo / "calc.py").read_text()


def test_second_session_model_request_carries_the_memory_context(
    two_sessions: TwoSessions,
) -> None:
    requests = two_sessions.fake.model_requests("SECOND-5d1")
    assert requests, "the second session sent no model request"
    text = request_text(requests[0].body)
    assert CONTEXT_MARK in text
    # The first session is in it: its id, and what it was asked.
    assert two_sessions.first.session_id in text
    # What it did: its summary (Stop's last message), or while it has none, its prompt.
    assert "Changed calc.py and wrote notes.txt." in text or "FIRST-2c9: tidy calc.py" in text


def test_queue_rows_are_the_tool_uses_claude_code_ran(two_sessions: TwoSessions) -> None:
    """Same tool_use_ids, each once, the failed Bash and the subagent's Bash included."""
    first = two_sessions.first
    ran = sorted((use["id"], use["name"]) for use in first.tool_uses())
    rows = queue_rows(two_sessions.server, first.session_id)
    assert sorted((r["tool_use_id"], r["tool_name"]) for r in rows) == ran
    failed = [r["tool_use_id"] for r in first.tool_results().values() if r.get("is_error")]
    assert set(failed) <= {r["tool_use_id"] for r in rows}


def test_every_hook_call_got_2xx_and_the_debug_log_shows_no_hook_error(
    two_sessions: TwoSessions,
) -> None:
    lines = hook_lines(two_sessions.server)
    assert lines, "no hook reached the server"
    assert [line for line in lines if '" 2' not in line] == []
    for session in (two_sessions.first, two_sessions.second):
        assert session.hook_problems() == []
        for event in ("SessionStart", "UserPromptSubmit", "Stop"):
            assert f"({event}) success" in session.debug_log, event
    assert "(PostToolUse) success" in two_sessions.first.debug_log


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/-/claude-mem/openapi.json", timeout=2).is_success
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("mode", MODES)
def test_server_down_at_session_start_loses_and_doubles_nothing(mode: str, tmp_path: Path) -> None:
    """No server when the session starts: the hook brings one up or spools; every tool use
    and every event is in the memory once the server runs, none twice."""
    require_claude()
    fake = FakeAnthropic().start()
    world = ClaudeWorld(tmp_path, fake.url)
    world.make_repo(REPO_FILES)
    fake.scripts.extend(work_scripts(world.repo))
    server = MemServer(world.mem_dir, tmp_path / "server.log")
    started_by_hook = None
    try:
        install_hooks(world, server, mode)
        first = world.run("FIRST-2c9: tidy calc.py", "--mcp-config", str(mcp_config(world)))
        assert first.returncode == 0, first.stderr
        if answers(server.url):
            pid_file = world.mem_dir / "server.pid"
            started_by_hook = (
                int(pid_file.read_text()) if pid_file.exists() else listening_pid(server.port)
            )
        else:
            server.start()
        deadline = time.monotonic() + 30
        ran = sorted((use["id"], use["name"]) for use in first.tool_uses())
        rows = queue_rows(server, first.session_id)
        while len(rows) < len(ran) and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = queue_rows(server, first.session_id)
        assert sorted((r["tool_use_id"], r["tool_name"]) for r in rows) == ran
        events = db_rows(
            server.db_path,
            "select event_type, count(*) as n from event_log where session_id = ? group by 1",
            [first.session_id],
        )
        stored = {e["event_type"]: e["n"] for e in events}
        # Each hook run Claude Code reports is one event row: none lost, none taken in twice.
        ran_hooks = first.hook_successes()
        assert ran_hooks["SessionStart"] == 1 and ran_hooks["PostToolUse"] >= 9
        assert {event: stored.get(event) for event in ran_hooks} == dict(ran_hooks)
    finally:
        server.stop()
        if started_by_hook is not None:
            os.kill(started_by_hook, 15)
        fake.stop()


def hook_outputs(session: Session, event: str) -> list[str]:
    """What each of our hooks for `event` answered, as Claude Code's stream-json reports it."""
    found = []
    for message in session.messages:
        ours = message.get("type") == "system" and message.get("subtype") == "hook_response"
        if ours and (message.get("hook_event") == event or event in str(message.get("hook_name"))):
            found.append(str(message.get("output", "")) + str(message.get("stdout", "")))
    return found


@pytest.mark.parametrize("mode", MODES)
def test_resume_answers_only_what_is_new_and_compaction_gets_the_context_again(
    mode: str, tmp_path: Path
) -> None:
    """Point 4 as Claude Code really sends it: --resume, then /compact, then --resume."""
    require_claude()
    fake = FakeAnthropic().start()
    world = ClaudeWorld(tmp_path, fake.url)
    world.make_repo(REPO_FILES)
    fake.scripts.extend(
        [
            Script("ALPHA-1", [ToolCall("Read", {"file_path": str(world.repo / "calc.py")})]),
            Script("BRAVO-2", [], "Bravo."),
            Script("CHARLIE-3", [], "Charlie."),
            Script("DELTA-4", [], "Delta."),
        ]
    )
    server = MemServer(world.mem_dir, tmp_path / "server.log").start()
    try:
        install_hooks(world, server, mode)
        alpha = world.run("ALPHA-1: read calc.py")
        bravo = world.run("BRAVO-2: hello")
        assert alpha.session_id in request_text(fake.model_requests("BRAVO-2")[0].body)
        charlie = world.run("CHARLIE-3: go on", "--resume", bravo.session_id)
        compact = world.run("/compact", "--resume", bravo.session_id)
        delta = world.run("DELTA-4: after compaction", "--resume", bravo.session_id)
        for session in (alpha, bravo, charlie, compact, delta):
            assert session.returncode == 0, session.stderr
            assert session.hook_problems() == []

        # Resume: the conversation has the context already; nothing new happened since.
        resumed = hook_outputs(charlie, "SessionStart")
        assert resumed and all(alpha.session_id not in output for output in resumed)
        charlie_text = request_text(fake.model_requests("CHARLIE-3")[0].body)
        assert charlie_text.count(CONTEXT_MARK) <= 1

        # Compaction dropped the context: SessionStart(compact) answers it again, and the
        # model's next request after compaction carries it.
        assert any(r.answered == "compact" for r in fake.log), "no compaction request"
        compacted = hook_outputs(compact, "SessionStart")
        assert any(alpha.session_id in output for output in compacted)
        assert alpha.session_id in request_text(fake.model_requests("DELTA-4")[0].body)

        # PostCompact's summary is kept, and Stop's last message is the session's summary.
        rows = db_rows(server.db_path, "select * from sessions where id = ?", [bravo.session_id])
        assert any(COMPACT_SUMMARY in str(value) for value in rows[0].values()), rows
        rows = db_rows(server.db_path, "select * from sessions where id = ?", [alpha.session_id])
        assert rows[0]["summary"] == "Done."  # the script's closing text: Stop's last message
    finally:
        server.stop()
        fake.stop()


@pytest.mark.parametrize("mode", MODES)
def test_plugin_installs_from_its_marketplace_and_works(mode: str, tmp_path: Path) -> None:
    """`datasette claude-mem plugin DIR`, then Claude Code's own plugin commands; no hooks in
    settings.json: the plugin's hooks feed the memory and the context comes back."""
    require_claude()
    fake = FakeAnthropic().start()
    world = ClaudeWorld(tmp_path, fake.url)
    world.make_repo(REPO_FILES)
    fake.scripts.extend(
        [
            Script(
                "PLUGIN-1",
                [
                    ToolCall("Read", {"file_path": str(world.repo / "calc.py")}),
                    ToolCall("Bash", {"command": "cat missing.txt", "description": "Fails"}),
                ],
            ),
            Script("PLUGIN-2", [], "Second."),
        ]
    )
    server = MemServer(world.mem_dir, tmp_path / "server.log").start()
    market = tmp_path / "marketplace"
    try:
        args = ["plugin", str(market), "--url", server.url]
        wrote = world.memory_cli(*args, *(["--command"] if mode == "command" else []))
        assert wrote.returncode == 0, wrote.stderr
        plugin_id = "datasette-agent-memory@datasette-agent-memory"
        assert plugin_id in wrote.stdout
        for command in (
            ["plugin", "validate", str(market)],
            ["plugin", "marketplace", "add", str(market)],
            ["plugin", "install", plugin_id],
        ):
            done = world.cli(*command)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        listed = world.cli("plugin", "list")
        assert plugin_id in listed.stdout and "enabled" in listed.stdout
        settings = json.loads(world.settings_path.read_text())
        assert "hooks" not in settings  # the hooks come from the plugin alone
        world.extra_env.update(CLAUDE_MEM_TOKEN=server.token, CLAUDE_MEM_URL=server.url)

        first = world.run("PLUGIN-1: look around")
        second = world.run("PLUGIN-2: again")
        ran = sorted((use["id"], use["name"]) for use in first.tool_uses())
        rows = queue_rows(server, first.session_id)
        assert len(ran) == 2
        assert sorted((r["tool_use_id"], r["tool_name"]) for r in rows) == ran
        text = request_text(fake.model_requests("PLUGIN-2")[0].body)
        assert CONTEXT_MARK in text and first.session_id in text
        for session in (first, second):
            assert session.hook_problems() == []
    finally:
        server.stop()
        fake.stop()


def test_claude_code_installed_is_the_pinned_version() -> None:
    import subprocess

    from claude_cli import PINNED_VERSION

    done = subprocess.run(
        [*require_claude(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split()[0] == PINNED_VERSION
