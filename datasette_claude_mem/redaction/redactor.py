"""Strip private text and secrets from anything before it is written to the memory database.

Everything an agent sees (tool output, commands, file contents) may end up in the database and
from there in prompts, pages and exports, so this runs on every write path, on texts of up to
a megabyte. Two passes, in order:

1. ``<private>...</private>`` blocks (any case, nested, or unclosed to the end of the text)
   become ``[private]``.
2. Secrets become ``[REDACTED:<kind>]``. Where a secret sits in a ``key = value`` shape the key
   is kept and only the value goes, so the stored text still says what was there.

The rules themselves (keys.py, tokens.py, contexts.py) and the engine (scrub.py) are standard
library only, so the command hook script redacts with the very same rules before it spools.

Speed: Python's ``re`` is quick only when a pattern starts with a literal, because then it can
skip straight to candidate positions. Every rule is therefore found through a literal (``sk-``,
``ghp_``, ``://``, a lower-cased ``token``...) and only then checked in full; rules that are
case-insensitive search an ASCII-lowered copy with the same indices. Even so, one scan per
rule adds up over a megabyte, so each rule also declares the literals it cannot match
without, and here one RE2 set scan of the lowered copy (about as dear as three ``re`` scans)
picks the rules worth running. Ordinary prose then costs that scan alone; code, which is full
of ``key`` and ``://``, still runs the few rules those words let through.

Markers never match any rule, so redacting twice gives the same text as redacting once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import re2

from datasette_claude_mem.redaction.keys import (
    KINDS,
    PRIVATE_MARKER,
    fold,
    is_secret_key,
    marker,
)
from datasette_claude_mem.redaction.scrub import (
    BUILTIN_RULES,
    PRIVATE_LITERAL,
    PRIVATE_TAG,
    Scrubber,
    strip_private,
)
from datasette_claude_mem.redaction.tokens import Rule

__all__ = [
    "DEFAULT",
    "KINDS",
    "PRIVATE_MARKER",
    "Redactor",
    "is_secret_key",
    "marker",
    "redact",
    "redact_value",
    "strip_private",
]

# The names the gate's tests reach for.
_BUILTIN_RULES = BUILTIN_RULES
_fold = fold


def _compile_gate(rules: Sequence[Rule]) -> tuple[re2.Set, tuple[int, ...]]:
    """One RE2 set of every rule's literals, and the rule index of each of its patterns."""
    gate = re2.Set.SearchSet()
    owners: list[int] = []
    for index, rule in enumerate(rules):
        for literal in rule.literals:
            gate.Add(re2.escape(literal))
            owners.append(index)
    gate.Add(re2.escape(PRIVATE_LITERAL))
    owners.append(PRIVATE_TAG)
    gate.Compile()
    return gate, tuple(owners)


_GATE, _GATE_OWNERS = _compile_gate(BUILTIN_RULES)


def _present(folded: str) -> set[int]:
    """Indices of the rules whose literals occur in ``folded``: the only ones that can match.

    A single pass for all rules; ``folded`` is ASCII, so RE2 gets its bytes as they are.
    """
    found = _GATE.Match(folded.encode("ascii"))
    return {_GATE_OWNERS[i] for i in found} if found is not None else set()


class Redactor(Scrubber):
    """The engine with the RE2 gate: what the server redacts every write with."""

    __slots__ = ()

    def present(self, folded: str) -> set[int]:
        return _present(folded)


#: The redactor without extra patterns.
DEFAULT = Redactor()


@functools.lru_cache(maxsize=32)
def _redactor_for(patterns: tuple[str | re.Pattern[str], ...]) -> Redactor:
    return Redactor(patterns)


def redact(text: str, extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> str:
    """Remove private blocks and secrets from ``text`` (see the module docstring)."""
    if not extra_patterns:
        return DEFAULT.text(text)
    return _redactor_for(tuple(extra_patterns)).text(text)


def redact_value(value: Any, extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> Any:
    """Redact every string inside nested dicts, lists and tuples; other scalars pass through."""
    if not extra_patterns:
        return DEFAULT.value(value)
    return _redactor_for(tuple(extra_patterns)).value(value)
