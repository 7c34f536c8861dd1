"""The text work every compressor shares: limits, cleaning and cutting text, titles, and
reading a tool's input and response whatever shape Claude Code sent them in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TITLE_MAX = 120
SUMMARY_MAX = 600
DETAIL_MAX = 2000

# Caps that keep the work linear on huge payloads.
LINE_MAX = 200  # characters kept from any one output line
DIFF_MAX_LINES = 2000  # beyond this, count lines instead of running difflib
MAP_MAX_LINES = 500  # changed fragment lines examined by the regex fallback
NAMES_MAX = 100  # functions_changed entries kept
# Python texts longer than this are not given to ast: ast.parse and the function map cost
# about 1 ms per KB, so a larger text is outlined from its def and class lines instead (one
# regex pass), which keeps a 1 MB Read or Edit within a few milliseconds.
PARSE_MAX_CHARS = 4_000
WINDOW_CHARS = 64 * 1024  # of a text's head or tail read for its first or last lines
NEAR_LINES = 1500  # lines above a change read to find the definitions around it

_PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
FILE_TOOLS = ("Read", "Write", "Edit", "MultiEdit")

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Claude Code's Read output prefixes lines with "     1\t" (older) or "     1→" (newer).
NUMBERED_LINE_RE = re.compile(r"^\s*(\d+)(?:\t|\u2192)(.*)$")
DEF_RE = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+([A-Za-z_]\w*)")
# pytest's closing line: "3 passed, 1 failed in 0.52s" or "no tests ran in 0.01s".
PYTEST_RE = re.compile(
    r"(?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun)"
    r"(?:, )?)+ in \d+(?:\.\d+)?s|no tests ran in \d+(?:\.\d+)?s"
)
ERROR_MARKERS = (
    ("Traceback (most recent call last)", "Traceback"),
    ("FAILED", "FAILED"),
    ("error:", "error:"),
    ("Error:", "Error:"),
    ("command not found", "command not found"),
    ("No such file or directory", "No such file or directory"),
    ("Permission denied", "Permission denied"),
)
EXIT_CODE_RE = re.compile(r"^(?:Exit code|exit code|exit status) (\d+)", re.MULTILINE)

# Input keys that best describe a tool use in a one-line title, most telling first.
_KEY_INPUTS = (
    "file_path",
    "notebook_path",
    "path",
    "url",
    "query",
    "pattern",
    "command",
    "description",
    "prompt",
    "subagent_type",
    "name",
    "title",
)
# Response keys that usually hold the human-readable result.
_TEXT_KEYS = ("stdout", "result", "output", "text", "content", "message", "error", "stderr")


# --------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Drop colour codes and control characters that make stored text unreadable."""
    if "\x1b" in text:
        text = _ANSI_RE.sub("", text)
    return _CONTROL_RE.sub("", text)


def truncate_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def one_line(text: str, limit: int) -> str:
    return truncate_text(" ".join(clean_text(text).split()), limit)


def _is_meaningful(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def meaningful_lines(text: str, count: int, *, from_end: bool = False) -> list[str]:
    """The first (or last) ``count`` lines that carry words, each shortened; only the head
    (or tail) of a long text is read, so the cost does not grow with it."""
    if len(text) > WINDOW_CHARS:
        text = text[-WINDOW_CHARS:] if from_end else text[:WINDOW_CHARS]
    lines = clean_text(text).splitlines()
    if from_end:
        lines.reverse()
    picked: list[str] = []
    for line in lines:
        if _is_meaningful(line):
            picked.append(truncate_text(line.rstrip(), LINE_MAX))
            if len(picked) >= count:
                break
    if from_end:
        picked.reverse()
    return picked


def size_text(text: str) -> str:
    size = len(text.encode("utf-8", errors="replace"))
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def join_names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", … (+{len(names) - limit})"
    return shown


def dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def as_text(value: Any) -> str:
    """Any value from a tool use as text: JSON for structures, never an exception."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list | tuple):
        return compact_json(value)
    return str(value)


def compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def is_python(path: str) -> bool:
    return path.lower().endswith(_PYTHON_SUFFIXES)


# --------------------------------------------------------------------------
# Input and response normalisation
# --------------------------------------------------------------------------


def normalise_input(tool_input: Any) -> dict[str, Any]:
    if isinstance(tool_input, dict):
        return tool_input
    if isinstance(tool_input, str) and tool_input.lstrip()[:1] == "{":
        try:
            parsed = json.loads(tool_input)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def normalise_response(tool_response: Any) -> tuple[str, Any]:
    """Return (raw text, parsed JSON or None); Claude Code sends dicts as JSON text."""
    if isinstance(tool_response, dict | list):
        return compact_json(tool_response), tool_response
    text = as_text(tool_response)
    if text.lstrip()[:1] in ("{", "["):
        try:
            return text, json.loads(text)
        except (ValueError, RecursionError):
            pass
    return text, None


def _blocks_text(blocks: list[Any]) -> str | None:
    """Text of MCP / Task style content blocks: [{"type": "text", "text": ...}]."""
    texts = [
        block["text"]
        for block in blocks
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    ]
    return "\n".join(texts) if texts else None


def response_text(parsed: Any, raw: str) -> str:
    """The human-readable part of a response, whatever its shape."""
    if isinstance(parsed, list):
        return _blocks_text(parsed) or raw
    if not isinstance(parsed, dict):
        return raw
    for key in _TEXT_KEYS:
        value = parsed.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list):
            text = _blocks_text(value)
            if text:
                return text
    file_info = parsed.get("file")
    if isinstance(file_info, dict) and isinstance(file_info.get("content"), str):
        return file_info["content"]
    return raw


def short_key_input(tool_input: dict[str, Any]) -> str:
    for key in _KEY_INPUTS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return value
    for value in tool_input.values():
        if isinstance(value, str) and value.strip():
            return value
    return ""


def make_title(*parts: str) -> str:
    return one_line(" ".join(part for part in parts if part), TITLE_MAX)


def path_title(verb: str, path: str, suffix: str = "") -> str:
    """A title naming a file; long paths lose their head, since the file name matters most."""
    path = one_line(path, 10_000)
    room = TITLE_MAX - len(verb) - len(suffix) - 2
    if len(path) > room > 10:
        path = "…" + path[-(room - 1) :]
    return make_title(verb, path, suffix)


def files_from_tool_input(tool_name: str, tool_input: Any) -> list[str]:
    """Files (or searched paths) a tool use touched, read from its input alone."""
    data = normalise_input(tool_input)
    if tool_name in FILE_TOOLS:
        keys: tuple[str, ...] = ("file_path",)
    elif tool_name == "NotebookEdit":
        keys = ("notebook_path",)
    elif tool_name in ("Glob", "Grep"):
        keys = ("path",)
    else:
        return []
    return dedupe(
        value.strip() for key in keys if isinstance(value := data.get(key), str) and value.strip()
    )


@dataclass
class Parts:
    title: str
    summary: str
    detail: str | None = None
    functions_changed: list[str] = field(default_factory=list)
    files_touched: list[str] | None = None
