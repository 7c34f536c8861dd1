"""Compression with a language model, through the `llm` library, within a daily token budget.

`LLMCompressor` is a drop-in for the worker's default compressor: it asks a model (any model
`llm` knows, local or remote) to turn one tool use into a JSON record of title, summary,
detail and functions changed. Every call's cost lands in the event log as an `llm_compress`
event (tokens in and out), and the budget is counted from those rows since UTC midnight.

The budget is never overspent on purpose: before a call, its cost is estimated (prompt
characters / 4 plus the output allowance) and the worker loop reserves it in the same write
transaction that counts what was spent, so two workers on one file cannot both take the last
of it. A call that does not fit is compressed by the default, offline compressor instead,
and its result says so. The reservation is settled by the call's `llm_compress` event, with
the usage the model reports (or characters / 4 when it reports none), which the loop writes
with the item's result; a reservation never settled (its worker died mid-call) counts in
full until midnight. The compressor itself never writes: it asks (`reservation`) and
returns (`LLMCompressed.log`, `Failure.log`), and the loop writes (worker/loop.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from string import Template
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.kinds import ObservationType
from datasette_claude_mem.storage.models import QueueItem
from datasette_claude_mem.worker.compress import (
    DETAIL_MAX,
    SUMMARY_MAX,
    TITLE_MAX,
    Compressed,
    as_text,
    estimate_tokens,
    files_from_tool_input,
)
from datasette_claude_mem.worker.loop import (
    DefaultCompressor,
    Failure,
    Grant,
    LogRecord,
    Reservation,
    budget_spent,
)
from datasette_claude_mem.worker.session_summary import (
    facts_of,
    is_summary,
    labelled,
    summarise,
)

if TYPE_CHECKING:
    from datasette_claude_mem.storage.store import Store

__all__ = [
    "DEFAULT_PROMPT",
    "EVENT",
    "RESERVE_EVENT",
    "LLMCompressed",
    "LLMCompressor",
    "LLMUnavailable",
    "head_and_tail",
    "parse_answer",
]

EVENT = "llm_compress"
RESERVE_EVENT = "llm_compress_reserved"
INSTALL_HINT = "pip install 'datasette-claude-mem[llm]'"

MAX_OUTPUT_TOKENS = 1024
MAX_RAW_CHARS = 20_000  # of the tool's output shown to the model: head and tail
MAX_INPUT_CHARS = 4_000  # of the tool's input (an Edit's strings, a Write's content)
_NAMES_MAX = 100

# A string.Template: $request, $tool_name, $files, $tool_input, $output_note, $tool_output and
# $types are filled in; braces need no escaping, and an unknown $word is left as it is.
DEFAULT_PROMPT = """\
You compress one tool call made by an AI coding agent into a short memory record that a \
later session will read instead of the full output. Keep what matters: what was done, to \
which files, the outcome (errors, test results, exit status) and which functions or classes \
changed. Leave out bulk such as file contents and long logs.

The person asked: $request
Tool: $tool_name
Files: $files
Input:
$tool_input

Output ($output_note):
$tool_output

Answer with one JSON object and nothing else:
{"title": "one line, at most 100 characters", "summary": "two or three sentences", \
"detail": "key facts, error messages or names worth keeping, or null", \
"functions_changed": ["qualified names of functions or classes changed, if any"], \
"type": "what the call was for, one of: $types"}
A test run is "test" whether it passed or failed; "failure" is any other call that failed; \
reading or listing is "discovery".
"""

_TYPES = frozenset(ObservationType)

# A string.Template for a session's summary: $facts and $draft are filled in.
SUMMARY_PROMPT = """\
You write the summary of one session of an AI coding agent, for the agent's next session \
and for the person who reads it later. Be short and concrete: the files, functions and \
tests by name, and how the tests ended.

What the memory recorded (JSON):
$facts

A draft made without a model:
$draft

Answer with one JSON object and nothing else:
{"request": "what the person asked, one sentence", \
"done": "what was done, one or two sentences", "files_changed": ["paths"], \
"functions_changed": ["names"], "tests": "the tests run and how they ended, or null", \
"open": "what is left open, or null"}
"""


# The loop's default compressor: what an item gets without the model.
_offline = DefaultCompressor()


_FENCE_RE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)```", re.DOTALL)


class LLMUnavailable(RuntimeError):
    """The llm library is not installed, or the model cannot be found."""


def _import_llm() -> Any:
    try:
        import llm
    except ImportError as error:
        raise LLMUnavailable(
            f"Compressing with a language model needs the llm library: {INSTALL_HINT}"
        ) from error
    return llm


@dataclass
class LLMCompressed(Compressed):
    """A compression, and whether a model made it or the offline fallback did (and why)."""

    compressor: str = "llm"
    model: str | None = None
    fallback_reason: str | None = None
    log: list[LogRecord] = field(default_factory=list)  # for the loop to write


def head_and_tail(text: str, limit: int) -> tuple[str, bool]:
    """At most about `limit` characters of text: its head and its tail, with a marker."""
    if len(text) <= limit:
        return text, False
    tail = limit // 3
    head = limit - tail
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}", True


def parse_answer(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer: bare, in a fenced block, or amid prose."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE_RE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the model's answer holds no JSON object")


def _one_line(value: Any, limit: int) -> str:
    line = " ".join(as_text(value).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _capped(value: Any, limit: int) -> str:
    text = as_text(value).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    names = (_one_line(v, 200) for v in value if isinstance(v, str | int | float))
    return list(dict.fromkeys(n for n in names if n))[:_NAMES_MAX]


class LLMCompressor:
    """Compress queue items with an `llm` model, falling back to the default compressor."""

    name = "llm"

    def __init__(
        self,
        store: Store,
        model_id: str | None = None,
        *,
        prompt_template: str | None = None,
        system: str | None = None,
        daily_token_budget: int | None = None,
        max_output_tokens: int = MAX_OUTPUT_TOKENS,
        max_raw_chars: int = MAX_RAW_CHARS,
        max_input_chars: int = MAX_INPUT_CHARS,
        options: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        llm = _import_llm()
        config = Config()
        self.store = store
        self.model_id = model_id or config.compression_model or llm.get_default_model()
        try:
            self.model = llm.get_model(self.model_id)
        except llm.UnknownModelError as error:
            raise LLMUnavailable(
                f"llm knows no model {self.model_id!r}: install its plugin "
                f"(llm install ...) or see `llm models`"
            ) from error
        self.prompt_template = Template(prompt_template or DEFAULT_PROMPT)
        self.system = system
        if daily_token_budget is None:
            daily_token_budget = config.compression_daily_token_budget
        self.daily_token_budget = int(daily_token_budget)
        self.max_output_tokens = int(max_output_tokens)
        self.max_raw_chars = int(max_raw_chars)
        self.max_input_chars = int(max_input_chars)
        self.options = dict(options or {})
        fields = getattr(getattr(self.model, "Options", None), "model_fields", {}) or {}
        # Hold the model to the output allowance when it has an option for it.
        for cap in ("max_tokens", "max_output_tokens"):
            if cap in fields and cap not in self.options:
                self.options[cap] = self.max_output_tokens
                break
        self.key = key
        self._needs_key_error = getattr(llm, "NeedsKeyException", ())

    # The prompt

    def build_prompt(self, item: QueueItem) -> str:
        if is_summary(item):
            facts = facts_of(item)
            shown, _ = head_and_tail(
                json.dumps(facts, ensure_ascii=False, indent=1), self.max_raw_chars
            )
            return Template(SUMMARY_PROMPT).safe_substitute(facts=shown, draft=summarise(facts))
        raw, truncated = head_and_tail(item.raw_output or "", self.max_raw_chars)
        tool_input, _ = head_and_tail(
            json.dumps(item.tool_input or {}, ensure_ascii=False, indent=1, default=str),
            self.max_input_chars,
        )
        note = f"{len(item.raw_output or '')} characters"
        if truncated:
            note += f", shown as its first and last {self.max_raw_chars} or so"
        if item.truncated:
            note += "; it was cut short before it reached the queue"
        if item.failure:
            note += f"; the tool use failed ({item.failure}): this is its error, not its output"
        request, _ = head_and_tail(item.prompt or "(not known)", 600)
        return self.prompt_template.safe_substitute(
            request=request,
            types=", ".join(ObservationType),
            tool_name=item.tool_name,
            files=", ".join(item.files_touched) or "(none)",
            tool_input=tool_input,
            output_note=note,
            tool_output=raw or "(empty)",
        )

    def estimate(self, prompt: str) -> tuple[int, int]:
        """Tokens this call may spend: (prompt in, the whole allowance out)."""
        return estimate_tokens(prompt + (self.system or "")), self.max_output_tokens

    # The budget

    def spent_today(self) -> int:
        """Tokens spent since UTC midnight, counting calls still under way at their estimate
        (read from the store the compressor was made with)."""
        return budget_spent(self.store, EVENT, RESERVE_EVENT)

    def remaining_today(self) -> int:
        return max(self.daily_token_budget - self.spent_today(), 0)

    def reservation(self, item: QueueItem) -> Reservation:
        """What this item's call would take from today's budget, for the loop to reserve."""
        estimate_in, allowance = self.estimate(self.build_prompt(item))
        return Reservation(
            RESERVE_EVENT,
            EVENT,
            estimate_in + allowance,
            self.daily_token_budget,
            {"model": self.model_id},
        )

    def _settled(
        self,
        grant: Grant,
        item: QueueItem,
        *,
        tokens_in: int,
        tokens_out: int,
        started: float,
        reported: bool,
        error: str | None = None,
    ) -> LogRecord:
        """The event that settles a reservation, for the loop to log."""
        data: dict[str, Any] = {
            "model": self.model_id,
            "queue_item_id": item.id,
            "tool_name": item.tool_name,
            "reservation": grant.reservation_id,
            "estimate": grant.estimate,
            "usage_reported": reported,
        }
        if error is not None:
            data["error"] = error[:500]
        return LogRecord(
            EVENT,
            data,
            duration_ms=round((time.perf_counter() - started) * 1000),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )

    # Compression

    def _tokens_raw(self, item: QueueItem) -> int:
        tool_input = json.dumps(item.tool_input or {}, ensure_ascii=False, default=str)
        return estimate_tokens(tool_input + (item.raw_output or ""))

    def fallback(self, item: QueueItem, reason: str) -> LLMCompressed:
        """The default, offline compression, marked as made without the model and why."""
        done = _offline(item)
        note = f"[compressed offline, not by {self.model_id}: {reason}]"
        detail = f"{done.detail}\n{note}" if done.detail else note
        return LLMCompressed(
            title=done.title,
            summary=done.summary,
            detail=detail,
            files_touched=done.files_touched or list(item.files_touched),
            functions_changed=done.functions_changed,
            tokens_raw=done.tokens_raw,
            tokens_compressed=estimate_tokens(done.title + done.summary + detail),
            type=done.type,
            compressor="default",
            model=None,
            fallback_reason=reason,
        )

    def __call__(self, item: QueueItem, grant: Grant | None = None) -> LLMCompressed:
        """Compress with the model if the loop reserved the tokens (`grant`), else offline."""
        prompt = self.build_prompt(item)
        if grant is None:
            estimate = sum(self.estimate(prompt))
            return self.fallback(
                item,
                f"the daily token budget ({self.daily_token_budget}) has no room for this "
                f"call's {estimate} tokens",
            )
        estimate_in = self.estimate(prompt)[0]
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = dict(self.options)
            if self.key is not None:
                kwargs["key"] = self.key
            response = self.model.prompt(prompt, system=self.system, stream=False, **kwargs)
            text = response.text()
            usage = response.usage()
        except Exception as error:
            # A call refused for want of a key sent nothing; any other may have been billed.
            sent = not isinstance(error, self._needs_key_error)
            message = f"{type(error).__name__}: {error}"
            settled = self._settled(
                grant,
                item,
                tokens_in=estimate_in if sent else 0,
                tokens_out=0,
                started=started,
                reported=False,
                error=message,
            )
            if item.attempts >= item.max_attempts:
                # The last attempt: an offline observation beats a dead letter.
                done = self.fallback(item, f"the model failed ({type(error).__name__})")
                done.log.append(settled)
                return done
            raise Failure(message, [settled]) from error
        reported = usage.input is not None or usage.output is not None
        tokens_in = usage.input if usage.input is not None else estimate_tokens(prompt)
        tokens_out = usage.output if usage.output is not None else estimate_tokens(text)
        settled = self._settled(
            grant,
            item,
            tokens_in=int(tokens_in),
            tokens_out=int(tokens_out),
            started=started,
            reported=reported,
        )
        try:
            answer = parse_answer(text)
        except ValueError:
            done = self.fallback(item, "the model's answer was not JSON")
        else:
            done = self._result(item, answer)
        done.log.append(settled)
        return done

    def _result(self, item: QueueItem, answer: dict[str, Any]) -> LLMCompressed:
        if is_summary(item):
            text = labelled(answer, summarise(facts_of(item)))
            return LLMCompressed(
                title="Session summary",
                summary=text,
                detail=None,
                tokens_raw=self._tokens_raw(item),
                tokens_compressed=estimate_tokens(text),
                compressor="llm",
                model=self.model_id,
            )
        title = _one_line(answer.get("title"), TITLE_MAX)
        summary = _capped(answer.get("summary"), SUMMARY_MAX)
        detail = _capped(answer.get("detail"), DETAIL_MAX) or None
        kind = answer.get("type")
        kind = kind.strip().lower() if isinstance(kind, str) else None
        offline = _offline(item) if not title or kind not in _TYPES else None
        if not title and offline is not None:
            title = offline.title
        files = list(item.files_touched) or files_from_tool_input(
            item.tool_name, item.tool_input or {}
        )
        return LLMCompressed(
            title=title,
            summary=summary,
            detail=detail,
            files_touched=files,
            functions_changed=_names(answer.get("functions_changed")),
            tokens_raw=self._tokens_raw(item),
            tokens_compressed=estimate_tokens(title + summary + (detail or "")),
            # The model's type when it gave one of ours, else the offline one.
            type=kind if kind in _TYPES else offline.type if offline is not None else None,
            compressor="llm",
            model=self.model_id,
        )
