"""Compact text answers: one line a row, with the id the next tool takes first.

Tokens are estimated as characters / 4, as the SessionStart context counts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from datasette_claude_mem.claude_code.context import tokens
from datasette_claude_mem.storage.recall import About, Hit, Record

# What one `get` answer may hold, whatever was asked for.
MAX_RECORD_CHARS = 4_000
MAX_ANSWER_CHARS = 16_000


def clip(text: Any, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def day(at: Any) -> str:
    return str(at)[:16].replace("T", " ")


def hit_line(hit: Hit, *, with_size: bool = True) -> str:
    parts = [hit.id, day(hit.at), f"{hit.kind}/{hit.label}" if hit.label else hit.kind]
    parts.append(clip(hit.title, 90))
    if hit.stale:
        parts.append("STALE: its code changed since")
    if hit.file:
        parts.append(clip(hit.file, 60))
    if with_size and hit.size:
        parts.append(f"~{tokens('x' * hit.size)} tok")
    return " · ".join(parts)


def search_answer(query: str, project: str, hits: list[Hit]) -> str:
    if not hits:
        return f"No matches for {clip(query, 80)!r} in project {project}."
    head = f"{len(hits)} hits in {project} (id · date · kind · title · file · size to get):"
    tail = "Next: timeline(id) for what happened around one, get(ids) for full records."
    return "\n".join([head, *(hit_line(h) for h in hits), tail])


def timeline_answer(anchor_id: str | None, rows: list[Hit]) -> str:
    if not rows:
        return "Nothing recorded around it."
    lines = []
    for row in rows:
        mark = "→ " if row.id == anchor_id else "  "
        lines.append(mark + hit_line(row, with_size=False))
    return "\n".join([*lines, "Next: get(ids) for full records."])


def record_text(item: Record) -> str:
    lines = [f"## {item.kind} {item.id}" + (f" (project {item.project})" if item.project else "")]
    if item.fields.get("stale"):
        lines.append(f"STALE: {item.fields['stale']}; check the code before relying on it")
    if item.fields.get("forgotten_at"):
        lines.append(
            f"FORGOTTEN {day(item.fields['forgotten_at'])} by {item.fields.get('forgotten_by')}:"
            f" {item.fields.get('forgotten_reason')}"
        )
    for name, value in item.fields.items():
        if name.startswith("forgotten_") or name == "stale":
            continue
        lines.append(f"{name}: {value}")
    text = "\n".join(lines)
    if len(text) > MAX_RECORD_CHARS:
        text = text[: MAX_RECORD_CHARS - 40].rstrip() + f"\n… (clipped at {MAX_RECORD_CHARS} chars)"
    return text


def get_answer(parts: Iterable[str]) -> str:
    out: list[str] = []
    used = 0
    for part in parts:
        if used + len(part) > MAX_ANSWER_CHARS:
            out.append(f"… (answer capped at {MAX_ANSWER_CHARS} chars: ask for fewer ids)")
            break
        out.append(part)
        used += len(part) + 2
    return "\n\n".join(out)


def about_answer(name: str, found: About) -> str:
    sections: list[str] = []
    if found.functions:
        sections.append(
            "Functions (change · file · name · signature · session):\n"
            + "\n".join(
                f"- {f.change_type} · {f.file_path} · {f.qualified_name} · "
                f"{clip(f.signature, 60)} · {day(f.updated_at.isoformat())} {f.session_id}"
                for f in found.functions[:30]
            )
        )
    for title, edges, side in (
        ("Called by", found.callers, "caller"),
        ("Calls", found.callees, "callee"),
    ):
        if edges:
            names = sorted({f"{getattr(e, side + '_function')} ({getattr(e, side + '_file')})"
                            for e in edges})  # fmt: skip
            sections.append(f"{title}: " + ", ".join(names[:30]))
    if found.observations:
        sections.append(
            "Observations:\n" + "\n".join(f"- {hit_line(h)}" for h in found.observations)
        )
    if found.learnings:
        sections.append("Learnings:\n" + "\n".join(f"- {hit_line(h)}" for h in found.learnings))
    if not sections:
        return f"The memory knows nothing about {clip(name, 120)}."
    return "\n\n".join([f"What the memory knows about {clip(name, 120)}:", *sections])
