"""The compressors of the file tools: Read, Edit, MultiEdit, Write and NotebookEdit, with
the functions each change touched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasette_claude_mem.worker.python_changes import (
    enclosing_regex_defs,
    fragment_change,
    fragment_diff,
    hash_changes,
    innermost_defs,
    locate_fragment,
    parse_functions,
    patch_changes,
    python_outline,
    regex_defs,
    render_patch,
)
from datasette_claude_mem.worker.summary_text import (
    NAMES_MAX,
    NUMBERED_LINE_RE,
    PARSE_MAX_CHARS,
    Parts,
    as_int,
    as_text,
    dedupe,
    is_python,
    join_names,
    meaningful_lines,
    one_line,
    path_title,
    plural,
    response_text,
    size_text,
)


def strip_line_numbers(text: str) -> tuple[str, int | None]:
    """Undo Read's "     1\\t" numbering; returns the text and its first line number."""
    lines = text.splitlines()
    first_text = next((line for line in lines if line.strip()), None)
    if first_text is None or not NUMBERED_LINE_RE.match(first_text):
        return text, None
    matches = [NUMBERED_LINE_RE.match(line) for line in lines]
    numbers = [int(match.group(1)) for match in matches if match]
    # Read numbers every line, blank ones included, one by one; anything else
    # (a TSV with an id column, say) is left alone.
    if any(b != a + 1 for a, b in zip(numbers, numbers[1:], strict=False)):
        return text, None
    kept = [match.group(2) for match in matches if match]
    # Lines without a number are Claude Code's own notes (system reminders): drop them.
    return "\n".join(kept), numbers[0]


def compress_read(tool_input: dict[str, Any], parsed: Any, raw: str) -> Parts:
    path = as_text(tool_input.get("file_path"))
    file_info = parsed.get("file") if isinstance(parsed, dict) else None
    if not isinstance(file_info, dict):
        file_info = {}
    path = path or as_text(file_info.get("filePath"))
    title = path_title("Read", path)
    if isinstance(parsed, dict) and parsed.get("type") == "image":
        return Parts(title, f"Read image {path}".strip())
    content = file_info.get("content")
    content = content if isinstance(content, str) else response_text(parsed, raw)
    content, first_line = strip_line_numbers(content)
    start = (
        as_int(file_info.get("startLine")) or first_line or as_int(tool_input.get("offset")) or 1
    )
    num_lines = as_int(file_info.get("numLines"))
    if num_lines is None:
        num_lines = len(content.splitlines())
    total = as_int(file_info.get("totalLines"))

    summary = f"Read {plural(num_lines, 'line')} ({size_text(content)})"
    if total and (start > 1 or num_lines < total):
        summary += f": lines {start}-{start + max(num_lines - 1, 0)} of {total}"
    if is_python(path):
        outline, _names = python_outline(content, parse_functions(content))
        if outline:
            summary += f"; defines {outline}"
    elif path.lower().endswith((".md", ".markdown", ".rst")):
        headings = [
            line.lstrip("#").strip() for line in content.splitlines() if line.startswith("#")
        ]
        if headings:
            summary += f"; sections: {join_names(dedupe(headings), 8)}"
    detail = "\n".join(meaningful_lines(content, 12)) or None
    return Parts(title, summary, detail)


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


def compress_edit(
    tool_name: str,
    tool_input: dict[str, Any],
    parsed: Any,
    file_reader: Callable[[str], Any] | None,
) -> Parts:
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
    title = path_title("Edit", path, f"({len(edits)} edits)" if len(edits) > 1 else "")

    patch = response.get("structuredPatch")
    from_patch = patch_changes(patch)
    fragment_changes = [fragment_change(old, new) for old, new, _all in edits]
    if from_patch is not None:
        removed, added = from_patch[2], from_patch[3]
    else:
        removed = sum(change[2] for change in fragment_changes)
        added = sum(change[3] for change in fragment_changes)

    functions: list[str] = []
    if is_python(path):
        functions = _edited_functions(
            path, edits, response, from_patch, fragment_changes, file_reader
        )

    summary = f"Edited {path or 'file'}: -{removed} +{added} lines"
    if any(replace_all for _old, _new, replace_all in edits):
        summary += " (replace all)"
    if functions:
        summary += f"; in {join_names(functions)}"
    glimpse = _edit_glimpse(edits, fragment_changes)
    if glimpse:
        summary += f"; {glimpse}"

    if isinstance(patch, list) and patch:
        detail = render_patch(patch)
    else:
        detail = "\n".join(fragment_diff(old, new) for old, new, _all in edits)
    return Parts(title, summary, detail or None, functions)


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
            pieces.append("- " + one_line(removed[0], 100))
        if added:
            pieces.append("+ " + one_line(added[0], 100))
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
    # Best: compare body hashes before and after, which ignores pure reformatting; a long
    # file is placed by its changed lines instead, so as not to read all of it twice.
    small = len(original or "") + len(current or "") <= 2 * PARSE_MAX_CHARS
    old_infos = parse_functions(original) if small else None
    new_infos = parse_functions(current) if small else None
    if old_infos is not None and new_infos is not None:
        names = hash_changes(old_infos, new_infos)
        if names:
            return names[:NAMES_MAX]

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
            for base in locate_fragment(current or "", new, replace_all):
                new_lines.extend(base + index for index in new_idx)
            for base in locate_fragment(original or "", old, replace_all):
                old_lines.extend(base + index for index in old_idx)
    if not small:
        old_infos = parse_functions(original, near=old_lines) if old_lines else None
        new_infos = parse_functions(current, near=new_lines) if new_lines else None
    placed = False
    if new_infos is not None and new_lines:
        names += innermost_defs(new_infos, new_lines)
        placed = True
    if old_infos is not None and old_lines:
        names += innermost_defs(old_infos, old_lines)
        placed = True
    if placed:
        # The change was located in real source: if it lies outside every
        # definition (imports, constants), no function changed.
        return dedupe(names)[:NAMES_MAX]

    # Last resort: def/class lines in or above the changed part of each fragment.
    for (old, new, _all), (old_idx, new_idx, _r, _a) in zip(edits, fragment_changes, strict=False):
        names += enclosing_regex_defs(new, new_idx)
        names += enclosing_regex_defs(old, old_idx)
    return dedupe(names)[:NAMES_MAX]


def compress_write(tool_input: dict[str, Any], parsed: Any) -> Parts:
    response = parsed if isinstance(parsed, dict) else {}
    path = as_text(tool_input.get("file_path")) or as_text(response.get("filePath"))
    content = tool_input.get("content")
    content = content if isinstance(content, str) else as_text(response.get("content"))
    original = response.get("originalFile")
    original = original if isinstance(original, str) else None
    is_update = response.get("type") == "update" or original is not None
    verb = "Updated" if is_update else "Wrote"

    lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
    summary = f"{verb} {path or 'file'}: {plural(lines, 'line')}"
    summary += f" ({size_text(content)})"
    functions: list[str] = []
    if is_python(path):
        new_infos = parse_functions(content)
        outline, functions = python_outline(content, new_infos)
        old_infos = parse_functions(original) if new_infos is not None else None
        from_patch = patch_changes(response.get("structuredPatch"))
        if old_infos is not None and new_infos is not None:
            # On an overwrite, only the definitions that really changed are news: judged by
            # body hash, or for a long file by the lines its patch changed.
            if from_patch is not None and len(content) + len(original or "") > 2 * PARSE_MAX_CHARS:
                new_near = parse_functions(content, near=from_patch[1] or [1]) or []
                old_near = parse_functions(original, near=from_patch[0] or [1]) or []
                functions = dedupe(
                    innermost_defs(new_near, from_patch[1])
                    + innermost_defs(old_near, from_patch[0])
                )
            else:
                functions = hash_changes(old_infos, new_infos)
            summary += f"; changed {join_names(functions)}" if functions else "; no code changes"
        elif outline:
            summary += f"; defines {outline}"
    patch = response.get("structuredPatch")
    if is_update and isinstance(patch, list) and patch:
        detail = render_patch(patch)
    else:
        detail = "\n".join(meaningful_lines(content, 12))
    return Parts(path_title("Write", path), summary, detail or None, functions[:NAMES_MAX])


def compress_notebook(tool_input: dict[str, Any]) -> Parts:
    path = as_text(tool_input.get("notebook_path"))
    mode = as_text(tool_input.get("edit_mode")) or "replace"
    cell_type = as_text(tool_input.get("cell_type"))
    cell_id = as_text(tool_input.get("cell_id")) or "?"
    source = as_text(tool_input.get("new_source"))
    summary = f"{mode} {cell_type + ' ' if cell_type else ''}cell {cell_id} in {path or 'notebook'}"
    first = meaningful_lines(source, 1)
    if first and mode != "delete":
        summary += f": {first[0].strip()}"
    functions = regex_defs(source) if cell_type != "markdown" else []
    detail = "\n".join(meaningful_lines(source, 20)) or None
    return Parts(path_title("NotebookEdit", path, f"cell {cell_id}"), summary, detail, functions)
