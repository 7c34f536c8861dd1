"""Secrets known by their context: ``key = value``, ``--password x``, URLs, Authorization headers.

These rules keep the words around a credential and replace only the credential, after
judging whether the value is a secret or code that merely names one (``token = get_token()``).
Standard library only, so the command hook script can load it.
"""

from __future__ import annotations

import re

from datasette_claude_mem.redaction.keys import (
    HAS_DIGIT,
    is_placeholder,
    key_kind,
    marker,
)
from datasette_claude_mem.redaction.tokens import LazyPattern, Rule, Span

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
_SMALL_NUMBER = re.compile(r"-?[0-9]{1,3}")
_COLOR = re.compile(r"#(?:[0-9A-Fa-f]{3,4}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})")

# scheme://user:password@host, found from "://"; the scheme stays where it is. The password
# runs to the last "@" before the path. Slack webhooks are URLs whose path is the secret.
_URL_RE = LazyPattern(
    r"://(?:"
    r"(?P<slack>hooks\.slack\.com/(?:services|workflows|triggers)/)(?P<hook>[A-Za-z0-9_/\-]+)"
    r"|(?P<user>[^\s:/@\"'<>\\]*):(?P<pw>[^\s/?#\"'<>\\]+)@(?=[A-Za-z0-9\[])"
    r")"
)


def _url_handler(m: re.Match[str]) -> Span | None:
    if m.group("slack") is not None:
        return m.start("hook"), m.end("hook"), marker("slack_webhook")
    if is_placeholder(m.group("pw")):
        return None
    return m.start("pw"), m.end("pw"), marker("url_password")


# curl -u user:password / --user user:password
_CLI_USER_RE = LazyPattern(
    r"-(?<![\w\-]-)(?:u|-user)(?:[ \t]+|=)[\"']?(?P<user>[^\s:\"'@]+):(?P<pw>[^\s\"']+)"
)


def _cli_user_handler(m: re.Match[str]) -> Span | None:
    user, pw = m.group("user"), m.group("pw")
    if is_placeholder(pw) or (user.isdigit() and pw.isdigit()):  # docker -u 1000:1000
        return None
    return m.start("pw"), m.end("pw"), marker("password")


# "Authorization: <scheme> <credential>" in headers, JSON and curl -H arguments. This and the
# rules below are only tried where their finders hit, so they may start with a lookbehind.
_AUTH_RE = LazyPattern(
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
    if is_placeholder(cred):
        return None
    scheme = m.group("scheme")
    kind = _AUTH_SCHEMES.get(scheme.lower()) if scheme else None
    if kind is None and not (len(cred) >= 8 and HAS_DIGIT.search(cred)):
        return None  # prose such as "Authorization: required for ..."
    return m.start("cred"), m.end("cred"), marker(kind or "secret")


# A bearer token outside an Authorization header, e.g. "Bearer abc123..." in a config value.
# A digit is required so that prose ("bearer authentication") survives.
_BEARER_RE = LazyPattern(
    r"(?<![A-Za-z0-9_\-])(?i:bearer)[ \t]+"
    r"(?P<tok>(?=[A-Za-z0-9\-._~+/]*[0-9])[A-Za-z0-9\-._~+/]{8,}=*)"
)


def _bearer_handler(m: re.Match[str]) -> Span:
    return m.start("tok"), m.end("tok"), marker("bearer_token")


# key <sep> value. Found from the secret-ish word at the *end* of the key, which must be
# followed directly by the separator; the full key is then read backwards and judged by
# _key_kind, and the value by _assign_handler and _bare_value_span.
_ASSIGN_RE = LazyPattern(
    r"(?P<kw>(?i:pass(?:word|wd|phrase)?|pwd?|secret|token|key|auth))"
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
    (LazyPattern(r"p(?:ass(?:word|wd|phrase)?|wd?)" + _SEP_AHEAD), 0),
    (LazyPattern(r"auth" + _SEP_AHEAD), 0),
    (LazyPattern(r"cret(?<=secret)" + _SEP_AHEAD), 2),
    (LazyPattern(r"ken(?<=token)" + _SEP_AHEAD), 2),
    (LazyPattern(r"key" + _SEP_AHEAD), 0),
)
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_FLAG_PRECEDERS = frozenset(" \t\r\n\"'=([,")


_KW_RE = re.compile(r"(?i:pass(?:word|wd|phrase)?|pwd?|secret|token|key|auth)")


def _key_start(s: str, kw_start: int) -> int:
    i = kw_start
    while i > 0 and s[i - 1] in _KEY_CHARS:
        i -= 1
    return i


def _assign_precheck(s: str, pos: int) -> bool:
    """Only keys that name a secret are worth matching a value for."""
    kw = _KW_RE.match(s, pos)
    return kw is not None and key_kind(s[_key_start(s, pos) : kw.end()]) is not None


def _assign_handler(m: re.Match[str]) -> Span | None:
    s = m.string
    i = _key_start(s, m.start())
    kind = key_kind(s[i : m.end("kw")])
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
    if is_placeholder(value):
        return None
    if m.group("colon") is not None and _TYPE_NAME.fullmatch(value):
        return None  # forward-referenced annotation: `token: "Token"`
    if _COLOR.fullmatch(value):
        return None  # style tables: `Token: "#f8f8f2"`
    if _NAME_LIKE.fullmatch(value) and key_kind(value) is not None:
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
    if is_placeholder(value):
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
    if _IDENT.fullmatch(value) and not HAS_DIGIT.search(value):
        if key_kind(value) is not None or "_" in value:
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


# mysql -pPASSWORD (the password glued to -p), on a mysql, mysqldump or mariadb command line.
_MYSQL_RE = LazyPattern(
    r"(?:mysql|mariadb)[A-Za-z_\-]*[ \t][^\r\n]{0,300}?"
    r"(?<![^ \t])-p[\"']?(?P<pw>[^\s\"'-][^\s\"']*)"
)


def _password_handler(m: re.Match[str]) -> Span | None:
    if is_placeholder(m.group("pw")):
        return None
    return m.start("pw"), m.end("pw"), marker("password")


# ~/.netrc (on one line or several): machine HOST login USER password SECRET.
_NETRC_RE = LazyPattern(
    r"machine\s+\S+(?:\s+(?:login|account)\s+\S+){0,2}\s+password\s+(?P<pw>\S+)"
)


#: The rules for contexts, in the order they run (after the shapes).
CONTEXT_RULES: tuple[Rule, ...] = (
    Rule("url", ("://",), _URL_RE, _url_handler),
    Rule(
        "cli_user",
        tuple(f"-{flag}{sep}" for flag in ("u", "-user") for sep in " \t="),
        _CLI_USER_RE,
        _cli_user_handler,
    ),
    Rule("mysql", ("mysql", "mariadb"), _MYSQL_RE, _password_handler),
    Rule("netrc", ("machine",), _NETRC_RE, _password_handler),
    Rule(
        "authorization",
        ("authorization",),
        _AUTH_RE,
        _auth_handler,
        ((LazyPattern("zation(?<=authorization)"), 7),),
    ),
    Rule("bearer", ("bearer",), _BEARER_RE, _bearer_handler, ((LazyPattern("bearer"), 0),)),
    Rule(
        "assignment",
        ("pass", "pw", "secret", "token", "key", "auth"),
        _ASSIGN_RE,
        _assign_handler,
        _ASSIGN_FINDERS,
        _assign_precheck,
    ),
)
