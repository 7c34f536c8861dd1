"""Deterministic, offline compression of one Claude Code tool use into an observation.

This is the default compressor: no model and no network, so it can run inside
a hook or a background queue on every tool call.  It keeps what a later session
would want to know (which file, what changed, did the command pass) and drops
the bulk (file bodies, full command output).

``compress`` never raises: hooks feed it whatever Claude Code sent, and a
broken observation is better than a lost one.
"""

from __future__ import annotations

import difflib
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from datasette_claude_mem.worker.code_index import SourceError, extract_functions

__all__ = [
    "DETAIL_MAX",
    "SUMMARY_MAX",
    "TITLE_MAX",
    "Compressed",
    "compress",
    "estimate_tokens",
    "files_from_tool_input",
]

TITLE_MAX = 120
SUMMARY_MAX = 600
DETAIL_MAX = 2000

# Caps that keep the work linear on huge payloads.
_LINE_MAX = 200  # characters kept from any one output line
_DIFF_MAX_LINES = 2000  # beyond this, count lines instead of running difflib
_MAP_MAX_LINES = 500  # changed fragment lines examined by the regex fallback
_NAMES_MAX = 100  # functions_changed entries kept
_PARSE_MAX_CHARS = 1_000_000  # larger Python texts get the regex outline only

_PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
_FILE_TOOLS = ("Read", "Write", "Edit", "MultiEdit")

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Claude Code's Read output prefixes lines with "     1\t" (older) or "     1→" (newer).
_NUMBERED_LINE_RE = re.compile(r"^\s*(\d+)(?:\t|\u2192)(.*)$")
_DEF_RE = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+([A-Za-z_]\w*)")
# pytest's closing line: "3 passed, 1 failed in 0.52s" or "no tests ran in 0.01s".
_PYTEST_RE = re.compile(
    r"(?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun)"
    r"(?:, )?)+ in \d+(?:\.\d+)?s|no tests ran in \d+(?:\.\d+)?s"
)
_ERROR_MARKERS = (
    ("Traceback (most recent call last)", "Traceback"),
    ("FAILED", "FAILED"),
    ("error:", "error:"),
    ("Error:", "Error:"),
    ("command not found", "command not found"),
    ("No such file or directory", "No such file or directory"),
    ("Permission denied", "Permission denied"),
)
_EXIT_CODE_RE = re.compile(r"^(?:Exit code|exit code|exit status) (\d+)", re.MULTILINE)

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_tokens(text: str) -> int:
    """Rough token count (characters / 4, rounded up): cheap and good enough for stats."""
    return (len(text) + 3) // 4 if text else 0


# --------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Drop colour codes and control characters that make stored text unreadable."""
    if "\x1b" in text:
        text = _ANSI_RE.sub("", text)
    return _CONTROL_RE.sub("", text)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def _one_line(text: str, limit: int) -> str:
    return _truncate(" ".join(_clean(text).split()), limit)


def _is_meaningful(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def _meaningful_lines(text: str, count: int, *, from_end: bool = False) -> list[str]:
    """The first (or last) ``count`` lines that carry words, each shortened."""
    lines = _clean(text).splitlines()
    if from_end:
        lines.reverse()
    picked: list[str] = []
    for line in lines:
        if _is_meaningful(line):
            picked.append(_truncate(line.rstrip(), _LINE_MAX))
            if len(picked) >= count:
                break
    if from_end:
        picked.reverse()
    return picked


def _size(text: str) -> str:
    size = len(text.encode("utf-8", errors="replace"))
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _join_names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", … (+{len(names) - limit})"
    return shown


def _dedupe(items: Iterable[str]) -> list[str]:
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
        return _dumps(value)
    return str(value)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _is_python(path: str) -> bool:
    return path.lower().endswith(_PYTHON_SUFFIXES)


# --------------------------------------------------------------------------
# Input and response normalisation
# --------------------------------------------------------------------------


def _normalise_input(tool_input: Any) -> dict[str, Any]:
    if isinstance(tool_input, dict):
        return tool_input
    if isinstance(tool_input, str) and tool_input.lstrip()[:1] == "{":
        try:
            parsed = json.loads(tool_input)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _normalise_response(tool_response: Any) -> tuple[str, Any]:
    """Return (raw text, parsed JSON or None); Claude Code sends dicts as JSON text."""
    if isinstance(tool_response, dict | list):
        return _dumps(tool_response), tool_response
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


def _response_text(parsed: Any, raw: str) -> str:
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


def _short_key_input(tool_input: dict[str, Any]) -> str:
    for key in _KEY_INPUTS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return value
    for value in tool_input.values():
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _title(*parts: str) -> str:
    return _one_line(" ".join(part for part in parts if part), TITLE_MAX)


def _path_title(verb: str, path: str, suffix: str = "") -> str:
    """A title naming a file; long paths lose their head, since the file name matters most."""
    path = _one_line(path, 10_000)
    room = TITLE_MAX - len(verb) - len(suffix) - 2
    if len(path) > room > 10:
        path = "…" + path[-(room - 1) :]
    return _title(verb, path, suffix)


def files_from_tool_input(tool_name: str, tool_input: Any) -> list[str]:
    """Files (or searched paths) a tool use touched, read from its input alone."""
    data = _normalise_input(tool_input)
    if tool_name in _FILE_TOOLS:
        keys: tuple[str, ...] = ("file_path",)
    elif tool_name == "NotebookEdit":
        keys = ("notebook_path",)
    elif tool_name in ("Glob", "Grep"):
        keys = ("path",)
    else:
        return []
    return _dedupe(
        value.strip() for key in keys if isinstance(value := data.get(key), str) and value.strip()
    )


# --------------------------------------------------------------------------
# Python helpers: defs in a text, and which defs a change touched
# --------------------------------------------------------------------------


def _parse_functions(source: str | None) -> list[Any] | None:
    if not source or len(source) > _PARSE_MAX_CHARS:
        return None
    try:
        return extract_functions(source)
    except (SourceError, TypeError, RecursionError, MemoryError):
        return None


def _regex_defs(text: str) -> list[str]:
    """Top-level-ish def/class names in text that does not parse (partial reads, hunks)."""
    names = []
    for line in text.splitlines():
        match = _DEF_RE.match(line)
        if match:
            names.append(match.group(2))
    return _dedupe(names)


def _python_outline(source: str, infos: list[Any] | None) -> tuple[str, list[str]]:
    """A short outline of a module ("connect(), class Store, main()") and all def names.

    ``infos`` is the parsed function map, or None when the text does not parse
    (a partial Read, a fragment), in which case def/class lines are scanned.
    """
    if infos is None:
        names = _regex_defs(source)
        return _join_names(names), names
    methods_per_class: dict[str, int] = {}
    for info in infos:
        if info.kind in ("method", "async_method"):
            owner = info.qualified_name.rsplit(".", 1)[0]
            methods_per_class[owner] = methods_per_class.get(owner, 0) + 1
    outline = []
    for info in infos:
        if "." in info.qualified_name:
            continue
        if info.kind == "class":
            methods = methods_per_class.get(info.qualified_name, 0)
            suffix = f" [{_plural(methods, 'method')}]" if methods else ""
            outline.append(f"class {info.qualified_name}{suffix}")
        else:
            outline.append(f"{info.qualified_name}()")
    return _join_names(outline), [info.qualified_name for info in infos]


def _innermost_defs(infos: list[Any], lines: Iterable[int]) -> list[str]:
    """Names of the innermost definitions containing each line, in line order."""
    wanted = sorted(set(lines))
    # Decorators sit above the def line; assume one line each.
    spans = [
        (max(info.lineno - len(info.decorators), 1), info.end_lineno, info.qualified_name)
        for info in infos
    ]
    # Widest spans first so nested definitions overwrite their parents: the
    # cost stays near (nesting depth x changed lines) rather than a full product.
    spans.sort(key=lambda span: span[0] - span[1])
    owner: dict[int, str] = {}
    for start, end, name in spans:
        for line in wanted[bisect_left(wanted, start) : bisect_right(wanted, end)]:
            owner[line] = name
    return _dedupe(owner[line] for line in wanted if line in owner)


def _hash_changes(old_infos: list[Any], new_infos: list[Any]) -> list[str]:
    """Definitions added, removed or edited, judged by body hash (formatting ignored)."""
    old: dict[str, tuple[str, ...]] = {}
    for info in old_infos:
        old[info.qualified_name] = (*old.get(info.qualified_name, ()), info.body_hash)
    new: dict[str, tuple[str, ...]] = {}
    for info in new_infos:
        new[info.qualified_name] = (*new.get(info.qualified_name, ()), info.body_hash)
    changed = [name for name, hashes in new.items() if old.get(name) != hashes]
    changed += [name for name in old if name not in new]
    kinds = {info.qualified_name: info.kind for info in [*old_infos, *new_infos]}
    # A class hash changes whenever one of its methods does; name the method only.
    return [
        name
        for name in changed
        if kinds.get(name) != "class" or not any(other.startswith(name + ".") for other in changed)
    ]


def _fragment_changes(old: str, new: str) -> tuple[list[int], list[int], int, int]:
    """0-based changed line indexes on each side of an edit, plus removed/added counts."""
    old_lines = old.splitlines()
    new_lines = new.splitlines()
    if len(old_lines) + len(new_lines) > _DIFF_MAX_LINES:
        return (
            list(range(len(old_lines))),
            list(range(len(new_lines))),
            len(old_lines),
            len(new_lines),
        )
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    old_changed: list[int] = []
    new_changed: list[int] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            old_changed.extend(range(i1, i2))
            new_changed.extend(range(j1, j2))
    return old_changed, new_changed, len(old_changed), len(new_changed)


def _patch_changes(patch: Any) -> tuple[list[int], list[int], int, int] | None:
    """1-based changed lines from Claude Code's structuredPatch, if it has one."""
    if not isinstance(patch, list) or not patch:
        return None
    old_changed: list[int] = []
    new_changed: list[int] = []
    for hunk in patch:
        if not isinstance(hunk, dict) or not isinstance(hunk.get("lines"), list):
            return None
        old_no = _int(hunk.get("oldStart")) or 1
        new_no = _int(hunk.get("newStart")) or 1
        for line in hunk["lines"]:
            if not isinstance(line, str) or line.startswith("\\"):
                continue
            if line.startswith("-"):
                old_changed.append(old_no)
                old_no += 1
            elif line.startswith("+"):
                new_changed.append(new_no)
                new_no += 1
            else:
                old_no += 1
                new_no += 1
    return old_changed, new_changed, len(old_changed), len(new_changed)


def _render_patch(patch: list[Any]) -> str:
    out = []
    for hunk in patch:
        if not isinstance(hunk, dict):
            continue
        out.append(
            f"@@ -{hunk.get('oldStart')},{hunk.get('oldLines')} "
            f"+{hunk.get('newStart')},{hunk.get('newLines')} @@"
        )
        out.extend(
            _truncate(line, _LINE_MAX) for line in hunk.get("lines") or [] if isinstance(line, str)
        )
        if sum(len(line) for line in out) > DETAIL_MAX:
            break
    return "\n".join(out)


def _fragment_diff(old: str, new: str) -> str:
    old_lines = old.splitlines()
    new_lines = new.splitlines()
    if len(old_lines) + len(new_lines) > _DIFF_MAX_LINES:
        return f"(large edit: -{len(old_lines)} +{len(new_lines)} lines)"
    diff = difflib.unified_diff(old_lines, new_lines, lineterm="", n=1)
    return "\n".join(_truncate(line, _LINE_MAX) for line in list(diff)[2:])


def _line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def _locate(source: str, fragment: str, every: bool) -> list[int]:
    """1-based first lines where ``fragment`` occurs in ``source``."""
    if not fragment or not source:
        return []
    found = []
    start = source.find(fragment)
    while start >= 0 and len(found) < 50:
        found.append(_line_of(source, start))
        if not every:
            break
        start = source.find(fragment, start + len(fragment))
    return found


def _enclosing_regex_defs(fragment: str, changed: list[int]) -> list[str]:
    """Without a parseable file, name defs on or above changed lines of a fragment."""
    lines = fragment.splitlines()
    defs = []  # (line index, indent, name) of every def/class line in the fragment
    for index, line in enumerate(lines):
        match = _DEF_RE.match(line)
        if match:
            defs.append((index, len(match.group(1)), match.group(2)))
    names = []
    for index in changed[:_MAP_MAX_LINES]:
        if index >= len(lines) or not lines[index].strip():
            continue
        indent = len(lines[index]) - len(lines[index].lstrip())
        for def_index, def_indent, name in reversed(defs[: bisect_right(defs, (index, 10**9))]):
            if def_index == index or def_indent < indent:
                names.append(name)
                break
    return _dedupe(names)


# --------------------------------------------------------------------------
# Per-tool compressors
# --------------------------------------------------------------------------


@dataclass
class _Parts:
    title: str
    summary: str
    detail: str | None = None
    functions_changed: list[str] = field(default_factory=list)
    files_touched: list[str] | None = None


def _strip_line_numbers(text: str) -> tuple[str, int | None]:
    """Undo Read's "     1\\t" numbering; returns the text and its first line number."""
    lines = text.splitlines()
    first_text = next((line for line in lines if line.strip()), None)
    if first_text is None or not _NUMBERED_LINE_RE.match(first_text):
        return text, None
    matches = [_NUMBERED_LINE_RE.match(line) for line in lines]
    numbers = [int(match.group(1)) for match in matches if match]
    # Read numbers every line, blank ones included, one by one; anything else
    # (a TSV with an id column, say) is left alone.
    if any(b != a + 1 for a, b in zip(numbers, numbers[1:], strict=False)):
        return text, None
    kept = [match.group(2) for match in matches if match]
    # Lines without a number are Claude Code's own notes (system reminders): drop them.
    return "\n".join(kept), numbers[0]


def _compress_read(tool_input: dict[str, Any], parsed: Any, raw: str) -> _Parts:
    path = as_text(tool_input.get("file_path"))
    file_info = parsed.get("file") if isinstance(parsed, dict) else None
    if not isinstance(file_info, dict):
        file_info = {}
    path = path or as_text(file_info.get("filePath"))
    title = _path_title("Read", path)
    if isinstance(parsed, dict) and parsed.get("type") == "image":
        return _Parts(title, f"Read image {path}".strip())
    content = file_info.get("content")
    content = content if isinstance(content, str) else _response_text(parsed, raw)
    content, first_line = _strip_line_numbers(content)
    start = _int(file_info.get("startLine")) or first_line or _int(tool_input.get("offset")) or 1
    num_lines = _int(file_info.get("numLines"))
    if num_lines is None:
        num_lines = len(content.splitlines())
    total = _int(file_info.get("totalLines"))

    summary = f"Read {_plural(num_lines, 'line')} ({_size(content)})"
    if total and (start > 1 or num_lines < total):
        summary += f": lines {start}-{start + max(num_lines - 1, 0)} of {total}"
    if _is_python(path):
        outline, _names = _python_outline(content, _parse_functions(content))
        if outline:
            summary += f"; defines {outline}"
    elif path.lower().endswith((".md", ".markdown", ".rst")):
        headings = [
            line.lstrip("#").strip() for line in content.splitlines() if line.startswith("#")
        ]
        if headings:
            summary += f"; sections: {_join_names(_dedupe(headings), 8)}"
    detail = "\n".join(_meaningful_lines(content, 12)) or None
    return _Parts(title, summary, detail)


def _apply_edits(original: str, edits: list[tuple[str, str, bool]]) -> str | None:
    """Replay the edits on the original file text; None if they do not apply cleanly."""
    text = original
    for old, new, replace_all in edits:
        if not old or old not in text:
            return None
        text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    return text


def _read_file(file_reader: Callable[[str], Any] | None, path: str) -> str | None:
    if file_reader is None or not path:
        return None
    try:
        source = file_reader(path)
    except Exception:  # a reader failing (missing file, permissions) just means no source
        return None
    return as_text(source) if isinstance(source, str | bytes) else None


def _edit_list(tool_name: str, tool_input: dict[str, Any]) -> list[tuple[str, str, bool]]:
    raw_edits = tool_input.get("edits") if tool_name == "MultiEdit" else [tool_input]
    edits = []
    for edit in raw_edits if isinstance(raw_edits, list) else []:
        if isinstance(edit, dict):
            edits.append(
                (
                    as_text(edit.get("old_string")),
                    as_text(edit.get("new_string")),
                    edit.get("replace_all") is True,
                )
            )
    return edits


def _compress_edit(
    tool_name: str,
    tool_input: dict[str, Any],
    parsed: Any,
    file_reader: Callable[[str], Any] | None,
) -> _Parts:
    response = parsed if isinstance(parsed, dict) else {}
    path = as_text(tool_input.get("file_path")) or as_text(response.get("filePath"))
    edits = _edit_list(tool_name, tool_input)
    if not edits and isinstance(response.get("oldString"), str):
        edits = [
            (
                response["oldString"],
                as_text(response.get("newString")),
                bool(response.get("replaceAll")),
            )
        ]
    title = _path_title("Edit", path, f"({len(edits)} edits)" if len(edits) > 1 else "")

    patch = response.get("structuredPatch")
    from_patch = _patch_changes(patch)
    fragment_changes = [_fragment_changes(old, new) for old, new, _all in edits]
    if from_patch is not None:
        removed, added = from_patch[2], from_patch[3]
    else:
        removed = sum(change[2] for change in fragment_changes)
        added = sum(change[3] for change in fragment_changes)

    functions: list[str] = []
    if _is_python(path):
        functions = _edited_functions(
            path, edits, response, from_patch, fragment_changes, file_reader
        )

    summary = f"Edited {path or 'file'}: -{removed} +{added} lines"
    if any(replace_all for _old, _new, replace_all in edits):
        summary += " (replace all)"
    if functions:
        summary += f"; in {_join_names(functions)}"
    glimpse = _edit_glimpse(edits, fragment_changes)
    if glimpse:
        summary += f"; {glimpse}"

    if isinstance(patch, list) and patch:
        detail = _render_patch(patch)
    else:
        detail = "\n".join(_fragment_diff(old, new) for old, new, _all in edits)
    return _Parts(title, summary, detail or None, functions)


def _edit_glimpse(
    edits: list[tuple[str, str, bool]],
    changes: list[tuple[list[int], list[int], int, int]],
) -> str:
    """The first removed and added lines, which usually say what the edit was about."""
    pieces = []
    for (old, new, _all), (old_idx, new_idx, _r, _a) in zip(edits, changes, strict=False):
        old_lines, new_lines = old.splitlines(), new.splitlines()
        removed = [old_lines[i].strip() for i in old_idx if old_lines[i].strip()]
        added = [new_lines[i].strip() for i in new_idx if new_lines[i].strip()]
        if removed:
            pieces.append("- " + _one_line(removed[0], 100))
        if added:
            pieces.append("+ " + _one_line(added[0], 100))
        if len(pieces) >= 4:
            break
    return " ".join(pieces)


def _edited_functions(
    path: str,
    edits: list[tuple[str, str, bool]],
    response: dict[str, Any],
    from_patch: tuple[list[int], list[int], int, int] | None,
    fragment_changes: list[tuple[list[int], list[int], int, int]],
    file_reader: Callable[[str], Any] | None,
) -> list[str]:
    original = response.get("originalFile")
    original = original if isinstance(original, str) else None
    current = _apply_edits(original, edits) if original is not None else None
    # Replaying the edits on originalFile gives the exact post-edit text, which
    # is what structuredPatch line numbers refer to; the reader may be newer.
    replayed = current is not None
    if current is None:
        current = _read_file(file_reader, path)
    old_infos = _parse_functions(original)
    new_infos = _parse_functions(current)

    # Best: compare body hashes before and after, which ignores pure reformatting.
    if old_infos is not None and new_infos is not None:
        names = _hash_changes(old_infos, new_infos)
        if names:
            return names[:_NAMES_MAX]

    # Next: map the changed line numbers onto the definitions around them.
    names = []
    old_lines: list[int] = []
    new_lines: list[int] = []
    if from_patch is not None and replayed:
        old_lines, new_lines = from_patch[0], from_patch[1]
    else:
        for (old, new, replace_all), (old_idx, new_idx, _r, _a) in zip(
            edits, fragment_changes, strict=False
        ):
            for base in _locate(current or "", new, replace_all):
                new_lines.extend(base + index for index in new_idx)
            for base in _locate(original or "", old, replace_all):
                old_lines.extend(base + index for index in old_idx)
    placed = False
    if new_infos is not None and new_lines:
        names += _innermost_defs(new_infos, new_lines)
        placed = True
    if old_infos is not None and old_lines:
        names += _innermost_defs(old_infos, old_lines)
        placed = True
    if placed:
        # The change was located in real source: if it lies outside every
        # definition (imports, constants), no function changed.
        return _dedupe(names)[:_NAMES_MAX]

    # Last resort: def/class lines in or above the changed part of each fragment.
    for (old, new, _all), (old_idx, new_idx, _r, _a) in zip(edits, fragment_changes, strict=False):
        names += _enclosing_regex_defs(new, new_idx)
        names += _enclosing_regex_defs(old, old_idx)
    return _dedupe(names)[:_NAMES_MAX]


def _compress_write(tool_input: dict[str, Any], parsed: Any) -> _Parts:
    response = parsed if isinstance(parsed, dict) else {}
    path = as_text(tool_input.get("file_path")) or as_text(response.get("filePath"))
    content = tool_input.get("content")
    content = content if isinstance(content, str) else as_text(response.get("content"))
    original = response.get("originalFile")
    original = original if isinstance(original, str) else None
    is_update = response.get("type") == "update" or original is not None
    verb = "Updated" if is_update else "Wrote"

    summary = f"{verb} {path or 'file'}: {_plural(len(content.splitlines()), 'line')}"
    summary += f" ({_size(content)})"
    functions: list[str] = []
    if _is_python(path):
        new_infos = _parse_functions(content)
        outline, functions = _python_outline(content, new_infos)
        old_infos = _parse_functions(original) if new_infos is not None else None
        if old_infos is not None and new_infos is not None:
            # On an overwrite, only the definitions that really changed are news.
            functions = _hash_changes(old_infos, new_infos)
            summary += f"; changed {_join_names(functions)}" if functions else "; no code changes"
        elif outline:
            summary += f"; defines {outline}"
    patch = response.get("structuredPatch")
    if is_update and isinstance(patch, list) and patch:
        detail = _render_patch(patch)
    else:
        detail = "\n".join(_meaningful_lines(content, 12))
    return _Parts(_path_title("Write", path), summary, detail or None, functions[:_NAMES_MAX])


def _compress_notebook(tool_input: dict[str, Any]) -> _Parts:
    path = as_text(tool_input.get("notebook_path"))
    mode = as_text(tool_input.get("edit_mode")) or "replace"
    cell_type = as_text(tool_input.get("cell_type"))
    cell_id = as_text(tool_input.get("cell_id")) or "?"
    source = as_text(tool_input.get("new_source"))
    summary = f"{mode} {cell_type + ' ' if cell_type else ''}cell {cell_id} in {path or 'notebook'}"
    first = _meaningful_lines(source, 1)
    if first and mode != "delete":
        summary += f": {first[0].strip()}"
    functions = _regex_defs(source) if cell_type != "markdown" else []
    detail = "\n".join(_meaningful_lines(source, 20)) or None
    return _Parts(_path_title("NotebookEdit", path, f"cell {cell_id}"), summary, detail, functions)


def _pytest_summary(text: str) -> str | None:
    """The last pytest result line, e.g. "3 passed, 1 failed in 0.52s"."""
    for line in reversed(text.splitlines()[-300:]):
        match = _PYTEST_RE.search(line[:1000])
        if match:
            return match.group(0)
    return None


def _compress_bash(tool_input: dict[str, Any], parsed: Any, raw: str) -> _Parts:
    command = as_text(tool_input.get("command"))
    first_line = next((line for line in command.splitlines() if line.strip()), "")
    title = _title("Run:", first_line.strip() or as_text(tool_input.get("description")))

    if isinstance(parsed, dict):
        stdout = _clean(as_text(parsed.get("stdout")))
        stderr = _clean(as_text(parsed.get("stderr")))
        interrupted = parsed.get("interrupted") is True
    else:
        stdout, stderr, interrupted = _clean(raw), "", False
    output = f"{stdout}\n{stderr}" if stderr.strip() else stdout

    # Look for trouble where it shows up (stderr, the end of stdout) rather than
    # anywhere: `cat`ing a file that mentions "error:" is not a failure.
    stdout_tail = "\n".join(stdout[-20_000:].splitlines()[-40:])
    scanned = f"{stdout_tail}\n{stderr[-20_000:]}"
    signals = [label for marker, label in _ERROR_MARKERS if marker in scanned]
    exit_match = _EXIT_CODE_RE.search(output[:2000])
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
        parts.insert(0, _one_line(description, 120))
    if tests:
        parts.append(f"tests: {tests}")
    failed = [line.strip() for line in output.splitlines() if line.startswith("FAILED ")]
    if failed:
        parts.append("; ".join(_truncate(line, 150) for line in failed[:3]))
    tail = _meaningful_lines(stderr if stderr.strip() else stdout, 4, from_end=True)
    if tail:
        parts.append("last output: " + " | ".join(line.strip() for line in tail))
    elif not output.strip():
        parts.append("no output")

    detail_lines = _meaningful_lines(stdout, 25, from_end=True)
    if stderr.strip():
        detail_lines += ["[stderr]", *_meaningful_lines(stderr, 15, from_end=True)]
    detail = "\n".join(detail_lines)
    if len(command) > len(first_line) + 1:
        detail = f"$ {_truncate(command, 400)}\n{detail}"
    return _Parts(title, "; ".join(parts), detail or None, files_touched=[])


def _relative_names(names: list[str], base: str) -> list[str]:
    prefix = base.rstrip("/") + "/" if base else ""
    return [name[len(prefix) :] if prefix and name.startswith(prefix) else name for name in names]


def _compress_search(tool_name: str, tool_input: dict[str, Any], parsed: Any, raw: str) -> _Parts:
    pattern = as_text(tool_input.get("pattern"))
    path = as_text(tool_input.get("path"))
    glob = as_text(tool_input.get("glob"))
    title = _title(
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
        lines = [line.strip() for line in _clean(_response_text(parsed, raw)).splitlines()]
        lines = [line for line in lines if line]
        if lines and (lines[0].startswith("Found ") or lines[0].startswith("No ")):
            header, lines = lines[0], lines[1:]
        else:
            header = ""
        count_text = header or _plural(len(lines), "result")
        shown = _relative_names(lines, path)
        summary = f"{count_text}: {_join_names(shown, 8)}" if shown else count_text
        return _Parts(title, summary, "\n".join(lines[:40]) or None)

    if content is not None and mode in ("content", "count", ""):
        lines = [
            _truncate(line, _LINE_MAX) for line in _clean(content).splitlines() if line.strip()
        ]
        num = _int(response.get("numLines")) or len(lines)
        files = _int(response.get("numFiles"))
        noun = "count line" if mode == "count" else "matching line"
        summary = _plural(num, noun) + (f" in {_plural(files, 'file')}" if files else "")
        if lines:
            summary += ": " + " | ".join(_relative_names(lines[:5], path))
        return _Parts(title, summary, "\n".join(lines[:40]) or None)

    names = filenames or []
    num_files = _int(response.get("numFiles"))
    num_files = len(names) if num_files is None else num_files
    if not num_files:
        return _Parts(title, "No matches" if tool_name == "Grep" else "No files found")
    shown = _relative_names(names, path)
    summary = f"{_plural(num_files, 'file')}"
    if response.get("truncated") is True:
        summary += " (truncated)"
    summary += f": {_join_names(shown, 8)}"
    return _Parts(title, summary, "\n".join(shown[:60]) or None)


def _compress_todos(tool_input: dict[str, Any]) -> _Parts:
    todos = tool_input.get("todos")
    todos = [todo for todo in todos if isinstance(todo, dict)] if isinstance(todos, list) else []
    counts: dict[str, int] = {}
    for todo in todos:
        status = as_text(todo.get("status")) or "pending"
        counts[status] = counts.get(status, 0) + 1
    order = ["in_progress", "pending", "completed"]
    statuses = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    title = _title("TodoWrite:", ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in statuses))
    marks = {"completed": "[x]", "in_progress": "[>]"}
    items = [
        marks.get(as_text(todo.get("status")), "[ ]")
        + " "
        + _one_line(as_text(todo.get("content")), 100)
        for todo in todos
    ]
    return _Parts(title, "; ".join(items) or "empty todo list", "\n".join(items) or None)


def _compress_generic(tool_name: str, tool_input: dict[str, Any], parsed: Any, raw: str) -> _Parts:
    title = _title(tool_name or "tool", _short_key_input(tool_input))
    text = _response_text(parsed, raw)
    prefix = ""
    if isinstance(parsed, dict):
        code = _int(parsed.get("code"))
        if code is not None:
            prefix = f"HTTP {code} {as_text(parsed.get('codeText'))}".strip() + "; "
        if text is raw and isinstance(parsed.get("results"), list):
            # WebSearch: titles of the results say more than their JSON.
            titles = _result_titles(parsed["results"])
            if titles:
                text = "\n".join(titles)
    lines = _meaningful_lines(text, 6)
    summary = prefix + (" | ".join(line.strip() for line in lines) if lines else "no output")
    detail = "\n".join(_meaningful_lines(text, 30)) or None
    return _Parts(title, summary, detail)


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
) -> _Parts:
    """A failed tool use: what was tried, and why it failed, in the tool's own words."""
    how = "interrupted" if failure == "interrupt" else "failed"
    title = _title(f"{tool_name or 'tool'} {how}:", _short_key_input(tool_input))
    lines = _meaningful_lines(error, 6)
    why = " | ".join(line.strip() for line in lines) or (
        "interrupted by the user" if how == "interrupted" else "no error message"
    )
    detail = "\n".join(_meaningful_lines(error, 30)) or None
    return _Parts(title, f"{how.capitalize()}: {why}", detail)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _dispatch(
    tool_name: str,
    tool_input: dict[str, Any],
    parsed: Any,
    raw: str,
    file_reader: Callable[[str], Any] | None,
) -> _Parts:
    if tool_name == "Read":
        return _compress_read(tool_input, parsed, raw)
    if tool_name in ("Edit", "MultiEdit"):
        return _compress_edit(tool_name, tool_input, parsed, file_reader)
    if tool_name == "Write":
        return _compress_write(tool_input, parsed)
    if tool_name == "NotebookEdit":
        return _compress_notebook(tool_input)
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
) -> Compressed:
    """Turn one PostToolUse payload into a short, deterministic observation.

    ``file_reader(path)`` may return the file's current text; it is only used
    to place an Edit in its functions when the response lacks the original file.
    With ``failure`` ("error" or "interrupt", from PostToolUseFailure) the response is
    the error, and the observation says what failed and why.
    """
    name = _one_line(as_text(tool_name), 80)
    data = _normalise_input(tool_input)
    raw, parsed = _normalise_response(tool_response)
    input_text = tool_input if isinstance(tool_input, str) else _dumps(tool_input or {})
    tokens_raw = estimate_tokens(input_text + raw)
    files = files_from_tool_input(name, data)
    try:
        if failure:
            parts = _compress_failure(name, data, raw, failure)
        else:
            parts = _dispatch(name, data, parsed, raw, file_reader)
    except Exception as exc:  # an odd payload must still produce an observation
        parts = _Parts(
            _title(name or "tool", _short_key_input(data)),
            _one_line(f"could not summarise {name or 'tool'} output ({type(exc).__name__})", 200),
        )
    if parts.files_touched is not None:
        files = parts.files_touched
    elif not files and name in _FILE_TOOLS and isinstance(parsed, dict):
        files = _dedupe([as_text(parsed.get("filePath"))])
    title = _one_line(parts.title, TITLE_MAX) or _one_line(name or "tool", TITLE_MAX)
    summary = _truncate(_clean(parts.summary).strip(), SUMMARY_MAX)
    detail = _truncate(_clean(parts.detail).strip(), DETAIL_MAX) if parts.detail else None
    detail = detail or None
    tokens_compressed = estimate_tokens(title + summary + (detail or ""))
    return Compressed(
        title=title,
        summary=summary,
        detail=detail,
        files_touched=files,
        functions_changed=_dedupe(parts.functions_changed),
        tokens_raw=tokens_raw,
        tokens_compressed=tokens_compressed,
    )
