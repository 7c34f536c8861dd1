"""The memory context a new session starts with: short, deterministic Markdown.

Each section has a token budget (tokens counted as characters / 4) and gives up whole lines
when it is full; a section with nothing to say is left out. The whole answer also stays
under Claude Code's 10,000-byte limit for SessionStart context.

With ``since`` (a resumed session, whose conversation already holds the context it got then)
only what was added after that moment is told, and nothing when nothing was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.settings import Config

if TYPE_CHECKING:
    from datasette_claude_mem.storage.models import FunctionMapEntry
    from datasette_claude_mem.storage.store import Store

MAX_BYTES = 9_500

# The context's sections in the order they appear: the key (the settings' budget, the JSON
# answer's `sections`) and the Markdown heading each one has.
SECTIONS = (
    ("session_index", "Recent sessions"),
    ("learnings", "Learnings"),
    ("function_map", "Recently changed functions"),
    ("call_graph", "Callers of changed functions"),
    ("observations", "Recent observations"),
)


def tokens(text: str) -> int:
    """Rough token count (characters / 4, rounded up): cheap, and good enough for budgets
    and stats; the context's budgets and the compressors' counts both use it."""
    return (len(text) + 3) // 4


@dataclass
class Context:
    project: str
    markdown: str
    sections: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return tokens(self.markdown)

    def with_tools_line(self, session_id: str | None = None) -> str:
        """The Markdown as SessionStart gives it: closed by the line that tells the agent
        how to ask the memory more (the MCP tools) and which session to name."""
        if not self.markdown:
            return ""
        return f"{self.markdown}\n\n{tools_line(self.project, session_id)}"

    def as_json(self) -> dict:
        return {
            "project": self.project,
            "markdown": self.markdown,
            "tokens": self.tokens,
            "bytes": len(self.markdown.encode("utf-8")),
            "sections": self.sections,
        }


def tools_line(project: str, session_id: str | None = None) -> str:
    """One line naming the MCP tools and the order that keeps answers small."""
    scope = f'session_id="{session_id}"' if session_id else f'project="{_clip(project, 200)}"'
    return (
        "Ask the memory more with the claude-mem MCP tools: search → timeline → get "
        "(each answer lists the ids the next one takes), about (a file or function), "
        f"remember, forget, context; pass {scope}."
    )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fit(title: str, lines: list[str], budget_tokens: int) -> str | None:
    """The heading and as many whole lines as fit in the budget."""
    if not lines:
        return None
    chosen = [f"## {title}"]
    for line in lines:
        if tokens("\n".join([*chosen, line])) > budget_tokens:
            break
        chosen.append(line)
    return "\n".join(chosen) if len(chosen) > 1 else None


def _day(value: object) -> str:
    return str(value)[:16].replace("T", " ")


def _sessions(store: Store, project: str, exclude: str | None, since: str | None) -> list[str]:
    lines = []
    for s in store.list_sessions(project=project, limit=15, since=since):
        if s.id == exclude:
            continue
        what = s.summary or store.first_prompt(s.id) or "no summary"
        lines.append(
            f"- {_day(s.started_at.isoformat())} · {s.status} · "
            f"{s.observation_count} obs · `{s.id}`: {_clip(what, 140)}"
        )
    return lines


def _functions(changed: list[FunctionMapEntry]) -> list[str]:
    return [
        f"- {f.change_type}: `{f.file_path}` `{f.qualified_name}`"
        + (f" — {_clip(f.signature, 80)}" if f.signature else "")
        for f in changed
    ]


STALE_MARK = "(stale: its code changed since) "


def _current_first(store: Store, kind: str, items: list[Any]) -> list[tuple[Any, str]]:
    """Items with a mark for those about code changed since, which go after the rest."""
    stale = store.stale_ids(kind, [item.id for item in items])
    marked = [(item, STALE_MARK if item.id in stale else "") for item in items]
    return sorted(marked, key=lambda pair: bool(pair[1]))


def _learnings(store: Store, project: str, since: str | None) -> list[str]:
    found = store.active_learnings(project, limit=30, since=since)
    return [
        f"- {mark}[{item.category}, {item.confidence:.2f}] {_clip(item.content, 200)}"
        for item, mark in _current_first(store, "learning", found)
    ]


def _observations(
    store: Store, project: str, since: str | None, current_session: str | None
) -> list[str]:
    # A resumed session already knows what it did itself.
    other = current_session if since is not None else None
    found = store.recent_observations(project, limit=30, since=since, other_than_session=other)
    return [
        f"- {mark}{_day(o.created_at.isoformat())} {f'[{o.type}] ' if o.type else ''}"
        f"{_clip(o.title, 80)}: {_clip(o.summary, 160)}"
        for o, mark in _current_first(store, "observation", found)
    ]


def _call_graph(store: Store, project: str, changed: list[FunctionMapEntry]) -> list[str]:
    lines = []
    seen = set()
    for f in changed[:10]:
        if f.change_type == "deleted" or f.qualified_name in seen:
            continue
        seen.add(f.qualified_name)
        callers = store.callers(project, f.qualified_name, f.file_path)
        if callers:
            names = ", ".join(f"`{e.caller_function}`" for e in callers[:6])
            lines.append(f"- `{f.qualified_name}` is called by {names}")
    return lines


def build_context(
    store: Store,
    project: str,
    *,
    config: Config | None = None,
    current_session: str | None = None,
    since: str | None = None,
) -> Context:
    """The context of a project; with ``since``, only what is newer than that moment."""
    budget = (config or Config()).context_budget
    # One scan of the function map serves both its section and the call graph's.
    changed = store.changed_functions(project, limit=40, since=since)
    lines = {
        "session_index": _sessions(store, project, current_session, since),
        "learnings": _learnings(store, project, since),
        "function_map": _functions(changed),
        "call_graph": _call_graph(store, project, changed),
        "observations": _observations(store, project, since, current_session),
    }
    parts = []
    counts = {}
    for key, title in SECTIONS:
        text = _fit(title, lines[key], budget[key])
        if text:
            parts.append(text)
            counts[key] = tokens(text)
    if not parts:
        return Context(project=project, markdown="", sections={})
    header = f"# Memory of {_clip(project, 200)}"
    if since is not None:
        header += f" (new since {_day(since)} UTC)"
    markdown = _cap_bytes("\n\n".join([header, *parts]), MAX_BYTES)
    return Context(project=project, markdown=markdown, sections=counts)


def _cap_bytes(markdown: str, limit: int) -> str:
    """Whole lines up to ``limit`` UTF-8 bytes, without a heading left with nothing under it.

    Cutting the encoded text once (rather than dropping a line at a time until it fits) is
    linear, and ends even when a single line is longer than the limit.
    """
    data = markdown.encode("utf-8")
    if len(data) <= limit:
        return markdown
    head = data[:limit].decode("utf-8", errors="ignore")
    if data[limit : limit + 1] != b"\n":
        head = head.rsplit("\n", 1)[0] if "\n" in head else head
    lines = head.rstrip("\n").split("\n")
    while len(lines) > 1 and (lines[-1].startswith("#") or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)
