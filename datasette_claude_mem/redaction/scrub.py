"""The redaction engine: private blocks, then the rules, over a text or over a whole structure.

Standard library only: the command hook script loads it to redact events before it spools
them, and the server's Redactor (redactor.py) is this engine with an RE2 gate in front.

Structures are redacted value by value, never as their JSON encoding (where an escaped
newline's "n" would run into the next line's key). A key that names a secret (``password``,
``api_key``, ``Authorization``...) has its value redacted whatever the value looks like; a
list of strings (a patch's lines, a file as lines) is scanned as one text, so that a key
split over lines is still found. Each rule stops at a line break, bar the multi-line shapes
(PEM blocks, .netrc entries), so one scan of a text is a scan of each of its lines too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from datasette_claude_mem.redaction.contexts import CONTEXT_RULES
from datasette_claude_mem.redaction.keys import (
    KINDS,
    ONLY_MARKERS_RE,
    PRIVATE_MARKER,
    fold,
    is_authorization_key,
    key_kind,
    marker,
)
from datasette_claude_mem.redaction.tokens import TOKEN_RULES, Rule

# typing stays unimported at run time (the annotations are strings): the hook script loads this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Every built-in rule, in the order they run.
BUILTIN_RULES: tuple[Rule, ...] = TOKEN_RULES + CONTEXT_RULES
ALL_RULES = frozenset(range(len(BUILTIN_RULES)))

# Only a real tag, <private> or <private attr="...">, so that code mentioning "<PRIVATE|"
# does not open a block that would swallow the rest of the text.
_PRIVATE_TAG = re.compile(r"<(/?)private(?:\s[^<>]*)?>", re.IGNORECASE)


def strip_private(text: str, counts: dict[str, int] | None = None) -> str:
    """Replace each outermost private block with a marker, tracking nesting depth.

    A depth counter (rather than a lazy regex) keeps the inner closing tag of a nested block
    from ending the outer one early and leaking the text between them.
    """
    out: list[str] = []
    depth = 0
    last = 0  # start of the text not yet copied
    block_start = 0
    for m in _PRIVATE_TAG.finditer(text):
        if m.group(1) != "/":
            if depth == 0:
                block_start = m.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                out.append(text[last:block_start])
                out.append(PRIVATE_MARKER)
                last = m.end()
        # A stray closing tag outside any block is ordinary text; leave it.
    if depth > 0:
        # Unclosed: the author meant everything after the tag to stay private.
        out.append(text[last:block_start])
        out.append(PRIVATE_MARKER)
        last = len(text)
    if not out:
        return text
    if counts is not None:
        counts["private"] = counts.get("private", 0) + out.count(PRIVATE_MARKER)
    out.append(text[last:])
    return "".join(out)


# What the gate reports, beside rule indices, when a private block may begin in the text.
PRIVATE_TAG = -1
PRIVATE_LITERAL = "<private"


def literal_present(folded: str) -> set[int]:
    """Indices of the rules whose literals occur in ``folded``: the only ones that can match
    (and PRIVATE_TAG if a private block may begin)."""
    found = {
        index
        for index, rule in enumerate(BUILTIN_RULES)
        if any(literal in folded for literal in rule.literals)
    }
    if PRIVATE_LITERAL in folded:
        found.add(PRIVATE_TAG)
    return found


# The rules whose literals a marker itself contains ("key" in "[REDACTED:private_key]"...).
MARKER_RULES = frozenset(literal_present(fold("\n".join(marker(kind) for kind in KINDS))))
assert PRIVATE_TAG not in MARKER_RULES

# Numbers under a secret-named key are kept when short: counts, ports and flags, not PINs.
_MIN_SECRET_DIGITS = 6


def _compile_extra(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid redaction pattern {pattern!r}: {exc}") from exc


def _add(counts: dict[str, int] | None, kind: str, n: int = 1) -> None:
    if counts is not None and n:
        counts[kind] = counts.get(kind, 0) + n


def secret_kind(key: str, value: Any) -> str | None:
    """The marker kind for ``value`` stored under ``key``, or None if the key is no secret's."""
    kind = key_kind(key)
    if kind is None and is_authorization_key(key):
        scheme = value.lstrip()[:6].lower() if isinstance(value, str) else ""
        if scheme.startswith("bearer"):
            return "bearer_token"
        return "basic_auth" if scheme.startswith("basic") else "secret"
    return kind


class Scrubber:
    """Applies the built-in rules plus any configured extra patterns, counting what it takes.

    Extra patterns (regex strings or compiled patterns) are for site-specific secrets such as
    internal token formats; each match becomes ``[REDACTED:custom]``. They run after private
    blocks are removed and before the built-in rules. Make sure they cannot match a marker,
    or redaction stops being idempotent.

    ``counts``, where given, gets one more for each marker put in, by kind (``private`` for a
    private block): what the event row and the dashboard show instead of the secrets.
    """

    __slots__ = ("_extra",)

    #: False runs every built-in rule, as a reference for testing the gate.
    _gated: bool = True

    def __init__(self, extra_patterns: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._extra: tuple[re.Pattern[str], ...] = tuple(_compile_extra(p) for p in extra_patterns)

    @property
    def extra_patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._extra

    def present(self, folded: str) -> set[int]:
        """The rules worth running on ``folded`` (the server's Redactor asks RE2 instead)."""
        return literal_present(folded)

    def text(self, text: str, counts: dict[str, int] | None = None) -> str:
        """Return ``text`` with private blocks and secrets replaced by markers."""
        if not isinstance(text, str):
            raise TypeError(f"redact() expects str, got {type(text).__name__}")
        if not text:
            return text
        folded: str | None = fold(text)
        # One gate scan says both which rules to run and whether a private tag is there.
        wanted = self.present(folded) if self._gated else set(ALL_RULES) | {PRIVATE_TAG}
        if PRIVATE_TAG in wanted:
            text = strip_private(text, counts)
            folded = None
        for pattern in self._extra:
            found = [0]

            def repl(m: re.Match[str], found: list[int] = found) -> str:
                # A pattern that can match the empty string must not sprinkle markers about.
                if not m.group(0):
                    return ""
                found[0] += 1
                return marker("custom")

            text = pattern.sub(repl, text)
            _add(counts, "custom", found[0])
            folded = None
        if folded is None and self._gated:
            folded = fold(text)
            wanted = self.present(folded)
        for index, rule in enumerate(BUILTIN_RULES):
            if index not in wanted:
                continue
            if rule.finders and folded is None:
                folded = fold(text)
            new = rule.apply(text, folded, counts)
            if new is not text:
                # A rule only puts markers in (or a span back as it was), and no literal holds
                # "[" or "]", so the only literals new to the text are those in the markers.
                text = new
                folded = None
                wanted |= MARKER_RULES
        return text

    def value(self, value: Any, counts: dict[str, int] | None = None) -> Any:
        """A copy of ``value`` with every string in it redacted; mapping keys are kept."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, dict):
            return {k: self._item(k, v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return self._sequence(value, counts)
        if isinstance(value, tuple):
            return tuple(self._sequence(list(value), counts))
        return value

    def _sequence(self, items: list[Any], counts: dict[str, int] | None) -> list[Any]:
        """Lines (strings without line breaks) are scanned together, as the text they were."""
        if len(items) > 1 and all(isinstance(i, str) and "\n" not in i for i in items):
            joined = "\n".join(items)
            cleaned = self.text(joined, counts)
            return list(items) if cleaned == joined else cleaned.split("\n")
        return [self.value(v, counts) for v in items]

    def _item(self, key: Any, value: Any, counts: dict[str, int] | None) -> Any:
        kind = secret_kind(key, value) if isinstance(key, str) else None
        if kind is None:
            return self.value(value, counts)
        return self._secret(value, kind, counts)

    def _secret(self, value: Any, kind: str, counts: dict[str, int] | None) -> Any:
        """A value under a secret-named key: gone, whatever it looks like, unless it is empty,
        already a marker, a reference (``$VAR``, ``{{ var }}``), a flag or a short number.
        A structure there is secret all through (``credentials: {...}``)."""
        if isinstance(value, dict):
            return {k: self._secret(v, kind, counts) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._secret(v, kind, counts) for v in value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            if len(str(abs(int(value)))) < _MIN_SECRET_DIGITS:
                return value
            _add(counts, kind)
            return marker(kind)
        if not isinstance(value, str):
            return value
        found: dict[str, int] = {}
        cleaned = self.text(value, found)
        if (
            not cleaned.strip()
            or ONLY_MARKERS_RE.fullmatch(cleaned)
            or cleaned.startswith(("$", "{{"))
        ):
            # Empty, already a marker (which keeps its more specific kind), or a reference to
            # a secret held elsewhere.
            for name, n in found.items():
                _add(counts, name, n)
            return cleaned
        _add(counts, kind)  # one secret, however many shapes its text had
        return marker(kind)
