"""Deterministic, offline compression of one Claude Code tool use into an observation.

This is the default compressor: no model and no network, so it can run inside
a hook or a background queue on every tool call.  It keeps what a later session
would want to know (which file, what changed, did the command pass) and drops
the bulk (file bodies, full command output).

``compress`` never raises: hooks feed it whatever Claude Code sent, and a
broken observation is better than a lost one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# One token estimate for the whole package: the context's budgets and these stats agree.
from datasette_claude_mem.claude_code.context import tokens as estimate_tokens
from datasette_claude_mem.worker.compress_files import (
    compress_edit,
    compress_notebook,
    compress_read,
    compress_write,
)
from datasette_claude_mem.worker.observation_types import observation_type
from datasette_claude_mem.worker.summary_text import (
    DETAIL_MAX,
    ERROR_MARKERS,
    EXIT_CODE_RE,
    FILE_TOOLS,
    LINE_MAX,
    PYTEST_RE,
    SUMMARY_MAX,
    TITLE_MAX,
    Parts,
    as_int,
    as_text,
    clean_text,
    compact_json,
    dedupe,
    files_from_tool_input,
    join_names,
    make_title,
    meaningful_lines,
    normalise_input,
    normalise_response,
    one_line,
    plural,
    response_text,
    short_key_input,
    truncate_text,
)

__all__ = [
    "DETAIL_MAX",
    "SUMMARY_MAX",
    "TITLE_MAX",
    "Compressed",
    "compress",
    "estimate_tokens",
    "files_from_tool_input",
]


@dataclass
class Compressed:
    """One tool use reduced to what is worth remembering, with the token saving."""

    title: str
    summary: str
    detail: str | None
    files_touched: list[str] = field(default_factory=list)
    functions_changed: list[str] = field(default_factory=list)
    tokens_raw: int = 0
    tokens_compressed: int = 0
    type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pytest_summary(text: str) -> str | None:
    """The last pytest result line, e.g. "3 passed, 1 failed in 0.52s"."""
    for line in reversed(text.splitlines()[-300:]):
        match = PYTEST_RE.search(line[:1000])
        if match:
            return match.group(0)
    return None


def _compress_bash(tool_input: dict[str, Any], parsed: Any, raw: str) -> Parts:
    command = as_text(tool_input.get("command"))
    first_line = next((line for line in command.splitlines() if line.strip()), "")
    title = make_title("Run:", first_line.strip() or as_text(tool_input.get("description")))

    if isinstance(parsed, dict):
        stdout = clean_text(as_text(parsed.get("stdout")))
        stderr = clean_text(as_text(parsed.get("stderr")))
        interrupted = parsed.get("interrupted") is True
    else:
        stdout, stderr, interrupted = clean_text(raw), "", False
    output = f"{stdout}\n{stderr}" if stderr.strip() else stdout

    # Look for trouble where it shows up (stderr, the end of stdout) rather than
    # anywhere: `cat`ing a file that mentions "error:" is not a failure.
    stdout_tail = "\n".join(stdout[-20_000:].splitlines()[-40:])
    scanned = f"{stdout_tail}\n{stderr[-20_000:]}"
    signals = [label for marker, label in ERROR_MARKERS if marker in scanned]
    exit_match = EXIT_CODE_RE.search(output[:2000])
    exit_code = int(exit_match.group(1)) if exit_match else None
    tests = _pytest_summary(output)
    if interrupted:
        outcome = "interrupted"
    elif tests and (" failed" in tests or " error" in tests):
        outcome = "tests failed"
    elif exit_code:
        outcome = f"failed (exit {exit_code})"
    elif signals:
        outcome = "error"
    elif stderr.strip():
        outcome = "ok, with stderr"
    else:
        outcome = "ok"
    parts = [f"Outcome: {outcome}" + (f" [{', '.join(signals)}]" if signals else "")]
    description = as_text(tool_input.get("description"))
    if description:
        parts.insert(0, one_line(description, 120))
    if tests:
        parts.append(f"tests: {tests}")
    failed = [line.strip() for line in output.splitlines() if line.startswith("FAILED ")]
    if failed:
        parts.append("; ".join(truncate_text(line, 150) for line in failed[:3]))
    tail = meaningful_lines(stderr if stderr.strip() else stdout, 4, from_end=True)
    if tail:
        parts.append("last output: " + " | ".join(line.strip() for line in tail))
    elif not output.strip():
        parts.append("no output")

    detail_lines = meaningful_lines(stdout, 25, from_end=True)
    if stderr.strip():
        detail_lines += ["[stderr]", *meaningful_lines(stderr, 15, from_end=True)]
    detail = "\n".join(detail_lines)
    if len(command) > len(first_line) + 1:
        detail = f"$ {truncate_text(command, 400)}\n{detail}"
    return Parts(title, "; ".join(parts), detail or None, files_touched=[])


def _relative_names(names: list[str], base: str) -> list[str]:
    prefix = base.rstrip("/") + "/" if base else ""
    return [name[len(prefix) :] if prefix and name.startswith(prefix) else name for name in names]


def _compress_search(tool_name: str, tool_input: dict[str, Any], parsed: Any, raw: str) -> Parts:
    pattern = as_text(tool_input.get("pattern"))
    path = as_text(tool_input.get("path"))
    glob = as_text(tool_input.get("glob"))
    title = make_title(
        tool_name,
        json.dumps(pattern, ensure_ascii=False) if tool_name == "Grep" else pattern,
        f"in {path}" if path else "",
        f"({glob})" if glob else "",
    )
    response = parsed if isinstance(parsed, dict) else {}
    filenames = response.get("filenames")
    filenames = [as_text(name) for name in filenames] if isinstance(filenames, list) else None
    content = response.get("content") if isinstance(response.get("content"), str) else None
    mode = as_text(response.get("mode"))

    if filenames is None and content is None:
        # Plain-text answer: "Found 3 files" followed by one path per line.
        lines = [line.strip() for line in clean_text(response_text(parsed, raw)).splitlines()]
        lines = [line for line in lines if line]
        if lines and (lines[0].startswith("Found ") or lines[0].startswith("No ")):
            header, lines = lines[0], lines[1:]
        else:
            header = ""
        count_text = header or plural(len(lines), "result")
        shown = _relative_names(lines, path)
        summary = f"{count_text}: {join_names(shown, 8)}" if shown else count_text
        return Parts(title, summary, "\n".join(lines[:40]) or None)

    if content is not None and mode in ("content", "count", ""):
        lines = [
            truncate_text(line, LINE_MAX)
            for line in clean_text(content).splitlines()
            if line.strip()
        ]
        num = as_int(response.get("numLines")) or len(lines)
        files = as_int(response.get("numFiles"))
        noun = "count line" if mode == "count" else "matching line"
        summary = plural(num, noun) + (f" in {plural(files, 'file')}" if files else "")
        if lines:
            summary += ": " + " | ".join(_relative_names(lines[:5], path))
        return Parts(title, summary, "\n".join(lines[:40]) or None)

    names = filenames or []
    num_files = as_int(response.get("numFiles"))
    num_files = len(names) if num_files is None else num_files
    if not num_files:
        return Parts(title, "No matches" if tool_name == "Grep" else "No files found")
    shown = _relative_names(names, path)
    summary = f"{plural(num_files, 'file')}"
    if response.get("truncated") is True:
        summary += " (truncated)"
    summary += f": {join_names(shown, 8)}"
    return Parts(title, summary, "\n".join(shown[:60]) or None)


def _compress_todos(tool_input: dict[str, Any]) -> Parts:
    todos = tool_input.get("todos")
    todos = [todo for todo in todos if isinstance(todo, dict)] if isinstance(todos, list) else []
    counts: dict[str, int] = {}
    for todo in todos:
        status = as_text(todo.get("status")) or "pending"
        counts[status] = counts.get(status, 0) + 1
    order = ["in_progress", "pending", "completed"]
    statuses = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    title = make_title(
        "TodoWrite:", ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in statuses)
    )
    marks = {"completed": "[x]", "in_progress": "[>]"}
    items = [
        marks.get(as_text(todo.get("status")), "[ ]")
        + " "
        + one_line(as_text(todo.get("content")), 100)
        for todo in todos
    ]
    return Parts(title, "; ".join(items) or "empty todo list", "\n".join(items) or None)


def _compress_generic(tool_name: str, tool_input: dict[str, Any], parsed: Any, raw: str) -> Parts:
    title = make_title(tool_name or "tool", short_key_input(tool_input))
    text = response_text(parsed, raw)
    prefix = ""
    if isinstance(parsed, dict):
        code = as_int(parsed.get("code"))
        if code is not None:
            prefix = f"HTTP {code} {as_text(parsed.get('codeText'))}".strip() + "; "
        if text is raw and isinstance(parsed.get("results"), list):
            # WebSearch: titles of the results say more than their JSON.
            titles = _result_titles(parsed["results"])
            if titles:
                text = "\n".join(titles)
    lines = meaningful_lines(text, 6)
    summary = prefix + (" | ".join(line.strip() for line in lines) if lines else "no output")
    detail = "\n".join(meaningful_lines(text, 30)) or None
    return Parts(title, summary, detail)


def _result_titles(results: list[Any], limit: int = 8) -> list[str]:
    titles: list[str] = []
    stack = list(reversed(results))
    while stack and len(titles) < limit:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("title"), str):
                url = as_text(item.get("url"))
                titles.append(f"{item['title']} ({url})" if url else item["title"])
            else:
                stack.extend(reversed([v for v in item.values() if isinstance(v, list | dict)]))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return titles


def _compress_failure(
    tool_name: str, tool_input: dict[str, Any], error: str, failure: str
) -> Parts:
    """A failed tool use: what was tried, and why it failed, in the tool's own words."""
    how = "interrupted" if failure == "interrupt" else "failed"
    title = make_title(f"{tool_name or 'tool'} {how}:", short_key_input(tool_input))
    lines = meaningful_lines(error, 6)
    why = " | ".join(line.strip() for line in lines) or (
        "interrupted by the user" if how == "interrupted" else "no error message"
    )
    detail = "\n".join(meaningful_lines(error, 30)) or None
    return Parts(title, f"{how.capitalize()}: {why}", detail)


def _dispatch(
    tool_name: str,
    tool_input: dict[str, Any],
    parsed: Any,
    raw: str,
    file_reader: Callable[[str], Any] | None,
) -> Parts:
    if tool_name == "Read":
        return compress_read(tool_input, parsed, raw)
    if tool_name in ("Edit", "MultiEdit"):
        return compress_edit(tool_name, tool_input, parsed, file_reader)
    if tool_name == "Write":
        return compress_write(tool_input, parsed)
    if tool_name == "NotebookEdit":
        return compress_notebook(tool_input)
    if tool_name == "Bash":
        return _compress_bash(tool_input, parsed, raw)
    if tool_name in ("Grep", "Glob"):
        return _compress_search(tool_name, tool_input, parsed, raw)
    if tool_name == "TodoWrite":
        return _compress_todos(tool_input)
    return _compress_generic(tool_name, tool_input, parsed, raw)


def compress(
    tool_name: str,
    tool_input: Any,
    tool_response: Any,
    *,
    file_reader: Callable[[str], Any] | None = None,
    failure: str | None = None,
    prompt: str | None = None,
) -> Compressed:
    """Turn one PostToolUse payload into a short, deterministic observation.

    ``file_reader(path)`` may return the file's current text; it is only used
    to place an Edit in its functions when the response lacks the original file.
    With ``failure`` ("error" or "interrupt", from PostToolUseFailure) the response is
    the error, and the observation says what failed and why. ``prompt``, the person's
    prompt the tool use served, helps tell a fix from a feature (observation_types.py).
    """
    name = one_line(as_text(tool_name), 80)
    data = normalise_input(tool_input)
    raw, parsed = normalise_response(tool_response)
    input_text = tool_input if isinstance(tool_input, str) else compact_json(tool_input or {})
    tokens_raw = estimate_tokens(input_text + raw)
    files = files_from_tool_input(name, data)
    try:
        if failure:
            parts = _compress_failure(name, data, raw, failure)
        else:
            parts = _dispatch(name, data, parsed, raw, file_reader)
    except Exception as exc:  # an odd payload must still produce an observation
        parts = Parts(
            make_title(name or "tool", short_key_input(data)),
            one_line(f"could not summarise {name or 'tool'} output ({type(exc).__name__})", 200),
        )
    try:
        kind: str | None = observation_type(
            name, data, parsed, raw, failure=failure, prompt=prompt
        ).value
    except Exception:  # the type is a by-product: never lose the observation for it
        kind = None
    if parts.files_touched is not None:
        files = parts.files_touched
    elif not files and name in FILE_TOOLS and isinstance(parsed, dict):
        files = dedupe([as_text(parsed.get("filePath"))])
    title = one_line(parts.title, TITLE_MAX) or one_line(name or "tool", TITLE_MAX)
    summary = truncate_text(clean_text(parts.summary).strip(), SUMMARY_MAX)
    detail = truncate_text(clean_text(parts.detail).strip(), DETAIL_MAX) if parts.detail else None
    detail = detail or None
    tokens_compressed = estimate_tokens(title + summary + (detail or ""))
    return Compressed(
        title=title,
        summary=summary,
        detail=detail,
        files_touched=files,
        functions_changed=dedupe(parts.functions_changed),
        tokens_raw=tokens_raw,
        tokens_compressed=tokens_compressed,
        type=kind,
    )
