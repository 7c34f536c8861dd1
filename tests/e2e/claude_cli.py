"""Run the real Claude Code CLI, installed from npm into tests/e2e/node_modules (scripts/test
does it, pinned by tests/e2e/package-lock.json), against the fake Messages API.

Each `ClaudeWorld` is one user: a HOME, a small git repository to work in and a memory
directory, all in temporary folders, so nothing reaches the machine's own Claude Code or
memory. `run()` is one `claude -p` session, bounded in time, with its stream-json output and
its --debug log kept for the tests to read.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).parent
NODE_MODULES = E2E_DIR / "node_modules" / "@anthropic-ai"
PINNED_VERSION = json.loads((E2E_DIR / "package.json").read_text())["dependencies"][
    "@anthropic-ai/claude-code"
]
BIN = Path(sys.executable).parent
SESSION_TIMEOUT = 120.0
TOOLS = "Bash,Read,Edit,Write,Grep,Glob,Agent"


def _platform_package() -> str:
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
    arch = machine.get(platform.machine().lower(), platform.machine().lower())
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    return f"claude-code-{system}-{arch}"


def claude_command() -> list[str] | None:
    """How to run the pinned CLI: its native binary, or the npm wrapper that finds it.

    npm may leave the package's postinstall (which puts the binary in place of the `claude`
    stub) unrun, so the platform package's binary is looked for first.
    """
    native = NODE_MODULES / _platform_package() / "claude"
    if native.is_file() and os.access(native, os.X_OK):
        return [str(native)]
    wrapper = NODE_MODULES / "claude-code" / "cli-wrapper.cjs"
    node = shutil.which("node")
    if wrapper.is_file() and node:
        return [node, str(wrapper)]
    return None


def require_claude() -> list[str]:
    """The CLI's command; in CI its absence fails the test, elsewhere it skips it, saying why."""
    command = claude_command()
    if command is not None:
        return command
    message = (
        f"Claude Code {PINNED_VERSION} is not installed in {E2E_DIR / 'node_modules'}: "
        "run scripts/test (or `npm ci --prefix tests/e2e`)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Session:
    """One finished `claude -p` run."""

    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    debug_log: str

    @property
    def session_id(self) -> str:
        return next(m["session_id"] for m in self.messages if m.get("session_id"))

    @property
    def result(self) -> dict[str, Any]:
        return next(m for m in reversed(self.messages) if m.get("type") == "result")

    def tool_uses(self) -> list[dict[str, Any]]:
        """Every tool_use block the assistant sent, the subagent's too (stream-json shows both)."""
        uses = []
        for message in self.messages:
            if message.get("type") != "assistant":
                continue
            for block in message["message"].get("content", []):
                if block.get("type") == "tool_use":
                    uses.append(block)
        return uses

    def tool_results(self) -> dict[str, dict[str, Any]]:
        """tool_use_id -> its tool_result block, as Claude Code reported it."""
        results = {}
        for message in self.messages:
            if message.get("type") != "user":
                continue
            content = message["message"].get("content")
            for block in content if isinstance(content, list) else []:
                if block.get("type") == "tool_result":
                    results[block["tool_use_id"]] = block
        return results

    def hook_successes(self) -> Counter[str]:
        """How many hook runs of each event Claude Code's --debug log reports as successful."""
        return Counter(re.findall(r"Hook \S+ \((\w+)\) success", self.debug_log))

    def hook_problems(self) -> list[str]:
        """Lines of the --debug log (and stderr) where Claude Code reports a hook that failed or
        was skipped."""
        words = ("error", "failed", "skipping", "not supported", "timed out", "econnrefused")
        lines = [*self.debug_log.splitlines(), *self.stderr.splitlines()]
        return [
            line
            for line in lines
            if "hook" in line.lower() and any(w in line.lower() for w in words)
        ]


@dataclass
class ClaudeWorld:
    """HOME, a git repository and a memory directory under `root`, and the env to run in."""

    root: Path
    api_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    runs: int = 0

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.repo = self.root / "repo"
        self.mem_dir = self.root / "mem"
        self.home.mkdir(parents=True, exist_ok=True)
        self.repo.mkdir(parents=True, exist_ok=True)
        self.mem_dir.mkdir(parents=True, exist_ok=True)

    @property
    def settings_path(self) -> Path:
        return self.home / ".claude" / "settings.json"

    def make_repo(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        git = ["git", "-C", str(self.repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            HOME=str(self.home),
            CLAUDE_MEM_DIR=str(self.mem_dir),
            CLAUDE_MEM_WORKER="0",
            ANTHROPIC_BASE_URL=self.api_url,
            ANTHROPIC_API_KEY="sk-ant-fake-key-for-tests",
            IS_SANDBOX="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
            DISABLE_TELEMETRY="1",
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Claude Code's own non-interactive subcommands (`claude plugin ...`)."""
        return subprocess.run(
            [*require_claude(), *args],
            cwd=self.repo,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def memory_cli(self, *args: str) -> subprocess.CompletedProcess:
        """`datasette claude-mem ...` as a user would run it, in this world."""
        return subprocess.run(
            [str(BIN / "datasette"), "claude-mem", *args],
            cwd=self.repo,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def run(self, prompt: str, *args: str, timeout: float = SESSION_TIMEOUT) -> Session:
        self.runs += 1
        debug = self.root / f"debug-{self.runs}.log"
        command = [
            *require_claude(),
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
            f"--tools={TOOLS}",
            "--debug-file",
            str(debug),
            *args,
        ]
        proc = subprocess.run(
            command,
            cwd=self.repo,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        messages = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                messages.append(json.loads(line))
        log = debug.read_text(errors="replace") if debug.exists() else ""
        return Session(proc.returncode, messages, proc.stderr, log)


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (Linux /proc), to stop a server a hook started."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return int(pid)
        except OSError:
            continue
    return None
