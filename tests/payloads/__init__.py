"""Claude Code hook inputs, shaped as Claude Code sends them, and what the tests build from them.

Each JSON file beside this module is one hook event as documented in Claude Code's hooks
reference: the common fields (session_id, transcript_path, cwd, permission_mode,
hook_event_name) plus the event's own. The PostToolUse files carry each tool's real
tool_input and tool_response shapes (Read's file object, Edit's structuredPatch, Bash's
stdout/stderr, an MCP tool's content blocks...). Tests load them with `load`, changing the
session and cwd to their own.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIR = Path(__file__).parent

# The order a session sends them in.
EVENT_FILES = (
    "SessionStart.json",
    "UserPromptSubmit.json",
    "PostToolUse-Read.json",
    "PostToolUse-Edit.json",
    "PostToolUse-MultiEdit.json",
    "PostToolUse-Write.json",
    "PostToolUse-NotebookEdit.json",
    "PostToolUse-Glob.json",
    "PostToolUse-Grep.json",
    "PostToolUse-Bash.json",
    "PostToolUse-mcp.json",
    "Notification.json",
    "SubagentStop.json",
    "PreCompact.json",
    "Stop.json",
    "SessionEnd.json",
)
TOOL_FILES = tuple(name for name in EVENT_FILES if name.startswith("PostToolUse-"))

# The files each tool use touched, as the memory should record them (from tool_input).
EXPECTED_FILES = {
    "Read": ["/home/dev/acme-api/src/orders/app.py"],
    "Edit": ["/home/dev/acme-api/src/orders/app.py"],
    "MultiEdit": ["/home/dev/acme-api/src/orders/models.py"],
    "Write": ["/home/dev/acme-api/tests/test_orders_log.py"],
    "NotebookEdit": ["/home/dev/acme-api/notebooks/orders.ipynb"],
    "Glob": ["/home/dev/acme-api/src"],
    "Grep": ["/home/dev/acme-api/src"],
    "Bash": [],
    "mcp__github__get_issue": [],
}


def load(name: str, **changes: Any) -> dict[str, Any]:
    """One payload from the corpus (a fresh copy), with some fields changed."""
    payload = json.loads((DIR / name).read_text(encoding="utf-8"))
    payload.update(copy.deepcopy(changes))
    return payload


def session_events(session_id: str, cwd: str | Path) -> list[dict[str, Any]]:
    """Every corpus event, in session order, for one session in one directory."""
    return [load(name, session_id=session_id, cwd=str(cwd)) for name in EVENT_FILES]


# A git repository, as Claude Code finds one: the main tree, a subdirectory, a worktree.


@dataclass
class Repo:
    main: Path
    sub: Path
    worktree: Path


def make_repo(root: Path) -> Repo:
    """A real git repository under root with one commit and a linked worktree."""
    main = root / "acme-api"
    sub = main / "src" / "orders"
    sub.mkdir(parents=True)
    (sub / "app.py").write_text("def create_order():\n    pass\n", encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(main)]
    run = {"check": True, "capture_output": True}
    subprocess.run([*git, "init", "-q", "-b", "main"], **run)
    subprocess.run([*git, "add", "."], **run)
    subprocess.run([*git, "commit", "-q", "-m", "start"], **run)
    worktree = root / "acme-api-feature"
    subprocess.run([*git, "worktree", "add", "-q", "-b", "feature", str(worktree)], **run)
    return Repo(main=main, sub=sub, worktree=worktree)


# A whole scripted session with real-sized tool outputs.


def python_source(seed: int, functions: int = 40) -> str:
    """A plausible Python module of roughly 100 bytes per line, different for each seed."""
    lines = [f'"""Module {seed}: order handling, part {seed % 7}."""', "", "import json", ""]
    for i in range(functions):
        name = f"handle_{seed}_{i}"
        lines += [
            "",
            f"def {name}(request, limit={i % 9 + 1}):",
            f'    """Answer request {i} of module {seed}, at most {{limit}} rows at a time."""',
            f"    rows = request.db.execute('SELECT * FROM t{i} LIMIT ?', [limit]).fetchall()",
            f"    total = sum(row['amount'] for row in rows)  # {seed}:{i}",
            "    return json.dumps({'rows': len(rows), 'total': total})",
        ]
    return "\n".join(lines) + "\n"


def _numbered(text: str) -> str:
    return "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(text.splitlines(), 1))


def tool_use(session_id: str, cwd: str, i: int) -> dict[str, Any]:
    """The i-th tool use of a scripted session: Read, Edit, Write and Bash in turn."""
    kind = ("Read", "Edit", "Write", "Bash")[i % 4]
    path = f"{cwd}/src/orders/module_{i}.py"
    source = python_source(i)
    if kind == "Read":
        tool_input: dict[str, Any] = {"file_path": path}
        response: Any = {
            "type": "text",
            "file": {
                "filePath": path,
                "content": _numbered(source),
                "numLines": source.count("\n"),
                "startLine": 1,
                "totalLines": source.count("\n"),
            },
        }
    elif kind == "Edit":
        old, new = f"# {i}:0", f"# {i}:0 (checked)"
        tool_input = {"file_path": path, "old_string": old, "new_string": new}
        response = {
            "filePath": path,
            "oldString": old,
            "newString": new,
            "originalFile": source,
            "structuredPatch": [
                {
                    "oldStart": 9,
                    "oldLines": 1,
                    "newStart": 9,
                    "newLines": 1,
                    "lines": [f"-    {old}", f"+    {new}"],
                }
            ],
            "userModified": False,
            "replaceAll": False,
        }
    elif kind == "Write":
        tool_input = {"file_path": path, "content": source[: len(source) // 2]}
        response = {"type": "create", "filePath": path, "content": tool_input["content"]}
    else:
        tool_input = {"command": f"python -m pytest tests/test_{i}.py -q", "description": "Tests"}
        report = "\n".join(
            f"tests/test_{i}.py::test_case_{k} PASSED{' ' * 30}[{k * 100 // 60:>3}%]"
            for k in range(60)
        )
        response = {
            "stdout": report + f"\n60 passed in {i / 10:.2f}s\n",
            "stderr": "",
            "interrupted": False,
            "isImage": False,
        }
    return load(
        "PostToolUse-Bash.json",
        session_id=session_id,
        cwd=cwd,
        tool_name=kind,
        tool_input=tool_input,
        tool_response=response,
        tool_use_id=f"toolu_{session_id[:8]}_{i:03d}",
    )


def scripted_session(session_id: str, cwd: str | Path, tools: int = 50) -> list[dict[str, Any]]:
    """SessionStart, a prompt, the tool uses with a second prompt halfway, Stop, SessionEnd."""
    cwd = str(cwd)
    events = [load("SessionStart.json", session_id=session_id, cwd=cwd)]
    events.append(prompt(session_id, cwd, f"Add customer ids to the order logs ({session_id})"))
    for i in range(tools):
        if i == tools // 2:
            events.append(prompt(session_id, cwd, "Now run the whole test suite"))
        events.append(tool_use(session_id, cwd, i))
    events.append(load("Stop.json", session_id=session_id, cwd=cwd))
    events.append(load("SessionEnd.json", session_id=session_id, cwd=cwd))
    return events


def prompt(session_id: str, cwd: str, text: str) -> dict[str, Any]:
    return load("UserPromptSubmit.json", session_id=session_id, cwd=cwd, prompt=text)
