"""Real-shaped fake secrets in the files they are found in, and ordinary text that must survive.

Every value is made at run time from a seed (random each run; ``TEST_SECRETS_SEED=N`` repeats
a run), so no secret-looking string sits in the repository. Each entry is one kind: a secret
in the shape of a real file or command (.env, .ini, .yaml, .toml, JSON configs, shell
history, CLI flags, URLs, DSNs, headers, PEM / OpenSSH / PGP keys, JWTs, cloud credential
files, CSVs). ``needles`` are the random parts that must never be found anywhere afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UPPER = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"

SEED = int(os.environ.get("TEST_SECRETS_SEED") or random.SystemRandom().randrange(2**32))


@dataclass
class Secret:
    kind: str
    text: str  # as it appears in the input
    needles: list[str]  # what must never be found in the memory's files


def _rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """n characters with, where the alphabet has them, a digit and a letter: as real ones have."""
    body = "".join(rng.choice(alphabet) for _ in range(n - 2))
    digits = [c for c in alphabet if c.isdigit()] or [rng.choice(alphabet)]
    letters = [c for c in alphabet if c.isalpha()] or [rng.choice(alphabet)]
    return body + rng.choice(digits) + rng.choice(letters)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pem(rng: random.Random, label: str, lines: int = 10, end: bool = True) -> tuple[str, list]:
    body = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(lines)]
    head = [f"-----BEGIN {label}-----"]
    tail = [f"-----END {label}-----"] if end else []
    return "\n".join(head + body + tail), body


def _jwt(rng: random.Random) -> tuple[str, str, str]:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": _rand(rng, 16), "exp": 1900000000}).encode())
    signature = _b64url(rng.randbytes(32))
    return f"{header}.{claims}.{signature}", claims, signature


def make_corpus(seed: int = SEED) -> list[Secret]:
    rng = random.Random(seed)
    r = lambda n, a=ALNUM: _rand(rng, n, a)  # noqa: E731
    out: list[Secret] = []

    def add(kind: str, text: str, *needles: str) -> None:
        out.append(Secret(kind, text, list(needles)))

    # Provider keys in .env files and source.
    v = r(93, URLSAFE)
    add("env-anthropic", f"ANTHROPIC_API_KEY={'sk-' + 'ant-api03-'}{v}AA", v)
    v = r(48, URLSAFE)
    add("env-openai-project", f"OPENAI_API_KEY={'sk-' + 'proj-'}{v}", v)
    v = r(48)
    add("python-openai-classic", f'openai.api_key = "{"sk-" + v}"', v)
    v = r(60, URLSAFE)
    add("env-openai-service-account", f"OPENAI_KEY={'sk-' + 'svcacct-'}{v}", v)
    v = r(36)
    add("env-github-classic", f"GITHUB_TOKEN={'gh' + 'p_'}{v}", v)
    v = r(22) + "_" + r(59)
    add("url-github-fine-grained", f"git clone https://{'github' + '_pat_'}{v}@github.com/a/b", v)
    v = r(20, URLSAFE)
    add("yaml-gitlab", f"variables:\n  CI_JOB_TOKEN: {'gl' + 'pat-'}{v}", v)
    v = "-".join([r(12, string.digits), r(13, string.digits), r(24)])
    add("env-slack-bot", f"SLACK_BOT_TOKEN={'xo' + 'xb-'}{v}", v)
    v = r(24)
    hook = f"https://hooks.slack.com/services/T0{r(8, UPPER)}/B{r(9, UPPER)}/{v}"
    add("env-slack-webhook", f"SLACK_URL={hook}", v)
    v = r(35, URLSAFE)
    add("js-google-maps", f'const mapsKey = "{"AI" + "za"}{v}";', v)
    v = r(24)
    add("env-stripe-live", f"STRIPE_SECRET_KEY={'sk' + '_live_'}{v}", v)
    v = r(24)
    add("python-stripe-restricted", f'stripe.api_key = "{"rk" + "_live_"}{v}"', v)
    v = r(32)
    add("env-stripe-webhook", f"STRIPE_WEBHOOK_SECRET={'wh' + 'sec_'}{v}", v)
    a, b = r(22, URLSAFE), r(43, URLSAFE)
    add("env-sendgrid", f"SENDGRID_API_KEY={'S' + 'G.'}{a}.{b}", a, b)
    v = r(64, HEX)
    add("env-digitalocean", f"DIGITALOCEAN_TOKEN={'do' + 'p_v1_'}{v}", v)
    v = r(33, URLSAFE)
    add("python-telegram", f'bot = Bot("{r(10, string.digits)}:{"A" + "A"}{v}")', v)
    v = r(58, UPPER)
    add("age-key-file", f"# created: 2024-05-01T10:00:00Z\n# public key: age1{r(58, HEX)}\n"
        f"{'AGE-SECRET' + '-KEY-1'}{v}", v)  # fmt: skip
    v = r(32, HEX)
    add("python-mailgun", f'mg = Mailgun(domain="mg.acme.dev", key="{"ke" + "y-"}{v}")', v)
    v = r(36)
    add("npmrc", f"//registry.npmjs.org/:_authToken={'np' + 'm_'}{v}", v)
    v = r(70, URLSAFE)
    add("cli-twine", f"twine upload -u __token__ -p {'pypi-' + 'AgEIcHlwaS5vcmc'}{v} dist/*", v)
    v = r(64, URLSAFE)
    add("pypirc", f"[pypi]\nusername = __token__\npassword = {'pypi-' + 'AgEIcHlwaS5vcmc'}{v}", v)
    v = "".join(rng.choice(string.ascii_letters) for _ in range(34))  # letters only
    add("cli-huggingface", f"huggingface-cli login --token {'hf' + '_'}{v}", v)
    v = r(90, URLSAFE)
    add("shell-vault", f"export VAULT_TOKEN={'hv' + 's.'}{v}", v)
    v = r(32, HEX)
    add("header-shopify", f"X-Shopify-Access-Token: {'shp' + 'at_'}{v}", v)
    v = r(180, URLSAFE + "=")
    add("curl-atlassian", f"curl -u me@acme.dev:{'ATATT' + '3xFfGF0'}{v} https://acme.net", v)
    v = r(40)
    add("header-linear", f"Authorization: {'lin' + '_api_'}{v}", v)
    v = r(68, URLSAFE)
    add("url-discord-webhook", f"https://discord.com/api/webhooks/{r(18, string.digits)}/{v}", v)

    # Cloud credential files.
    key, secret = r(16, UPPER), r(40, B64)
    add("aws-credentials-file", f"[default]\naws_access_key_id = {'AK' + 'IA'}{key}\n"
        f"aws_secret_access_key = {secret}\nregion = eu-west-1", key, secret)  # fmt: skip
    key, secret = r(16, UPPER), r(40, B64)
    head = "User name,Password,Access key ID,Secret access key,Console login link"
    row = f"ci-bot,,{'AK' + 'IA'}{key},{secret},https://123456789012.signin.aws.amazon.com/console"
    add("aws-credentials-csv", f"{head}\n{row}", key, secret)
    v = r(40, B64)
    add("shell-aws-secret", f"export AWS_SECRET_ACCESS_KEY={v}", v)
    v = r(86, B64)
    add("azure-storage-connection", "DefaultEndpointsProtocol=https;AccountName=acmestore;"
        f"AccountKey={v}==;EndpointSuffix=core.windows.net", v)  # fmt: skip
    v = r(43, B64)
    add("azure-sas-url", "https://acmestore.blob.core.windows.net/backups/db.bak?sv=2022-11-02"
        f"&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&sig={v}%3D", v)  # fmt: skip
    v = r(44, B64)
    add("azure-service-bus", "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName="
        f"RootManageSharedAccessKey;SharedAccessKey={v}=", v)  # fmt: skip
    pem, body = _pem(rng, "PRIVATE KEY")
    gcp = {"type": "service_account", "project_id": "acme-prod",
           "private_key_id": "0" * 40, "private_key": pem + "\n",
           "client_email": "ci@acme-prod.iam.gserviceaccount.com"}  # fmt: skip
    add("gcp-service-account-json", json.dumps(gcp, indent=2), *body)
    token, claims, signature = _jwt(rng)
    add("kubeconfig-token", f"users:\n- name: ci\n  user:\n    token: {token}", claims, signature)

    # Keys.
    pem, body = _pem(rng, "RSA PRIVATE KEY")
    add("pem-rsa", pem, *body)
    pem, body = _pem(rng, "OPENSSH PRIVATE KEY")
    add("openssh-key", pem, *body)
    pem, body = _pem(rng, "PGP PRIVATE KEY BLOCK")
    add("pgp-key", pem.replace("-----\n", "-----\n\n", 1), *body)
    pem, body = _pem(rng, "ENCRYPTED PRIVATE KEY")
    add("pem-encrypted", pem, *body)

    # Tokens and headers.
    token, claims, signature = _jwt(rng)
    add("json-jwt", json.dumps({"id_token": token, "expires_in": 3600}), claims, signature)
    v = r(40, ALNUM + "-._~")
    add("curl-bearer", f'curl -H "Authorization: Bearer {v}" https://api.acme.dev/v1/orders', v)
    v = base64.b64encode(f"deploy:{r(16)}".encode()).decode()
    add("header-basic", f"Authorization: Basic {v}", v)
    v = r(40, HEX)
    add("header-token", f"authorization: token {v}", v)
    v = base64.b64encode(f"ci:{r(20)}".encode()).decode()
    add("docker-config-json", json.dumps({"auths": {"registry.acme.dev": {"auth": v}}}), v)

    # key = value in every config format, lower and upper case.
    v = r(18)
    add("env-password", f"DB_PASSWORD={v}", v)
    v = r(16)
    add("ini-password", f"[database]\nhost = db.internal\npassword = {v}\nport = 5432", v)
    v = r(32)
    add("ini-token", f"[auth]\ntoken = {v}", v)
    v = r(32)
    add("yaml-token", f"service:\n  token: {v}", v)
    v = r(32)
    add("yaml-api-key", f'api_key: "{v}"', v)
    v = r(20)
    add("compose-password", f"    environment:\n      POSTGRES_PASSWORD: {v}", v)
    v = r(24)
    add("toml-secret", f'[server]\nsecret="{v}"', v)
    v = r(16)
    add("toml-password", f'[tool.db]\npassword = "{v}"', v)
    v = r(16)
    add("json-password", json.dumps({"username": "deploy", "password": v}, indent=2), v)
    v = r(40)
    add("json-client-secret", json.dumps({"clientId": "web", "clientSecret": v}), v)
    v = r(48, B64)
    add("json-unknown-shape", json.dumps({"webhookSigningToken": v}), v)  # no known shape
    v = r(1) + r(63, ALNUM + "+/=-_")  # a first "=" would make it `KEY==...`, a comparison
    add("env-unknown-shape", f"INTERNAL_SERVICE_TOKEN={v}", v)
    v = r(40)
    add("python-kwarg", f'client = Client(api_key="{v}")', v)
    v = r(32, HEX)
    add("env-twilio", f"TWILIO_AUTH_TOKEN={v}", v)
    v = r(32, HEX)
    add("env-datadog", f"DD_API_KEY={v}", v)
    v = f"{r(8, HEX)}-{r(4, HEX)}-4{r(3, HEX)}-a{r(3, HEX)}-{r(12, HEX)}"
    add("env-heroku", f"HEROKU_API_KEY={v}", v)

    # Commands (shell history) and CLI flags.
    v = r(16)
    add("shell-mysql", f"mysql -h db.internal -u root -p{v} orders", v)
    v = r(16)
    add("shell-curl-user", f"curl -u deploy:{v} https://ci.acme.dev/api/builds", v)
    v = r(20)
    add("cli-password-flag", f"docker login --username ci --password {v} registry.acme.dev", v)
    v = r(24)
    add("cli-token-flag", f"gh auth login --with-token --token {v}", v)

    # URLs and DSNs.
    v = r(20)
    add("url-postgres", f"DATABASE_URL=postgres://orders_app:{v}@db.internal:5432/orders", v)
    v = r(24)
    add("url-redis", f"REDIS_URL=redis://:{v}@cache.internal:6379/0", v)
    v = r(20)
    add("url-mongodb", f"mongodb+srv://app:{v}@cluster0.abcde.mongodb.net/prod?retryWrites=true", v)
    v = r(40)
    add("git-credentials", f"https://ci-bot:{v}@git.acme.dev", v)
    v = r(20)
    add("dsn-sqlserver", f"Server=tcp:sql.acme.net,1433;Database=orders;User ID=app;Password={v};"
        "Encrypt=True;", v)  # fmt: skip
    v = r(32)
    add("netrc", f"machine api.heroku.com\n  login me@acme.dev\n  password {v}", v)
    v = r(32, HEX)
    add("url-twilio", f"https://AC{r(32, HEX)}:{v}@api.twilio.com/2010-04-01/Accounts", v)

    # Private blocks.
    v = r(14)
    pin = r(10, string.digits)
    add("private-block", f"Note: <private>home address is {v}, PIN {pin}</private>", v)
    # Last: a key begun and never ended is redacted to the end of the text, and would hide
    # whatever followed it.
    pem, body = _pem(rng, "EC PRIVATE KEY", lines=4, end=False)
    add("pem-head-5", pem, *body)  # `head -5 key.pem`: no END line
    return out


def blob(corpus: list[Secret]) -> str:
    """Every secret of the corpus in one text, as a file or a session's output holds many."""
    return "\n\n".join(s.text for s in corpus)


def needles(corpus: list[Secret]) -> list[str]:
    return [n for s in corpus for n in s.needles]


def ordinary(seed: int = SEED) -> list[tuple[str, str]]:
    """Code and output that look a little like secrets and are not: each must come back as is."""
    rng = random.Random(seed ^ 0x5EED)
    sha = "".join(rng.choice(HEX) for _ in range(40))
    h = lambda n: _rand(rng, n, HEX)  # noqa: E731
    uuid = f"{h(8)}-{h(4)}-4{h(3)}-8{h(3)}-{h(12)}"
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(300)).decode()
    sha512 = base64.b64encode(rng.randbytes(64)).decode()
    sha256 = "".join(rng.choice(HEX) for _ in range(64))
    return [
        ("git-log", f"commit {sha}\nAuthor: Ada <ada@acme.dev>\n\n    Fix the token refresh"),
        ("git-short-shas", f"{sha[:7]} Merge branch 'main'\n{sha[7:14]} Bump version"),
        ("uuid-json", json.dumps({"session_id": uuid, "tool_use_id": "toolu_" + sha[:20]})),
        ("uuid-text", f"Created session {uuid} in 42 ms"),
        ("base64-image", f'<img src="data:image/png;base64,{png}">'),
        (
            "package-lock",
            json.dumps(
                {
                    "node_modules/left-pad": {
                        "version": "1.3.0",
                        "resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
                        "integrity": "sha512-" + sha512,
                    }
                },
                indent=2,
            ),
        ),  # fmt: skip
        ("poetry-lock", f'files = [\n  {{file = "idna-3.7.tar.gz", hash = "sha256:{sha256}"}},\n]'),
        ("uv-lock", f'sdist = {{ url = "https://x.dev/x.tar.gz", hash = "sha256:{sha256}" }}'),
        ("docker-digest", f"FROM python:3.12-slim@sha256:{sha256}"),
        ("html-sri", f'<script src="/app.js" integrity="sha384-{sha512[:64]}"></script>'),
        (
            "pytest-fixture-token",
            '@pytest.fixture\ndef token(ds):\n    return ds.create_token("r")'
            "\n\ndef test_write(token):\n    assert post(token=token).ok",
        ),  # fmt: skip
        (
            "fixture-password-reset-url",
            'password_reset_url = reverse("password_reset")\n'
            "assert response.url == password_reset_url",
        ),  # fmt: skip
        ("max-tokens", "response = client.messages.create(model=model, max_tokens=4096)"),
        ("token-counts", json.dumps({"input_tokens": 1532, "output_tokens": 210, "tokens": 1742})),
        ("python-getpass", "password = getpass.getpass()\ntoken = get_token()"),
        ("settings-reference", "SECRET_KEY = os.environ['SECRET_KEY']\napi_key = settings.API_KEY"),
        ("env-reference", "DB_PASSWORD=${DB_PASSWORD}\nAPI_TOKEN=$API_TOKEN"),
        ("annotations", "class Config:\n    password: str\n    token: Token | None = None"),
        ("kwarg-passthrough", "client = Client(api_key=api_key, token=token)"),
        ("prose", "The password must have 12 characters or more. Bearer authentication is used."),
        ("sql-schema", "CREATE TABLE users (id INTEGER PRIMARY KEY, password_hash TEXT NOT NULL)"),
        ("shell-flags", "mkdir -p build && ssh -p 2222 host && docker run -u 1000:1000 img"),
        ("mysql-prompt", "mysql -h db.internal -u root -p orders"),
        (
            "url-no-password",
            "git clone https://ada@github.com/acme/api.git && open https://example.com/?page=2",
        ),
        ("ssh-remote", "git remote add origin git@github.com:acme/api.git"),
        ("sklearn", "pip install scikit-learn  # sk-learn estimators"),
        ("css", ":root { --key-color: #ff0000; --token-gap: 4px; }"),
        ("yaml-flags", "auth: true\nsecret: false\npassword_min_length: 12"),
        (
            "json-names",
            json.dumps(
                {
                    "primary_key": "id",
                    "sort_key": "name",
                    "key": "value",
                    "token_type": "bearer",
                    "auth_url": "https://acme.dev/oauth",
                    "secret_name": "db-creds",
                    "password_reset_url": "https://acme.dev/reset",
                }
            ),
        ),  # fmt: skip
        ("hexdigest", "digest = hashlib.sha256(data).hexdigest()  # e.g. " + sha256),
        ("pem-public", "-----BEGIN PUBLIC KEY-----\n" + png[:64] + "\n-----END PUBLIC KEY-----"),
        ("certificate", "-----BEGIN CERTIFICATE-----\n" + png[:64] + "\n-----END CERTIFICATE-----"),
        ("pytest-output", "tests/test_auth.py::test_token_refresh PASSED [ 12%]"),
        ("ls-output", "drwxr-xr-x 2 ada ada 4096 May  1 keys\n-rw------- 1 ada ada 411 id.pub"),
    ]
