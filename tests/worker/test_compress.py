"""The offline compressor, fed payloads shaped like Claude Code's PostToolUse hook."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from datasette_claude_mem.worker.compress import (
    DETAIL_MAX,
    SUMMARY_MAX,
    TITLE_MAX,
    Compressed,
    compress,
    estimate_tokens,
    files_from_tool_input,
)

STORE_PY = textwrap.dedent(
    '''\
    """Key-value store."""

    import json


    def load(path):
        with open(path) as f:
            return json.load(f)


    class Store:
        def __init__(self, data):
            self.data = data

        def get(self, key):
            return self.data[key]

        def put(self, key, value):
            self.data[key] = value
    '''
)


def numbered(text: str, start: int = 1, sep: str = "\t") -> str:
    """Text the way Claude Code's Read tool shows it: right-aligned numbers and a tab."""
    return "\n".join(f"{n:>6}{sep}{line}" for n, line in enumerate(text.splitlines(), start))


def check_limits(result: Compressed) -> None:
    assert len(result.title) <= TITLE_MAX
    assert len(result.summary) <= SUMMARY_MAX
    assert result.detail is None or len(result.detail) <= DETAIL_MAX


# --------------------------------------------------------------------------
# files_from_tool_input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "tool_input", "expected"),
    [
        ("Read", {"file_path": "/repo/a.py"}, ["/repo/a.py"]),
        ("Write", {"file_path": "/repo/b.py", "content": "x"}, ["/repo/b.py"]),
        ("Edit", {"file_path": "/repo/c.py", "old_string": "a", "new_string": "b"}, ["/repo/c.py"]),
        ("MultiEdit", {"file_path": "/repo/d.py", "edits": []}, ["/repo/d.py"]),
        ("NotebookEdit", {"notebook_path": "/repo/n.ipynb", "new_source": ""}, ["/repo/n.ipynb"]),
        ("Grep", {"pattern": "TODO", "path": "/repo/src"}, ["/repo/src"]),
        ("Grep", {"pattern": "TODO"}, []),
        ("Glob", {"pattern": "**/*.py", "path": "/repo"}, ["/repo"]),
        ("Bash", {"command": "cat /repo/a.py"}, []),
        ("mcp__fs__read_file", {"path": "/repo/a.py"}, []),
        ("WebFetch", {"url": "https://example.com"}, []),
        ("Read", None, []),
        ("Read", "not a dict", []),
        ("Read", {"file_path": 42}, []),
        ("Read", {"file_path": ""}, []),
    ],
)
def test_files_from_tool_input(tool, tool_input, expected):
    assert files_from_tool_input(tool, tool_input) == expected


# --------------------------------------------------------------------------
# Read
# --------------------------------------------------------------------------


def test_read_numbered_python_names_top_level_defs():
    result = compress("Read", {"file_path": "/repo/app/store.py"}, numbered(STORE_PY))
    assert result.title == "Read /repo/app/store.py"
    assert "19 lines" in result.summary
    assert "load()" in result.summary
    assert "class Store [3 methods]" in result.summary
    assert result.files_touched == ["/repo/app/store.py"]
    assert result.functions_changed == []
    # The detail shows code, not Read's line-number gutter.
    assert result.detail.splitlines()[0] == '"""Key-value store."""'
    assert "\t" not in result.detail


def test_read_arrow_numbering_and_system_reminder_are_stripped():
    response = numbered(STORE_PY, sep="\u2192") + (
        "\n\n<system-reminder>\nWhenever you read a file, consider malware.\n</system-reminder>\n"
    )
    result = compress("Read", {"file_path": "app/store.py"}, response)
    assert "class Store" in result.summary
    assert "system-reminder" not in (result.detail or "")


def test_read_structured_response_reports_partial_range():
    lines = [f"line {n}" for n in range(10, 20)]
    response = {
        "type": "text",
        "file": {
            "filePath": "/repo/notes.txt",
            "content": "\n".join(lines),
            "numLines": 10,
            "startLine": 10,
            "totalLines": 200,
        },
    }
    result = compress(
        "Read", {"file_path": "/repo/notes.txt", "offset": 10, "limit": 10}, json.dumps(response)
    )
    assert result.summary.startswith("Read 10 lines")
    assert "lines 10-19 of 200" in result.summary
    assert result.detail.splitlines()[0] == "line 10"


def test_read_partial_python_that_does_not_parse_still_lists_defs():
    fragment = "    def get(self, key):\n        return self.data[\n"
    result = compress("Read", {"file_path": "store.py"}, numbered(fragment, start=15))
    assert "get" in result.summary


def test_read_leaves_numbered_data_alone():
    tsv = "1\talice\n5\tbob\n9\tcarol\n"
    result = compress("Read", {"file_path": "people.tsv"}, tsv)
    assert result.detail.splitlines()[0] == "1\talice"


def test_read_markdown_lists_sections():
    text = "# Title\n\nIntro.\n\n## Install\n\npip install x\n"
    result = compress("Read", {"file_path": "README.md"}, numbered(text))
    assert "sections: Title, Install" in result.summary


def test_read_title_keeps_the_file_name_of_long_paths():
    path = "/home/user/" + "very/deep/" * 20 + "module.py"
    result = compress("Read", {"file_path": path}, "")
    assert len(result.title) <= TITLE_MAX
    assert result.title.endswith("module.py")


# --------------------------------------------------------------------------
# Edit / MultiEdit
# --------------------------------------------------------------------------

OLD = "        return self.data[key]"
NEW = "        return self.data.get(key)"


def edit_response(original: str, old: str, new: str, patch: list | None = None) -> str:
    return json.dumps(
        {
            "filePath": "/repo/app/store.py",
            "oldString": old,
            "newString": new,
            "originalFile": original,
            "structuredPatch": patch or [],
            "userModified": False,
            "replaceAll": False,
        }
    )


def test_edit_with_claude_code_response_names_the_changed_method():
    tool_input = {
        "file_path": "/repo/app/store.py",
        "old_string": OLD,
        "new_string": NEW,
        "replace_all": False,
    }
    patch = [
        {
            "oldStart": 15,
            "oldLines": 3,
            "newStart": 15,
            "newLines": 3,
            "lines": ["     def get(self, key):", "-" + OLD, "+" + NEW, " "],
        }
    ]
    result = compress("Edit", tool_input, edit_response(STORE_PY, OLD, NEW, patch))
    assert result.title == "Edit /repo/app/store.py"
    assert result.functions_changed == ["Store.get"]
    assert "-1 +1 lines" in result.summary
    assert "Store.get" in result.summary
    assert "+ return self.data.get(key)" in result.summary
    assert "@@ -15,3 +15,3 @@" in result.detail
    assert result.files_touched == ["/repo/app/store.py"]


def test_edit_without_original_uses_file_reader_to_place_the_change():
    current = STORE_PY.replace(OLD, NEW)
    tool_input = {"file_path": "app/store.py", "old_string": OLD, "new_string": NEW}
    seen = []

    def reader(path: str) -> str:
        seen.append(path)
        return current

    result = compress(
        "Edit", tool_input, "The file app/store.py has been updated.", file_reader=reader
    )
    assert seen == ["app/store.py"]
    assert result.functions_changed == ["Store.get"]


def test_edit_without_any_source_falls_back_to_def_lines_in_the_fragment():
    old = "def area(r):\n    return 3.14 * r * r\n"
    new = "def area(r):\n    return math.pi * r * r\n"
    tool_input = {"file_path": "geo.py", "old_string": old, "new_string": new}
    result = compress("Edit", tool_input, "ok")
    assert result.functions_changed == ["area"]


def test_edit_that_deletes_a_function_reports_it():
    removed = "    def put(self, key, value):\n        self.data[key] = value\n"
    tool_input = {"file_path": "/repo/app/store.py", "old_string": "\n" + removed, "new_string": ""}
    result = compress("Edit", tool_input, edit_response(STORE_PY, "\n" + removed, ""))
    assert result.functions_changed == ["Store.put"]
    assert "-3 +0 lines" in result.summary


def test_edit_outside_any_function_changes_no_function():
    old, new = "import json\n", "import json\nimport os\n"
    tool_input = {"file_path": "/repo/app/store.py", "old_string": old, "new_string": new}
    result = compress("Edit", tool_input, edit_response(STORE_PY, old, new))
    assert result.functions_changed == []
    assert "-0 +1 lines" in result.summary


def test_edit_reader_failure_and_non_python_files_are_harmless():
    def reader(path: str) -> str:
        raise FileNotFoundError(path)

    result = compress(
        "Edit",
        {"file_path": "app/store.py", "old_string": OLD, "new_string": NEW},
        "ok",
        file_reader=reader,
    )
    assert result.title == "Edit app/store.py"
    notes = compress(
        "Edit",
        {"file_path": "NOTES.md", "old_string": "def x", "new_string": "def y"},
        "ok",
    )
    assert notes.functions_changed == []
    assert "-1 +1 lines" in notes.summary


def test_multiedit_touching_two_functions():
    edits = [
        {"old_string": "json.load(f)", "new_string": "json.load(f) or {}", "replace_all": False},
        {"old_string": "self.data[key] = value", "new_string": "self.data[key] = str(value)"},
    ]
    response = json.dumps(
        {"filePath": "/repo/app/store.py", "edits": edits, "originalFile": STORE_PY}
    )
    result = compress("MultiEdit", {"file_path": "/repo/app/store.py", "edits": edits}, response)
    assert result.title == "Edit /repo/app/store.py (2 edits)"
    assert result.functions_changed == ["load", "Store.put"]
    assert "-2 +2 lines" in result.summary


# --------------------------------------------------------------------------
# Write / NotebookEdit
# --------------------------------------------------------------------------


def test_write_new_python_file_lists_its_defs():
    response = json.dumps(
        {
            "type": "create",
            "filePath": "/repo/app/store.py",
            "content": STORE_PY,
            "structuredPatch": [],
        }
    )
    result = compress("Write", {"file_path": "/repo/app/store.py", "content": STORE_PY}, response)
    assert result.title == "Write /repo/app/store.py"
    assert result.summary.startswith("Wrote /repo/app/store.py: 19 lines")
    assert result.functions_changed == ["load", "Store", "Store.__init__", "Store.get", "Store.put"]


def test_write_over_existing_file_reports_only_real_changes():
    changed = STORE_PY.replace(OLD, NEW)
    response = {"type": "update", "filePath": "/repo/app/store.py", "originalFile": STORE_PY}
    result = compress(
        "Write", {"file_path": "/repo/app/store.py", "content": changed}, json.dumps(response)
    )
    assert result.summary.startswith("Updated")
    assert result.functions_changed == ["Store.get"]

    # Reformatting alone keeps every body hash, so nothing is reported as changed.
    reformatted = STORE_PY.replace("def put(self, key, value):", "def put(self, key,  value):")
    result = compress(
        "Write", {"file_path": "/repo/app/store.py", "content": reformatted}, json.dumps(response)
    )
    assert result.functions_changed == []
    assert "no code changes" in result.summary


def test_notebook_edit():
    tool_input = {
        "notebook_path": "/repo/analysis.ipynb",
        "cell_id": "a1b2c3",
        "new_source": "import pandas as pd\ndf = pd.read_csv('x.csv')",
        "cell_type": "code",
        "edit_mode": "replace",
    }
    result = compress("NotebookEdit", tool_input, "Updated cell a1b2c3")
    assert "/repo/analysis.ipynb" in result.title
    assert "a1b2c3" in result.title
    assert result.summary.startswith("replace code cell a1b2c3")
    assert result.files_touched == ["/repo/analysis.ipynb"]


# --------------------------------------------------------------------------
# Bash
# --------------------------------------------------------------------------

PYTEST_FAILURE = """\
============================= test session starts ==============================
collected 4 items

tests/test_store.py ..F.                                                 [100%]

=================================== FAILURES ===================================
_________________________________ test_get ____________________________________
    def test_get():
>       assert store.get("a") == 1
E       KeyError: 'a'
=========================== short test summary info ============================
FAILED tests/test_store.py::test_get - KeyError: 'a'
========================= 1 failed, 3 passed in 0.12s ==========================
"""


def bash(stdout: str = "", stderr: str = "", interrupted: bool = False) -> str:
    return json.dumps(
        {"stdout": stdout, "stderr": stderr, "interrupted": interrupted, "isImage": False}
    )


def test_bash_pytest_failure():
    tool_input = {"command": "pytest -q tests/test_store.py", "description": "Run store tests"}
    result = compress("Bash", tool_input, bash(PYTEST_FAILURE))
    assert result.title == "Run: pytest -q tests/test_store.py"
    assert "tests failed" in result.summary
    assert "1 failed, 3 passed in 0.12s" in result.summary
    assert "FAILED tests/test_store.py::test_get" in result.summary
    assert result.files_touched == []
    assert result.functions_changed == []


def test_bash_success_traceback_and_interrupt():
    ok = compress("Bash", {"command": "ls"}, bash("a.py\nb.py\n"))
    assert "Outcome: ok" in ok.summary
    assert "b.py" in ok.summary

    crash = compress(
        "Bash",
        {"command": "python app.py"},
        bash(
            "",
            "Traceback (most recent call last):\n"
            '  File "app.py", line 1\n'
            "NameError: name 'x' is not defined\n",
        ),
    )
    assert "Outcome: error" in crash.summary
    assert "Traceback" in crash.summary
    assert "NameError" in crash.summary

    stopped = compress("Bash", {"command": "sleep 100"}, bash(interrupted=True))
    assert "interrupted" in stopped.summary


def test_bash_output_that_merely_mentions_errors_is_not_a_failure():
    source = "def check(x):\n    raise ValueError('error: bad x')\n" + "pass\n" * 100
    result = compress("Bash", {"command": "cat app/check.py"}, bash(source))
    assert "Outcome: ok" in result.summary


def test_bash_plain_text_colours_and_long_commands():
    command = "docker compose run --rm web " + "x" * 300 + "\necho second line"
    output = "\x1b[32m5 passed\x1b[0m in 0.50s\n"
    result = compress("Bash", {"command": command}, output)
    assert result.title.startswith("Run: docker compose run --rm web")
    assert len(result.title) <= TITLE_MAX
    assert "\x1b" not in result.summary
    assert "5 passed in 0.50s" in result.summary
    assert "Exit code 2" not in result.summary
    failed = compress("Bash", {"command": "make"}, "Exit code 2\nmake: *** [all] Error 1")
    assert "failed (exit 2)" in failed.summary


# --------------------------------------------------------------------------
# Grep / Glob
# --------------------------------------------------------------------------


def test_grep_files_with_matches():
    response = {
        "mode": "files_with_matches",
        "filenames": ["/repo/app/store.py", "/repo/app/cli.py"],
        "numFiles": 2,
    }
    result = compress(
        "Grep",
        {"pattern": "def get", "path": "/repo", "output_mode": "files_with_matches"},
        json.dumps(response),
    )
    assert result.title == 'Grep "def get" in /repo'
    assert result.summary == "2 files: app/store.py, app/cli.py"
    assert result.files_touched == ["/repo"]


def test_grep_content_mode_and_no_matches():
    response = {
        "mode": "content",
        "numFiles": 1,
        "filenames": [],
        "content": "app/store.py:15:    def get(self, key):\napp/store.py:16:        return x",
        "numLines": 2,
    }
    result = compress("Grep", {"pattern": "get", "output_mode": "content"}, json.dumps(response))
    assert result.summary.startswith("2 matching lines in 1 file")
    assert "app/store.py:15" in result.summary

    empty = compress(
        "Grep",
        {"pattern": "nothing"},
        json.dumps({"mode": "files_with_matches", "filenames": [], "numFiles": 0}),
    )
    assert empty.summary == "No matches"


def test_grep_plain_text_answer():
    result = compress("Grep", {"pattern": "TODO"}, "Found 2 files\n/repo/a.py\n/repo/b.py\n")
    assert result.summary == "Found 2 files: /repo/a.py, /repo/b.py"


def test_glob_lists_first_files():
    names = [f"/repo/tests/test_{n}.py" for n in range(20)]
    response = {"filenames": names, "durationMs": 4, "numFiles": 20, "truncated": True}
    result = compress("Glob", {"pattern": "tests/**/*.py", "path": "/repo"}, json.dumps(response))
    assert result.title == "Glob tests/**/*.py in /repo"
    assert result.summary.startswith("20 files (truncated): tests/test_0.py, tests/test_1.py")
    assert "(+12)" in result.summary


# --------------------------------------------------------------------------
# Everything else
# --------------------------------------------------------------------------


def test_todowrite_counts_statuses():
    todos = [
        {"content": "Write tests", "status": "completed", "activeForm": "Writing tests"},
        {"content": "Fix the bug", "status": "in_progress", "activeForm": "Fixing the bug"},
        {"content": "Release", "status": "pending", "activeForm": "Releasing"},
    ]
    result = compress(
        "TodoWrite", {"todos": todos}, json.dumps({"oldTodos": [], "newTodos": todos})
    )
    assert result.title == "TodoWrite: 1 in progress, 1 pending, 1 completed"
    assert result.summary == "[x] Write tests; [>] Fix the bug; [ ] Release"


def test_mcp_tool_with_content_blocks():
    response = [{"type": "text", "text": "Created issue #12\nhttps://github.com/o/r/issues/12"}]
    result = compress(
        "mcp__github__create_issue",
        {"owner": "o", "repo": "r", "title": "Crash on empty config"},
        json.dumps(response),
    )
    assert result.title == "mcp__github__create_issue Crash on empty config"
    assert result.summary == "Created issue #12 | https://github.com/o/r/issues/12"
    assert result.files_touched == []


def test_webfetch_task_and_unknown_tools():
    fetch = compress(
        "WebFetch",
        {"url": "https://docs.python.org/3/library/ast.html", "prompt": "Summarise"},
        json.dumps(
            {"code": 200, "codeText": "OK", "result": "The ast module parses code.", "bytes": 10}
        ),
    )
    assert fetch.title == "WebFetch https://docs.python.org/3/library/ast.html"
    assert fetch.summary == "HTTP 200 OK; The ast module parses code."

    task = compress(
        "Task",
        {
            "description": "Find config loading",
            "prompt": "Look around",
            "subagent_type": "general-purpose",
        },
        json.dumps({"content": [{"type": "text", "text": "Config is loaded in app/config.py."}]}),
    )
    assert task.title == "Task Find config loading"
    assert task.summary == "Config is loaded in app/config.py."

    other = compress("SomethingNew", {}, "\n\n----\nfirst real line\nsecond\n")
    assert other.title == "SomethingNew"
    assert other.summary == "first real line | second"


# --------------------------------------------------------------------------
# Tokens, determinism, robustness
# --------------------------------------------------------------------------


def test_estimate_tokens_rounds_up():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 2  # one word: 1.22 tokens, rounded up
    assert estimate_tokens("abcd efgh") == 3


def test_token_counts():
    tool_input = {"command": "pytest -q", "description": "Run tests"}
    response = bash(PYTEST_FAILURE)
    result = compress("Bash", tool_input, response)
    raw = json.dumps(tool_input, ensure_ascii=False) + response
    assert result.tokens_raw == estimate_tokens(raw)
    compressed = result.title + result.summary + (result.detail or "")
    assert result.tokens_compressed == estimate_tokens(compressed)

    big = compress("Read", {"file_path": "big.py"}, numbered(STORE_PY * 50))
    assert big.tokens_compressed < big.tokens_raw / 5


def test_same_input_same_output():
    tool_input = {"file_path": "/repo/app/store.py", "old_string": OLD, "new_string": NEW}
    response = edit_response(STORE_PY, OLD, NEW)
    first = compress("Edit", tool_input, response).to_dict()
    for _ in range(3):
        assert compress("Edit", dict(tool_input), response).to_dict() == first
    assert json.loads(json.dumps(first)) == first


GARBAGE = [
    None,
    0,
    3.5,
    "",
    "{not json",
    "[1, 2",
    "\x00\x01\xff binary \x1b[31m",
    b"\x89PNG\r\n\x1a\n\x00\x00",
    [],
    [1, "a", None],
    {},
    {"file": None, "stdout": 5, "filenames": "x", "structuredPatch": "x", "content": [None]},
    {"structuredPatch": [{"oldStart": "x", "lines": [1, None, "+a"]}], "originalFile": 7},
    "[" * 5000 + "]" * 5000,
]
TOOLS = [
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "Bash",
    "Grep",
    "Glob",
    "TodoWrite",
    "WebFetch",
    "WebSearch",
    "Task",
    "mcp__x__y",
    "",
    None,
    7,
]


@pytest.mark.parametrize("tool", TOOLS)
def test_garbage_never_raises(tool):
    for tool_input in GARBAGE:
        for response in GARBAGE:
            result = compress(tool, tool_input, response)
            check_limits(result)
            assert result.tokens_raw >= 0
            assert result.tokens_compressed >= 0
            assert isinstance(result.files_touched, list)


def test_garbage_inside_valid_shapes():
    inputs = {
        "Edit": {"file_path": "a.py", "old_string": None, "new_string": 5, "replace_all": "yes"},
        "MultiEdit": {"file_path": "a.py", "edits": [None, {"old_string": 1}, "x"]},
        "Write": {"file_path": ["a"], "content": {"x": 1}},
        "TodoWrite": {"todos": [None, {"status": 3}, "x"]},
        "NotebookEdit": {"notebook_path": None, "edit_mode": 9},
        "Grep": {"pattern": None, "path": 3},
    }
    for tool, tool_input in inputs.items():
        check_limits(compress(tool, tool_input, "whatever", file_reader=lambda p: 42))


@pytest.mark.parametrize(
    "tool", ["Read", "Edit", "MultiEdit", "Write", "Bash", "Grep", "Glob", "mcp__a__b"]
)
def test_half_megabyte_payloads_are_fast_and_bounded(tool):
    source = STORE_PY * 1500  # about 500 KB of valid Python
    one_line = "x" * 500_000
    tool_input = {
        "file_path": "big.py",
        "command": one_line,
        "content": source,
        "old_string": source,
        "new_string": source + "\nz = 1\n",
        "edits": [{"old_string": source, "new_string": source + "\n"}],
        "pattern": "def",
    }
    for response in (
        numbered(source),
        json.dumps({"stdout": one_line, "originalFile": source}),
        one_line,
    ):
        started = time.perf_counter()
        result = compress(tool, tool_input, response)
        assert time.perf_counter() - started < 10
        check_limits(result)
        assert result.tokens_raw > 100_000
