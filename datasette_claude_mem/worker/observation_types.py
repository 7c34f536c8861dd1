"""What a tool use was for: one of the observation types, decided offline.

The tool says most (a Read is discovery), the file says more (an edit to a test is `test`,
to pyproject.toml `config`), the outcome says whether it failed, and for a change to code
the person's prompt says why it was made (fix, add, refactor), with the diff as the fallback
(a new definition is a feature).

Two rules hold whatever else is true, so the same run is typed the same every time:
a test run is `test`, passed or failed (its outcome is in its summary: the context and
search find failing runs by it); `failure` is any other tool use that failed. Reading
commands (`ls`, `cat`, `git status`) are `discovery`, never `test`.
"""

from __future__ import annotations

import re
from typing import Any

from datasette_claude_mem.storage.kinds import CHANGE_TOOLS, ObservationType
from datasette_claude_mem.worker.summary_text import EXIT_CODE_RE, PYTEST_RE, as_text

T = ObservationType

READ_TOOLS = frozenset(
    {"Read", "Grep", "Glob", "LS", "WebFetch", "WebSearch", "NotebookRead", "ToolSearch"}
)
PLAN_TOOLS = frozenset({"TodoWrite", "ExitPlanMode", "EnterPlanMode", "AskUserQuestion"})

_TEST_RUNNERS = frozenset(
    [
        "pytest",
        "py.test",
        "tox",
        "nox",
        "nosetests",
        "jest",
        "vitest",
        "mocha",
        "rspec",
        "phpunit",
        "ctest",
        "unittest",
        "playwright",
        "cypress",
    ]
)
# A test run said in two words, at the start of a command.
_TEST_COMMAND_RE = re.compile(
    r"^(?:(?:npm|yarn|pnpm|bun)\s+(?:run\s+)?test|(?:go|cargo|dotnet|mix|deno|swift)\s+test"
    r"|make\s+(?:test|check)|python3?\s+manage\.py\s+test|(?:\./)?scripts/test)\b"
)
# What runs a tool for the command: `python -m pytest`, `uv run pytest`, `npx jest`.
_RUNNER_PREFIX_RE = re.compile(
    r"^(?:\S*python[\d.]*\s+-m\s+|(?:uv|poetry|pipenv|hatch|pdm)\s+run\s+|npx\s+|bunx\s+"
    r"|pnpm\s+exec\s+|yarn\s+)"
)
# The first word of a command that changes files.
_CHANGING = frozenset(
    [
        "mv",
        "cp",
        "rm",
        "rmdir",
        "mkdir",
        "touch",
        "ln",
        "install",
        "patch",
        "truncate",
        "rsync",
        "tar",
        "unzip",
        "gunzip",
        "dd",
        "black",
        "isort",
        "gofmt",
        "rustfmt",
        "autopep8",
        "alembic",
    ]
)
_CHANGING_FLAGS = frozenset({"--fix", "--write", "-w", "format", "fmt", "--in-place"})
_READING_GIT = frozenset(
    [
        "status",
        "log",
        "diff",
        "show",
        "blame",
        "branch",
        "remote",
        "describe",
        "ls-files",
        "ls-tree",
        "rev-parse",
        "shortlog",
        "grep",
        "reflog",
    ]
)
_CONFIG_COMMAND_RE = re.compile(
    r"\b(?:pip3?|uv\s+pip|pipx)\s+(?:install|uninstall)\b|\b(?:uv|poetry|pdm|hatch)\s+"
    r"(?:add|remove|lock|sync)\b|\b(?:npm|pnpm|bun)\s+(?:install|i|ci|add|uninstall|remove)\b"
    r"|\byarn\s+(?:add|remove|install)\b|\b(?:apt|apt-get|brew|dnf|yum|apk)\s+(?:install|"
    r"remove)\b|\bcargo\s+(?:add|remove)\b|\bgo\s+(?:get|mod)\b|\bgit\s+config\b|"
    r"\bpre-commit\s+install\b|\b(?:python3?\s+-m\s+)?venv\b|\bchmod\b|\bchown\b"
)
_SED_IN_PLACE_RE = re.compile(r"\b(?:sed|perl)\s+(?:-\w*\s+)*-i")
_REDIRECT_RE = re.compile(r"(?<![0-9&])>{1,2}\s*(?!/dev/null|&)[^\s|;&]")

_TEST_PATH_RE = re.compile(
    r"(?:^|/)(?:tests?|spec|specs|__tests__|testing)/|(?:^|/)(?:test_[^/]*|[^/]*_test)\.py$"
    r"|(?:^|/)conftest\.py$|_test\.(?:go|rs|rb|exs?)$|\.(?:test|spec)\.[cm]?[jt]sx?$"
    r"|(?:^|/)[^/]*Tests?\.(?:java|kt|cs|swift)$"
)
_CONFIG_NAMES = frozenset(
    [
        "pyproject.toml",
        "setup.cfg",
        "tox.ini",
        "noxfile.py",
        "pytest.ini",
        "mypy.ini",
        ".flake8",
        "ruff.toml",
        "requirements.txt",
        "package.json",
        "package-lock.json",
        "pnpm-lock.yaml",
        "yarn.lock",
        "tsconfig.json",
        "cargo.toml",
        "cargo.lock",
        "go.mod",
        "go.sum",
        "gemfile",
        "makefile",
        "dockerfile",
        "docker-compose.yml",
        "docker-compose.yaml",
        "compose.yaml",
        ".gitignore",
        ".gitattributes",
        ".editorconfig",
        ".env",
        ".pre-commit-config.yaml",
        ".npmrc",
        ".nvmrc",
        ".python-version",
        "settings.json",
        "justfile",
    ]
)
_CONFIG_SUFFIXES = (".toml", ".ini", ".cfg", ".conf", ".yaml", ".yml", ".env", ".lock")
_DOC_SUFFIXES = (".md", ".rst", ".txt", ".adoc")
_CONFIG_PATH_RE = re.compile(r"(?:^|/)(?:\.github|\.circleci|\.claude|\.vscode|\.devcontainer)/")
_DECISION_PATH_RE = re.compile(
    r"(?:^|/)(?:adr|adrs|decisions?)/|(?:^|/)(?:adr[-_]?\d+[^/]*|design|decisions?)\.(?:md|rst)$",
    re.IGNORECASE,
)

# The person's reasons, as they say them; the earliest one in the prompt wins.
_INTENTS: tuple[tuple[ObservationType, re.Pattern[str]], ...] = (
    (
        T.BUGFIX,
        re.compile(
            r"\b(?:fix(?:es|ed|ing)?|bugs?|broken|crash(?:es|ing)?|wrong|incorrect|"
            r"regressions?|typo|off[- ]by[- ]one|doesn'?t work|does not work|fails?|failing)\b",
            re.IGNORECASE,
        ),
    ),
    (
        T.REFACTOR,
        re.compile(
            r"\b(?:refactor\w*|renam\w*|extract\w*|clean ?up|cleanup|simplif\w*|restructur\w*|"
            r"reorganis\w*|reorganiz\w*|split|move|dedupl\w*|tidy)\b",
            re.IGNORECASE,
        ),
    ),
    (
        T.FEATURE,
        re.compile(
            r"\b(?:add|adds|adding|implement\w*|features?|support|introduc\w*|create|new|build|"
            r"allow|enable)\b",
            re.IGNORECASE,
        ),
    ),
)
_DEFINITION_RE = re.compile(
    r"^\s*(?:async\s+def|def|class|function|func|fn|pub\s+fn)\s+([A-Za-z_]\w*)", re.MULTILINE
)
PROMPT_SCAN = 600


def is_test_command(command: str) -> bool:
    """Does one of the command's steps run tests? A runner named as an argument
    (`pip install pytest`) runs nothing."""
    for words in _segments(command):
        line = _RUNNER_PREFIX_RE.sub("", " ".join(words))
        head = line.split(" ", 1)[0].rsplit("/", 1)[-1]
        if head in _TEST_RUNNERS or _TEST_COMMAND_RE.match(line):
            return True
    return False


def is_test_path(path: str) -> bool:
    return bool(_TEST_PATH_RE.search(path.replace("\\", "/")))


def is_config_path(path: str) -> bool:
    path = path.replace("\\", "/")
    name = path.rsplit("/", 1)[-1].lower()
    if name in _CONFIG_NAMES or name.startswith((".env", "requirements", "dockerfile")):
        return True
    return name.endswith(_CONFIG_SUFFIXES) or bool(_CONFIG_PATH_RE.search(path))


def prompt_intent(prompt: str | None) -> ObservationType | None:
    """Bugfix, refactor or feature, as the prompt's first word of one of them says."""
    if not prompt:
        return None
    text = prompt[:PROMPT_SCAN]
    found = [(m.start(), kind) for kind, rx in _INTENTS if (m := rx.search(text))]
    return min(found)[1] if found else None


def _segments(command: str) -> list[list[str]]:
    """The words of each simple command of a shell line, environment assignments dropped."""
    parts = re.split(r"&&|\|\||[;|\n]", command)
    words = []
    for part in parts:
        tokens = [t for t in part.strip().split() if not re.match(r"^\w+=", t)]
        while tokens and tokens[0] in ("sudo", "time", "nice", "command", "env", "exec", "timeout"):
            tokens = tokens[2:] if tokens[0] == "timeout" and len(tokens) > 2 else tokens[1:]
        if tokens:
            words.append(tokens)
    return words


def _changes_files(command: str) -> bool:
    """Does the command write files (a move, a commit, a redirect, a formatter)? Anything
    else it may be (a script run, a build, a look around) is discovery."""
    if _SED_IN_PLACE_RE.search(command) or _REDIRECT_RE.search(command):
        return True
    for words in _segments(command):
        head = words[0].rsplit("/", 1)[-1]
        if head == "git" and len(words) > 1:
            if words[1] not in _READING_GIT or (words[1] == "branch" and len(words) > 2):
                return True
        elif head in _CHANGING or _CHANGING_FLAGS.intersection(words[1:]):
            return True
    return False


def _bash_failed(response: Any, raw: str) -> bool:
    if isinstance(response, dict):
        if response.get("interrupted") is True:
            return True
        output = f"{as_text(response.get('stdout'))}\n{as_text(response.get('stderr'))}"
    else:
        output = raw
    exit_match = EXIT_CODE_RE.search(output[:2000])
    return bool(exit_match and int(exit_match.group(1)))


def _bash_type(command: str, response: Any, raw: str, failed: bool) -> ObservationType:
    if is_test_command(command):
        return T.TEST
    output = raw if not isinstance(response, dict) else as_text(response.get("stdout"))
    if PYTEST_RE.search(output[-4000:]):
        return T.TEST  # a script that ran the tests
    if failed or _bash_failed(response, raw):
        return T.FAILURE
    if _CONFIG_COMMAND_RE.search(command):
        return T.CONFIG
    return T.CHANGE if _changes_files(command) else T.DISCOVERY


def _new_definitions(tool_name: str, tool_input: dict[str, Any]) -> bool:
    """Does the change define a name the text it replaced did not?"""
    if tool_name == "Write":
        return False  # a whole file: `_file_type` decides by whether it existed
    edits = tool_input.get("edits") if tool_name == "MultiEdit" else [tool_input]
    before: set[str] = set()
    after: set[str] = set()
    for edit in edits if isinstance(edits, list) else []:
        if isinstance(edit, dict):
            before.update(_DEFINITION_RE.findall(as_text(edit.get("old_string"))))
            after.update(_DEFINITION_RE.findall(as_text(edit.get("new_string"))))
            after.update(_DEFINITION_RE.findall(as_text(edit.get("new_source"))))
    return bool(after - before)


def _file_type(
    tool_name: str, tool_input: dict[str, Any], response: Any, prompt: str | None
) -> ObservationType:
    path = as_text(tool_input.get("file_path") or tool_input.get("notebook_path"))
    if is_test_path(path):
        return T.TEST
    if _DECISION_PATH_RE.search(path):
        return T.DECISION
    if is_config_path(path):
        return T.CONFIG
    if path.lower().endswith(_DOC_SUFFIXES):
        return T.CHANGE  # the prompt's fix or feature is in the code, not its notes
    intent = prompt_intent(prompt)
    if intent is not None:
        return intent
    created = isinstance(response, dict) and response.get("type") == "create"
    if created or _new_definitions(tool_name, tool_input):
        return T.FEATURE
    return T.CHANGE


def observation_type(
    tool_name: str,
    tool_input: dict[str, Any],
    response: Any,
    raw: str = "",
    *,
    failure: str | None = None,
    prompt: str | None = None,
) -> ObservationType:
    """The type of one tool use. `response` is the parsed tool response (a dict when Claude
    Code sent one), `raw` its text; `failure` is set for PostToolUseFailure; `prompt` is the
    person's prompt the tool use served."""
    command = as_text(tool_input.get("command")) if tool_name == "Bash" else ""
    if tool_name == "Bash":
        return _bash_type(command, response, raw, failed=bool(failure))
    if failure:
        return T.FAILURE
    if tool_name in CHANGE_TOOLS:
        return _file_type(tool_name, tool_input, response, prompt)
    if tool_name in PLAN_TOOLS:
        return T.DECISION
    if tool_name.startswith("mcp__") and re.search(r"remember|save|decid", tool_name):
        return T.DECISION
    return T.DISCOVERY
