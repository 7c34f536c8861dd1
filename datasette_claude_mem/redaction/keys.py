"""Markers, and the key names whose values are secrets: shared by every redaction rule.

Standard library only, like the rest of the rules (tokens, contexts, scrub), so that the
command hook script can load them without the server's dependencies.
"""

from __future__ import annotations

import functools
import re

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
    "azure_key",
    "sendgrid_key",
    "digitalocean_token",
    "telegram_token",
    "age_key",
    "mailgun_key",
    "npm_token",
    "pypi_token",
    "huggingface_token",
    "vault_token",
    "shopify_token",
    "atlassian_token",
    "linear_key",
    "discord_webhook",
    "custom",
)


def marker(kind: str) -> str:
    """The replacement text for one secret of ``kind``."""
    return f"[REDACTED:{kind}]"


# One or more markers and nothing else (bar whitespace, also JSON-escaped): a value that has
# already been redacted.
ONLY_MARKERS_RE = re.compile(
    r"(?:(?:\s|\\[nrt])*\[(?:REDACTED:[a-z0-9_]+|private)\])+(?:\s|\\[nrt])*"
)


def fold(text: str) -> str:
    """Lower-case ``text`` without changing any index, for case-insensitive literal search.

    ``str.lower`` can lengthen a string (U+0130) and is slow on non-ASCII text; replacing each
    non-ASCII character by ``?`` first keeps one character per character and is fast.
    """
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


# ---------------------------------------------------------------------------------------------
# Key names that mark their value as secret
# ---------------------------------------------------------------------------------------------

_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_PASSWORD_LAST = frozenset({"password", "passwd", "passphrase", "pass", "pw", "pwd"})
_SECRET_LAST = frozenset(
    {
        "secret",
        "token",
        "apikey",
        "secretkey",
        "accesskey",
        "privatekey",
        "auth",
        "credential",
        "credentials",
        "dsn",
    }
)
# "<x>_key" is only secret for these x; primary_key, cache_key, sort_key... are not.
_KEY_QUALIFIERS = frozenset(
    {"api", "access", "secret", "private", "signing", "encryption", "master", "client", "auth"}
)


@functools.lru_cache(maxsize=4096)
def key_kind(key: str) -> str | None:
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
    if last == "string" and len(words) > 1 and words[-2] == "connection":
        return "secret"  # connection_string, ConnectionString: they carry the password
    if last in _PASSWORD_LAST:
        return "password"
    if last in _SECRET_LAST:
        return "secret"
    if last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS:
        return "secret"
    return None


def is_authorization_key(key: str) -> bool:
    return key.lower().endswith("authorization")


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a secret (``password``, ``api_key``, ``clientSecret``...)."""
    return key_kind(key) is not None or is_authorization_key(key)


HAS_ALNUM = re.compile(r"[A-Za-z0-9]")
HAS_DIGIT = re.compile(r"[0-9]")


def is_placeholder(value: str) -> bool:
    """Empty values, markers, variable references and template holes hide nothing."""
    if not value or not HAS_ALNUM.search(value):
        return True
    if value[0] in "$%{<":
        return True
    return ONLY_MARKERS_RE.fullmatch(value) is not None
