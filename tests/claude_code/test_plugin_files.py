"""`datasette claude-mem plugin DIR`: the marketplace and plugin files Claude Code reads.

That Claude Code itself validates, adds and installs them is tests/e2e/test_claude_code.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from datasette.cli import cli

from datasette_claude_mem.claude_code.install import install, install_mcp
from datasette_claude_mem.names import HOOK_PATH, MCP_PATH, MCP_SERVER_NAME

MARKETPLACE = ".claude-plugin/marketplace.json"
MANIFEST = "plugin/.claude-plugin/plugin.json"
HOOKS = "plugin/hooks/hooks.json"


def run(*args: str):
    return CliRunner().invoke(cli, ["claude-mem", "plugin", *args], catch_exceptions=False)


def read(directory: Path, relative: str) -> dict:
    return json.loads((directory / relative).read_text(encoding="utf-8"))


def test_writes_a_marketplace_whose_plugin_holds_the_hooks_install_writes(tmp_path: Path) -> None:
    market = tmp_path / "market"
    result = run(str(market), "--url", "http://127.0.0.1:9911")
    assert result.exit_code == 0, result.output
    assert "claude plugin marketplace add" in result.output
    marketplace = read(market, MARKETPLACE)
    entry = marketplace["plugins"][0]
    manifest = read(market, MANIFEST)
    assert entry["name"] == manifest["name"]
    # The entry's source is the plugin folder, relative to the marketplace root.
    assert (market / entry["source"] / ".claude-plugin" / "plugin.json").is_file()
    assert marketplace["name"] in result.output and manifest["name"] in result.output

    settings = tmp_path / "settings.json"
    install(settings, url="http://127.0.0.1:9911")
    installed = json.loads(settings.read_text())["hooks"]
    hooks = read(market, HOOKS)["hooks"]
    assert hooks == installed
    urls = {h["url"] for groups in hooks.values() for g in groups for h in g["hooks"] if "url" in h}
    assert urls == {"http://127.0.0.1:9911" + HOOK_PATH}


def test_the_plugin_ships_the_mcp_server_install_registers(tmp_path: Path) -> None:
    """The plugin's manifest holds the same server entry as ~/.claude.json after `install`,
    so either way the agent gets the tools, and the token never lands in a file."""
    market = tmp_path / "market"
    assert run(str(market), "--url", "http://127.0.0.1:9911").exit_code == 0
    servers = read(market, MANIFEST)["mcpServers"]
    user_config = tmp_path / "claude.json"
    install_mcp(user_config, url="http://127.0.0.1:9911")
    assert servers == json.loads(user_config.read_text())["mcpServers"]
    server = servers[MCP_SERVER_NAME]
    assert server["type"] == "http"
    assert server["url"] == "http://127.0.0.1:9911" + MCP_PATH
    assert server["headers"] == {"Authorization": "Bearer ${CLAUDE_MEM_TOKEN}"}


def test_command_hooks_run_the_hook_script(tmp_path: Path) -> None:
    assert run(str(tmp_path), "--command").exit_code == 0
    hooks = read(tmp_path, HOOKS)["hooks"]
    commands = [h for groups in hooks.values() for g in groups for h in g["hooks"]]
    assert commands and all(h["type"] == "command" for h in commands)
    assert all("hook_script.py" in h["command"] for h in commands)


def test_writing_again_changes_no_byte(tmp_path: Path) -> None:
    assert run(str(tmp_path)).exit_code == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
    assert run(str(tmp_path)).exit_code == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json")} == before
    assert len(before) == 3


def test_a_folder_with_another_marketplace_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / ".claude-plugin" / "marketplace.json"
    other.parent.mkdir()
    other.write_text('{"name": "someone-elses", "owner": {"name": "x"}, "plugins": []}')
    result = CliRunner().invoke(cli, ["claude-mem", "plugin", str(tmp_path)])
    assert result.exit_code != 0
    assert "another marketplace" in result.output
    assert json.loads(other.read_text())["name"] == "someone-elses"
    assert not (tmp_path / "plugin").exists()
