"""`datasette claude-mem install/uninstall`: our hooks in, everything else kept, and out again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from payloads import load

from datasette_claude_mem.claude_code import install as installer
from datasette_claude_mem.cli import claude_mem

EVENTS = list(installer.EVENTS)
USER_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm run test:*)"], "deny": ["Read(./.env)"]},
    "env": {"FOO": "bar"},
    "hooks": {
        "PostToolUse": [
            {
                "matcher": "Write|Edit",
                "hooks": [{"type": "command", "command": 'npx prettier --write "$FILE"'}],
            }
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "~/bin/notify-done.sh"}]}],
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/hook_script.py"}]}
        ],
    },
    "statusLine": {"type": "command", "command": "~/.claude/statusline.sh"},
}


def write(path: Path, data: Any, indent: int = 4) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = (json.dumps(data, indent=indent) + "\n").encode("utf-8")
    path.write_bytes(raw)
    return raw


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def ours(settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Our hook entries, by event."""
    found: dict[str, list[dict[str, Any]]] = {}
    for event, groups in settings.get("hooks", {}).items():
        for group in groups:
            for hook in group.get("hooks", []):
                if installer.is_ours(hook):
                    found.setdefault(event, []).append(hook)
    return found


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".claude" / "settings.json"


# Installing


def test_install_into_no_settings_writes_every_event(settings: Path) -> None:
    assert installer.install(settings, url="http://127.0.0.1:9999") is True
    data = read(settings)
    assert list(data) == ["hooks"]
    assert list(data["hooks"]) == EVENTS
    for event, hooks in ours(data).items():
        if event == "SessionStart":
            continue
        assert hooks == [
            {
                "type": "http",
                "url": "http://127.0.0.1:9999/-/claude-mem/hooks",
                "headers": {"Authorization": "Bearer $CLAUDE_MEM_TOKEN"},
                "allowedEnvVars": ["CLAUDE_MEM_TOKEN"],
                "timeout": 5,
            }
        ]
    # Claude Code runs no http hook for SessionStart: it is the command hook, told the URL.
    assert ours(data)["SessionStart"] == [
        {
            "type": "command",
            "command": f"{sys.executable} -S {installer.SCRIPT} http://127.0.0.1:9999",
            "timeout": 15,
        }
    ]
    assert data["hooks"]["PostToolUse"][0]["matcher"] == "*"
    assert data["hooks"]["PostToolUseFailure"][0]["matcher"] == "*"


def test_install_hooks_the_events_that_feed_the_memory(settings: Path) -> None:
    installer.install(settings)
    assert set(ours(read(settings))) == {
        "SessionStart",
        "UserPromptSubmit",
        "PostToolUse",
        "PostToolUseFailure",
        "Stop",
        "SubagentStart",
        "SubagentStop",
        "PreCompact",
        "PostCompact",
        "Notification",
        "SessionEnd",
    }


def test_the_default_url_is_not_written_into_the_session_start_command(settings: Path) -> None:
    installer.install(settings)
    [hook] = ours(read(settings))["SessionStart"]
    assert hook["command"] == f"{sys.executable} -S {installer.SCRIPT}"
    assert not settings.with_name("settings.json.claude-mem.bak").exists()


def test_install_merges_with_existing_settings_and_hooks(settings: Path) -> None:
    original = write(settings, USER_SETTINGS)
    assert installer.install(settings) is True
    data = read(settings)
    for key in ("model", "permissions", "env", "statusLine"):
        assert data[key] == USER_SETTINGS[key]
    for event, groups in USER_SETTINGS["hooks"].items():
        assert data["hooks"][event][: len(groups)] == groups  # theirs first, untouched
    assert set(ours(data)) == set(EVENTS)
    assert "PreToolUse" not in ours(data)
    assert settings.with_name("settings.json.claude-mem.bak").read_bytes() == original


def test_installing_again_changes_no_byte(settings: Path) -> None:
    write(settings, USER_SETTINGS)
    installer.install(settings)
    first = settings.read_bytes()
    backup = settings.with_name("settings.json.claude-mem.bak").read_bytes()
    assert installer.install(settings) is False
    assert settings.read_bytes() == first
    assert settings.with_name("settings.json.claude-mem.bak").read_bytes() == backup


def test_switching_to_command_hooks_replaces_ours_without_duplicates(settings: Path) -> None:
    write(settings, USER_SETTINGS)
    installer.install(settings)
    assert installer.install(settings, command=True) is True
    data = read(settings)
    for event, hooks in ours(data).items():
        [hook] = hooks
        assert hook["type"] == "command", event
        assert hook["command"].endswith(" -S " + str(installer.SCRIPT))
    for event, groups in USER_SETTINGS["hooks"].items():
        assert data["hooks"][event][: len(groups)] == groups


def test_the_installed_command_runs_in_a_shell_and_spools(settings: Path, tmp_path: Path) -> None:
    installer.install(settings, command=True)
    [hook] = ours(read(settings))["Stop"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    env.update(CLAUDE_MEM_DIR=str(tmp_path / "mem"), CLAUDE_MEM_URL="http://127.0.0.1:9")
    done = subprocess.run(
        hook["command"],
        shell=True,
        input=json.dumps(load("Stop.json")).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mem" / "spool.jsonl").read_text().count("\n") == 1


def test_a_command_path_with_spaces_is_quoted(
    settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        installer, "SCRIPT", Path("/opt/my tools/datasette_claude_mem/hook_script.py")
    )
    monkeypatch.setattr(sys, "executable", "/opt/my tools/venv/bin/python")
    installer.install(settings, command=True)
    [hook] = ours(read(settings))["Stop"]
    assert hook["command"] == (
        "'/opt/my tools/venv/bin/python' -S '/opt/my tools/datasette_claude_mem/hook_script.py'"
    )


def test_the_installed_http_hook_is_what_the_server_takes(
    settings: Path, mem_server, tmp_path: Path
) -> None:
    """Act as Claude Code: expand the allowed variables in the headers and POST the event."""
    installer.install(settings, url=mem_server.url)
    [hook] = ours(read(settings))["UserPromptSubmit"]
    environment = {"CLAUDE_MEM_TOKEN": mem_server.token}
    headers = {
        name: re.sub(r"\$(\w+)", lambda m: environment[m.group(1)], value)
        for name, value in hook["headers"].items()
    }
    assert set(hook["allowedEnvVars"]) == set(environment)
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    import httpx

    response = httpx.post(
        hook["url"],
        json=load("UserPromptSubmit.json", cwd=str(project)),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200 and response.json() == {}


# Uninstalling


def test_uninstall_removes_only_ours(settings: Path) -> None:
    write(settings, USER_SETTINGS)
    installer.install(settings)
    assert installer.uninstall(settings) is True
    assert read(settings) == USER_SETTINGS
    assert installer.uninstall(settings) is False  # nothing left of ours: no write


def test_uninstall_after_install_into_nothing_leaves_no_hooks(settings: Path) -> None:
    installer.install(settings, command=True)
    installer.uninstall(settings)
    assert read(settings) == {}


def test_uninstall_keeps_an_empty_hooks_object_it_did_not_make(settings: Path) -> None:
    raw = write(settings, {"hooks": {}, "model": "opus"})
    assert installer.uninstall(settings) is False
    assert settings.read_bytes() == raw


def test_uninstall_without_settings_creates_nothing(settings: Path) -> None:
    assert installer.uninstall(settings) is False
    assert not settings.exists()


# Bad settings files


@pytest.mark.parametrize("content", ["{not json", '["a", "list"]', '{"hooks": '])
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_a_settings_file_that_is_not_a_json_object_is_left_alone(
    settings: Path, content: str, action: str
) -> None:
    settings.parent.mkdir(parents=True)
    settings.write_text(content)
    runner = CliRunner()
    result = runner.invoke(claude_mem, [action, "--settings", str(settings)])
    assert result.exit_code != 0
    assert str(settings) in result.output and "left as it is" in result.output
    assert settings.read_text() == content
    assert sorted(p.name for p in settings.parent.iterdir()) == ["settings.json"]


def test_the_real_command_exits_non_zero_on_invalid_json(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text("{oops")
    datasette = Path(sys.executable).with_name("datasette")
    done = subprocess.run(
        [str(datasette), "claude-mem", "install", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "not valid JSON" in done.stderr
    assert settings.read_text() == "{oops"


# Which file


def test_project_flag_writes_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    runner = CliRunner()
    result = runner.invoke(claude_mem, ["install", "--project"])
    assert result.exit_code == 0, result.output
    target = project / ".claude" / "settings.json"
    assert f"Updated {target}" in result.output
    assert set(ours(read(target))) == set(EVENTS)
    assert not (home / ".claude").exists()

    result = runner.invoke(claude_mem, ["install"])
    assert result.exit_code == 0, result.output
    assert set(ours(read(home / ".claude" / "settings.json"))) == set(EVENTS)

    result = runner.invoke(claude_mem, ["uninstall", "--project"])
    assert result.exit_code == 0 and "Removed" in result.output
    assert read(target) == {}
    assert set(ours(read(home / ".claude" / "settings.json"))) == set(EVENTS)


def test_the_cli_says_when_nothing_changed(settings: Path) -> None:
    runner = CliRunner()
    runner.invoke(claude_mem, ["install", "--settings", str(settings), "--url", "http://h:1"])
    result = runner.invoke(
        claude_mem, ["install", "--settings", str(settings), "--url", "http://h:1"]
    )
    assert result.exit_code == 0
    assert "Already up to date" in result.output
    assert "export CLAUDE_MEM_TOKEN=$(datasette claude-mem token)" in result.output
