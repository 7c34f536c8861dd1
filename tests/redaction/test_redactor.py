"""Tests for datasette_claude_mem.redaction.redactor.

Every secret below is fake and assembled at run time from pieces, so this file holds nothing a
secret scanner would flag, yet each value has the exact shape of the real thing.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import string

import pytest
from corpus import make_corpus
from test_secrets import blob, make_secrets

from datasette_claude_mem.redaction import redactor as redact_module
from datasette_claude_mem.redaction.redactor import (
    KINDS,
    PRIVATE_MARKER,
    Redactor,
    is_secret_key,
    marker,
    redact,
    redact_value,
)
from datasette_claude_mem.redaction.scrub import PRIVATE_TAG, literal_present

_rng = random.Random(20240601)
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits


def fake(n: int, alphabet: str = ALNUM) -> str:
    """n random characters, always with at least one digit, upper and lower case letter."""
    chars = [_rng.choice(alphabet) for _ in range(n)]
    needs = [string.digits]
    if any(c in alphabet for c in string.ascii_lowercase):
        needs.append(string.ascii_lowercase)
    if any(c in alphabet for c in string.ascii_uppercase):
        needs.append(string.ascii_uppercase)
    for i, pool in enumerate(needs):
        chars[i + 1] = _rng.choice(pool)
    return "".join(chars)


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def make_jwt() -> str:
    header = b64url({"alg": "HS256", "typ": "JWT"})
    payload = b64url({"sub": "1234567890", "name": "Test User", "iat": 1516239022})
    return f"{header}.{payload}.{fake(43, URLSAFE)}"


# (kind, id, secret) for every single-token secret shape.
TOKENS: list[tuple[str, str, str]] = [
    ("anthropic_key", "anthropic", "sk-" + "ant-" + "api03-" + fake(93, URLSAFE) + "AA"),
    ("anthropic_key", "anthropic-admin", "sk-" + "ant-" + "admin01-" + fake(80, URLSAFE)),
    ("openai_key", "openai-legacy", "sk-" + fake(48)),
    ("openai_key", "openai-proj", "sk-" + "proj-" + fake(156, URLSAFE)),
    ("openai_key", "openai-svcacct", "sk-" + "svcacct-" + fake(64, URLSAFE)),
    ("aws_access_key", "aws-akia", "AK" + "IA" + fake(16, UPPER_DIGITS)),
    ("aws_access_key", "aws-asia", "AS" + "IA" + fake(16, UPPER_DIGITS)),
    ("github_token", "github-ghp", "gh" + "p_" + fake(36)),
    ("github_token", "github-gho", "gh" + "o_" + fake(36)),
    ("github_token", "github-ghu", "gh" + "u_" + fake(36)),
    ("github_token", "github-ghs", "gh" + "s_" + fake(36)),
    ("github_token", "github-ghr", "gh" + "r_" + fake(36)),
    ("github_token", "github-pat", "github" + "_pat_" + fake(22) + "_" + fake(59)),
    ("gitlab_token", "gitlab-pat", "gl" + "pat-" + fake(20, URLSAFE)),
    ("slack_token", "slack-xoxb", "xo" + "xb-" + fake(12, string.digits) + "-" + fake(24)),
    ("slack_token", "slack-xoxp", "xo" + "xp-" + fake(11, string.digits) + "-" + fake(32)),
    ("slack_token", "slack-xoxa", "xo" + "xa-2-" + fake(30)),
    ("slack_token", "slack-xoxr", "xo" + "xr-" + fake(40)),
    ("slack_token", "slack-xoxs", "xo" + "xs-" + fake(40)),
    ("google_api_key", "google", "AI" + "za" + fake(35, URLSAFE)),
    ("stripe_key", "stripe-sk-live", "sk" + "_live_" + fake(24)),
    ("stripe_key", "stripe-sk-test", "sk" + "_test_" + fake(24)),
    ("stripe_key", "stripe-rk-live", "rk" + "_live_" + fake(24)),
    ("stripe_key", "stripe-pk-live", "pk" + "_live_" + fake(24)),
    ("stripe_key", "stripe-whsec", "wh" + "sec_" + fake(32)),
    ("jwt", "jwt", make_jwt()),
]

# Each context places a secret the way it turns up in an agent's tool output.
CONTEXTS = {
    "env": lambda s: f"SERVICE_API_KEY={s}\nDEBUG=1\n",
    "env-quoted": lambda s: f'export SERVICE_API_KEY="{s}"\n',
    "json": lambda s: json.dumps({"service": "x", "api_key": s, "retries": 3}),
    "json-in-json": lambda s: json.dumps(json.dumps({"credentials": {"api_key": s}})),
    "python-repr": lambda s: repr({"key": s, "n": 1}),
    "yaml": lambda s: f"service:\n  name: demo\n  api_key: {s}\n  region: eu\n",
    "python": lambda s: f'client = Client(api_key="{s}", timeout=30)\n',
    "shell": lambda s: f"$ deploy --region eu --api-key {s} --yes",
    "curl-bearer": lambda s: f"curl -H 'Authorization: Bearer {s}' https://api.example.com/v1",
    "curl-header": lambda s: f'curl -H "X-Api-Key: {s}" https://api.example.com/v1',
    "log": lambda s: f"2024-06-01T12:00:00Z WARN auth failed key={s} status=401 ip=10.0.0.1",
    "prose": lambda s: f"I found the credential {s} in the config file.",
    "url-query": lambda s: f"GET https://api.example.com/data?key={s}&limit=10",
    "toml": lambda s: f'[service]\napi_key = "{s}"\n',
}


def _ids(items):
    return [i[1] for i in items]


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize(("kind", "name", "secret"), TOKENS, ids=_ids(TOKENS))
def test_token_is_removed_and_labelled(kind: str, name: str, secret: str, context: str) -> None:
    text = CONTEXTS[context](secret)
    out = redact(text)
    assert secret not in out
    assert marker(kind) in out, out
    # The secret's distinctive tail must not survive either (no partial leaks).
    assert secret[-12:] not in out
    assert redact(out) == out


@pytest.mark.parametrize(("kind", "name", "secret"), TOKENS, ids=_ids(TOKENS))
def test_surroundings_are_kept(kind: str, name: str, secret: str) -> None:
    out = redact(f"before {secret} after")
    assert out == f"before {marker(kind)} after"


def test_anthropic_is_not_classified_as_openai() -> None:
    key = "sk-" + "ant-" + "api03-" + fake(93, URLSAFE) + "AA"
    out = redact(f"ANTHROPIC_API_KEY={key}")
    assert out == "ANTHROPIC_API_KEY=" + marker("anthropic_key")
    assert "openai" not in out


def test_several_secrets_in_one_text() -> None:
    secrets = {kind: secret for kind, _, secret in TOKENS}
    text = "\n".join(f"line {i}: value={s} end" for i, s in enumerate(secrets.values()))
    out = redact(text)
    for kind, secret in secrets.items():
        assert secret not in out
        assert marker(kind) in out
    assert out.count("end") == len(secrets)


# ---------------------------------------------------------------------------------------------
# Slack webhooks
# ---------------------------------------------------------------------------------------------


def make_webhook() -> tuple[str, str]:
    path = "T" + fake(8, UPPER_DIGITS) + "/B" + fake(10, UPPER_DIGITS) + "/" + fake(24)
    return "https://hooks.slack.com/services/" + path, path


@pytest.mark.parametrize(
    "template",
    [
        "SLACK_WEBHOOK_URL={}",
        '{{"webhook": "{}"}}',
        'curl -X POST -d \'{{"text": "hi"}}\' {}',
        "notify:\n  url: {}\n",
    ],
)
def test_slack_webhook(template: str) -> None:
    url, path = make_webhook()
    out = redact(template.format(url))
    assert path not in out
    assert "hooks.slack.com/services/" + marker("slack_webhook") in out
    assert redact(out) == out


# ---------------------------------------------------------------------------------------------
# Private keys
# ---------------------------------------------------------------------------------------------

PEM_LABELS = [
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "DSA PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
]


def make_pem(label: str, newline: str = "\n") -> tuple[str, list[str]]:
    body = [fake(64, ALNUM + "+/") for _ in range(5)] + [fake(20, ALNUM + "+/") + "=="]
    lines = ["-----" + "BEGIN " + label + "-----", *body, "-----" + "END " + label + "-----"]
    return newline.join(lines) + newline, body


@pytest.mark.parametrize("label", PEM_LABELS)
def test_private_key_block_raw(label: str) -> None:
    pem, body = make_pem(label)
    out = redact(f"$ cat ~/.ssh/id_key\n{pem}$ echo done\n")
    for line in body:
        assert line not in out
    assert out == f"$ cat ~/.ssh/id_key\n{marker('private_key')}\n$ echo done\n"


@pytest.mark.parametrize("label", PEM_LABELS)
def test_private_key_json_escaped(label: str) -> None:
    pem, body = make_pem(label)
    doc = json.dumps({"type": "service_account", "private_key": pem, "client_email": "a@b.c"})
    out = redact(doc)
    for line in body:
        assert line not in out
    parsed = json.loads(out)
    assert parsed["private_key"].strip() == marker("private_key")
    assert parsed["client_email"] == "a@b.c"


def test_private_key_crlf_and_yaml_block() -> None:
    pem, body = make_pem("RSA PRIVATE KEY", newline="\r\n")
    indented = "".join("    " + line + "\n" for line in pem.splitlines())
    out = redact(f"tls:\n  key: |\n{indented}  cert: ok\n")
    for line in body:
        assert line not in out
    assert marker("private_key") in out
    assert "cert: ok" in out


def test_truncated_private_key() -> None:
    pem, body = make_pem("OPENSSH PRIVATE KEY")
    head = "\n".join(pem.splitlines()[:4])  # like `head -n 4`
    out = redact(head + "\n\nThat was the start of the key file.")
    for line in body[:3]:
        assert line not in out
    # Begun and never ended: nothing after the BEGIN line can be told apart from the key.
    assert out == marker("private_key")


def test_encrypted_pem_with_headers() -> None:
    body = [fake(64, ALNUM + "+/") for _ in range(3)]
    pem = "\n".join(
        [
            "-----" + "BEGIN RSA PRIVATE KEY" + "-----",
            "Proc-Type: 4,ENCRYPTED",
            "DEK-Info: AES-128-CBC," + fake(32, "0123456789ABCDEF"),
            "",
            *body,
            "-----" + "END RSA PRIVATE KEY" + "-----",
        ]
    )
    out = redact(pem)
    assert out == marker("private_key")


# ---------------------------------------------------------------------------------------------
# Passwords and secret assignments: the key stays, the value goes
# ---------------------------------------------------------------------------------------------

PW = "hunter" + "2"
SECRET_VALUE = "s3" + "cr3t-" + "Value_99"

ASSIGNMENTS = [
    # env files and shells
    (f"PASSWORD={PW}", "PASSWORD=[REDACTED:password]"),
    (f"DB_PASSWORD={PW}\nDB_HOST=db", "DB_PASSWORD=[REDACTED:password]\nDB_HOST=db"),
    (f"export MYSQL_ROOT_PASSWORD='{PW}'", "export MYSQL_ROOT_PASSWORD='[REDACTED:password]'"),
    (f"DB_PASS={PW}", "DB_PASS=[REDACTED:password]"),
    (f"SECRET_KEY={SECRET_VALUE}", "SECRET_KEY=[REDACTED:secret]"),
    (f"API_KEY={SECRET_VALUE}", "API_KEY=[REDACTED:secret]"),
    (f"GITHUB_TOKEN={SECRET_VALUE}", "GITHUB_TOKEN=[REDACTED:secret]"),
    (f"apikey={SECRET_VALUE}", "apikey=[REDACTED:secret]"),
    (f"ACCESS_KEY={SECRET_VALUE}", "ACCESS_KEY=[REDACTED:secret]"),
    # INI / TOML
    (f"password = {PW}", "password = [REDACTED:password]"),
    (f'client_secret = "{SECRET_VALUE}"', 'client_secret = "[REDACTED:secret]"'),
    # YAML
    (f"db_password: {PW}", "db_password: [REDACTED:password]"),
    (f"passwd: {PW}\nuser: bob", "passwd: [REDACTED:password]\nuser: bob"),
    (f"  token: '{SECRET_VALUE}'", "  token: '[REDACTED:secret]'"),
    # JSON, also escaped inside another JSON string
    (f'{{"password": "{PW}"}}', '{"password": "[REDACTED:password]"}'),
    (f'{{"password":"{PW}","user":"bob"}}', '{"password":"[REDACTED:password]","user":"bob"}'),
    (f'{{"accessToken": "{SECRET_VALUE}"}}', '{"accessToken": "[REDACTED:secret]"}'),
    (f'"{{\\"password\\": \\"{PW}\\"}}"', '"{\\"password\\": \\"[REDACTED:password]\\"}"'),
    # Python, PHP
    (f'password = "{PW}"', 'password = "[REDACTED:password]"'),
    (f"login(user='bob', password='{PW}')", "login(user='bob', password='[REDACTED:password]')"),
    (f'password: str = "{PW}"', 'password: str = "[REDACTED:password]"'),
    (f"'password' => '{PW}',", "'password' => '[REDACTED:password]',"),
    # command lines and logs
    (f"mysql --password {PW} -u root", "mysql --password [REDACTED:password] -u root"),
    (f"tool --token={SECRET_VALUE}", "tool --token=[REDACTED:secret]"),
    (f"user=bob password={PW} ok", "user=bob password=[REDACTED:password] ok"),
    ("user=bob password=letmein", "user=bob password=[REDACTED:password]"),
    (f"Set PASSWORD={PW}.", "Set PASSWORD=[REDACTED:password]."),
    (f"GET /cb?access_token={SECRET_VALUE}&x=1", "GET /cb?access_token=[REDACTED:secret]&x=1"),
    # AWS secret access keys are only recognisable by their name
    (
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCY" + "EXAMPLEKEY",
        "aws_secret_access_key = [REDACTED:aws_secret_key]",
    ),
    (
        "AWS_SECRET_ACCESS_KEY=" + fake(40, ALNUM + "/+"),
        "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]",
    ),
    (
        '{"SecretAccessKey": "' + fake(40, ALNUM + "/+") + '"}',
        '{"SecretAccessKey": "[REDACTED:aws_secret_key]"}',
    ),
]


@pytest.mark.parametrize(("text", "expected"), ASSIGNMENTS)
def test_assignments(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


# ---------------------------------------------------------------------------------------------
# Credentials in URLs, headers and command-line options
# ---------------------------------------------------------------------------------------------

URL_CASES = [
    (f"postgres://bob:{PW}@db", "postgres://bob:[REDACTED:url_password]@db"),
    (
        f"DATABASE_URL=postgresql://app:{PW}@db.internal:5432/app?sslmode=require",
        "DATABASE_URL=postgresql://app:[REDACTED:url_password]@db.internal:5432/app?sslmode=require",
    ),
    (f"redis://:{PW}@cache:6379/0", "redis://:[REDACTED:url_password]@cache:6379/0"),
    (
        f"git clone https://oauth2:{SECRET_VALUE}@gitlab.example.com/g/r.git",
        "git clone https://oauth2:[REDACTED:url_password]@gitlab.example.com/g/r.git",
    ),
    (f"mongodb+srv://u:p%40ss{PW}@cluster0", "mongodb+srv://u:[REDACTED:url_password]@cluster0"),
    (f"amqp://guest:p@ss{PW}@rabbit/", "amqp://guest:[REDACTED:url_password]@rabbit/"),
]


@pytest.mark.parametrize(("text", "expected"), URL_CASES)
def test_url_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_url_with_token_as_password_names_the_token() -> None:
    token = "gh" + "p_" + fake(36)
    out = redact(f"https://x-access-token:{token}@github.com/o/r.git")
    assert out == f"https://x-access-token:{marker('github_token')}@github.com/o/r.git"


HEADER_CASES = [
    (
        "curl -H 'Authorization: Bearer abc123DEF456ghi789' https://x",
        "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' https://x",
    ),
    (
        '{"Authorization": "Bearer abc123DEF456ghi789"}',
        '{"Authorization": "Bearer [REDACTED:bearer_token]"}',
    ),
    ("authorization: bearer abc123DEF456", "authorization: bearer [REDACTED:bearer_token]"),
    (
        "Proxy-Authorization: Basic " + base64.b64encode(b"user:" + PW.encode()).decode(),
        "Proxy-Authorization: Basic [REDACTED:basic_auth]",
    ),
    ("Authorization: token 0123abcd4567ef", "Authorization: token [REDACTED:secret]"),
    ('token_header = "Bearer abc123DEF456ghi"', 'token_header = "Bearer [REDACTED:bearer_token]"'),
    (f"curl -u bob:{PW} https://x", "curl -u bob:[REDACTED:password] https://x"),
    (f"curl --user 'bob:{PW}' https://x", "curl --user 'bob:[REDACTED:password]' https://x"),
    # A quoted value after a --flag (this raised AttributeError once).
    (f'mysql --password "{PW}" shop', 'mysql --password "[REDACTED:password]" shop'),
    (f"deploy --token '{PW}' --user bob", "deploy --token '[REDACTED:secret]' --user bob"),
    ('--password ""', '--password ""'),
]


@pytest.mark.parametrize(("text", "expected"), HEADER_CASES)
def test_headers_and_cli_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_jwt_bearer_keeps_the_specific_kind() -> None:
    token = make_jwt()
    out = redact(f"Authorization: Bearer {token}")
    assert out == "Authorization: Bearer " + marker("jwt")


# ---------------------------------------------------------------------------------------------
# Ordinary text and code must come through untouched
# ---------------------------------------------------------------------------------------------

UNCHANGED = [
    # Python that mentions secrets without containing any
    "if password is None:",
    "    if password == confirm_password:",
    'if password == "":',
    "def get_token(self):",
    "token = get_token()",
    "token = self._get_token(user)",
    "password_hash = bcrypt.hashpw(password.encode(), salt)",
    "self.password = password",
    "self.token = token",
    "client = Client(api_key=api_key, token=token)",
    "client = openai.OpenAI(api_key=key)",
    'TOKEN = "token"',
    'X_API_KEY = "X-API-Key"',
    "api_key = os.environ['OPENAI_API_KEY']",
    'token = os.getenv("GITHUB_TOKEN")',
    "password = getpass.getpass()",
    "api_key = settings.OPENAI_API_KEY",
    "def login(username: str, password: str) -> bool:",
    "token: Optional[str] = None",
    "token: str | None = None",
    "    password: SecretStr",
    "username, password = value",
    "token = TOKEN_BLOCK_END",
    "tokenizer = AutoTokenizer.from_pretrained(model_name)",
    "primary_key = 'id'",
    "data = json.dumps(obj, sort_keys=True)",
    "for key in sorted(keys):",
    "cache_key = f'{prefix}:{name}'",
    "secret = None",
    "{'token': None, 'password': null}",
    "token = 0",
    "token = -1",
    "Token: '#f8f8f2',",
    # token counters from model APIs
    '{"input_tokens": 1234, "output_tokens": 56, "max_tokens": 4096}',
    "max_tokens=4096 token_count: 17 total_tokens=99",
    '{"token_type": "bearer", "expires_in": 3600}',
    # shell references to secrets held elsewhere
    "export GITHUB_TOKEN=$(gh auth token)",
    'export TOKEN="${TOKEN}"',
    "curl -H 'Authorization: Bearer $TOKEN' https://api.example.com",
    "PASSWORD=${DB_PASSWORD:?missing}",
    "password: <your-password-here>",
    'password: "********"',
    "--token --verbose",
    "docker run -u 1000:1000 image",
    # prose and docstrings
    "The bearer of this letter is a friend.",
    "Authorization: required for all endpoints.",
    "password: The password part of the URL, or omit for no password.",
    ":param token: an event loop token to use",
    "Enter your password:",
    "the token is valid until tomorrow",
    "A password reset link was sent.",
    "second pass: adjacent intervals collapse",
    # git, hashes and ids
    "commit 3f2a9c1e0b7d4a8f9e6c5b4a3d2e1f0a9b8c7d6e",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "a1b2c3d Fix the thing (#123)",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "index 83db48f..bf269f4 100644",
    # prefixes inside longer words, and near misses
    "risk-assessment-for-the-project-in-2024",
    "pip install scikit-learn-intelex-2024-extension",
    "ghp_short",
    "AKIAshort",
    "See https://example.com/path?q=1#frag and mailto:someone@example.com",
    "ssh git@github.com:owner/repo.git",
    "http://localhost:8000/api",
    "<privateer>not a tag</privateer>",
    "(r'(<PRIVATE|PRIVATE>)(\\s)', bygroups(Keyword))",
    "",
]


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_large_ordinary_text_is_unchanged_and_late_secret_found() -> None:
    chunk = "\n".join(UNCHANGED) + "\n"
    text = chunk * (200_000 // len(chunk) + 1)
    assert redact(text) == text
    token = "gh" + "p_" + fake(36)
    out = redact(text + f"TOKEN={token}\n")
    assert token not in out
    assert out.endswith("TOKEN=" + marker("github_token") + "\n")


def test_non_ascii_text_keeps_positions() -> None:
    # U+0130 lower-cases to two characters; positions must still line up.
    prefix = "İstanbul ünïcødé ✓ 日本語 ß " * 3
    out = redact(prefix + f"password={PW} Authorization: Bearer abc123DEF456 end")
    assert out == prefix + (
        "password=[REDACTED:password] Authorization: Bearer [REDACTED:bearer_token] end"
    )


# ---------------------------------------------------------------------------------------------
# <private> blocks
# ---------------------------------------------------------------------------------------------

PRIVATE_CASES = [
    ("a <private>hidden</private> b", "a [private] b"),
    ("a <PRIVATE>hidden</Private> b", "a [private] b"),
    ("a <private>line one\nline two\n</private>\nb", "a [private]\nb"),
    ("<private>x</private> and <private>y</private>", "[private] and [private]"),
    ("keep <private>drop everything\nafter this", "keep [private]"),
    ("a <private>x <private>y</private> z</private> b", "a [private] b"),
    ('a <private reason="pii">x</private> b', "a [private] b"),
    ("a </private> b", "a </private> b"),
    ("<private></private>", "[private]"),
]


@pytest.mark.parametrize(("text", "expected"), PRIVATE_CASES)
def test_private_blocks(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_private_block_before_secret_rules() -> None:
    token = "gh" + "p_" + fake(36)
    text = f"<private>my token is {token}</private> but PASSWORD={PW}"
    assert redact(text) == f"{PRIVATE_MARKER} but PASSWORD=[REDACTED:password]"


def test_private_marker_is_exported() -> None:
    assert PRIVATE_MARKER == "[private]"


# ---------------------------------------------------------------------------------------------
# Nested values
# ---------------------------------------------------------------------------------------------


def test_redact_value_nested() -> None:
    token = "gh" + "p_" + fake(36)
    openai = "sk-" + "proj-" + fake(100, URLSAFE)
    original = {
        "tool_name": "Bash",
        "tool_input": {"command": f"GITHUB_TOKEN={token} gh pr list", "timeout": 120},
        "tool_response": {
            "stdout": ["ok", f"key={openai}", {"deep": [f"password={PW}"]}],
            "exit_code": 0,
            "ratio": 0.5,
            "flags": (True, None, f"<private>{PW}</private>"),
        },
        "password": PW,
        "api_key": openai,
        "Authorization": "Bearer opaque0123456789",
        "client_secret": "",
        "max_tokens": 4096,
        "token_count": "17",
        3: "int keys are fine",
    }
    snapshot = copy.deepcopy(original)
    out = redact_value(original)

    assert original == snapshot  # input untouched
    assert out is not original
    assert list(out) == list(original)  # keys kept, in order
    assert out["tool_name"] == "Bash"
    assert out["tool_input"] == {
        "command": f"GITHUB_TOKEN={marker('github_token')} gh pr list",
        "timeout": 120,
    }
    stdout = out["tool_response"]["stdout"]
    assert stdout[0] == "ok"
    assert stdout[1] == "key=" + marker("openai_key")
    assert stdout[2] == {"deep": ["password=" + marker("password")]}
    assert out["tool_response"]["exit_code"] == 0
    assert out["tool_response"]["ratio"] == 0.5
    assert out["tool_response"]["flags"] == (True, None, "[private]")
    # secret-named keys: values go whole, keeping a specific kind where one was found
    assert out["password"] == marker("password")
    assert out["api_key"] == marker("openai_key")
    assert out["Authorization"] == marker("bearer_token")
    assert out["client_secret"] == ""
    # not secret-named: untouched
    assert out["max_tokens"] == 4096
    assert out["token_count"] == "17"
    assert out[3] == "int keys are fine"
    assert redact_value(out) == out


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("password", "plain words here", marker("password")),
        ("db_password", "x", marker("password")),
        ("secret", "anything", marker("secret")),
        ("token", "short", marker("secret")),
        ("refresh_token", "abc", marker("secret")),
        ("apiKey", "abc", marker("secret")),
        ("x-api-key", "abc", marker("secret")),
        ("access_key", "abc", marker("secret")),
        ("private_key", "abc", marker("secret")),
        ("client_secret", "abc", marker("secret")),
        ("aws_secret_access_key", "abc", marker("aws_secret_key")),
        ("authorization", "Basic Ym9iOnB3", marker("basic_auth")),
        ("authorization", "Digest abc", marker("secret")),
        ("password", "$DB_PASSWORD", "$DB_PASSWORD"),
        ("password", "", ""),
        ("password_hash", "abc", "abc"),
        ("tokens", "abc", "abc"),
        ("sort_key", "abc", "abc"),
        ("description", "password is hunter", "password is hunter"),
    ],
)
def test_secret_named_keys(key: str, value: str, expected: str) -> None:
    assert redact_value({key: value}) == {key: expected}


def test_non_string_scalars_pass_through() -> None:
    for value in (None, True, 0, 1.5, b"bytes", 10**20):
        assert redact_value(value) == value
    assert redact_value({"password": 1234}) == {"password": 1234}


@pytest.mark.parametrize(
    "key",
    ["password", "DB_PASSWORD", "api_key", "apiKey", "clientSecret", "Authorization", "token"],
)
def test_is_secret_key(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["password_hash", "max_tokens", "token_count", "key", "monkey"])
def test_is_not_secret_key(key: str) -> None:
    assert not is_secret_key(key)


# ---------------------------------------------------------------------------------------------
# Extra patterns
# ---------------------------------------------------------------------------------------------


def test_extra_patterns_as_strings_and_compiled() -> None:
    r = Redactor([r"ACME-[0-9]{6}", re.compile(r"(?i)internal-[a-f0-9]{8}")])
    text = "ids ACME-123456 and INTERNAL-deadbeef, ACME-12 stays"
    assert r.text(text) == "ids [REDACTED:custom] and [REDACTED:custom], ACME-12 stays"
    assert r.value({"a": [text]}) == {"a": [r.text(text)]}
    assert r.text(r.text(text)) == r.text(text)
    assert len(r.extra_patterns) == 2


def test_extra_patterns_through_module_functions() -> None:
    text = f"ticket ACME-654321 password={PW}"
    expected = "ticket [REDACTED:custom] password=[REDACTED:password]"
    assert redact(text, extra_patterns=[r"ACME-\d{6}"]) == expected
    assert redact_value({"t": text}, extra_patterns=[r"ACME-\d{6}"]) == {"t": expected}
    # without the pattern the id is ordinary text
    assert redact(text) == "ticket ACME-654321 password=[REDACTED:password]"


def test_extra_pattern_that_matches_empty_string_is_harmless() -> None:
    assert Redactor([r"x*"]).text("abc xx def") == "abc [REDACTED:custom] def"


def test_invalid_extra_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid redaction pattern"):
        Redactor(["(unclosed"])


def test_redact_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        redact(b"bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Markers and idempotence
# ---------------------------------------------------------------------------------------------


def test_marker_format_and_kinds() -> None:
    assert marker("jwt") == "[REDACTED:jwt]"
    expected = {kind for kind, _, _ in TOKENS} | {
        "private_key",
        "slack_webhook",
        "bearer_token",
        "basic_auth",
        "url_password",
        "password",
        "secret",
        "aws_secret_key",
        "custom",
    }
    # The shapes the corpus (corpus.py) brings, with their own markers.
    expected |= {
        "azure_key", "sendgrid_key", "digitalocean_token", "telegram_token", "age_key",
        "mailgun_key", "npm_token", "pypi_token", "huggingface_token", "vault_token",
        "shopify_token", "atlassian_token", "linear_key", "discord_webhook",
    }  # fmt: skip
    assert expected == set(KINDS)
    found = {k for s in make_corpus() for k in re.findall(r"REDACTED:(\w+)", redact(s.text))}
    assert found == set(KINDS) - {"custom"}


def _everything() -> str:
    parts = [CONTEXTS[c](s) for _, _, s in TOKENS for c in ("env", "json", "curl-bearer")]
    parts += [text for text, _ in ASSIGNMENTS + URL_CASES + HEADER_CASES + PRIVATE_CASES]
    parts += [make_pem(label)[0] for label in PEM_LABELS]
    parts += [make_webhook()[0]]
    parts += UNCHANGED
    return "\n".join(parts)


def test_idempotent_on_mixed_corpus() -> None:
    text = _everything()
    once = redact(text)
    assert redact(once) == once
    for _, _, secret in TOKENS:
        assert secret not in once


def test_idempotent_on_values() -> None:
    value = {"log": _everything().splitlines(), "password": PW, "n": 1}
    once = redact_value(value)
    assert redact_value(once) == once


# ---------------------------------------------------------------------------------------------
# The literal gate: skipping rules whose literals are absent must never change the output
# ---------------------------------------------------------------------------------------------


class UngatedRedactor(Redactor):
    """Runs every built-in rule, as the redactor did before it had a gate."""

    _gated = False


GATED = Redactor()
UNGATED = UngatedRedactor()
RULES = redact_module._BUILTIN_RULES


def rules_that_change(text: str) -> set[str]:
    """The rules that, run alone on ``text``, would change it."""
    folded = redact_module._fold(text)
    return {rule.name for rule in RULES if rule.apply(text, folded) != text}


def rules_gated_in(text: str) -> set[str]:
    found = redact_module._present(redact_module._fold(text))
    return {RULES[i].name for i in found if i != PRIVATE_TAG}


def _every_alternative() -> list[str]:
    """One secret for every prefix, flag and keyword spelling the rules accept."""
    out = ["gl" + p + "-" + fake(20, URLSAFE) for p in ("pat", "ptt", "dt", "rt", "soat")]
    out += ["gl" + p + "-" + fake(24, URLSAFE) for p in ("cbt", "ft", "imt")]
    out += ["xo" + "x" + c + "-" + fake(20) for c in "abposr"]
    out += ["xa" + "pp-1-" + fake(20), "xa" + "pp-9-A" + fake(30)]
    out += [p + "k_" + env + "_" + fake(24) for p in "srp" for env in ("live", "test")]
    out += ["sk-" + "learn-compatible-estimators", "sk-" + "ant-" + "short0123", "-sk-" + fake(30)]
    out += [f"https://hooks.slack.com/{p}/T0/B1/{fake(24)}" for p in ("workflows", "triggers")]
    out += [f"curl -u{sep}bob:{PW} https://x" for sep in (" ", "\t", "=", "  ")]
    out += [f"curl --user{sep}bob:{PW} https://x" for sep in (" ", "\t", "=")]
    out += [f'curl --user="bob:{PW}" https://x', "docker run -u 1000:1000 img"]
    out += [
        "AUTHORIZATION: Bearer abc123DEF456ghi789",
        '{"authorization":"Basic ' + base64.b64encode(b"bob:" + PW.encode()).decode() + '"}',
        '{\\"Authorization\\": \\"Bearer abc123DEF456ghi789\\"}',
        "X-Proxy-Authorization = digest abc123def456",
        "Authorization: opaque0123456789",
        "auth = 'Bearer abc123DEF456ghi789'",
        "BEARER abc123DEF456ghi789",
        "token_type=bearer\tabc123DEF456ghi789==",
    ]
    keys = ["PASSPHRASE", "passwd", "db_pw", "Pass", "client_secret", "refreshToken", "apiKey"]
    seps = ["=", " = ", ": ", "=>", '": "', "': '", '\\": \\"', ": str = "]
    out += [f"{k}{s}{SECRET_VALUE}" for k in keys for s in seps]
    out += [f"--{k.lower()} {SECRET_VALUE}" for k in keys]
    out += ["-----" + "BEGIN PRIVATE KEY-----\\n" + fake(64) + "\\n" + fake(20) + "==\\n"]
    return out


def _shapes() -> list[str]:
    """Every secret shape the tests here and in test_secrets.py use, and the near misses."""
    out = [secret for _, _, secret in TOKENS]
    out += [CONTEXTS[c](secret) for _, _, secret in TOKENS for c in sorted(CONTEXTS)]
    out += [
        text for pair in ASSIGNMENTS + URL_CASES + HEADER_CASES + PRIVATE_CASES for text in pair
    ]
    out += UNCHANGED
    out += [make_pem(label, newline)[0] for label in PEM_LABELS for newline in ("\n", "\r\n")]
    out += ["\n".join(make_pem("OPENSSH PRIVATE KEY")[0].splitlines()[:4])]
    out += [make_webhook()[0], f"https://x-access-token:{'gh' + 'p_' + fake(36)}@github.com/o/r"]
    out += _every_alternative()
    secrets = make_secrets(20240601)
    out += [s.text for s in secrets] + blob(secrets).splitlines() + [blob(secrets)]
    out += [s.text for s in make_corpus(20240601)]
    return out


def _variants(text: str) -> list[str]:
    """The shape in other cases, escaped into JSON, inside URLs and at either end of a text."""
    return [
        text,
        text.upper(),
        text.lower(),
        text.swapcase(),
        json.dumps(text),
        json.dumps(json.dumps(text)),
        json.dumps({"command": text})[1:],
        f"https://example.com/cb?state={text}&x=1",
        f"https://user:{text}@example.com/path",
        f"ünï İ ✓ {text}",
        f"{text} ✓ İ ünï",
        f"{text}\n{text.upper()}",
    ]


SHAPES = _shapes()


def test_the_shapes_exercise_every_rule() -> None:
    """Otherwise the tests below could not notice a rule's literal going missing."""
    changed: set[str] = set()
    for text in SHAPES:
        changed |= rules_that_change(text)
    assert changed == {rule.name for rule in RULES}


def test_a_rule_changes_a_text_only_when_the_gate_reports_it() -> None:
    for shape in SHAPES:
        for text in _variants(shape):
            missing = rules_that_change(text) - rules_gated_in(text)
            assert not missing, (missing, text)


def test_gated_and_ungated_redaction_agree_on_every_shape() -> None:
    for shape in SHAPES:
        for text in _variants(shape):
            assert GATED.text(text) == UNGATED.text(text), text


def test_gated_and_ungated_redaction_agree_with_extra_patterns_and_private_blocks() -> None:
    token = "gh" + "p_" + fake(36)
    gated = Redactor([r"ACME-\d{6}", "Token"])
    ungated = UngatedRedactor([r"ACME-\d{6}", "Token"])
    for text in (
        f"ACME-123456 <private>{token}</private> password={PW} Token: {SECRET_VALUE}",
        f"<PRIVATE>x</PRIVATE> Authorization: Bearer {token}",
        f"ACME-654321 TOKEN={token}",
    ):
        assert gated.text(text) == ungated.text(text)
        assert token not in gated.text(text)


# Words, and near misses of every literal the gate looks for.
_WORD_TEXT = (
    "the a of to in is it for keys monkey passage passing tokenizer secretary secrets bearer "
    "bearers authorization Authorizations Asia asia askia disk- risk- task-run eyes eyJ "
    "eyJhbGciOiJIUzI1NiJ9 sk- sk-ant- ghp_ gho_x github_pat_ glpat- xoxb- xapp-1- sk_live_ "
    "rk_test_ whsec_ AKIA ASIA AIza http:// https:// :// -u --user -u= --user= -----BEGIN "
    "-----END PRIVATE KEY----- RSA PRIVATE KEY----- password passwd pw PW pass secret token "
    "key KEY Token Bearer None self.password os.environ $TOKEN ${PW} <x> "
    "hooks.slack.com/services/ user:pw@host :pw@ bob:hunter2 1000:1000 İ ünï ✓ 日本語 ß K ſ "
    "café naïve"
)
_WORDS = _WORD_TEXT.split()
_CODE = (
    "def f(x):",
    "return x",
    "if a == b:",
    "x = y",
    "token = get_token()",
    "kwargs['key'] = value",
    "d = {'password': None}",
    "f(api_key=key)",
    "for k in keys:",
    "$ curl -s",
    "PASSED [ 12%]",
    "drwxr-xr-x 2 user user 4096",
    "-rw-r--r--",
)
_SEPARATORS = (" ", " ", " ", "", "\n", "\t", "=", ": ", '"', "'", '\\"', "\\n", ",", "@", "/")


def _random_text(rng: random.Random, secrets: list[str]) -> str:
    pieces = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        if roll < 0.45:
            piece = rng.choice(_WORDS)
        elif roll < 0.65:
            piece = rng.choice(_CODE)
        elif roll < 0.75:
            piece = "".join(rng.choice(string.punctuation) for _ in range(rng.randint(1, 4)))
        else:
            piece = rng.choice(secrets)
            if rng.random() < 0.3:  # cut short, or the tail alone
                cut = rng.randint(1, len(piece))
                piece = piece[:cut] if rng.random() < 0.5 else piece[cut:]
        case = rng.random()
        if case < 0.1:
            piece = piece.upper()
        elif case < 0.2:
            piece = piece.lower()
        pieces.append(piece)
        pieces.append(rng.choice(_SEPARATORS))
    text = "".join(pieces[:-1])
    return json.dumps(text) if rng.random() < 0.1 else text


def test_gated_and_ungated_redaction_agree_on_random_texts() -> None:
    rng = random.Random(8675309)
    secrets = [s for s in SHAPES if 0 < len(s) < 400]
    for _ in range(3000):
        text = _random_text(rng, secrets)
        assert GATED.text(text) == UNGATED.text(text), text
        missing = rules_that_change(text) - rules_gated_in(text)
        assert not missing, (missing, text)


def test_the_hook_scripts_gate_reports_what_the_servers_does() -> None:
    """Plain substring search (the stdlib engine) and the RE2 set agree on every shape."""
    for shape in SHAPES + ["<private>x</private>", "<PRIVATE attr=1>"]:
        for text in _variants(shape):
            folded = redact_module._fold(text)
            assert literal_present(folded) == redact_module._present(folded), text


def test_literals_cannot_straddle_a_marker() -> None:
    """What lets the gate skip a rescan after a rule has put markers in the text."""
    for rule in RULES:
        for literal in rule.literals:
            assert literal and literal == literal.lower() and literal.isascii(), rule.name
            assert "[" not in literal and "]" not in literal, rule.name
    for kind in KINDS:
        assert marker(kind).startswith("[") and marker(kind).endswith("]")


def test_ordinary_prose_runs_no_rule() -> None:
    text = "The build finished in 42 s. Nothing to report; see the log for details.\n" * 50
    assert rules_gated_in(text) == set()
    assert redact(text) == text
