"""A file's first state in a session: what the session saw before it changed the file.

Claude Code tells us most of it: a Read's content, an Edit's or MultiEdit's
``originalFile``, a Write's previous content (or that it created the file). Where the tool
use does not say, the file as committed at git HEAD stands in, and only when no session
has recorded the file yet (the store decides; git is not asked when the worker already
knows the map holds the file); a file outside any repository is taken as
it is now, so nothing is claimed changed that cannot be known.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasette_claude_mem.worker.code_index import FunctionInfo, SourceError, extract_functions
from datasette_claude_mem.worker.compress_files import strip_line_numbers
from datasette_claude_mem.worker.summary_text import as_int, normalise_input, normalise_response

GIT_TIMEOUT_SECONDS = 10.0
# raw_output.py's marker in a response it had to cut: such a text is not the whole file.
TRUNCATED_MARK = "\n[truncated: "


@dataclass(frozen=True)
class Baseline:
    """The functions of a file's first state, and whether it is only a stand-in."""

    functions: list[FunctionInfo]
    fallback: bool


def text_before(tool_name: str, tool_input: Any, raw_output: str | None) -> str | None:
    """The whole file as it was before this tool use, when the tool use says; else None."""
    _raw, response = normalise_response(raw_output or "")
    if not isinstance(response, dict):
        return None
    text: Any = None
    if tool_name == "Read":
        info = response.get("file")
        if not isinstance(info, dict) or not isinstance(info.get("content"), str):
            return None
        total = as_int(info.get("totalLines"))
        lines = as_int(info.get("numLines"))
        start = as_int(info.get("startLine")) or 1
        if start > 1 or (total is not None and lines is not None and lines < total):
            return None  # a part of the file only
        text = strip_line_numbers(info["content"])[0]
    elif tool_name in ("Edit", "MultiEdit"):
        text = response.get("originalFile")
    elif tool_name == "Write":
        text = response.get("originalFile")
        if text is None and response.get("type") == "create":
            text = ""
    if not isinstance(text, str) or TRUNCATED_MARK in text:
        return None
    return text


def git_head_text(root: Path, relative: str) -> str | None:
    """The file at git HEAD; "" when the repository has a HEAD without it (a new file);
    None outside a repository (or without git)."""
    try:
        shown = subprocess.run(
            ["git", "-C", str(root), "show", f"HEAD:./{relative}"],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
        if shown.returncode == 0:
            return shown.stdout.decode("utf-8")
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return None
    return "" if head.returncode == 0 else None


def _functions(text: str | None) -> list[FunctionInfo] | None:
    if text is None:
        return None
    try:
        return extract_functions(text)
    except SourceError:
        return None


def item_path(tool_input: Any) -> str | None:
    """The file a file tool acted on, as its input names it."""
    path = normalise_input(tool_input).get("file_path")
    return path if isinstance(path, str) and path.strip() else None


def baseline_for(
    tool_name: str,
    tool_input: Any,
    raw_output: str | None,
    *,
    root: Path,
    relative: str,
    is_item_file: bool,
    current: list[FunctionInfo],
    mapped: bool = False,
) -> Baseline | None:
    """The first state of one file an item touched, by the order of the module docstring;
    None when only git could say and the function map already holds the file (`mapped`),
    since the store then ignores a stand-in: no git process for nothing."""
    if is_item_file:
        before = _functions(text_before(tool_name, tool_input, raw_output))
        if before is not None:
            return Baseline(before, fallback=False)
        if tool_name == "Read":
            return Baseline(current, fallback=False)  # reading changes nothing
    if mapped:
        return None
    head = _functions(git_head_text(root, relative))
    return Baseline(head if head is not None else current, fallback=True)
