"""The memory context a new session starts with: short, deterministic Markdown for an agent.

Sections come in the order of their worth to the next session: the last sessions' summaries
and the learnings (whole, as long as they fit), then the changes to code (per file, the
functions changed) and what failed, then the rest of the work; files that were only read,
searched or listed are folded into one "Also looked at" line, and the callers of changed
functions come last. Within a section an item marked stale (its code has changed since)
comes after the current ones. Every item carries its id and type, for the MCP `get`; paths
are relative to the project's root.

Each section has a token budget (settings `ctx_<key>`); what the sections leave unused goes
to those with more to say, in the order of their worth. The whole, the closing tools line
included, stays within the budgets' sum (2,000 tokens by default) less the estimate's
headroom (claude_code/tokens.py), and under Claude Code's 10,000-byte limit. A section
gives up whole lines when it is full, and one with nothing to say is left out.

With ``since`` (a resumed session, whose conversation already holds the context it got then)
only what was added after that moment is told, and nothing when nothing was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.claude_code.tokens import HEADROOM, tokens
from datasette_claude_mem.settings import Config

if TYPE_CHECKING:
    from datasette_claude_mem.storage.models import FunctionMapEntry, Observation
    from datasette_claude_mem.storage.store import Store

MAX_BYTES = 9_500

# The context's sections in the order they appear: the key (the settings' budget, the JSON
# answer's `sections`) and the Markdown heading each one has.
SECTIONS = (
    ("session_index", "Recent sessions"),
    ("learnings", "Learnings"),
    ("function_map", "Changes to code"),
    ("observations", "Failures and other work"),
    ("call_graph", "Callers of changed functions"),
)

EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
LOOK_TOOLS = frozenset({"Read", "Grep", "Glob", "LS"})
# Shell commands that only look: folded with the reads, never listed as work.
LOOK_COMMANDS = ("ls", "cat", "head", "tail", "find", "grep", "rg", "tree", "pwd", "wc")
# The longest a summary or learning may be: whole otherwise, as the issue asks.
WHOLE = 1_500
CHANGE_ORDER = ("modified", "new", "deleted")
# Put before what an item says when the code it is about has changed since.
STALE_MARK = "(stale: its code changed since) "


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


class _Paths:
    """Paths as the agent uses them: relative to the project's root (or, for a session
    started elsewhere, to its directory), in file lists and in free text alike; and which
    items to mark stale, which every section's lines need too."""

    def __init__(self, project: str, dirs: list[str]) -> None:
        roots = [project] + sorted(
            {d for d in dirs if d and not d.startswith(project.rstrip("/") + "/")},
            key=len,
            reverse=True,
        )
        self.prefixes = [r.rstrip("/") + "/" for r in roots if r.startswith("/")]
        self.roots = {r.rstrip("/") for r in roots}

    def file(self, path: str) -> str:
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return path[len(prefix) :]
        return "." if path.rstrip("/") in self.roots else path

    # Which rows are stale: set by build_context from storage/staleness.py.
    stale_ids: frozenset[str] = frozenset()

    def stale(self, item: Any) -> bool:
        return getattr(item, "id", None) in self.stale_ids

    def stale_last(self, items: list[Any]) -> list[Any]:
        return sorted(items, key=self.stale)  # stable: each group keeps its order

    def mark(self, item: Any) -> str:
        return STALE_MARK if self.stale(item) else ""

    def text(self, text: str) -> str:
        for prefix in self.prefixes:
            text = text.replace(prefix, "")
        for root in self.roots:
            if root.startswith("/"):
                text = text.replace(root, ".")
        return text


def kind(o: Observation) -> str:
    """An observation's type: its own when it has one, else what its tool says."""
    own = getattr(o, "type", None)
    if own:
        return str(own)
    text = f"{o.title} {o.summary}"
    if " failed" in text or "Outcome: tests failed" in text or o.title.startswith("Failed"):
        return "failure"
    if o.tool_name in EDIT_TOOLS:
        return "change"
    if _looks(o):
        return "discovery"
    if "pytest" in o.title or "tests:" in o.summary:
        return "test"
    return "change"


def _looks(o: Observation) -> bool:
    """A read, search or listing: it changed nothing."""
    if o.tool_name in LOOK_TOOLS:
        return True
    if o.tool_name != "Bash" or not o.title.startswith("Run: "):
        return False
    command = o.title.removeprefix("Run: ").split()
    return bool(command) and command[0] in LOOK_COMMANDS


def _fit(title: str, lines: list[str], budget_tokens: int) -> str | None:
    """The heading and as many whole lines as fit in the budget, in order."""
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


def _sessions(store: Store, found: list[Any], exclude: str | None, paths: _Paths) -> list[str]:
    lines = []
    for s in [s for s in found if s.id != exclude]:
        what = s.summary or store.first_prompt(s.id) or "no summary"
        # A labelled summary (Request:, Done:, ...) keeps its parts apart on one line.
        what = " · ".join(_tidy(line).strip() for line in what.splitlines() if line.strip())
        lines.append(
            f"- `{s.id}` [session] {_day(s.started_at.isoformat())} · {s.status} · "
            f"{s.observation_count} obs: {_clip(paths.text(what), WHOLE)}"
        )
    return lines


def _learnings(found: list[Any], paths: _Paths) -> list[str]:
    return [
        f"- `{item.id}` [learning: {item.category}, {item.confidence:.2f}] "
        f"{paths.mark(item)}{_clip(paths.text(item.content), WHOLE)}"
        for item in paths.stale_last(found)
    ]


def _latest(changed: list[FunctionMapEntry]) -> dict[str, dict[str, FunctionMapEntry]]:
    """Each file's changed functions, as last recorded (newest file first)."""
    files: dict[str, dict[str, FunctionMapEntry]] = {}
    for f in changed:
        files.setdefault(f.file_path, {}).setdefault(f.qualified_name, f)
    return files


def _changes(
    changed: dict[str, dict[str, FunctionMapEntry]], edits: list[Observation], paths: _Paths
) -> list[str]:
    """One line per file: the functions changed, and the edit that did it (its id)."""
    by_file: dict[str, list[Observation]] = {}
    for o in edits:
        for path in o.files_touched[:3] or [""]:
            by_file.setdefault(paths.file(path), []).append(o)
    lines = []
    for file in dict.fromkeys([*changed, *by_file]):
        if not file:
            continue
        functions = changed.get(file, {})
        parts = []
        for change in CHANGE_ORDER:
            names = [f"`{n}`" for n, f in functions.items() if f.change_type == change]
            if names:
                parts.append(f"{change} {', '.join(names[:12])}")
        line = f"- `{file}`: " + ("; ".join(parts) or "edited")
        # The newest edit still current tells what was done; stale ones are only named.
        made = paths.stale_last(by_file.get(file, []))
        if made:
            last = made[0]
            line += (
                f" — `{last.id}` [{kind(last)}] {paths.mark(last)}"
                f"{_clip(paths.text(last.summary), 200)}"
            )
            if len(made) > 1:
                line += " (also " + ", ".join(f"`{o.id}`" for o in made[1:4]) + ")"
        lines.append((bool(made) and paths.stale(made[0]), line))
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])]


def failed(o: Observation) -> bool:
    """A failure, or a test run that failed (typed `test` by what it was for)."""
    return (
        kind(o) == "failure"
        or o.title.startswith(("Bash failed", "Failed"))
        or ("Outcome: tests failed" in o.summary)
    )


# Runs of =, _ or - that test runners draw as rules: no word in them.
_RULES = re.compile(r"[=_-]{4,}")  # no \s* around it: that would backtrack on long blanks


def _tidy(text: str) -> str:
    return _RULES.sub("", text)


def _command(o: Observation) -> str:
    return o.title.split(": ", 1)[-1] if o.tool_name == "Bash" else ""


def _passed_later(observations: list[Observation]) -> set[str]:
    """Failed commands that the same command, run again later, got through: fixed since."""
    fixed, seen_ok = set(), set()
    for o in observations:  # newest first
        command = _command(o)
        if not command:
            continue
        if not failed(o):
            seen_ok.add(command)
        elif command in seen_ok:
            fixed.add(o.id)
    return fixed


def _work(others: list[Observation], looked: list[Observation], paths: _Paths, shown) -> list:
    """Failures first, then the rest of the work, newest first; then what was only read."""
    passed_later = _passed_later(others)
    ordered = sorted(others, key=lambda o: (paths.stale(o), not failed(o) or o.id in passed_later))
    lines = []
    for o in ordered:
        label = kind(o) + (", failed" if failed(o) and kind(o) != "failure" else "")
        label += ", passed later" if o.id in passed_later else ""
        lines.append(
            f"- `{o.id}` [{label}] {paths.mark(o)}{_clip(paths.text(o.title), 100)}: "
            f"{_clip(_tidy(paths.text(o.summary)), 240)}"
        )
    files = []
    for o in looked:
        files += [paths.file(p) for p in o.files_touched]
    files = [f for f in dict.fromkeys(files) if f not in shown and f != "."]
    if files:
        lines.append("- Also looked at: " + ", ".join(f"`{f}`" for f in files[:20]))
    return lines


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
    sessions = store.list_sessions(project=project, limit=15, since=since)
    paths = _Paths(project, [s.project_dir for s in sessions])
    # One scan of the function map serves the changes and the call graph.
    changed = store.changed_functions(project, limit=80, since=since)
    latest = _latest(changed)
    # A resumed session already knows what it did itself.
    other = current_session if since is not None else None
    observations = store.recent_observations(
        project, limit=60, since=since, other_than_session=other
    )
    # An edit is told with the file it changed; one that names no file is other work.
    edits = [
        o
        for o in observations
        if o.tool_name in EDIT_TOOLS and o.files_touched and kind(o) != "failure"
    ]
    looked = [o for o in observations if _looks(o) and kind(o) != "failure"]
    others = [o for o in observations if o not in edits and o not in looked]
    learnings = store.active_learnings(project, limit=30, since=since)
    paths.stale_ids = frozenset(
        store.stale_ids("observation", [o.id for o in observations])
    ) | frozenset(store.stale_ids("learning", [item.id for item in learnings]))
    changes = _changes(latest, edits, paths)
    shown = {line.split("`", 2)[1] for line in changes}
    lines = {
        "session_index": _sessions(store, sessions, current_session, paths),
        "learnings": _learnings(learnings, paths),
        "function_map": changes,
        "observations": _work(others, looked, paths, shown),
        "call_graph": _call_graph(store, project, changed),
    }
    header = f"# Memory of {_name(project)}"
    if since is not None:
        header += f" (new since {_day(since)} UTC)"
    # The tools line closes the context within the same total, and the estimate's error is
    # kept back so that Claude's own count stays within it too.
    room = int(sum(budget.values()) / (1 + HEADROOM))
    room -= tokens(header) + tokens(tools_line(project, current_session))
    texts = _allot(lines, budget, room)
    parts = [texts[key] for key, _ in SECTIONS if texts.get(key)]
    counts = {key: tokens(texts[key]) for key, _ in SECTIONS if texts.get(key)}
    if not parts:
        return Context(project=project, markdown="", sections={})
    markdown = _cap_bytes("\n\n".join([header, *parts]), MAX_BYTES)
    return Context(project=project, markdown=markdown, sections=counts)


def _allot(lines: dict[str, list[str]], budget: dict[str, int], room: int) -> dict[str, str]:
    """Each section's text: first within its own budget (all of them scaled to the room),
    then, in the order of their worth, the sections with more to say take what the others
    left unused."""
    scale = min(1.0, room / max(1, sum(budget.values())))
    texts: dict[str, str] = {}
    for key, title in SECTIONS:
        texts[key] = _fit(title, lines[key], int(budget[key] * scale)) or ""
    spare = room - sum(tokens(t) for t in texts.values() if t)
    for key, title in SECTIONS:
        before = tokens(texts[key]) if texts[key] else 0
        wider = _fit(title, lines[key], before + spare) or ""
        if wider:
            spare -= tokens(wider) - before
            texts[key] = wider
    return texts


def _name(project: str) -> str:
    """The project as a heading names it: its folder's name, not the machine's path."""
    name = project.rstrip("/").rsplit("/", 1)[-1] or project
    return _clip(name, 200)


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
