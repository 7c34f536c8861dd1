"""Who may write, and the requests refused before any write: 401, 403, 413, cross-site
requests, DNS rebinding; and no client input makes the server fail (never a 500)."""

from __future__ import annotations

import json
import random
import time
import types
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from datasette.tokens import TokenRestrictions
from helpers import API, api_call, assert_error, bearer, query_rows

from datasette_claude_mem.api.routes import ENDPOINTS


def concrete(path: str) -> str:
    for name, value in (("session_id", "s"), ("item_id", "i"), ("learning_id", "l")):
        path = path.replace("{" + name + "}", value)
    return path


# Every route that needs a permission: the writes, and the context read.
GUARDED_ROUTES = [(e.method, concrete(e.path)) for e in ENDPOINTS if e.permission is not None]

TABLES = (
    "sessions",
    "observations",
    "pending_queue",
    "pending_payloads",
    "function_map",
    "call_graph",
    "learnings",
    "event_log",
)


async def row_counts(ds: Datasette) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        counts[table] = (await query_rows(ds, f"SELECT count(*) AS n FROM {table}"))[0]["n"]
    return counts


def session_body(tmp_path: Path) -> dict[str, str]:
    return {"project_dir": str(tmp_path)}


def test_every_route_but_the_description_is_guarded():
    assert [(e.method, e.path) for e in ENDPOINTS if e.permission is None] == [
        ("GET", "/openapi.json")
    ]
    assert ("PATCH", "/learnings/l") in GUARDED_ROUTES
    assert ("POST", "/queue/i/complete") in GUARDED_ROUTES


# 401


@pytest.mark.asyncio
async def test_no_token_is_401_on_every_guarded_route(ds: Datasette, session_id: str):
    before = await row_counts(ds)
    for method, path in GUARDED_ROUTES:
        response = await api_call(ds, method, path, {"project_dir": "/x"})
        assert_error(response, 401, "token is required", case=(method, path))
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await row_counts(ds) == before


@pytest.mark.asyncio
async def test_unrecognised_credentials_are_401(ds: Datasette):
    for authorization in (
        "Bearer not-a-token",
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "dstok_abc",
        "token",
    ):
        response = await api_call(
            ds,
            "POST",
            "/sessions",
            {"project_dir": "/x"},
            headers={"Authorization": authorization},
        )
        assert_error(response, 401, case=authorization)
        assert "bearer" in response.headers["www-authenticate"].lower()
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_forged_token_is_401(ds: Datasette, tmp_path: Path):
    forged = Datasette(secret="another-secret")
    try:
        bad = await forged.create_token("claude-mem")
    finally:
        forged.close()
    for token in (bad, "dstok_garbage", bad[:-3] + "abc"):
        response = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
        assert_error(response, 401)
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_expired_token_is_401(ds: Datasette, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The token handler's clock is held still, then moved on: no race with a slow machine."""
    import datasette.tokens

    now = time.time()
    clock = types.SimpleNamespace(time=lambda: now)
    monkeypatch.setattr(datasette.tokens, "time", clock)
    token = await ds.create_token("claude-mem", expires_after=1)
    fresh = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert fresh.status_code == 201, fresh.text
    # Ten seconds later, as the token handler sees it.
    clock.time = lambda: now + 10
    expired = await api_call(ds, "POST", "/sessions", {"project_dir": "/other"}, token=token)
    assert_error(expired, 401, "expired")
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 1}]


@pytest.mark.asyncio
async def test_authentication_comes_before_reading_the_body(ds: Datasette):
    response = await api_call(ds, "POST", "/sessions", content=b"{not json")
    assert_error(response, 401)


# 403


@pytest.mark.asyncio
async def test_actor_without_permission_is_403(
    ds: Datasette, other_token: str, restricted_token: str, session_id: str
):
    """Another actor, and the hooks' actor with a token restricted to viewing tables."""
    before = await row_counts(ds)
    for token in (other_token, restricted_token):
        for method, path in GUARDED_ROUTES:
            response = await api_call(ds, method, path, {"project_dir": "/x"}, token=token)
            needed = "view-database" if method == "GET" else "claude-mem-write"
            assert_error(response, 403, needed, case=(method, path))
    assert await row_counts(ds) == before


@pytest.mark.asyncio
async def test_token_restricted_to_the_write_action_may_write(ds: Datasette, tmp_path: Path):
    restrictions = TokenRestrictions().allow_database("claude-mem", "claude-mem-write")
    token = await ds.create_token("claude-mem", restrictions=restrictions)
    response = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert response.status_code == 201, response.text
    # ... but only on the memory database.
    elsewhere = TokenRestrictions().allow_database("another", "claude-mem-write")
    token = await ds.create_token("claude-mem", restrictions=elsewhere)
    response = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert_error(response, 403)


@pytest.mark.asyncio
async def test_signed_in_root_may_write_with_the_cookie(ds: Datasette, tmp_path: Path):
    response = await ds.client.post(
        f"{API}/sessions", json=session_body(tmp_path), actor={"id": "root"}
    )
    assert response.status_code == 201, response.text
    other = await ds.client.post(
        f"{API}/sessions", json=session_body(tmp_path), actor={"id": "mallory"}
    )
    assert_error(other, 403)


@pytest.mark.asyncio
async def test_configuration_can_let_another_actor_write(
    make_ds, memory_path: Path, serve_config: dict[str, Any], tmp_path: Path
):
    config = json.loads(json.dumps(serve_config))
    config["databases"]["claude-mem"]["permissions"]["claude-mem-write"]["id"].append("bot")
    ds = await make_ds(memory_path, config=config)
    token = await ds.create_token("bot")
    response = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert response.status_code == 201, response.text


@pytest.mark.asyncio
async def test_without_any_configuration_nobody_may_write(
    make_ds, memory_path: Path, tmp_path: Path
):
    """Plugin actions are denied by default: a bare Datasette lets no token write."""
    ds = await make_ds(memory_path, config={})
    token = await ds.create_token("claude-mem")
    response = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert_error(response, 403)


# 413


@pytest.mark.asyncio
async def test_body_over_the_size_limit_is_413(make_ds, memory_path: Path, tmp_path: Path):
    ds = await make_ds(memory_path, settings={"max_post_body_bytes": 300})
    token = await ds.create_token("claude-mem")
    small = await api_call(ds, "POST", "/sessions", session_body(tmp_path), token=token)
    assert small.status_code == 201, small.text
    big = {"project_dir": "/x", "summary": "y" * 400}
    response = await api_call(ds, "POST", "/sessions", big, token=token)
    assert_error(response, 413, "300")
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 1}]


@pytest.mark.asyncio
async def test_streamed_body_over_the_limit_is_413(make_ds, memory_path: Path):
    """No Content-Length to go by: the limit is applied while reading."""
    ds = await make_ds(memory_path, settings={"max_post_body_bytes": 300})
    token = await ds.create_token("claude-mem")

    async def chunks():
        yield b'{"project_dir": "/x", "summary": "'
        for _ in range(10):
            yield b"y" * 100
        yield b'"}'

    response = await ds.client.post(f"{API}/sessions", content=chunks(), headers=bearer(token))
    assert_error(response, 413)
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_default_limit_admits_a_large_tool_output(ds: Datasette, token: str, session_id: str):
    body = {
        "session_id": session_id,
        "tool_use_id": "big",
        "tool_name": "Read",
        "raw_output": "x" * 1_000_000,
    }
    response = await api_call(ds, "POST", "/queue", body, token=token)
    assert response.status_code == 201, response.text
    assert response.json()["row"]["raw_bytes"] == 1_000_000


# Cross-site requests


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "http://localhost.evil.example"},
    {"Origin": "http://localhost:9999"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
]


@pytest.mark.asyncio
async def test_cross_site_writes_are_403(ds: Datasette, token: str, tmp_path: Path):
    for headers in CROSS_SITE:
        for method, path in (("POST", "/sessions"), ("DELETE", "/learnings/x")):
            response = await api_call(
                ds, method, path, session_body(tmp_path), token=token, headers=headers
            )
            assert_error(response, 403, "Cross-site", case=(method, headers))
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_cross_site_write_with_the_root_cookie_is_403(ds: Datasette, tmp_path: Path):
    response = await ds.client.post(
        f"{API}/sessions",
        json=session_body(tmp_path),
        actor={"id": "root"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert_error(response, 403)
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_same_origin_and_non_browser_writes_pass(ds: Datasette, token: str, tmp_path: Path):
    for headers in (
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
        {},
    ):
        response = await api_call(
            ds, "POST", "/sessions", session_body(tmp_path), token=token, headers=headers
        )
        assert response.status_code == 201, (headers, response.text)


@pytest.mark.asyncio
async def test_cross_site_reads_are_not_refused_by_the_guard(ds: Datasette):
    response = await ds.client.get(
        f"{API}/openapi.json",
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 200


# DNS rebinding


@pytest.mark.asyncio
async def test_unknown_host_is_refused(ds: Datasette, token: str, tmp_path: Path):
    hosts = [
        "evil.example",
        "evil.example:8765",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "0.0.0.0",
        "",
    ]
    for host in hosts:
        for method, path in (("POST", f"{API}/sessions"), ("GET", "/claude-mem"), ("GET", "/")):
            response = await ds.client.request(
                method, path, json=session_body(tmp_path), headers={**bearer(token), "Host": host}
            )
            body = assert_error(response, 400, "allowed_hosts", case=(host, path))
            assert repr(host) in body["error"]
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_loopback_hosts_are_answered(ds: Datasette, token: str, tmp_path: Path):
    hosts = ["localhost", "localhost:8765", "127.0.0.1", "127.0.0.1:8001", "[::1]:8765"]
    for host in [*hosts, "LOCALHOST", "[::1]"]:
        response = await ds.client.post(
            f"{API}/sessions",
            json=session_body(tmp_path),
            headers={**bearer(token), "Host": host},
        )
        assert response.status_code in (200, 201), (host, response.text)


@pytest.mark.asyncio
async def test_allowed_hosts_setting_admits_a_name(make_ds, memory_path: Path, tmp_path: Path):
    ds = await make_ds(memory_path, plugin={"allowed_hosts": ["memory.example"]})
    token = await ds.create_token("claude-mem")
    ok = await ds.client.post(
        f"{API}/sessions",
        json=session_body(tmp_path),
        headers={**bearer(token), "Host": "memory.example:8765"},
    )
    assert ok.status_code == 201, ok.text
    page = await ds.client.get("/-/versions.json", headers={"Host": "memory.example"})
    assert page.status_code == 200
    refused = await ds.client.get("/-/versions.json", headers={"Host": "evil.example"})
    assert_error(refused, 400)


@pytest.mark.asyncio
async def test_allowed_hosts_environment_variable(
    make_ds, memory_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CLAUDE_MEM_ALLOWED_HOSTS", "a.example, b.example")
    ds = await make_ds(memory_path)
    for host in ("a.example", "b.example"):
        response = await ds.client.get("/-/versions.json", headers={"Host": host})
        assert response.status_code == 200, host
    assert_error(await ds.client.get("/-/versions.json", headers={"Host": "c.example"}), 400)


@pytest.mark.asyncio
async def test_wildcard_allowed_host_admits_any(make_ds, memory_path: Path):
    ds = await make_ds(memory_path, plugin={"allowed_hosts": ["*"]})
    response = await ds.client.get("/-/versions.json", headers={"Host": "anything.example"})
    assert response.status_code == 200


# Never a 500


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choices = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.choice([0, -1, 1, 2**63, -(2**63) - 1, 10**30]),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.choice([1e308, -1e308, 1.5, 0.0, -0.0]),
        lambda: rng.choice(["", "x", "raw", "processing", "gotcha", "direct", "ast", "w1"]),
        lambda: "".join(rng.choice("ab \"'\\\n\t\x00é漢😀") for _ in range(rng.randint(0, 20))),
        lambda: "\ud800",
        lambda: "y" * rng.randint(0, 5000),
    ]
    if depth < 3:
        choices += [
            lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))],
            lambda: {
                rng.choice(FIELD_NAMES): random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 5))
            },
        ]
    return rng.choice(choices)()


FIELD_NAMES = sorted(
    {name for e in ENDPOINTS if e.body is not None for name in e.body.model_fields}
    | {"qualified_name", "kind", "body_hash", "caller_function", "callee_function", "resolution"}
)


def valid_bodies(session_id: str) -> dict[tuple[str, str], Any]:
    """A body each route accepts, for the fuzz loop to start from and break."""
    return {
        ("POST", "/sessions"): {"project_dir": "/tmp/fuzz", "id": "fz"},
        ("POST", "/sessions/{session_id}/close"): {"summary": "s"},
        ("POST", "/observations"): {
            "session_id": session_id,
            "tool_name": "t",
            "title": "t",
            "summary": "s",
            "embedding": [0.5],
            "embedding_model": "m",
        },
        ("POST", "/queue"): {
            "session_id": session_id,
            "tool_name": "t",
            "tool_use_id": "u",
            "tool_input": {"a": 1},
            "raw_output": "out",
        },
        ("POST", "/queue/claim"): {"worker": "w", "n": 2, "lease_seconds": 60},
        ("POST", "/queue/{item_id}/complete"): {"worker": "w"},
        ("POST", "/queue/{item_id}/fail"): {"worker": "w", "error": "e"},
        ("POST", "/queue/retry"): {"dead_letters": True},
        ("POST", "/functions"): {
            "session_id": session_id,
            "file_path": "a.py",
            "functions": [{"qualified_name": "f", "kind": "function", "body_hash": "h"}],
        },
        ("POST", "/edges"): {
            "session_id": session_id,
            "edges": [
                {
                    "caller_file": "a.py",
                    "caller_function": "f",
                    "callee_function": "g",
                    "resolution": "direct",
                }
            ],
        },
        ("POST", "/learnings"): {"category": "gotcha", "content": "c", "confidence": 0.5},
        ("PATCH", "/learnings/{learning_id}"): {"confidence": 0.5},
        ("POST", "/events"): {"event_type": "e", "data": {"k": "v"}},
        ("POST", "/hooks"): {
            "session_id": session_id,
            "hook_event_name": "PostToolUse",
            "cwd": "/tmp/fuzz",
            "tool_name": "Read",
            "tool_input": {"file_path": "a.py"},
            "tool_response": "text",
            "tool_use_id": "hu",
        },
    }


def mutate(rng: random.Random, value: Any) -> Any:
    """The value with one to three fields (perhaps nested) replaced, added or removed."""
    value = json.loads(json.dumps(value))
    for _ in range(rng.randint(1, 3)):
        target = value
        # Sometimes reach into a nested object: a function, an edge, tool_input ...
        nested = [
            v[0] if isinstance(v, list) and v and isinstance(v[0], dict) else v
            for v in target.values()
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
        ]
        if nested and rng.random() < 0.4:
            target = rng.choice(nested)
        action = rng.random()
        if action < 0.2 and target:
            del target[rng.choice(sorted(target))]
        elif action < 0.8 and target:
            target[rng.choice(sorted(target))] = random_value(rng)
        else:
            target[rng.choice(FIELD_NAMES)] = random_value(rng)
    return value


def random_body(rng: random.Random, valid: Any) -> Any:
    shape = rng.random()
    if shape < 0.1:
        return random_value(rng)
    if shape < 0.2 or not isinstance(valid, dict):
        return {name: random_value(rng) for name in rng.sample(FIELD_NAMES, rng.randint(0, 8))}
    return mutate(rng, valid)


def encode(body: Any) -> bytes:
    # allow_nan: NaN and Infinity are not JSON, but Python's parser accepts them.
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.mark.asyncio
async def test_no_client_input_makes_a_500(ds: Datasette, token: str, session_id: str):
    rng = random.Random(20241121)
    valid = valid_bodies(session_id)
    # Real ids for the URL, so some requests get past "not found".
    await api_call(ds, "POST", "/queue", valid[("POST", "/queue")], token=token)
    item_id = (await query_rows(ds, "SELECT id FROM pending_queue"))[0]["id"]
    learning = await api_call(ds, "POST", "/learnings", valid[("POST", "/learnings")], token=token)
    ids = {
        "session_id": session_id,
        "item_id": item_id,
        "learning_id": learning.json()["row"]["id"],
    }
    routes = [e for e in ENDPOINTS if e.method != "GET"]
    statuses: dict[int, int] = {}
    for i in range(400):
        endpoint = rng.choice(routes)
        if endpoint.path == "/queue/claim" or rng.random() < 0.1:
            # Keep some items claimed by "w", so complete and fail get past the lease check.
            await api_call(ds, "POST", "/queue/retry", {"dead_letters": True}, token=token)
            await api_call(ds, "POST", "/queue/claim", {"worker": "w", "n": 500}, token=token)
        path = endpoint.path
        for name, real in ids.items():
            weird = rng.choice(["ghost", "%00", "x" * 300, "é", "'; DROP TABLE x", "~2F"])
            path = path.replace("{" + name + "}", real if rng.random() < 0.7 else weird)
        body = random_body(rng, valid.get((endpoint.method, endpoint.path)))
        content = encode(body) if rng.random() < 0.95 else rng.randbytes(rng.randint(0, 40))
        response = await api_call(ds, endpoint.method, path, token=token, content=content)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (i, endpoint.method, path, content[:300], response.text)
        assert response.headers["content-type"].startswith("application/json")
    # The loop tried bad input, and also got past validation often enough.
    assert statuses.get(400, 0) > 100, statuses
    assert statuses.get(200, 0) + statuses.get(201, 0) > 40, statuses


AWKWARD = [
    ("/observations", {"tokens_raw": 2**63}),
    ("/observations", {"tokens_compressed": 10**30}),
    ("/observations", {"title": "\ud800"}),
    ("/observations", {"embedding": [1e308, -1e308], "embedding_model": "m"}),
    ("/queue", {"tool_input": {"k": 2**64}}),  # kept as JSON text: stored
    ("/queue", {"raw_output": "\udfff tail"}),
    ("/queue", {"tool_input": {"\ud800": 1}}),
    ("/events", {"duration_ms": 2**63}),
    ("/events", {"data": {"x": "\ud800"}}),
    ("/learnings", {"content": "\ud800", "project": "\udc00"}),
    ("/learnings", {"confidence": float("nan")}),
    ("/sessions", {"id": "\ud800"}),
    ("/sessions", {"project_dir": "\x00"}),
    ("/sessions", {"project_dir": "/tmp/" + "\ud800"}),
]


@pytest.mark.asyncio
async def test_awkward_values_are_answered_without_a_500(
    ds: Datasette, token: str, session_id: str
):
    """Valid JSON that SQLite cannot hold: over 64-bit integers, lone surrogates, NUL."""
    base = {
        "/observations": {"session_id": session_id, "tool_name": "t", "title": "t", "summary": ""},
        "/queue": {"session_id": session_id, "tool_name": "t"},
        "/events": {"event_type": "e"},
        "/learnings": {"category": "gotcha", "content": "c"},
        "/sessions": {"project_dir": "/tmp"},
    }
    for path, body in AWKWARD:
        content = encode({**base[path], **body})
        response = await api_call(ds, "POST", path, token=token, content=content)
        if body == {"tool_input": {"k": 2**64}}:
            assert response.status_code == 201, response.text
            (stored,) = await query_rows(ds, "SELECT tool_input FROM pending_payloads")
            assert "18446744073709551616" in stored["tool_input"]
            continue
        assert_error(response, 400, case=(path, body))


@pytest.mark.asyncio
async def test_nan_in_an_embedding_is_refused(ds: Datasette, token: str, session_id: str):
    body = {
        "session_id": session_id,
        "tool_name": "t",
        "title": "t",
        "summary": "",
        "embedding": [float("nan")],
        "embedding_model": "m",
    }
    response = await api_call(ds, "POST", "/observations", token=token, content=encode(body))
    assert_error(response, 400, "embedding")


@pytest.mark.asyncio
async def test_deeply_nested_json_is_not_a_500(ds: Datasette, token: str, session_id: str):
    for depth in (50, 5000, 200_000):
        nested = "[" * depth + "]" * depth
        content = (
            f'{{"session_id": "{session_id}", "tool_name": "t", "tool_input": {{"a": {nested}}}}}'
        ).encode()
        response = await api_call(ds, "POST", "/queue", token=token, content=content)
        if depth == 50:
            assert response.status_code == 201, response.text
        else:
            assert_error(response, 400, "nested", case=depth)


@pytest.mark.asyncio
async def test_cookie_write_needs_its_origin_or_a_json_body(ds: Datasette, tmp_path: Path):
    """A text/plain form from another page carries the cookie but no Origin in old browsers."""
    body = json.dumps(session_body(tmp_path))
    refused = await ds.client.post(
        f"{API}/sessions",
        content=body,
        actor={"id": "root"},
        headers={"Content-Type": "text/plain"},
    )
    assert_error(refused, 403, "cookie")
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]
    for headers in (
        {"Content-Type": "application/json"},
        {"Content-Type": "text/plain", "Sec-Fetch-Site": "same-origin"},
        {"Content-Type": "text/plain", "Origin": "http://localhost"},
    ):
        response = await ds.client.post(
            f"{API}/sessions", content=body, actor={"id": "root"}, headers=headers
        )
        assert response.status_code in (200, 201), (headers, response.text)


@pytest.mark.asyncio
async def test_bearer_write_without_origin_or_json_type_still_passes(
    ds: Datasette, token: str, tmp_path: Path
):
    response = await ds.client.post(
        f"{API}/sessions",
        content=json.dumps(session_body(tmp_path)),
        headers={"Content-Type": "text/plain", **bearer(token)},
    )
    assert response.status_code == 201, response.text
