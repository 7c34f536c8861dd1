"""A session's summary: what was asked, what was done, what changed, how the tests went,
and what is left open, rebuilt at each Stop.

Stop queues a summary item (claude_code/events.py); the worker loop reads the session's
facts through the store just before the item is worked (`session_facts`), and the
compressor writes the summary from them: `summarise` offline, by default, or the LLM
compressor from the same facts. The loop then stores it as the session's summary, which is
searchable with the sessions.

The facts come from what the memory already holds: the session's prompts, the last assistant
message Stop carried, the typed observations and the function map's changes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.kinds import CHANGE_TOOLS, SUMMARY_ITEM_TOOL, ObservationType
from datasette_claude_mem.storage.models import QueueItem, QueueItemCreate
from datasette_claude_mem.worker.compress import Compressed, estimate_tokens
from datasette_claude_mem.worker.summary_text import (
    PYTEST_RE,
    compact_json,
    join_names,
    one_line,
    truncate_text,
)

if TYPE_CHECKING:
    from datasette_claude_mem.storage.store import Store

SUMMARY_TOOL = SUMMARY_ITEM_TOOL
SUMMARY_MAX = 2000
MESSAGE_KEY = "last_assistant_message"
FACTS_KEY = "facts"
# How much of a session the facts hold: a summary says the gist, never the whole log.
MAX_OBSERVATIONS = 400
MAX_PROMPTS = 50

_TESTS_RE = re.compile(r"tests: ([^;]+)")
_OUTCOME_RE = re.compile(r"Outcome: ([^;\[]+)")
# Sentences of the last message that say something is not finished.
_OPEN_RE = re.compile(
    r"\b(?:todo|left to|still (?:not|fails?|failing|need|needs|to|open)|not yet|not done|"
    r"not finished|unfinished|remaining|next steps?|"
    r"follow[- ]up|unresolved|could ?n[o']t|did ?n[o']t|does ?n[o']t|won'?t|blocked|"
    r"open question|needs? (?:to|more)|should (?:also|still))\b",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def summary_item(session_id: str, message: str) -> QueueItemCreate:
    """The queue item a Stop leaves for the worker: each Stop its own (a later Stop rebuilds
    the summary with what happened since)."""
    return QueueItemCreate(
        session_id=session_id,
        tool_name=SUMMARY_TOOL,
        tool_input={MESSAGE_KEY: message},
    )


def is_summary(item: QueueItem) -> bool:
    return item.tool_name == SUMMARY_TOOL


def _relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/" if root else ""
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def session_facts(store: Store, item: QueueItem) -> dict[str, Any]:
    """What the memory holds about the item's session, as plain JSON for the compressor."""
    session = store.get_session(item.session_id)
    root = session.project if session else ""
    # The session's request is its first prompt; a long session keeps its latest ones too.
    latest = store.query_events("UserPromptSubmit", item.session_id, limit=MAX_PROMPTS)[::-1]
    if len(latest) == MAX_PROMPTS:
        first = store.query_events("UserPromptSubmit", item.session_id, limit=1, oldest_first=True)
        if first and first[0].id != latest[0].id:
            latest = first + latest[1:]
    prompts = [
        str(event.data.get("prompt"))
        for event in latest
        if isinstance(event.data.get("prompt"), str)
    ]
    observations = [
        {
            "type": o.type,
            "tool": o.tool_name,
            "title": o.title,
            "summary": o.summary,
            "files": [_relative(path, root) for path in o.files_touched],
            "functions": list(o.functions_changed),
        }
        for o in store.latest_observations(item.session_id, limit=MAX_OBSERVATIONS)
    ]
    functions = []
    if session is not None:
        changed = store.changed_functions(session.project, item.session_id)
        # The latest row of each function says how the session left it.
        seen: set[tuple[str, str]] = set()
        for f in changed:
            if (f.file_path, f.qualified_name) not in seen:
                seen.add((f.file_path, f.qualified_name))
                functions.append(
                    {"file": f.file_path, "name": f.qualified_name, "change": str(f.change_type)}
                )
    return {
        "prompts": prompts,
        "message": str((item.tool_input or {}).get(MESSAGE_KEY) or ""),
        "observations": observations,
        "functions": sorted(functions, key=lambda f: (f["file"], f["name"])),
    }


def _request(prompts: list[str]) -> str | None:
    if not prompts:
        return None
    text = one_line(prompts[0], 240)
    if len(prompts) > 1:
        text += f" (then, of {len(prompts)} prompts: {one_line(prompts[-1], 160)})"
    return text


def _done(message: str, observations: list[dict[str, Any]]) -> str | None:
    counts: dict[str, int] = {}
    for o in observations:
        if o.get("type"):
            counts[o["type"]] = counts.get(o["type"], 0) + 1
    order = list(ObservationType)
    tally = ", ".join(
        f"{counts[t]} {t}" for t in sorted(counts, key=lambda t: order.index(ObservationType(t)))
    )
    said = ""
    if message.strip():
        sentences = [s for s in _SENTENCE_RE.split(message.strip()) if s.strip()]
        said = one_line(" ".join(sentences[:3]), 400)
    if said and tally:
        return f"{said} ({tally})"
    return said or (tally or None)


def _changed_files(observations: list[dict[str, Any]]) -> list[str]:
    files: list[str] = []
    for o in observations:
        if o.get("tool") in CHANGE_TOOLS and o.get("type") != ObservationType.FAILURE:
            files.extend(o.get("files") or [])
    return list(dict.fromkeys(files))


def _functions(facts: dict[str, Any], changed_files: list[str]) -> list[str]:
    """The function map's changes in the files the session changed (a file it only read says
    nothing changed), else the names its edits touched."""
    changed = set(changed_files)
    mapped = [f for f in facts.get("functions") or [] if f["file"] in changed]
    if mapped:
        return [f"{f['name']} ({f['change']})" for f in mapped]
    names: list[str] = []
    for o in facts.get("observations") or []:
        if o.get("tool") in CHANGE_TOOLS and o.get("type") != ObservationType.FAILURE:
            names.extend(o.get("functions") or [])
    return list(dict.fromkeys(names))


def _test_runs(observations: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Each test run: its command, its result, and whether it failed."""
    runs = []
    for o in observations:
        if o.get("type") != ObservationType.TEST or o.get("tool") != "Bash":
            continue
        summary = str(o.get("summary") or "")
        pytest = PYTEST_RE.search(summary)
        tests = _TESTS_RE.search(summary)
        outcome = _OUTCOME_RE.search(summary)
        result = (
            pytest.group(0)
            if pytest
            else tests.group(1)
            if tests
            else outcome.group(1)
            if outcome
            else summary
        ).strip()
        failed = bool(
            re.search(r"\b(?:failed|errors?|interrupted)\b", result)
            or (outcome and not outcome.group(1).strip().startswith("ok"))
            or summary.startswith("Failed:")
        )
        command = str(o.get("title") or "").removeprefix("Run:").strip()
        runs.append((command, one_line(result, 120) or "no result", failed))
    return runs


def _tests(runs: list[tuple[str, str, bool]]) -> str | None:
    if not runs:
        return None
    command, result, failed = runs[-1]
    text = f"{len(runs)} run{'s' if len(runs) != 1 else ''}; last `{one_line(command, 80)}`: "
    text += result + (" (failing)" if failed else "")
    earlier = [r for r in runs[:-1] if r[2]]
    if earlier and not failed:
        text += f"; had failed before ({earlier[-1][1]})"
    return text


def _open(message: str, runs: list[tuple[str, str, bool]], facts: dict[str, Any]) -> str:
    items: list[str] = []
    if runs and runs[-1][2]:
        items.append(f"the last test run failed ({runs[-1][1]})")
    observations = facts.get("observations") or []
    last_failure = max(
        (i for i, o in enumerate(observations) if o.get("type") == ObservationType.FAILURE),
        default=None,
    )
    if last_failure is not None and last_failure == len(observations) - 1:
        items.append(f"it ended on a failure: {one_line(observations[-1]['title'], 120)}")
    for line in _SENTENCE_RE.split(message):
        line = _BULLET_RE.sub("", line).strip()
        if line and _OPEN_RE.search(line):
            items.append(one_line(line, 200))
    items = list(dict.fromkeys(items))[:4]
    return "; ".join(items) if items else "nothing said to be left"


# The summary's lines, in order, and the key each has in a model's answer.
LABELS = (
    ("Request", "request"),
    ("Done", "done"),
    ("Files changed", "files_changed"),
    ("Functions changed", "functions_changed"),
    ("Tests", "tests"),
    ("Open", "open"),
)


def labelled(answer: dict[str, Any], draft: str) -> str:
    """A model's answer as the summary's labelled lines; a line it left out comes from the
    offline draft, so the model can only add to what the memory knows."""
    drafted = dict(line.split(": ", 1) for line in draft.splitlines() if ": " in line)
    lines = []
    for label, key in LABELS:
        value = answer.get(key) or (answer.get("summary") if key == "done" else None)
        if isinstance(value, list):
            value = join_names([one_line(str(v), 200) for v in value if v], 12)
        text = one_line(value, 600) if isinstance(value, str) else ""
        text = text or drafted.get(label, "")
        if text:
            lines.append(f"{label}: {text}")
    return truncate_text("\n".join(lines), SUMMARY_MAX)


def summarise(facts: dict[str, Any]) -> str:
    """The offline summary: one labelled line each, as short as the session allows."""
    observations = facts.get("observations") or []
    message = str(facts.get("message") or "")
    runs = _test_runs(observations)
    files = _changed_files(observations)
    values = (
        _request(facts.get("prompts") or []),
        _done(message, observations),
        join_names(files, 10) or None,
        join_names(_functions(facts, files), 12) or None,
        _tests(runs),
        _open(message, runs, facts),
    )
    lines = [f"{label}: {value}" for (label, _), value in zip(LABELS, values, strict=True) if value]
    return truncate_text("\n".join(lines), SUMMARY_MAX)


def facts_of(item: QueueItem) -> dict[str, Any]:
    facts = (item.tool_input or {}).get(FACTS_KEY)
    return (
        facts if isinstance(facts, dict) else {"message": (item.tool_input or {}).get(MESSAGE_KEY)}
    )


def with_facts(item: QueueItem, facts: dict[str, Any]) -> QueueItem:
    """The item with its session's facts, read just before it is worked."""
    return item.model_copy(update={"tool_input": {**(item.tool_input or {}), FACTS_KEY: facts}})


def compress_summary(item: QueueItem) -> Compressed:
    """The offline compressor's answer to a summary item."""
    facts = facts_of(item)
    text = summarise(facts)
    return Compressed(
        title="Session summary",
        summary=text,
        detail=None,
        tokens_raw=estimate_tokens(compact_json(facts)),
        tokens_compressed=estimate_tokens(text),
    )
