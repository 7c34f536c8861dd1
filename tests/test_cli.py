"""`datasette claude-mem token`, `migrate PATH`, the move out of claude-mem's directory,
`export`, `import`, `purge`, `backup`, `restore` and `login`."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import api_call, assert_error, db_rows, dump, fill, finished_long_ago
from sqlite_utils import Database

from datasette_claude_mem.storage.migrations import migrations
from datasette_claude_mem.storage.models import SessionStart
from datasette_claude_mem.storage.store import Store


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLAUDE_MEM_DIR for the commands (asked for after memory_path, which also sets it)."""
    base = tmp_path / "home" / ".claude-mem"
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(base))
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "0")
    monkeypatch.delenv("DATASETTE_SECRET", raising=False)
    return base


def run(*args: str):
    return CliRunner().invoke(cli, ["claude-mem", *args], catch_exceptions=False)


def token_from(result) -> str:
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("dstok_"), result.output
    return lines[0]


def test_token_makes_a_private_secret_once_and_reuses_it(base_dir: Path):
    first = token_from(run("token"))
    secret_path = base_dir / "secret"
    assert secret_path.exists()
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(base_dir.stat().st_mode) == 0o700
    secret = secret_path.read_text()
    assert len(secret.strip()) >= 32

    second = token_from(run("token"))
    assert secret_path.read_text() == secret
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    # Both tokens are signed with the one secret.
    from datasette.app import Datasette

    ds = Datasette(secret=secret.strip())
    try:
        for token in (first, second):
            assert ds.unsign(token.removeprefix("dstok_"), namespace="token")["a"] == "claude-mem"
    finally:
        ds.close()


@pytest.mark.asyncio
async def test_token_is_accepted_by_a_server_with_the_same_secret(
    memory_path: Path, make_ds, base_dir: Path
):
    # The command runs its own event loop: keep it off the test's.
    token = token_from(await asyncio.to_thread(run, "token"))
    secret = (base_dir / "secret").read_text().strip()
    ds = await make_ds(memory_path, secret=secret)
    actor = await ds.verify_token(token)
    assert actor is not None and actor["id"] == "claude-mem"
    response = await api_call(ds, "POST", "/sessions", {"project_dir": "/p"}, token=token)
    assert response.status_code == 201, response.text

    # A server with another secret refuses it.
    other = await make_ds(memory_path, secret="not-the-same")
    response = await api_call(other, "POST", "/sessions", {"project_dir": "/p"}, token=token)
    assert_error(response, 401)


@pytest.mark.asyncio
async def test_token_expires_after(memory_path: Path, make_ds, base_dir: Path):
    token = token_from(await asyncio.to_thread(run, "token", "--expires-after", "600"))
    secret = (base_dir / "secret").read_text().strip()
    ds = await make_ds(memory_path, secret=secret)
    decoded = ds.unsign(token.removeprefix("dstok_"), namespace="token")
    assert decoded["a"] == "claude-mem" and decoded["d"] == 600
    actor = await ds.verify_token(token)
    assert actor is not None and actor["token_expires"] == decoded["t"] + 600


def test_an_existing_secret_file_is_used(base_dir: Path):
    base_dir.mkdir(parents=True)
    (base_dir / "secret").write_text("my-own-secret\n")
    token = token_from(run("token"))
    from datasette.app import Datasette

    ds = Datasette(secret="my-own-secret")
    try:
        assert ds.unsign(token.removeprefix("dstok_"), namespace="token")["a"] == "claude-mem"
    finally:
        ds.close()
    assert (base_dir / "secret").read_text() == "my-own-secret\n"


def table_names(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path):
    path = tmp_path / "new" / "memory.db"
    first = run("migrate", str(path))
    assert first.exit_code == 0, first.output
    names = table_names(path)
    assert {"sessions", "observations", "pending_queue", "learnings", "_sqlite_migrations"} <= names
    conn = sqlite3.connect(path)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert applied == [m.name for m in migrations.pending(Database(memory=True))]
    assert first.output.strip() == f"{path}: schema at {applied[-1]}"

    second = run("migrate", str(path))
    assert second.exit_code == 0, second.output
    assert second.output == first.output
    assert table_names(path) == names
    conn = sqlite3.connect(path)
    again = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    conn.close()
    assert again == applied


def test_migrate_keeps_existing_rows(tmp_path: Path):
    path = tmp_path / "memory.db"
    assert run("migrate", str(path)).exit_code == 0
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO sessions (id, project, project_dir, started_at, status) "
        "VALUES ('s', '/p', '/p', '2024-01-01T00:00:00.000Z', 'active')"
    )
    conn.commit()
    conn.close()
    assert run("migrate", str(path)).exit_code == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id FROM sessions").fetchall() == [("s",)]
    conn.close()


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a database\n" * 20, b"\x00\x01garbage" * 500, b"SQLite format 3"],
)
def test_migrate_refuses_a_file_that_is_not_sqlite(tmp_path: Path, content: bytes):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["claude-mem", "migrate", str(path)])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "could not be migrated" in result.output
    assert str(path) in result.output
    assert "Traceback" not in result.output
    assert path.read_bytes() == content


def test_migrate_refuses_a_database_with_a_conflicting_table(tmp_path: Path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sessions (who TEXT)")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(cli, ["claude-mem", "migrate", str(path)])
    assert result.exit_code != 0
    assert "could not be migrated" in result.output
    assert table_names(path) == {"sessions"}


def test_migrate_refuses_a_directory(tmp_path: Path):
    result = CliRunner().invoke(cli, ["claude-mem", "migrate", str(tmp_path)])
    assert result.exit_code != 0
    assert "directory" in result.output.lower()


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    commands = ("serve", "token", "migrate", "login", "export", "import", "purge", "backup")
    for name in (*commands, "restore"):
        assert name in result.output


# The memory's own file at claude-mem's path (this project's old default) moves out of it


@pytest.fixture
def legacy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose ~/.claude-mem holds this project's memory, as an older version left it."""
    from datasette_claude_mem.storage.models import SessionStart
    from datasette_claude_mem.storage.store import Store

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_MEM_DIR", raising=False)
    monkeypatch.delenv("DATASETTE_SECRET", raising=False)
    old = home / ".claude-mem"
    with Store(old / "claude-mem.db") as store:
        store.create_session(SessionStart(id="kept", project_dir=str(tmp_path)))
    (old / "secret").write_text("old-secret\n")
    (old / "spool.jsonl").write_text('{"id": "x", "payload": {}}\n')
    return home


def test_the_old_default_memory_moves_to_the_new_directory_once(legacy_home: Path) -> None:
    first = CliRunner().invoke(cli, ["claude-mem", "token"])
    assert first.exit_code == 0, first.output
    assert "Moved this memory from" in first.output
    new = legacy_home / ".datasette-claude-mem"
    assert db_rows(new / "claude-mem.db", "SELECT id FROM sessions") == [{"id": "kept"}]
    assert (new / "secret").read_text() == "old-secret\n"  # tokens made before still work
    assert (new / "spool.jsonl").read_text().count("\n") == 1
    assert not (legacy_home / ".claude-mem" / "claude-mem.db").exists()
    assert db_rows(new / "claude-mem.db", "PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    second = CliRunner().invoke(cli, ["claude-mem", "token"])
    assert second.exit_code == 0 and "Moved" not in second.output


def test_the_old_default_memory_open_elsewhere_is_not_moved(legacy_home: Path, python: str) -> None:
    """A real process holding the file open (an older server, say): nothing moves."""
    import subprocess

    old = legacy_home / ".claude-mem" / "claude-mem.db"
    holder = subprocess.Popen(
        [python, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('BEGIN');"
         "c.execute('SELECT count(*) FROM sessions').fetchall(); print('ready', flush=True);"
         "sys.stdin.read()", str(old)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        done = CliRunner().invoke(cli, ["claude-mem", "token"])
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert done.exit_code != 0
    assert "another process has it open" in done.output and "Traceback" not in done.output
    assert db_rows(old, "SELECT id FROM sessions") == [{"id": "kept"}]
    assert not (legacy_home / ".datasette-claude-mem" / "claude-mem.db").exists()


def test_a_named_directory_is_never_second_guessed(legacy_home: Path, base_dir: Path) -> None:
    token_from(run("token"))
    assert (legacy_home / ".claude-mem" / "claude-mem.db").exists()
    assert not (legacy_home / ".datasette-claude-mem").exists()


def test_the_hook_script_spools_where_the_memory_lives() -> None:
    from datasette_claude_mem.claude_code import hook_script
    from datasette_claude_mem.names import DEFAULT_DIR_NAME

    assert hook_script.DEFAULT_DIR_NAME == DEFAULT_DIR_NAME


def test_help_lists_the_import_command():
    result = run("--help")
    assert "import-claude-mem" in result.output


# export, import, backup, restore, login


@pytest.fixture
def filled(base_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The memory in CLAUDE_MEM_DIR, with two projects' rows in every table."""
    with Store(base_dir / "claude-mem.db") as store:
        projects = [fill(store, tmp_path / "repos", name) for name in ("alpha", "beta")]
    return base_dir / "claude-mem.db", projects


def test_export_to_a_file_and_import_it_into_another_memory(filled, tmp_path: Path):
    memory, _ = filled
    out = tmp_path / "memory.jsonl"
    result = run("export", "--with-queue", str(out))
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.db"
    result = run("import", "--db", str(other), str(out))
    assert result.exit_code == 0, result.output
    assert "Added 2 sessions" in result.output
    assert dump(other) == dump(memory)
    again = run("import", "--db", str(other), str(out))
    assert again.exit_code == 0, again.output
    assert again.output.startswith("Added nothing;")
    assert dump(other) == dump(memory)


def test_export_to_stdout_and_import_from_stdin(filled, tmp_path: Path):
    memory, (alpha, beta) = filled
    result = CliRunner().invoke(cli, ["claude-mem", "export", "--project", alpha])
    assert result.exit_code == 0, result.stderr
    assert beta not in result.stdout
    header = json.loads(result.stdout_bytes.splitlines()[0])
    assert header["project"] == alpha
    other = tmp_path / "other.db"
    imported = CliRunner().invoke(
        cli, ["claude-mem", "import", "--db", str(other), "-"], input=result.stdout_bytes
    )
    assert imported.exit_code == 0, imported.output
    assert [r["project"] for r in db_rows(other, "SELECT project FROM sessions")] == [alpha]


def test_export_of_an_unknown_project_or_memory_fails_clearly(filled, tmp_path: Path):
    result = CliRunner().invoke(cli, ["claude-mem", "export", "--project", "nope", "-"])
    assert result.exit_code != 0
    assert "no project 'nope'" in result.output
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(
        cli, ["claude-mem", "export", "--db", str(tmp_path / "no.db"), str(out)]
    )
    assert result.exit_code != 0
    assert "there is no memory at" in result.output
    assert not out.exists() and not (tmp_path / "no.db").exists()


def test_import_of_a_bad_file_exits_non_zero_and_changes_nothing(filled, tmp_path: Path):
    memory, _ = filled
    before = dump(memory)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "header", "format": "claude-mem-export", "version": 2}\n')
    result = CliRunner().invoke(cli, ["claude-mem", "import", str(bad)])
    assert result.exit_code != 0
    assert "format version 2" in result.output and "nothing was imported" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["claude-mem", "import", str(tmp_path / "absent.jsonl")])
    assert missing.exit_code != 0 and "cannot be read" in missing.output
    assert dump(memory) == before


def test_purge_says_what_it_would_remove_then_removes_it_and_shrinks_the_file(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    memory = base_dir / "claude-mem.db"
    with Store(memory) as store:
        project = tmp_path / "repo"
        project.mkdir()
        session = store.create_session(SessionStart(project_dir=str(project))).row
        finished_long_ago(store, session.id, 30, 100_000)
        kept = finished_long_ago(store, session.id, 1, 1000)[0]
        store.conn.execute(
            "UPDATE pending_queue SET completed_at = strftime('%Y-%m-%dT%H:%M:%fZ') WHERE id = ?",
            [kept],
        )
        store.checkpoint()
    before = dump(memory)

    dry = run("purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "raw tool outputs: 30, about 3.0 MB" in dry.output
    assert dump(memory) == before

    done = run("purge")
    assert done.exit_code == 0, done.output
    assert "Removed 30 raw tool outputs, 0 dead letters and 0 event rows" in done.output
    assert re.search(r"went from 3\.\d MB to \d+\.\d KB", done.output), done.output
    assert [r["item_id"] for r in db_rows(memory, "SELECT item_id FROM pending_payloads")] == [kept]

    monkeypatch.setenv("CLAUDE_MEM_RETENTION_DAYS", "0")
    assert "raw tool outputs" not in run("purge", "--dry-run").output


def test_purge_gives_a_big_old_memory_the_vacuum_the_server_leaves_to_it(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from datasette_claude_mem.storage import database

    base_dir.mkdir(parents=True)
    memory = base_dir / "claude-mem.db"
    old = Database(sqlite3.connect(memory, isolation_level=None))
    migrations.apply(old, stop_before="m014_enable_retention")
    old.conn.close()
    monkeypatch.setattr(database, "MIGRATE_VACUUM_BYTES", 0)  # every file counts as big
    with Store(memory) as store:
        session = store.create_session(SessionStart(project_dir=str(base_dir))).row
        finished_long_ago(store, session.id, 10, 100_000)
    assert db_rows(memory, "PRAGMA auto_vacuum") == [{"auto_vacuum": 0}]

    done = run("purge")

    assert done.exit_code == 0, done.output
    assert "Removed 10 raw tool outputs" in done.output
    assert db_rows(memory, "PRAGMA auto_vacuum") == [{"auto_vacuum": 2}]
    assert re.search(r"went from 1\.\d MB to \d+\.\d KB", done.output), done.output


def test_backup_checks_its_copy_and_restore_brings_it_back(filled, tmp_path: Path):
    memory, _ = filled
    before = dump(memory)
    copy = tmp_path / "backup.db"
    result = run("backup", str(copy))
    assert result.exit_code == 0, result.output
    assert "checked" in result.output
    assert dump(copy) == before
    refused = CliRunner().invoke(cli, ["claude-mem", "backup", str(copy)])
    assert refused.exit_code != 0 and "--force" in refused.output
    assert run("backup", "--force", str(copy)).exit_code == 0

    with Store(memory) as store:
        store.conn.execute("DELETE FROM sessions")
    assert dump(memory)["sessions"] == []
    result = run("restore", "--yes", str(copy))
    assert result.exit_code == 0, result.output
    assert dump(memory) == before
    [kept] = memory.parent.glob("claude-mem.db.before-restore-*")
    assert dump(kept)["sessions"] == [] and str(kept) in result.output


def test_restore_asks_first(filled, tmp_path: Path):
    memory, _ = filled
    copy = tmp_path / "backup.db"
    assert run("backup", str(copy)).exit_code == 0
    with Store(memory) as store:
        store.conn.execute("DELETE FROM learnings")
    result = CliRunner().invoke(cli, ["claude-mem", "restore", str(copy)], input="n\n")
    assert result.exit_code != 0
    assert dump(memory)["learnings"] == []


def login_link(server) -> str:
    """`datasette claude-mem login` as a user runs it, beside the server's memory."""
    datasette = Path(sys.executable).with_name("datasette")
    done = subprocess.run(
        [str(datasette), "claude-mem", "login", "--url", server.url],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [link] = done.stdout.split()
    assert link.startswith(f"{server.url}/-/claude-mem/login?token=")
    return link


def sign_in(link: str) -> httpx.Response:
    return httpx.get(link, follow_redirects=False, timeout=30)


def test_login_links_sign_in_to_a_running_server_each_once(mem_server):
    memory = f"{mem_server.url}/claude-mem.json"
    assert httpx.get(memory, timeout=30).status_code == 403
    first, second = login_link(mem_server), login_link(mem_server)
    assert first != second
    for link in (first, second):
        response = sign_in(link)
        assert response.status_code == 302, response.text
        assert response.headers["location"] == "/-/claude-mem"
        cookie = response.cookies["ds_actor"]
        signed_in = httpx.get(memory, cookies={"ds_actor": cookie}, timeout=30)
        assert signed_in.status_code == 200, signed_in.text
        actor = httpx.get(f"{mem_server.url}/-/actor.json", cookies={"ds_actor": cookie})
        assert actor.json()["actor"] == {"id": "root"}
        # A link works once.
        again = sign_in(link)
        assert again.status_code == 403 and "ds_actor" not in again.cookies
        assert "has been used" in again.text


def test_login_links_not_made_with_the_servers_secret_are_refused(mem_server, tmp_path: Path):
    from datasette_claude_mem.api.login import sign_in_link

    secret = (mem_server.base_dir / "secret").read_text().strip()
    expired = sign_in(sign_in_link(secret, mem_server.url, expires_after=-1))
    assert expired.status_code == 403 and "expired" in expired.text
    forged = sign_in(sign_in_link("another-secret", mem_server.url))
    assert forged.status_code == 403 and "not valid" in forged.text
    for bad in ("", "?token=", "?token=garbage"):
        response = sign_in(f"{mem_server.url}/-/claude-mem/login{bad}")
        assert response.status_code == 403 and "ds_actor" not in response.cookies
