"""Observation types: scripted tool uses, each with the type a person would give it."""

from __future__ import annotations

from typing import Any

import pytest

from datasette_claude_mem.storage.kinds import ObservationType
from datasette_claude_mem.worker.compress import compress


def bash(command: str, stdout: str = "", stderr: str = "") -> tuple[str, dict, dict]:
    return "Bash", {"command": command}, {"stdout": stdout, "stderr": stderr}


def edit(path: str, old: str = "x = 1", new: str = "x = 2") -> tuple[str, dict, dict]:
    tool_input = {"file_path": path, "old_string": old, "new_string": new}
    return "Edit", tool_input, {"filePath": path, "oldString": old, "newString": new}


PYTEST_FAILED = (
    "FAILED tests/test_cart.py::test_total - assert 9 == 10\n1 failed, 4 passed in 0.31s"
)
PYTEST_PASSED = "5 passed in 0.30s"
DISCOUNT = "def apply_discount(total, rate):\n    return total * rate\n"
FIXED = "def apply_discount(total, rate):\n    return total * (1 - rate)\n"
BULK = DISCOUNT + "\n\ndef bulk_discount(total, count):\n    return total\n"

# (what happened, the tool use, the prompt of its turn, the failure if any, the type)
CASES: list[tuple[str, tuple[str, dict, Any], str | None, str | None, str]] = [
    ("a read", ("Read", {"file_path": "shop/cart.py"}, {"file": {"content": "x"}}), None, None,
     "discovery"),
    ("a grep", ("Grep", {"pattern": "discount"}, {"filenames": ["a.py"], "numFiles": 1}),
     "fix the discount bug", None, "discovery"),
    ("a glob", ("Glob", {"pattern": "**/*.py"}, {"filenames": []}), None, None, "discovery"),
    ("ls is a look, not a test", bash("ls tests/", "test_cart.py\n"), "run the tests", None,
     "discovery"),
    ("cat of a test file", bash("cat tests/test_cart.py", "def test_total(): ..."), None, None,
     "discovery"),
    ("git status", bash("git status --short", " M shop/pricing.py"), None, None, "discovery"),
    ("git diff piped to head", bash("git diff | head -50"), None, None, "discovery"),
    ("a script run", bash("python scripts/report.py", "total: 10"), None, None, "discovery"),
    ("pytest passing", bash("pytest -q", PYTEST_PASSED), None, None, "test"),
    ("pytest failing is test, not failure", bash("python -m pytest tests", PYTEST_FAILED),
     "fix the bug", None, "test"),
    ("pytest failing, as Claude Code reports it",
     ("Bash", {"command": "pytest -q"}, "Exit code 1\n" + PYTEST_FAILED), None, "error", "test"),
    ("npm test", bash("npm test", "Tests: 3 passed"), None, None, "test"),
    ("go test", bash("cd svc && go test ./...", "ok  svc 0.2s"), None, None, "test"),
    ("a wrapper script that runs pytest", bash("./run-checks", PYTEST_PASSED), None, None,
     "test"),
    ("a command that failed", ("Bash", {"command": "cat no_such_file.txt"},
     "Exit code 1\ncat: no_such_file.txt: No such file or directory"), None, "error", "failure"),
    ("a build that exited non-zero", bash("make build", "Exit code 2\nmake: *** [build] Error 2"),
     None, None, "failure"),
    ("an interrupted edit", edit("shop/cart.py"), "fix it", "interrupt", "failure"),
    ("a read that failed", ("Read", {"file_path": "gone.py"}, "File does not exist."), None,
     "error", "failure"),
    ("pip install", bash("pip install requests", "Successfully installed requests"), None,
     None, "config"),
    ("npm install", bash("npm install --save-dev vitest"), None, None, "config"),
    ("installing a test runner runs no tests", bash("pip install pytest"), None, None, "config"),
    ("pytest under timeout", bash("timeout 300 .venv/bin/pytest -q", PYTEST_PASSED), None, None,
     "test"),
    ("a commit", bash("git add -A && git commit -m 'Fix discount'"), None, None, "change"),
    ("a move", bash("mv shop/old.py shop/new.py"), None, None, "change"),
    ("output written to a file", bash("echo 'x' > notes.txt"), None, None, "change"),
    ("sed in place", bash("sed -i 's/a/b/' shop/cart.py"), None, None, "change"),
    ("stderr sent to /dev/null is no write", bash("ls missing 2>/dev/null"), None, None,
     "discovery"),
    ("the fix of a bug", edit("shop/pricing.py", DISCOUNT, FIXED),
     "Fix the bug in apply_discount: it charges the discount instead of taking it off", None,
     "bugfix"),
    ("a feature, as the prompt says", edit("shop/pricing.py", DISCOUNT, BULK),
     "Add a bulk discount for orders of 10 or more", None, "feature"),
    ("a refactor", edit("shop/pricing.py", "def total(", "def order_total("),
     "Rename total to order_total everywhere", None, "refactor"),
    ("the earliest reason wins", edit("shop/pricing.py"),
     "Fix the rounding, then add a test for it", None, "bugfix"),
    ("a new function, no prompt", edit("shop/pricing.py", DISCOUNT, BULK), None, None,
     "feature"),
    ("a body change, no prompt", edit("shop/pricing.py", DISCOUNT, FIXED), None, None, "change"),
    ("a new file", ("Write", {"file_path": "shop/tax.py", "content": "RATE = 0.2\n"},
     {"type": "create", "filePath": "shop/tax.py"}), None, None, "feature"),
    ("a file rewritten", ("Write", {"file_path": "shop/tax.py", "content": "RATE = 0.2\n"},
     {"type": "update", "filePath": "shop/tax.py", "originalFile": "RATE = 0.1\n"}), None, None,
     "change"),
    ("an edit to a test, while fixing", edit("tests/test_cart.py"), "fix the cart bug", None,
     "test"),
    ("a test file outside tests/", edit("shop/pricing_test.py"), None, None, "test"),
    ("a JavaScript spec", edit("web/cart.spec.ts"), "add a cart badge", None, "test"),
    ("pyproject.toml", edit("pyproject.toml", 'x = "1"', 'x = "2"'), "add a dependency", None,
     "config"),
    ("a workflow", edit(".github/workflows/ci.yml"), None, None, "config"),
    ("notes written while fixing", edit("README.md"), "fix the discount bug", None, "change"),
    ("an .env file", edit(".env.local"), None, None, "config"),
    ("a decision record", ("Write", {"file_path": "docs/adr/0003-sqlite.md", "content": "#"},
     {"type": "create"}), None, None, "decision"),
    ("a plan", ("TodoWrite", {"todos": [{"content": "fix", "status": "pending"}]}, {}), None,
     None, "decision"),
    ("a web search", ("WebSearch", {"query": "sqlite wal"}, {"results": []}), None, None,
     "discovery"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tool_use", "prompt", "failure", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_scripted_tool_use_gets_the_type_a_person_would_give(
    tool_use: tuple[str, dict, Any], prompt: str | None, failure: str | None, expected: str
) -> None:
    name, tool_input, response = tool_use
    result = compress(name, tool_input, response, failure=failure, prompt=prompt)
    assert result.type == expected


def test_the_table_covers_every_type() -> None:
    assert {case[-1] for case in CASES} == set(ObservationType)


def test_an_odd_payload_still_gets_a_type() -> None:
    assert compress("Bash", {"command": None}, None).type == "discovery"
    assert compress("", "not a dict", 12).type == "discovery"
