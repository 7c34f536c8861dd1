"""Secrets known by their shape: PEM blocks and the token formats of the services agents use.

A rule is found through a literal (``ghp_``, ``-----begin``...) that the gate looks for first;
see ``Rule``. Standard library only, so the command hook script can load it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from datasette_claude_mem.redaction.keys import HAS_DIGIT, marker

# A rule's handler gets a match and returns (start, end, replacement), or None to leave it.
# start may lie before the match: patterns begin at a literal for speed and reach back with
# a lookbehind, so the handler widens the span to cover the whole secret.
Span = tuple[int, int, str]
Handler = Callable[[re.Match[str]], Span | None]


class Rule:
    """One secret shape.

    ``literals`` are lower-case ASCII strings, free of "[" and "]", at least one of which
    occurs in the folded text wherever the rule can change it; the gate skips
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

    # A plain class, not a dataclass: dataclasses imports inspect, which the hook script
    # would pay for on every event it spools.
    __slots__ = ("finders", "handler", "literals", "name", "pattern", "precheck")

    def __init__(
        self,
        name: str,
        literals: tuple[str, ...],
        pattern: LazyPattern,
        handler: Handler,
        finders: tuple[tuple[LazyPattern, int], ...] = (),
        precheck: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.name = name
        self.literals = literals
        self.pattern = pattern
        self.handler = handler
        self.finders = finders
        self.precheck = precheck

    def apply(self, text: str, folded: str | None, counts: dict[str, int] | None = None) -> str:
        """``text`` with this rule's secrets replaced; each marker put in is added to ``counts``."""
        pieces: list[str] = []
        last = 0
        pattern = self.pattern.compiled
        if not self.finders:
            for m in pattern.finditer(text):
                span = self.handler(m)
                if span is not None and span[0] >= last:
                    pieces.append(text[last : span[0]])
                    pieces.append(span[2])
                    last = span[1]
                    if counts is not None and span[2] != m.group(0):
                        _count(span[2], counts)
        else:
            assert folded is not None
            hits = sorted(
                h.start() - back for f, back in self.finders for h in f.compiled.finditer(folded)
            )
            precheck = self.precheck
            for pos in hits:
                if pos < last or (precheck is not None and not precheck(text, pos)):
                    continue
                m = pattern.match(text, pos)
                if m is None:
                    continue
                span = self.handler(m)
                if span is not None and span[0] >= last:
                    pieces.append(text[last : span[0]])
                    pieces.append(span[2])
                    last = span[1]
                    if counts is not None and span[2] != m.group(0):
                        _count(span[2], counts)
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)


class LazyPattern:
    """A rule's regex, compiled when first used. The server compiles each once either way;
    the hook script starts afresh for every event it spools, and compiles only the rules its
    gate lets through (compiling them all costs more than the rest of its run)."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.source)
        return self._compiled


_MARKER_KIND = re.compile(r"\[REDACTED:([a-z0-9_]+)\]")


def _count(replacement: str, counts: dict[str, int]) -> None:
    """Add the markers in one replacement to ``counts`` (a span given back unchanged has none)."""
    for kind in _MARKER_KIND.findall(replacement):
        counts[kind] = counts.get(kind, 0) + 1


def whole(kind: str) -> Handler:
    """Handler that replaces the entire match."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span:
        return m.start(), m.end(), text

    return handle


# Characters that may continue a token. Used as a boundary on both sides, so that a prefix
# inside a longer word ("risk-", "flask-") is not read as the start of a key.
_TC = r"A-Za-z0-9_\-"


def _starts(prefix: str) -> str:
    """Lookbehinds (placed after ``prefix``) for a token starting there: no token character
    before it, bar the "-" that begins a removed line of a diff."""
    p = re.escape(prefix)
    return rf"(?<![A-Za-z0-9_]{p})(?<![^\n]-{p})"


def _diff_mark(s: str, i: int) -> bool:
    """True if ``s[i]`` is the "-" that begins a removed line of a diff, not part of a word."""
    return s[i] == "-" and (i == 0 or s[i - 1] == "\n")


_PRIVATE_KEY_RE = LazyPattern(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:"
    # The body never contains "-----", so the scan from one BEGIN stops at the next run of
    # dashes: an END line, or the next BEGIN. That keeps many unclosed blocks linear.
    r"(?:[^-]++|-(?!----))*+-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # Truncated inside JSON text (escaped newlines): the base64 and header lines that follow,
    # up to the end of the JSON string. A blank line is taken only when more base64 follows
    # it (encrypted keys have one after their headers).
    r"|(?:(?:\\r)?\\n"
    r"(?:[ \t]*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+:[^\r\n\\]*)(?=[ \t]*(?:\\[rn]|\Z|\\?\"))"
    r"|(?=(?:\\r)?\\n[ \t]*[A-Za-z0-9+/=]+[ \t]*(?:\\[rn]|\Z))))+"
    # Truncated anywhere else (`head -5 key.pem`, a patch cut short): to the end of the text.
    r"|[\s\S]*"
    r")",
)

# "sk-..." is Anthropic when followed by "ant-", otherwise OpenAI (sk-proj-, sk-svcacct-, and
# the older plain sk-). The scan starts at "k-" because "s" is too common a letter to start on.
_SK_RE = LazyPattern(rf"k-(?<=sk-){_starts('sk-')}(?P<body>[{_TC}]{{20,}})")


def _sk_handler(m: re.Match[str]) -> Span | None:
    body = m.group("body")
    if body.startswith("ant-"):
        if len(body) < 24:
            return None  # too short to be a real key; not an OpenAI key either
        return m.start() - 1, m.end(), marker("anthropic_key")
    if not HAS_DIGIT.search(body):
        return None  # hyphenated words after "sk-" ("sk-learn-compatible-estimators")
    return m.start() - 1, m.end(), marker("openai_key")


_A_RE = LazyPattern(
    r"A(?<![A-Za-z0-9]A)"
    rf"(?:(?P<aws>(?:KIA|SIA)[A-Z0-9]{{16}})(?![A-Za-z0-9])|(?P<google>Iza[{_TC}]{{35}})(?![{_TC}]))"
)


def _a_handler(m: re.Match[str]) -> Span | None:
    if m.group("google") is not None:
        before = m.start() - 1
        if before >= 0 and m.string[before] in "_-" and not _diff_mark(m.string, before):
            return None
        return m.start(), m.end(), marker("google_api_key")
    return m.start(), m.end(), marker("aws_access_key")


# GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_) and GitLab (glpat- and friends) share a
# scan from "g".
_GIT_RE = LazyPattern(
    rf"g{_starts('g')}(?:"
    r"(?P<github>h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{30,})"
    rf"|(?P<gitlab>l(?:pat|ptt|dt|rt|soat|cbt|ft|imt)-[{_TC}]{{20,}})"
    r")"
)


def _git_handler(m: re.Match[str]) -> Span:
    kind = "github_token" if m.group("github") is not None else "gitlab_token"
    return m.start(), m.end(), marker(kind)


_SLACK_TOKEN_RE = LazyPattern(rf"xox{_starts('xox')}[abposr]-[A-Za-z0-9\-]{{10,}}")
_SLACK_APP_RE = LazyPattern(rf"xapp-{_starts('xapp-')}[0-9]-[A-Za-z0-9\-]{{10,}}")
# sk_/rk_/pk_ + live_/test_; found from "k_" and reaching back one letter.
_STRIPE_RE = LazyPattern(r"k_(?<=[srp]k_)(?<![A-Za-z0-9_][srp]k_)(?:live|test)_[A-Za-z0-9]{10,}")
_STRIPE_WEBHOOK_RE = LazyPattern(r"whsec_(?<![A-Za-z0-9_]whsec_)[A-Za-z0-9]{20,}")
# header.payload.signature, each base64url; the header of any JWT starts with "eyJ" ('{"').
_JWT_RE = LazyPattern(rf"yJ(?<=eyJ){_starts('eyJ')}[{_TC}]{{10,}}\.[{_TC}]{{10,}}\.[{_TC}]*")


def back(n: int, kind: str) -> Handler:
    """Handler for patterns whose secret starts ``n`` characters before the match."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span:
        return m.start() - n, m.end(), text

    return handle


# Shapes of more services. Each pattern starts at its literal and checks the character before
# it in the handler (``_after_boundary``), so "xhf_..." or "my-key-..." is not taken.

# SendGrid: SG.<22>.<43>
_SENDGRID_RE = LazyPattern(rf"SG\.[{_TC}]{{22}}\.[{_TC}]{{43}}(?![{_TC}])")
# DigitalOcean personal, OAuth and refresh tokens: do[opr]_v1_ + 64 hex.
_DIGITALOCEAN_RE = LazyPattern(r"_v1_(?<=do[opr]_v1_)[a-f0-9]{64}(?![A-Za-z0-9])")
# Telegram bot token: <bot id>:<35 characters>, the secret part starting "AA".
_TELEGRAM_RE = LazyPattern(rf":AA(?<=[0-9]:AA)[{_TC}]{{33}}(?![{_TC}])")
_AGE_RE = LazyPattern(r"AGE-SECRET-KEY-1[0-9A-Z]{58}")
_MAILGUN_RE = LazyPattern(r"key-(?=[0-9a-f]*[0-9])[0-9a-f]{32}(?![A-Za-z0-9])")
_NPM_RE = LazyPattern(r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])")
# PyPI upload tokens are macaroons whose base64 always starts with the same bytes.
_PYPI_RE = LazyPattern(rf"pypi-AgE[A-Za-z0-9]{{10,}}[{_TC}]{{20,}}")
# Hugging Face: hf_ + 30-40 letters (often no digit at all, so no rule for words sees it).
_HF_RE = LazyPattern(r"hf_[A-Za-z0-9]{30,40}(?![A-Za-z0-9_])")
# HashiCorp Vault service, batch and recovery tokens.
_VAULT_RE = LazyPattern(rf"hv[sbr]\.[{_TC}]{{24,}}")
_SHOPIFY_RE = LazyPattern(r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}(?![A-Za-z0-9])")
_ATLASSIAN_RE = LazyPattern(rf"ATATT3[{_TC}=]{{50,}}")
_LINEAR_RE = LazyPattern(r"lin_(?:api|oauth)_[A-Za-z0-9]{32,}")
# Azure storage and service bus connection strings: the key after AccountKey= / SharedAccessKey=.
_AZURE_KEY_RE = LazyPattern(r"(?:Account|SharedAccess)Key=(?P<v>[A-Za-z0-9+/]{20,}={0,2})")
# Azure SAS: the signature parameter of a signed URL or SAS token.
_AZURE_SAS_RE = LazyPattern(r"sig=(?<=[?&;]sig=)(?P<v>(?:[A-Za-z0-9+/=_\-]|%[0-9A-Fa-f]{2}){20,})")
_DISCORD_RE = LazyPattern(r"discord(?:app)?\.com/api/webhooks/[0-9]{5,}/(?P<v>[A-Za-z0-9_\-]{20,})")
# An AWS credentials CSV (as the console exports it): the secret follows the key id.
_AWS_CSV_RE = LazyPattern(
    r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16},(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
)

_BOUNDARY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _after_boundary(kind: str, back_chars: int = 0) -> Handler:
    """Replace the match (begun ``back_chars`` before it) unless a token character precedes."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span | None:
        start = m.start() - back_chars
        if start > 0 and m.string[start - 1] in _BOUNDARY and not _diff_mark(m.string, start - 1):
            return None
        return start, m.end(), text

    return handle


def _telegram_handler(m: re.Match[str]) -> Span | None:
    s = m.string
    start = m.start()
    while start > 0 and s[start - 1].isdigit() and m.start() - start < 11:
        start -= 1
    if not 8 <= m.start() - start <= 10:
        return None
    if start > 0 and s[start - 1] in _BOUNDARY and not _diff_mark(s, start - 1):
        return None
    return start, m.end(), marker("telegram_token")


def _value_of(kind: str) -> Handler:
    """Replace the ``v`` group only: the words around it say what was there."""
    text = marker(kind)

    def handle(m: re.Match[str]) -> Span:
        return m.start("v"), m.end("v"), text

    return handle


def _aws_csv_handler(m: re.Match[str]) -> Span:
    return m.start(), m.end(), marker("aws_access_key") + "," + marker("aws_secret_key")


_GITHUB_LITERALS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
_GITLAB_LITERALS = tuple(f"gl{p}-" for p in ("pat", "ptt", "dt", "rt", "soat", "cbt", "ft", "imt"))

#: The rules for shapes, in the order they run.
TOKEN_RULES: tuple[Rule, ...] = (
    # Multi-line blocks first so no token rule nibbles at their base64 body.
    Rule("private_key", ("-----begin",), _PRIVATE_KEY_RE, whole("private_key")),
    # Specific prefixes before anything generic, so the marker names the real kind.
    Rule("aws_csv", ("akia", "asia"), _AWS_CSV_RE, _aws_csv_handler),
    Rule("sk", ("sk-",), _SK_RE, _sk_handler),
    Rule("aws_google", ("akia", "asia", "aiza"), _A_RE, _a_handler),
    Rule("git_tokens", _GITHUB_LITERALS + _GITLAB_LITERALS, _GIT_RE, _git_handler),
    Rule("slack_token", ("xox",), _SLACK_TOKEN_RE, whole("slack_token")),
    Rule("slack_app_token", ("xapp-",), _SLACK_APP_RE, whole("slack_token")),
    Rule("stripe_key", ("k_live_", "k_test_"), _STRIPE_RE, back(1, "stripe_key")),
    Rule("stripe_webhook", ("whsec_",), _STRIPE_WEBHOOK_RE, whole("stripe_key")),
    Rule("jwt", ("eyj",), _JWT_RE, back(1, "jwt")),
    Rule("sendgrid", ("sg.",), _SENDGRID_RE, _after_boundary("sendgrid_key")),
    Rule("digitalocean", ("_v1_",), _DIGITALOCEAN_RE, _after_boundary("digitalocean_token", 3)),
    Rule("telegram", (":aa",), _TELEGRAM_RE, _telegram_handler),
    Rule("age", ("age-secret-key-1",), _AGE_RE, _after_boundary("age_key")),
    Rule("mailgun", ("key-",), _MAILGUN_RE, _after_boundary("mailgun_key")),
    Rule("npm", ("npm_",), _NPM_RE, _after_boundary("npm_token")),
    Rule("pypi", ("pypi-age",), _PYPI_RE, _after_boundary("pypi_token")),
    Rule("huggingface", ("hf_",), _HF_RE, _after_boundary("huggingface_token")),
    Rule("vault", ("hvs.", "hvb.", "hvr."), _VAULT_RE, _after_boundary("vault_token")),
    Rule(
        "shopify",
        ("shpat_", "shpss_", "shpca_", "shppa_"),
        _SHOPIFY_RE,
        _after_boundary("shopify_token"),
    ),
    Rule("atlassian", ("atatt3",), _ATLASSIAN_RE, _after_boundary("atlassian_token")),
    Rule("linear", ("lin_api_", "lin_oauth_"), _LINEAR_RE, _after_boundary("linear_key")),
    Rule("azure_key", ("accountkey=", "sharedaccesskey="), _AZURE_KEY_RE, _value_of("azure_key")),
    Rule("azure_sas", ("sig=",), _AZURE_SAS_RE, _value_of("azure_key")),
    Rule(
        "discord",
        ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
        _DISCORD_RE,
        _value_of("discord_webhook"),
    ),
)
