"""Which Python definitions a text holds and which of them a change touched: by ast for
small texts, by one regex outline for large ones, so the cost stays linear."""

from __future__ import annotations

import difflib
import hashlib
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datasette_claude_mem.worker.code_index import SourceError, extract_functions
from datasette_claude_mem.worker.summary_text import (
    DEF_RE,
    DETAIL_MAX,
    DIFF_MAX_LINES,
    LINE_MAX,
    MAP_MAX_LINES,
    NEAR_LINES,
    PARSE_MAX_CHARS,
    WINDOW_CHARS,
    as_int,
    dedupe,
    join_names,
    plural,
    truncate_text,
)


def parse_functions(source: str | None, near: list[int] | None = None) -> list[Any] | None:
    """The definitions of a Python text: all of them through ast when it is short; for a long
    one, outlined from its head, or from the lines above and at ``near`` (1-based)."""
    if not source:
        return None
    if len(source) > PARSE_MAX_CHARS:
        if near is not None:
            return _defs_near(source, near)
        head = source[:WINDOW_CHARS]
        return _outline_defs(head[: head.rfind("\n") + 1] if len(source) > len(head) else head)
    try:
        return extract_functions(source)
    except (SourceError, TypeError, RecursionError, MemoryError):
        return None


@dataclass(frozen=True)
class _Def:
    """A definition found from its def or class line alone (see ``_outline_defs``)."""

    qualified_name: str
    kind: str
    lineno: int
    end_lineno: int
    lines: list[str] = field(repr=False, compare=False)
    decorators: tuple[str, ...] = ()

    @property
    def body_hash(self) -> str:
        """The definition's text with its whitespace collapsed, hashed when asked for."""
        text = " ".join(" ".join(self.lines[self.lineno - 1 : self.end_lineno]).split())
        return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# A def or class line (its indent, keyword and name), or any other statement at column 0,
# which ends every definition still open.
_OUTLINE_RE = re.compile(
    r"^(?:([ \t]*)(async[ \t]+def|def|class)[ \t]+([A-Za-z_]\w*)|(?=[A-Za-z_@]))", re.MULTILINE
)


def _defs_near(source: str, near: list[int]) -> list[_Def]:
    """Definitions around some lines of a long text: each run of lines is outlined from
    NEAR_LINES above it, so the work is bounded by the changed lines, not the file."""
    lines = source.split("\n")
    found: dict[tuple[str, int], _Def] = {}
    wanted = sorted(set(near))[:MAP_MAX_LINES]
    start = 0
    while start < len(wanted):
        end = start
        while end + 1 < len(wanted) and wanted[end + 1] - wanted[end] < NEAR_LINES:
            end += 1
        first = max(wanted[start] - NEAR_LINES, 1)
        window = "\n".join(lines[first - 1 : wanted[end]])
        for info in _outline_defs(window, first_line=first, lines=lines):
            found.setdefault((info.qualified_name, info.lineno), info)
        start = end + 1
    return sorted(found.values(), key=lambda info: info.lineno)


def _outline_defs(source: str, first_line: int = 1, lines: list[str] | None = None) -> list[_Def]:
    """Definitions of a long Python text from one regex pass over its lines: qualified by
    indentation, spanning to the next line at their indent or less. Linear, never raises;
    its body hashes compare the definition's text with its whitespace collapsed. ``source``
    may be a slice of a file starting at ``first_line`` of ``lines``."""
    found: list[list[Any]] = []  # [indent, qualified name, kind, start line, end line]
    open_defs: list[list[Any]] = []
    line, last = first_line, 0
    for match in _OUTLINE_RE.finditer(source):
        line += source.count("\n", last, match.start())
        last = match.start()
        indent = len((match.group(1) or "").expandtabs()) if match.group(2) else 0
        while open_defs and open_defs[-1][0] >= indent:
            open_defs.pop()[4] = line - 1
        if not match.group(2):
            continue
        owner = open_defs[-1] if open_defs else None
        if owner is not None and owner[2] != "class":
            continue  # helpers inside a function belong to it
        keyword = match.group(2)
        if keyword == "class":
            kind = "class"
        elif owner is not None:
            kind = "async_method" if keyword.startswith("async") else "method"
        else:
            kind = "async_function" if keyword.startswith("async") else "function"
        name = f"{owner[1]}.{match.group(3)}" if owner is not None else match.group(3)
        entry = [indent, name, kind, line, 0]
        found.append(entry)
        open_defs.append(entry)
    total = line + source.count("\n", last)
    for entry in open_defs:
        entry[4] = total
    if lines is None:
        lines = source.split("\n")
    return [
        _Def(name, kind, start, max(end, start), lines) for _indent, name, kind, start, end in found
    ]


def regex_defs(text: str) -> list[str]:
    """Top-level-ish def/class names in text that does not parse (partial reads, hunks)."""
    names = []
    for line in text.splitlines():
        match = DEF_RE.match(line)
        if match:
            names.append(match.group(2))
    return dedupe(names)


def python_outline(source: str, infos: list[Any] | None) -> tuple[str, list[str]]:
    """A short outline of a module ("connect(), class Store, main()") and all def names.

    ``infos`` is the parsed function map, or None when the text does not parse
    (a partial Read, a fragment), in which case def/class lines are scanned.
    """
    if infos is None:
        names = regex_defs(source)
        return join_names(names), names
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
            suffix = f" [{plural(methods, 'method')}]" if methods else ""
            outline.append(f"class {info.qualified_name}{suffix}")
        else:
            outline.append(f"{info.qualified_name}()")
    return join_names(outline), [info.qualified_name for info in infos]


def innermost_defs(infos: list[Any], lines: Iterable[int]) -> list[str]:
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
    return dedupe(owner[line] for line in wanted if line in owner)


def hash_changes(old_infos: list[Any], new_infos: list[Any]) -> list[str]:
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


def fragment_change(old: str, new: str) -> tuple[list[int], list[int], int, int]:
    """0-based changed line indexes on each side of an edit, plus removed/added counts."""
    old_lines = old.splitlines()
    new_lines = new.splitlines()
    if len(old_lines) + len(new_lines) > DIFF_MAX_LINES:
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


def patch_changes(patch: Any) -> tuple[list[int], list[int], int, int] | None:
    """1-based changed lines from Claude Code's structuredPatch, if it has one."""
    if not isinstance(patch, list) or not patch:
        return None
    old_changed: list[int] = []
    new_changed: list[int] = []
    for hunk in patch:
        if not isinstance(hunk, dict) or not isinstance(hunk.get("lines"), list):
            return None
        old_no = as_int(hunk.get("oldStart")) or 1
        new_no = as_int(hunk.get("newStart")) or 1
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


def render_patch(patch: list[Any]) -> str:
    out = []
    for hunk in patch:
        if not isinstance(hunk, dict):
            continue
        out.append(
            f"@@ -{hunk.get('oldStart')},{hunk.get('oldLines')} "
            f"+{hunk.get('newStart')},{hunk.get('newLines')} @@"
        )
        out.extend(
            truncate_text(line, LINE_MAX)
            for line in hunk.get("lines") or []
            if isinstance(line, str)
        )
        if sum(len(line) for line in out) > DETAIL_MAX:
            break
    return "\n".join(out)


def fragment_diff(old: str, new: str) -> str:
    old_lines = old.splitlines()
    new_lines = new.splitlines()
    if len(old_lines) + len(new_lines) > DIFF_MAX_LINES:
        return f"(large edit: -{len(old_lines)} +{len(new_lines)} lines)"
    diff = difflib.unified_diff(old_lines, new_lines, lineterm="", n=1)
    return "\n".join(truncate_text(line, LINE_MAX) for line in list(diff)[2:])


def _line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def locate_fragment(source: str, fragment: str, every: bool) -> list[int]:
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


def enclosing_regex_defs(fragment: str, changed: list[int]) -> list[str]:
    """Without a parseable file, name defs on or above changed lines of a fragment."""
    lines = fragment.splitlines()
    defs = []  # (line index, indent, name) of every def/class line in the fragment
    for index, line in enumerate(lines):
        match = DEF_RE.match(line)
        if match:
            defs.append((index, len(match.group(1)), match.group(2)))
    names = []
    for index in changed[:MAP_MAX_LINES]:
        if index >= len(lines) or not lines[index].strip():
            continue
        indent = len(lines[index]) - len(lines[index].lstrip())
        for def_index, def_indent, name in reversed(defs[: bisect_right(defs, (index, 10**9))]):
            if def_index == index or def_indent < indent:
                names.append(name)
                break
    return dedupe(names)
