"""Strip private text and secrets from anything before it is written to the memory database.

Everything an agent sees (tool output, commands, file contents) may end up in the database and
from there in prompts, pages and exports, so this runs on every write path, on texts of up to
a megabyte. Two passes, in order:

1. ``<private>...</private>`` blocks (any case, nested, or unclosed to the end of the text)
   become ``[private]``.
2. Secrets become ``[REDACTED:<kind>]``. Where a secret sits in a ``key = value`` shape the key
   is kept and only the value goes, so the stored text still says what was there.

Speed: Python's ``re`` is quick only when a pattern starts with a literal, because then it can
skip straight to candidate positions. Every rule here is therefore found through a literal
(``sk-``, ``ghp_``, ``://``, a lower-cased ``token``...) and only then checked in full; rules
that are case-insensitive search an ASCII-lowered copy with the same indices. Even so, one
scan per rule adds up over a megabyte, so each rule also declares the literals it cannot match
without, and one RE2 set scan of the lowered copy (about as dear as three ``re`` scans) picks
the rules worth running. Ordinary prose then costs that scan alone; code, which is full of
``key`` and ``://``, still runs the few rules those words let through.

Markers never match any rule, so redacting twice gives the same text as redacting once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import re2

__all__ = [
    "KINDS",
    "PRIVATE_MARKER",
    "Redactor",
    "is_secret_key",
    "marker",
    "redact",
    "redact_value",
]

PRIVATE_MARKER = "[private]"

#: Every kind that can appear in a ``[REDACTED:<kind>]`` marker.
KINDS: tuple[str, ...] = (
    "private_key",
    "anthropic_key",
    "openai_key",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "google_api_key",
    "stripe_key",
    "jwt",
    "bearer_token",
    "basic_auth",
    "url_password",
    "password",
    "secret",
    "custom",
)


def marker(kind: str) -> str:
    """The replacement text for one secret of ``kind``."""
    return f"[REDACTED:{kind}]"


# One or more markers and nothing else (bar whitespace, also JSON-escaped): a value that has
# already been redacted.
_ONLY_MARKERS_RE = re.compile(
    r"(?:(?:\s|\\[nrt])*\[(?:REDACTED:[a-z0-9_]+|private)\])+(?:\s|\\[nrt])*"
)


def _fold(text: str) -> str:
    """Lower-case ``text`` without changing any index, for case-insensitive literal search.

    ``str.lower`` can lengthen a string (U+0130) and is slow on non-ASCII text; replacing each
    non-ASCII character by ``?`` first keeps one character per character and is fast.
    """
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


# ---------------------------------------------------------------------------------------------
# <private> blocks
# ---------------------------------------------------------------------------------------------

# Only a real tag, <private> or <private attr="...">, so that code mentioning "<PRIVATE|"
# does not open a block that would swallow the rest of the text.
_PRIVATE_TAG = re.compile(r"<(/?)private(?:\s[^<>]*)?>", re.IGNORECASE)


def _strip_private(text: str) -> str:
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
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Key names that mark their value as secret
# ---------------------------------------------------------------------------------------------

_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_PASSWORD_LAST = frozenset({"password", "passwd", "passphrase", "pass", "pw"})
_SECRET_LAST = frozenset({"secret", "token", "apikey", "secretkey", "accesskey", "privatekey"})
# "<x>_key" is only secret for these x; primary_key, cache_key, sort_key... are not.
_KEY_QUALIFIERS = frozenset(
    {"api", "access", "secret", "private", "signing", "encryption", "master", "client", "auth"}
)


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> str | None:
    """The marker kind for a value stored under ``key``, or None if the name is not secret.

    Judged on the last word of the name (snake, kebab, dotted or camel case), so that
    ``db_password`` and ``accessToken`` count but ``password_hash``, ``max_tokens`` and
    ``token_count`` do not.
    """
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    if not words:
        return None
    last = words[-1]
    if last == "key" and "secretaccesskey" in "".join(words):
        return "aws_secret_key"
    if last in _PASSWORD_LAST:
        return "password"
    if last in _SECRET_LAST:
        return "secret"
    if last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS:
        return "secret"
    return None


def _is_authorization_key(key: str) -> bool:
    return key.lower().endswith("authorization")


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a secret (``password``, ``api_key``, ``clientSecret``...)."""
    return _key_kind(key) is not None or _is_authorization_key(key)


# ---------------------------------------------------------------------------------------------
# Value heuristics: what is a reference to a secret, a type or prose rather than the secret
# ---------------------------------------------------------------------------------------------

# Language constants, type names and schema words, not credentials.
_NON_SECRET_WORDS = frozenset(
    {
        "none",
        "null",
        "nil",
        "true",
        "false",
        "undefined",
        "str",
        "string",
        "bytes",
        "int",
        "float",
        "bool",
        "dict",
        "list",
        "tuple",
        "object",
        "any",
        "optional",
        "secretstr",
        "secretbytes",
        "self",
        "cls",
        "required",
        "redacted",
    }
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_TYPE_NAME = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]*)*")
_PROSE_FOLLOWS = re.compile(r"[ \t]+[A-Za-z]")
_NAME_LIKE = re.compile(r"[A-Za-z][A-Za-z_\-]*")
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")
_SMALL_NUMBER = re.compile(r"-?[0-9]{1,3}")
_COLOR = re.compile(r"#(?:[0-9A-Fa-f]{3,4}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})")
_HAS_DIGIT = re.compile(r"[0-9]")


def _is_placeholder(value: str) -> bool:
    """Empty values, markers, variable references and template holes hide nothing."""
    if not value or not _HAS_ALNUM.search(value):
        return True
    if value[0] in "$%{<":
        return True
    return _ONLY_MARKERS_RE.fullmatch(value) is not None


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

# A rule's handler gets a match and returns (start, end, replacement), or None to leave it.
# start may lie before the match: patterns begin at a literal for speed and reach back with
# a lookbehind, so the handler widens the span to cover the whole secret.
Span = tuple[int, int, str]
Handler = Callable[[re.Match[str]], Span | None]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One secret shape.

    ``literals`` are lower-case ASCII strings, free of "[" and "]", at least one of which
    occurs in the folded text wherever the rule can change it; the gate (``_present``) skips
    the rule otherwise.
    Without ``finders``, ``pattern`` is searched over the text directly and must start with a
    literal. With ``finders`` (patterns over the folded text, each with the number of
    characters from the start of the word it looks for to the start of its own match),
    ``pattern`` is only tried at the word starts they report, and only where ``precheck``
    (if any) accepts the position; a cheap precheck keeps a long value from being rescanned
    for every hit inside it.

    A handler that returns the match's own text, unchanged, marks the span as examined so
    that later hits inside it are skipped.
    """

    name: str
    literals: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: Handler
    finders: tuple[tuple[re.Pattern[str], int], ...] = ()
    precheck: Callable[[str, int], bool] | None = None

    def apply(self, text: str, folded: str | None) -> str:
        pieces: list[str] = []
        last = 0
        if not self.finders:
            for m in self.pattern.finditer(text):
                span = self.handler(m)
                if span is not None and span[0] >= last:
                    pieces.append(text[last : span[0]])
                    pieces.append(span[2])
                    last = span[1]
        else:
            assert folded is not None
            hits = sorted(h.start() - back for f, back in self.finders for h in f.finditer(folded))
            precheck = self.precheck
            for pos in hits:
                if pos < last or (precheck is not None and not precheck(text, pos)):
                    continue
                m = self.pattern.match(text, pos)
                if m is None:
                    continue
                span = self.handler(m)
                if span is not None and span[0] >= last:
                    pieces.append(text[last : span[0]])
                    pieces.append(span[2])
                    last = span[1]
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)


def _whole(kind: str) -> Handler:
    """Handler that replaces the entire match."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span:
        return m.start(), m.end(), text

    return handle


# Characters that may continue a token. Used as a boundary on both sides, so that a prefix
# inside a longer word ("risk-", "flask-") is not read as the start of a key.
_TC = r"A-Za-z0-9_\-"

_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:"
    # The body never contains "-----", so the scan from one BEGIN stops at the next run of
    # dashes: an END line, or the next BEGIN. That keeps many unclosed blocks linear.
    r"(?:[^-]++|-(?!----))*+-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # Truncated (no END line, e.g. `head` output): take the whole base64 and header lines
    # that follow, whether the newlines are real or JSON-escaped. A blank line is taken only
    # when more base64 follows it (encrypted keys have one after their headers).
    r"|(?:(?:\\r)?(?:\\n|\r?\n)"
    r"(?:[ \t]*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+:[^\r\n\\]*)(?=[ \t]*(?:\r|\n|\\[rn]|\Z|\\?\"))"
    r"|(?=(?:\\r)?(?:\\n|\r?\n)[ \t]*[A-Za-z0-9+/=]+[ \t]*(?:\r|\n|\\[rn]|\Z))))*"
    r")",
)

# "sk-..." is Anthropic when followed by "ant-", otherwise OpenAI (sk-proj-, sk-svcacct-, and
# the older plain sk-). The scan starts at "k-" because "s" is too common a letter to start on.
_SK_RE = re.compile(rf"k-(?<=sk-)(?<![{_TC}]sk-)(?P<body>[{_TC}]{{20,}})")


def _sk_handler(m: re.Match[str]) -> Span | None:
    body = m.group("body")
    if body.startswith("ant-"):
        if len(body) < 24:
            return None  # too short to be a real key; not an OpenAI key either
        return m.start() - 1, m.end(), marker("anthropic_key")
    if not _HAS_DIGIT.search(body):
        return None  # hyphenated words after "sk-" ("sk-learn-compatible-estimators")
    return m.start() - 1, m.end(), marker("openai_key")


_A_RE = re.compile(
    r"A(?<![A-Za-z0-9]A)"
    rf"(?:(?P<aws>(?:KIA|SIA)[A-Z0-9]{{16}})(?![A-Za-z0-9])|(?P<google>Iza[{_TC}]{{35}})(?![{_TC}]))"
)


def _a_handler(m: re.Match[str]) -> Span | None:
    if m.group("google") is not None:
        if m.start() > 0 and m.string[m.start() - 1] in "_-":
            return None
        return m.start(), m.end(), marker("google_api_key")
    return m.start(), m.end(), marker("aws_access_key")


# GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_) and GitLab (glpat- and friends) share a
# scan from "g".
_GIT_RE = re.compile(
    rf"g(?<![{_TC}]g)(?:"
    r"(?P<github>h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{30,})"
    rf"|(?P<gitlab>l(?:pat|ptt|dt|rt|soat|cbt|ft|imt)-[{_TC}]{{20,}})"
    r")"
)


def _git_handler(m: re.Match[str]) -> Span:
    kind = "github_token" if m.group("github") is not None else "gitlab_token"
    return m.start(), m.end(), marker(kind)


_SLACK_TOKEN_RE = re.compile(rf"xox(?<![{_TC}]xox)[abposr]-[A-Za-z0-9\-]{{10,}}")
_SLACK_APP_RE = re.compile(rf"xapp-(?<![{_TC}]xapp-)[0-9]-[A-Za-z0-9\-]{{10,}}")
# sk_/rk_/pk_ + live_/test_; found from "k_" and reaching back one letter.
_STRIPE_RE = re.compile(r"k_(?<=[srp]k_)(?<![A-Za-z0-9_][srp]k_)(?:live|test)_[A-Za-z0-9]{10,}")
_STRIPE_WEBHOOK_RE = re.compile(r"whsec_(?<![A-Za-z0-9_]whsec_)[A-Za-z0-9]{20,}")
# header.payload.signature, each base64url; the header of any JWT starts with "eyJ" ('{"').
_JWT_RE = re.compile(rf"yJ(?<=eyJ)(?<![{_TC}]eyJ)[{_TC}]{{10,}}\.[{_TC}]{{10,}}\.[{_TC}]*")


def _back(n: int, kind: str) -> Handler:
    """Handler for patterns whose secret starts ``n`` characters before the match."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span:
        return m.start() - n, m.end(), text

    return handle


# scheme://user:password@host, found from "://"; the scheme stays where it is. The password
# runs to the last "@" before the path. Slack webhooks are URLs whose path is the secret.
_URL_RE = re.compile(
    r"://(?:"
    r"(?P<slack>hooks\.slack\.com/(?:services|workflows|triggers)/)(?P<hook>[A-Za-z0-9_/\-]+)"
    r"|(?P<user>[^\s:/@\"'<>\\]*):(?P<pw>[^\s/?#\"'<>\\]+)@(?=[A-Za-z0-9\[])"
    r")"
)


def _url_handler(m: re.Match[str]) -> Span | None:
    if m.group("slack") is not None:
        return m.start("hook"), m.end("hook"), marker("slack_webhook")
    if _is_placeholder(m.group("pw")):
        return None
    return m.start("pw"), m.end("pw"), marker("url_password")


# curl -u user:password / --user user:password
_CLI_USER_RE = re.compile(
    r"-(?<![\w\-]-)(?:u|-user)(?:[ \t]+|=)[\"']?(?P<user>[^\s:\"'@]+):(?P<pw>[^\s\"']+)"
)


def _cli_user_handler(m: re.Match[str]) -> Span | None:
    user, pw = m.group("user"), m.group("pw")
    if _is_placeholder(pw) or (user.isdigit() and pw.isdigit()):  # docker -u 1000:1000
        return None
    return m.start("pw"), m.end("pw"), marker("password")


# "Authorization: <scheme> <credential>" in headers, JSON and curl -H arguments. This and the
# rules below are only tried where their finders hit, so they may start with a lookbehind.
_AUTH_RE = re.compile(
    r"(?<![A-Za-z0-9_])(?i:authorization)"
    r"(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?"
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9_\-]*)[ \t]+)?(?P<cred>[^\s\"'\\,;]+)"
)
_AUTH_SCHEMES = {
    "bearer": "bearer_token",
    "basic": "basic_auth",
    "token": "secret",
    "digest": "secret",
    "apikey": "secret",
    "api-key": "secret",
    "key": "secret",
    "sso-key": "secret",
    "negotiate": "secret",
    "ntlm": "secret",
}


def _auth_handler(m: re.Match[str]) -> Span | None:
    cred = m.group("cred")
    if _is_placeholder(cred):
        return None
    scheme = m.group("scheme")
    kind = _AUTH_SCHEMES.get(scheme.lower()) if scheme else None
    if kind is None and not (len(cred) >= 8 and _HAS_DIGIT.search(cred)):
        return None  # prose such as "Authorization: required for ..."
    return m.start("cred"), m.end("cred"), marker(kind or "secret")


# A bearer token outside an Authorization header, e.g. "Bearer abc123..." in a config value.
# A digit is required so that prose ("bearer authentication") survives.
_BEARER_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?i:bearer)[ \t]+"
    r"(?P<tok>(?=[A-Za-z0-9\-._~+/]*[0-9])[A-Za-z0-9\-._~+/]{8,}=*)"
)


def _bearer_handler(m: re.Match[str]) -> Span:
    return m.start("tok"), m.end("tok"), marker("bearer_token")


# key <sep> value. Found from the secret-ish word at the *end* of the key, which must be
# followed directly by the separator; the full key is then read backwards and judged by
# _key_kind, and the value by _assign_handler and _bare_value_span.
_ASSIGN_RE = re.compile(
    r"(?P<kw>(?i:pass(?:word|wd|phrase)?|pw|secret|token|key))"
    r"(?:"
    # Python annotated assignment: `password: str = "..."`, `token: str | None = None`
    r"(?P<ann>:[ \t]*[A-Za-z_][\w.]*(?:\[[\w., |\[\]]{0,200}\])?(?:[ \t]*\|[ \t]*[A-Za-z_][\w.]*)*"
    r"[ \t]*=(?!=)[ \t]*)"
    # quoted key: "password": ..., 'token' => ..., \"secret\": ...
    r"|(?P<qsep>\\?[\"'][ \t]*(?:=>|=(?!=)|:(?![:=]))[ \t]*)"
    # KEY=value, key = value (not ==)
    r"|(?P<eq>[ \t]*(?:=>|=(?!=))[ \t]*)"
    # key: value (not ::, :=)
    r"|(?P<colon>:(?![:=])[ \t]*)"
    # --password value (only accepted for a --flag; see _assign_handler)
    r"|(?P<ws>[ \t]+)"
    r")"
    r"(?:[rRbBuUfF]{1,2}(?=[\"']))?"  # Python string prefix
    # Quoted values are bounded so that an unclosed quote on a megabyte-long line costs
    # little; a longer quoted secret would be one of the token or key shapes above.
    r"(?:"
    r"\\\"(?P<vesc>[^\"\\]*(?:\\(?!\")[^\"\\]*)*)\\\""  # \"...\" inside a JSON string
    r"|\"(?P<vdq>(?:[^\"\\\r\n]|\\.){0,4096})\""
    r"|'(?P<vsq>(?:[^'\\\r\n]|\\.){0,4096})'"
    r"|(?P<vbare>[^\s\"'`,;&<>(){}\[\]\\]+)"
    r")"
)
# Each finder checks that a separator follows, so `max_tokens` and `keys()` cost nothing, and
# starts on an uncommon letter, since the scan slows with every place its first letter occurs.
_SEP_AHEAD = r"(?=(?:\\?[\"'])?[ \t]*[:=]|[ \t]+[^\s])"
_ASSIGN_FINDERS = (
    (re.compile(r"p(?:ass(?:word|wd|phrase)?|w)" + _SEP_AHEAD), 0),
    (re.compile(r"cret(?<=secret)" + _SEP_AHEAD), 2),
    (re.compile(r"ken(?<=token)" + _SEP_AHEAD), 2),
    (re.compile(r"key" + _SEP_AHEAD), 0),
)
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_FLAG_PRECEDERS = frozenset(" \t\r\n\"'=([,")


_KW_RE = re.compile(r"(?i:pass(?:word|wd|phrase)?|pw|secret|token|key)")


def _key_start(s: str, kw_start: int) -> int:
    i = kw_start
    while i > 0 and s[i - 1] in _KEY_CHARS:
        i -= 1
    return i


def _assign_precheck(s: str, pos: int) -> bool:
    """Only keys that name a secret are worth matching a value for."""
    kw = _KW_RE.match(s, pos)
    return kw is not None and _key_kind(s[_key_start(s, pos) : kw.end()]) is not None


def _assign_handler(m: re.Match[str]) -> Span | None:
    s = m.string
    i = _key_start(s, m.start())
    kind = _key_kind(s[i : m.end("kw")])
    if kind is None:
        return None
    quoted = next((g for g in ("vesc", "vdq", "vsq") if m.group(g) is not None), None)
    if m.group("ws") is not None:
        if not (s[i] == "-" and (i == 0 or s[i - 1] in _FLAG_PRECEDERS)):
            return None  # whitespace separates a value only after a --flag, not in prose
        if quoted is not None:  # --password "hunter2"
            return _quoted_value_span(m, kind, quoted)
        # `--token --password x`: the next flag must still be looked at, so never consume.
        return _bare_value_span(m, kind, key_start=i)
    if quoted is not None:
        span = _quoted_value_span(m, kind, quoted)
    else:
        span = _bare_value_span(m, kind, key_start=i)
    # Not a secret: keep the text, but as examined, so no later hit rescans the value.
    return span if span is not None else (m.start(), m.end(), m.group(0))


def _quoted_value_span(m: re.Match[str], kind: str, group: str) -> Span | None:
    """Quoted values are secrets unless they are empty, references, or clearly names."""
    value = m.group(group)
    if _is_placeholder(value):
        return None
    if m.group("colon") is not None and _TYPE_NAME.fullmatch(value):
        return None  # forward-referenced annotation: `token: "Token"`
    if _COLOR.fullmatch(value):
        return None  # style tables: `Token: "#f8f8f2"`
    if _NAME_LIKE.fullmatch(value) and _key_kind(value) is not None:
        return None  # a name, not a value: TOKEN = "token", HEADER = "X-API-Key"
    return m.start(group), m.end(group), marker(kind)


def _is_keyword_argument(s: str, key_start: int) -> bool:
    """True if the key follows "(" or "," on its line, as a keyword argument in a call does."""
    j = key_start
    while j > 0 and s[j - 1] in " \t":
        j -= 1
    return j > 0 and s[j - 1] in "(,"


def _bare_value_span(m: re.Match[str], kind: str, *, key_start: int) -> Span | None:
    """Decide whether an unquoted value is a secret or code/prose that merely names one.

    ``PASSWORD=hunter2`` and ``db_password: hunter2`` are credentials; ``token = get_token()``,
    ``password=self.password``, ``api_key=api_key``, ``token = value_str``, ``password: str``
    and ``password: The password part of the URL`` are not.
    """
    s = m.string
    value = m.group("vbare").rstrip(".:")  # sentence punctuation is not part of a value
    start = m.start("vbare")
    end = start + len(value)
    if _is_placeholder(value):
        return None
    following = s[end : end + 1]
    if following and following in "([":
        return None  # a call or a subscript
    if value.lower() in _NON_SECRET_WORDS or _DOTTED_IDENT.fullmatch(value):
        return None
    if value[0] == "?" and s[max(0, key_start - 2) : key_start] == "${":
        return None  # ${PASSWORD:?message}: the text after "?" is an error message
    if _SMALL_NUMBER.fullmatch(value) or _COLOR.fullmatch(value):
        return None  # counters, sentinels and colours, not PINs
    if m.group("ws") is not None and value.startswith("-"):
        return None  # `--token --next-flag`: the flag has no value here
    if _IDENT.fullmatch(value) and not _HAS_DIGIT.search(value):
        if _key_kind(value) is not None or "_" in value:
            return None  # a variable or constant: api_key=api_key, token = TOKEN_BLOCK_END
        eq = m.group("eq")
        if eq is not None and (eq.strip() != eq or _is_keyword_argument(s, key_start)):
            return None  # Python-style `token = value` or `f(api_key=key)`
        if m.group("ann") is not None:
            return None
        loose = m.group("colon") is not None or m.group("ws") is not None
        if loose and (_TYPE_NAME.fullmatch(value) or _PROSE_FOLLOWS.match(s, end)):
            return None  # `token: Token`, `password: The password of ...`
    return start, end, marker(kind)


_GITHUB_LITERALS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
_GITLAB_LITERALS = tuple(f"gl{p}-" for p in ("pat", "ptt", "dt", "rt", "soat", "cbt", "ft", "imt"))

_BUILTIN_RULES: tuple[_Rule, ...] = (
    # Multi-line blocks first so no token rule nibbles at their base64 body.
    _Rule("private_key", ("-----begin",), _PRIVATE_KEY_RE, _whole("private_key")),
    # Specific prefixes before anything generic, so the marker names the real kind.
    _Rule("sk", ("sk-",), _SK_RE, _sk_handler),
    _Rule("aws_google", ("akia", "asia", "aiza"), _A_RE, _a_handler),
    _Rule("git_tokens", _GITHUB_LITERALS + _GITLAB_LITERALS, _GIT_RE, _git_handler),
    _Rule("slack_token", ("xox",), _SLACK_TOKEN_RE, _whole("slack_token")),
    _Rule("slack_app_token", ("xapp-",), _SLACK_APP_RE, _whole("slack_token")),
    _Rule("stripe_key", ("k_live_", "k_test_"), _STRIPE_RE, _back(1, "stripe_key")),
    _Rule("stripe_webhook", ("whsec_",), _STRIPE_WEBHOOK_RE, _whole("stripe_key")),
    _Rule("jwt", ("eyj",), _JWT_RE, _back(1, "jwt")),
    # Context rules: these keep the surrounding words and replace only the credential.
    _Rule("url", ("://",), _URL_RE, _url_handler),
    _Rule(
        "cli_user",
        tuple(f"-{flag}{sep}" for flag in ("u", "-user") for sep in " \t="),
        _CLI_USER_RE,
        _cli_user_handler,
    ),
    _Rule(
        "authorization",
        ("authorization",),
        _AUTH_RE,
        _auth_handler,
        ((re.compile("zation(?<=authorization)"), 7),),
    ),
    _Rule("bearer", ("bearer",), _BEARER_RE, _bearer_handler, ((re.compile("bearer"), 0),)),
    _Rule(
        "assignment",
        ("pass", "pw", "secret", "token", "key"),
        _ASSIGN_RE,
        _assign_handler,
        _ASSIGN_FINDERS,
        _assign_precheck,
    ),
)


def _compile_gate(rules: Sequence[_Rule]) -> tuple[re2.Set, tuple[int, ...]]:
    """One RE2 set of every rule's literals, and the rule index of each of its patterns."""
    gate = re2.Set.SearchSet()
    owners: list[int] = []
    for index, rule in enumerate(rules):
        for literal in rule.literals:
            gate.Add(re2.escape(literal))
            owners.append(index)
    gate.Compile()
    return gate, tuple(owners)


_GATE, _GATE_OWNERS = _compile_gate(_BUILTIN_RULES)
_ALL_RULES = frozenset(range(len(_BUILTIN_RULES)))


def _present(folded: str) -> set[int]:
    """Indices of the rules whose literals occur in ``folded``: the only ones that can match.

    A single pass for all rules; ``folded`` is ASCII, so RE2 gets its bytes as they are.
    """
    found = _GATE.Match(folded.encode("ascii"))
    return {_GATE_OWNERS[i] for i in found} if found is not None else set()


# The rules whose literals a marker itself contains ("key" in "[REDACTED:private_key]"...).
_MARKER_RULES = frozenset(_present(_fold("\n".join(marker(kind) for kind in KINDS))))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _compile_extra(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid redaction pattern {pattern!r}: {exc}") from exc


def _custom_repl(m: re.Match[str]) -> str:
    # A pattern that can match the empty string must not sprinkle markers everywhere.
    return marker("custom") if m.group(0) else ""


class Redactor:
    """Applies the built-in rules plus any configured extra patterns.

    Extra patterns (regex strings or compiled patterns) are for site-specific secrets such as
    internal token formats; each match becomes ``[REDACTED:custom]``. They run after private
    blocks are removed and before the built-in rules. Make sure they cannot match a marker,
    or redaction stops being idempotent.
    """

    __slots__ = ("_extra",)

    #: False runs every built-in rule, as a reference for testing the gate.
    _gated: bool = True

    def __init__(self, extra_patterns: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._extra: tuple[re.Pattern[str], ...] = tuple(_compile_extra(p) for p in extra_patterns)

    @property
    def extra_patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._extra

    def text(self, text: str) -> str:
        """Return ``text`` with private blocks and secrets replaced by markers."""
        if not isinstance(text, str):
            raise TypeError(f"redact() expects str, got {type(text).__name__}")
        if not text:
            return text
        folded: str | None = _fold(text)
        if "<private" in folded:
            text = _strip_private(text)
            folded = None
        for pattern in self._extra:
            text = pattern.sub(_custom_repl, text)
            folded = None
        if self._gated:
            if folded is None:
                folded = _fold(text)
            wanted = _present(folded)
        else:
            wanted = set(_ALL_RULES)
        for index, rule in enumerate(_BUILTIN_RULES):
            if index not in wanted:
                continue
            if rule.finders and folded is None:
                folded = _fold(text)
            new = rule.apply(text, folded)
            if new is not text:
                # A rule only puts markers in (or a span back as it was), and no literal holds
                # "[" or "]", so the only literals new to the text are those in the markers.
                text = new
                folded = None
                wanted |= _MARKER_RULES
        return text

    def value(self, value: Any) -> Any:
        """Return a copy of ``value`` with every string in it redacted.

        Mapping keys are kept as they are. A string stored under a key that names a secret
        (``password``, ``api_key``, ``Authorization``...) is replaced whole, since its shape
        alone may not give it away.
        """
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._item(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        return value

    def _item(self, key: Any, value: Any) -> Any:
        if not isinstance(value, str) or not isinstance(key, str):
            return self.value(value)
        cleaned = self.text(value)
        kind = _key_kind(key)
        if kind is None and _is_authorization_key(key):
            scheme = value.lstrip()[:6].lower()
            kind = (
                "bearer_token"
                if scheme.startswith("bearer")
                else "basic_auth"
                if scheme.startswith("basic")
                else "secret"
            )
        if kind is None:
            return cleaned
        if not cleaned.strip() or _ONLY_MARKERS_RE.fullmatch(cleaned):
            return cleaned  # empty, or already a marker (which keeps its more specific kind)
        if cleaned.startswith(("$", "{{")):
            return cleaned  # a reference to a secret held elsewhere
        return marker(kind)


_DEFAULT = Redactor()


@functools.lru_cache(maxsize=32)
def _redactor_for(patterns: tuple[str | re.Pattern[str], ...]) -> Redactor:
    return Redactor(patterns)


def redact(text: str, extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> str:
    """Remove private blocks and secrets from ``text`` (see the module docstring)."""
    if not extra_patterns:
        return _DEFAULT.text(text)
    return _redactor_for(tuple(extra_patterns)).text(text)


def redact_value(value: Any, extra_patterns: Sequence[str | re.Pattern[str]] = ()) -> Any:
    """Redact every string inside nested dicts, lists and tuples; other scalars pass through."""
    if not extra_patterns:
        return _DEFAULT.value(value)
    return _redactor_for(tuple(extra_patterns)).value(value)
