"""How much of a tool's output the queue keeps: its head and tail, up to a cap.

Kept whole, outputs were most of the memory's disk (138 of 142 MB for 1,000 real-shaped
events). What compression reads is the start of an output (a file's imports and first
definitions, a command's first lines) and its end (test summaries, exit codes, the last
error), and what an A/B re-evaluation of a compressor needs is the same input the
compressor saw; so an output over the cap keeps its first two thirds and last third of the
cap, with a marker between them naming the full size, and the queue row records that size
and that it was cut.

A JSON response is cut inside its longest strings (a Read's file content, an Edit's
originalFile, a command's stdout) so it stays JSON with its structure and small fields
whole. Cuts fall on a line break (or else a space) near the limit, so a secret is never
left half there for the redactor, which runs on what is kept, to miss.
The cap (CLAUDE_MEM_RAW_OUTPUT_CAP) is 64 KB by default: no compressor reads more. The
default compressor reads at most the first and last 64 KB of a text (and the whole JSON
structure, which is kept), the LLM compressor is shown 20,000 characters of head and tail;
so what is dropped was never used, and the disk goal (1,000 events of a session's mix in
at most 35 MB, where keeping outputs whole took 142 MB) is met with room to spare.
"""

from __future__ import annotations

from typing import Any

from datasette_claude_mem.storage.database import to_json, utf8_length

_SNAP_CHARS = 2000  # how far a cut may move to land on a line break
_LEAF_MIN_CHARS = 1024  # strings shorter than this are never cut


def _snap_back(text: str, at: int) -> int:
    for sep in ("\n", " "):
        found = text.rfind(sep, max(at - _SNAP_CHARS, 0), at)
        if found > 0:
            return found + 1
    return at


def _snap_forward(text: str, at: int) -> int:
    for sep in ("\n", " "):
        found = text.find(sep, at, at + _SNAP_CHARS)
        if found >= 0:
            return found + 1
    return at


def head_and_tail(text: str, limit_bytes: int) -> str:
    """The text, or its head and tail with a marker, in at most about limit_bytes."""
    size = utf8_length(text)
    if size <= limit_bytes:
        return text
    # Characters to keep for limit_bytes, from the text's own bytes per character.
    keep = max(int(limit_bytes * len(text) / size) - 200, 2)
    head_end = _snap_back(text, keep * 2 // 3)
    tail_start = _snap_forward(text, len(text) - keep // 3)
    if tail_start <= head_end:
        return text
    dropped = utf8_length(text[head_end:tail_start])
    marker = f"\n[truncated: {size} bytes in all; {dropped} bytes in the middle not kept]\n"
    return text[:head_end] + marker + text[tail_start:]


def _strings(value: Any, path: tuple) -> list[tuple[int, tuple]]:
    """(length, path) of every string in a JSON value long enough to be worth cutting."""
    found: list[tuple[int, tuple]] = []
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if len(node) >= _LEAF_MIN_CHARS:
                found.append((len(node), where))
        elif isinstance(node, dict):
            stack.extend((v, (*where, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(node))
    return found


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(value: Any, path: tuple, new: Any) -> None:
    _get(value, path[:-1])[path[-1]] = new


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def bound(value: Any, cap_bytes: int) -> tuple[str, bool, int]:
    """A tool response as queue text of at most about cap_bytes: (text, cut, full size)."""
    text = value if isinstance(value, str) else ("" if value is None else to_json(value))
    size = utf8_length(text)
    if size <= cap_bytes:
        return text, False, size
    if isinstance(value, dict | list):
        shrunk = _copy(value)
        for _ in range(3):  # JSON escapes make the first estimate a little short
            excess = utf8_length(to_json(shrunk)) - cap_bytes
            if excess <= 0:
                return to_json(shrunk), True, size
            for _length, path in sorted(_strings(shrunk, ()), reverse=True):
                if excess <= 0:
                    break
                leaf = _get(shrunk, path)
                leaf_bytes = utf8_length(leaf)
                # Escapes (a newline is two bytes in JSON) make the leaf larger as JSON.
                encoded = utf8_length(to_json(leaf))
                target = (encoded - excess - 300) * leaf_bytes // encoded
                cut = head_and_tail(leaf, max(target, _LEAF_MIN_CHARS // 2))
                _set(shrunk, path, cut)
                excess -= encoded - utf8_length(to_json(cut))
    return head_and_tail(text, cap_bytes), True, size
