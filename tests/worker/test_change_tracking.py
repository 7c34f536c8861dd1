"""Change tracking: scripted Claude Code tool uses, in the shape Claude Code sends them, go
through the hook and the worker, and the function map says what each session changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from datasette_claude_mem.claude_code.events import handle_hook
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Worker

PRICING = '''"""Pricing helpers."""


def unit_price(sku):
    table = {"apple": 3, "pear": 5}
    return table.get(sku, 0)


def line_total(sku, qty):
    return unit_price(sku) * qty


def order_total(lines):
    return sum(line_total(sku, qty) for sku, qty in lines)
'''


class Session:
    """One Claude Code session acting on a project: each tool use changes the file on disk
    first, then posts the PostToolUse payload Claude Code would send."""

    def __init__(self, store: Store, root: Path, session_id: str) -> None:
        self.store, self.root, self.session_id = store, root, session_id
        self.uses = 0

    def post(self, tool: str, tool_input: dict, response: dict) -> None:
        self.uses += 1
        handle_hook(
            self.store,
            {
                "session_id": self.session_id,
                "cwd": str(self.root),
                "hook_event_name": "PostToolUse",
                "tool_name": tool,
                "tool_use_id": f"toolu_{self.session_id}_{self.uses}",
                "tool_input": tool_input,
                "tool_response": response,
            },
        )

    def read(self, name: str) -> None:
        path = self.root / name
        text = path.read_text()
        lines = text.count("\n") + 1
        file = {"filePath": str(path), "content": text, "numLines": lines, "startLine": 1,
                "totalLines": lines}  # fmt: skip
        self.post("Read", {"file_path": str(path)}, {"type": "text", "file": file})

    def edit(self, name: str, old: str, new: str, *, original: bool = True) -> None:
        path = self.root / name
        before = path.read_text()
        assert old in before
        path.write_text(before.replace(old, new, 1))
        response = {"filePath": str(path), "oldString": old, "newString": new,
                    "structuredPatch": [], "userModified": False, "replaceAll": False}  # fmt: skip
        if original:
            response["originalFile"] = before
        tool_input = {"file_path": str(path), "old_string": old, "new_string": new,
                      "replace_all": False}  # fmt: skip
        self.post("Edit", tool_input, response)

    def write(self, name: str, content: str) -> None:
        path = self.root / name
        before = path.read_text() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        response = {"type": "create" if before is None else "update", "filePath": str(path),
                    "content": content, "structuredPatch": [], "originalFile": before}  # fmt: skip
        self.post("Write", {"file_path": str(path), "content": content}, response)

    def changes(self, name: str) -> dict[str, str]:
        """Every function of the file as this session recorded it, after the worker ran."""
        while Worker(batch_size=20).run_once(self.store).outcomes:
            pass
        rows = self.store.db.query(
            "SELECT qualified_name, change_type FROM function_map "
            "WHERE session_id = ? AND file_path = ?",
            [self.session_id, name],
        )
        return {r["qualified_name"]: r["change_type"] for r in rows}

    def listed_as_changed(self) -> set[str]:
        project = str(self.root.resolve())
        found = self.store.changed_functions(project, self.session_id)
        return {f.qualified_name for f in found}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with shop/pricing.py committed."""
    root = tmp_path / "repo"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "pricing.py").write_text(PRICING)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")
    return root


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """The same project outside any repository: only the tool uses say what was there."""
    root = tmp_path / "plain"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "pricing.py").write_text(PRICING)
    return root


def test_read_then_edit_of_one_function_marks_only_it_modified(store: Store, plain: Path) -> None:
    session = Session(store, plain, "s1")
    session.read("shop/pricing.py")
    assert session.changes("shop/pricing.py") == {
        "unit_price": "unchanged",
        "line_total": "unchanged",
        "order_total": "unchanged",
    }
    session.edit("shop/pricing.py", "unit_price(sku) * qty", "unit_price(sku) * qty * 2")
    assert session.changes("shop/pricing.py") == {
        "unit_price": "unchanged",
        "line_total": "modified",
        "order_total": "unchanged",
    }
    assert session.listed_as_changed() == {"line_total"}


def test_an_edit_alone_is_measured_against_its_original_file(store: Store, plain: Path) -> None:
    """As the real Claude Code run did: one Edit, no Read; only the edited function changed."""
    session = Session(store, plain, "s1")
    session.edit("shop/pricing.py", '"apple": 3', '"apple": 4')
    assert session.changes("shop/pricing.py") == {
        "unit_price": "modified",
        "line_total": "unchanged",
        "order_total": "unchanged",
    }


def test_a_write_of_a_new_file_is_new(store: Store, repo: Path) -> None:
    session = Session(store, repo, "s1")
    session.write("shop/bulk.py", "def bulk_discount(total):\n    return total * 0.9\n")
    assert session.changes("shop/bulk.py") == {"bulk_discount": "new"}
    # A function added to a file that was there before is new; the others stay unchanged.
    session.edit(
        "shop/pricing.py",
        "def order_total(lines):",
        "def tax(total):\n    return total * 0.2\n\n\ndef order_total(lines):",
    )
    assert session.changes("shop/pricing.py") == {
        "unit_price": "unchanged",
        "line_total": "unchanged",
        "tax": "new",
        "order_total": "unchanged",
    }
    assert session.listed_as_changed() == {"bulk_discount", "tax"}


def test_a_write_over_a_file_changes_only_what_it_rewrote(store: Store, plain: Path) -> None:
    session = Session(store, plain, "s1")
    session.write("shop/pricing.py", PRICING.replace("* qty", "* qty + 1"))
    assert session.changes("shop/pricing.py")["line_total"] == "modified"
    assert session.listed_as_changed() == {"line_total"}


def test_a_removed_function_is_deleted(store: Store, plain: Path) -> None:
    session = Session(store, plain, "s1")
    session.read("shop/pricing.py")
    session.edit(
        "shop/pricing.py",
        "\n\ndef order_total(lines):\n    return sum(line_total(sku, qty) for sku, qty in lines)\n",
        "\n",
    )
    assert session.changes("shop/pricing.py") == {
        "unit_price": "unchanged",
        "line_total": "unchanged",
        "order_total": "deleted",
    }


def test_a_file_never_read_but_tracked_in_git_is_measured_against_head(
    store: Store, repo: Path
) -> None:
    """An Edit that carries no originalFile, on a file changed before the session began
    (outside Claude Code) and never read: its first state is the committed one."""
    pricing = repo / "shop" / "pricing.py"
    pricing.write_text(PRICING.replace('"pear": 5', '"pear": 6'))
    session = Session(store, repo, "s1")
    session.edit("shop/pricing.py", "lines)\n", "lines if qty)\n", original=False)
    assert session.changes("shop/pricing.py") == {
        "unit_price": "modified",
        "line_total": "unchanged",
        "order_total": "modified",
    }


def test_a_later_session_that_only_reads_changes_nothing(store: Store, repo: Path) -> None:
    first = Session(store, repo, "s1")
    first.read("shop/pricing.py")
    first.edit("shop/pricing.py", '"apple": 3', '"apple": 4')
    assert first.changes("shop/pricing.py")["unit_price"] == "modified"
    assert first.listed_as_changed() == {"unit_price"}
    second = Session(store, repo, "s2")
    second.read("shop/pricing.py")
    assert set(second.changes("shop/pricing.py").values()) == {"unchanged"}
    assert second.listed_as_changed() == set()


def test_an_edit_undone_in_the_same_session_is_unchanged_again(store: Store, plain: Path) -> None:
    session = Session(store, plain, "s1")
    session.edit("shop/pricing.py", '"apple": 3', '"apple": 4')
    session.edit("shop/pricing.py", '"apple": 4', '"apple": 3')
    assert session.changes("shop/pricing.py")["unit_price"] == "unchanged"
    assert session.listed_as_changed() == set()


def test_git_head_does_not_outrank_what_an_earlier_session_recorded(
    store: Store, repo: Path
) -> None:
    """Session one's change is not committed; session two's Edit without originalFile is
    measured against the file as session one left it, not against HEAD."""
    first = Session(store, repo, "s1")
    first.edit("shop/pricing.py", '"apple": 3', '"apple": 4')
    assert first.changes("shop/pricing.py")["unit_price"] == "modified"
    second = Session(store, repo, "s2")
    second.edit("shop/pricing.py", "* qty\n", "* qty * 2\n", original=False)
    assert second.changes("shop/pricing.py")["unit_price"] == "unchanged"
    assert second.listed_as_changed() == {"line_total"}


def counting_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git on PATH as a wrapper of the real one that notes each `git show` it runs."""
    real = shutil.which("git")
    assert real is not None
    bin_dir, calls = tmp_path / "bin", tmp_path / "git-shows.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" show "*) echo "$*" >> "{calls}";; esac\nexec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_git_head_is_asked_only_for_a_file_the_map_does_not_know(
    store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_git(tmp_path, monkeypatch)
    session = Session(store, repo, "s1")
    session.edit("shop/pricing.py", '"apple": 3', '"apple": 4', original=False)
    assert session.changes("shop/pricing.py")["unit_price"] == "modified"
    assert len(calls.read_text().splitlines()) == 1
    # The session now knows the file: its next edits are measured without asking git.
    session.edit("shop/pricing.py", "* qty\n", "* qty * 2\n", original=False)
    session.edit("shop/pricing.py", '"pear": 5', '"pear": 6', original=False)
    changes = session.changes("shop/pricing.py")
    assert changes == {
        "unit_price": "modified",
        "line_total": "modified",
        "order_total": "unchanged",
    }
    assert len(calls.read_text().splitlines()) == 1
    # Nor does another session, once any session has mapped the file.
    second = Session(store, repo, "s2")
    second.edit("shop/pricing.py", "return sum(", "return 0 + sum(", original=False)
    assert second.changes("shop/pricing.py")["order_total"] == "modified"
    assert len(calls.read_text().splitlines()) == 1


OLD = "2001-01-01T00:00:00.000Z"


def observation_ids(store: Store, session_id: str) -> dict[str, str]:
    rows = store.db.query(
        "SELECT tool_name, id FROM observations WHERE session_id = ? ORDER BY created_at",
        [session_id],
    )
    return {r["tool_name"]: r["id"] for r in rows}


def test_an_edit_is_not_stale_by_its_own_change_but_the_read_before_it_is(
    store: Store, plain: Path
) -> None:
    session = Session(store, plain, "s1")
    session.read("shop/pricing.py")
    session.changes("shop/pricing.py")
    session.edit("shop/pricing.py", '"apple": 3', '"apple": 4')
    session.changes("shop/pricing.py")
    made = observation_ids(store, "s1")
    # The edit's own change is written before its observation, so never after it; the
    # read is moved back in time, not to depend on two writes falling in different ms.
    store.conn.execute("UPDATE observations SET created_at = ? WHERE id = ?", [OLD, made["Read"]])
    assert store.stale_ids("observation", made.values()) == {made["Read"]}
    # All of session one moves back likewise before session two acts.
    store.conn.execute("UPDATE observations SET created_at = ? WHERE id = ?", [OLD, made["Edit"]])
    store.conn.execute(
        "UPDATE function_map SET changed_at = ? WHERE session_id = 's1' AND changed_at IS NOT NULL",
        [OLD],
    )
    assert store.stale_ids("observation", [made["Edit"]]) == set()
    # A later session changing line_total leaves the edit of unit_price current.
    later = Session(store, plain, "s2")
    later.edit("shop/pricing.py", "* qty\n", "* qty * 2\n")
    later.changes("shop/pricing.py")
    assert store.stale_ids("observation", [made["Edit"]]) == set()
    later.edit("shop/pricing.py", '"apple": 4', '"apple": 5')
    later.changes("shop/pricing.py")
    assert store.stale_ids("observation", [made["Edit"]]) == {made["Edit"]}
