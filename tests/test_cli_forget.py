"""`datasette claude-mem forget`: each kind from the command line, its confirmation, and its
refusals, on a real memory file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import db_rows, fill

from datasette_claude_mem.storage.store import Store


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A memory file with two projects, as CLAUDE_MEM_DIR's default file."""
    base = tmp_path / "mem"
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(base))
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "0")
    path = base / "claude-mem.db"
    with Store(path) as store:
        first, second = fill(store, tmp_path, "alpha"), fill(store, tmp_path, "beta")
    return path, first, second


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["claude-mem", "forget", *args], input=input)


def rows(path: Path, sql: str, params: list | tuple = ()) -> list[dict]:
    return db_rows(path, sql, params)


def test_forget_a_project_for_good(memory) -> None:
    path, first, second = memory
    result = run("project", first, "--reason", "moved on", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Forgot ") and "sessions" in result.output
    assert rows(path, "SELECT * FROM sessions WHERE project = ?", [first]) == []
    assert len(rows(path, "SELECT * FROM sessions WHERE project = ?", [second])) == 1
    [tomb] = rows(path, "SELECT kind, reason, forgotten_by FROM tombstones")
    assert tomb["kind"] == "project" and tomb["reason"] == "moved on"
    assert tomb["forgotten_by"].endswith("(command line)")
    raw = path.read_bytes()
    assert b"tokenizer gotcha alpha" not in raw and b"tokenizer gotcha beta" in raw


def test_forget_a_session_and_an_observation_by_id(memory) -> None:
    path, first, second = memory
    [obs] = rows(path, "SELECT id FROM observations WHERE project = ? AND tool_name = 'Read'",
                 [second])  # fmt: skip
    assert run("observation", obs["id"], "--db", str(path), "--yes").exit_code == 0
    assert rows(path, "SELECT * FROM observations WHERE id = ?", [obs["id"]]) == []
    [session] = rows(path, "SELECT id FROM sessions WHERE project = ?", [first])
    assert run("session", session["id"], "--yes").exit_code == 0
    assert rows(path, "SELECT * FROM observations WHERE session_id = ?", [session["id"]]) == []


def test_forget_before_a_date_of_some_kinds(memory) -> None:
    path, first, second = memory
    result = run("before", "2999-01-01", "--project", second, "--kind", "learning",
                 "--kind", "note", "--yes")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert rows(path, "SELECT * FROM learnings WHERE project = ?", [second]) == []
    assert rows(path, "SELECT * FROM memory_entries WHERE project = ?", [second]) == []
    assert len(rows(path, "SELECT * FROM sessions")) == 2


def test_it_asks_first_and_a_no_changes_nothing(memory) -> None:
    path, first, _ = memory
    result = run("project", first, input="n\n")
    assert result.exit_code == 1 and "for good?" in result.output
    assert len(rows(path, "SELECT * FROM sessions")) == 2
    assert rows(path, "SELECT * FROM tombstones") == []


@pytest.mark.parametrize(
    "args, message",
    [
        (("session",), "by its id alone"),
        (("before", "soon"), "before"),
        (("learning", "x", "--project", "p"), "by its id alone"),
    ],
)
def test_a_request_that_cannot_be_carried_out_is_refused(memory, args, message) -> None:
    path, _, _ = memory
    result = run(*args, "--yes")
    assert result.exit_code == 2 and message in result.output, result.output
    assert rows(path, "SELECT * FROM tombstones") == []


def test_an_unknown_id_is_an_error_and_forgets_nothing(memory) -> None:
    path, _, _ = memory
    result = run("note", "no-such-note", "--yes")
    assert result.exit_code == 1 and "nothing was forgotten" in result.output
    assert rows(path, "SELECT * FROM tombstones") == []


def test_there_must_be_a_memory(tmp_path: Path) -> None:
    result = run("project", "p", "--db", str(tmp_path / "none.db"), "--yes")
    assert result.exit_code == 1 and "there is no memory" in result.output
    assert not (tmp_path / "none.db").exists()
