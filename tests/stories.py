"""Scripted multi-session stories on small real git repositories, and what the next
session's context must say after each.

A story is sessions of tool uses (read, search, edit, write, a real shell command) played
as Claude Code's hook events through the memory's own API (`/-/claude-mem/hooks`), with the
worker run after each tool use, as it would be while the files are in that state. Then a new
session starts and its SessionStart context is checked: the names that matter (files,
functions changed, the fix, the learning, the failing test) and the noise (a function only
read listed as changed, an absolute path, a stale fact shown as current).

tests/claude_code/test_context_stories.py asserts the goals per story;
bench/bench_context.py reports the same figures in bench/RESULTS-context.md.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasette.app import Datasette

from datasette_claude_mem.claude_code.tokens import tokens
from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import LocalBackend, Worker, run_batch

GOAL_RECALL = 0.95
GOAL_TOKENS = 1_500


@dataclass
class Step:
    tool: str  # Read, Grep, Edit, Write, Bash, Learn
    path: str = ""
    old: str = ""
    new: str = ""
    command: str = ""


def read(path: str) -> Step:
    return Step("Read", path)


def grep(pattern: str, path: str = ".") -> Step:
    return Step("Grep", path, old=pattern)


def edit(path: str, old: str, new: str) -> Step:
    return Step("Edit", path, old, new)


def write(path: str, content: str) -> Step:
    return Step("Write", path, new=content)


def bash(command: str) -> Step:
    return Step("Bash", command=command)


def learn(content: str, functions: tuple[str, ...] = ()) -> Step:
    """A learning, naming the functions it is about (what makes it stale when they change)."""
    return Step("Learn", new=content, command=",".join(functions))


@dataclass
class Session:
    prompt: str
    steps: list[Step]
    summary: str  # Stop's last_assistant_message


@dataclass
class Story:
    name: str
    files: dict[str, str]
    sessions: list[Session]
    expected: list[str]  # names the next context must hold
    read_only: list[str] = field(default_factory=list)  # functions never changed
    stale: list[str] = field(default_factory=list)  # facts that must be marked stale


@dataclass
class Outcome:
    story: str
    context: str
    recalled: list[str]
    missed: list[str]
    noise: list[str]

    @property
    def bytes(self) -> int:
        return len(self.context.encode("utf-8"))

    @property
    def tokens(self) -> int:
        return tokens(self.context)

    @property
    def recall(self) -> float:
        total = len(self.recalled) + len(self.missed)
        return len(self.recalled) / total if total else 1.0


PRICING = '''"""Prices of an order."""


def apply_discount(price, rate):
    """The price after a discount of ``rate`` (0.1 is 10%)."""
    return round(price * (1 + rate), 2)


def line_total(price, qty):
    return price * qty


def format_price(value):
    return f"{value:.2f} EUR"
'''

PRICING_TEST = """from pricing import apply_discount, line_total


def test_apply_discount():
    assert apply_discount(100, 0.1) == 90


def test_line_total():
    assert line_total(3, 4) == 12
"""

UTILS = """def fmt(value):
    return f"{value:,.2f}"


def parse_line(text):
    name, amount = text.split(":")
    return name.strip(), float(amount)
"""

REPORT = """from utils import fmt, parse_line


def render_report(lines):
    rows = [parse_line(line) for line in lines]
    return "\\n".join(f"{name}: {fmt(amount)}" for name, amount in rows)
"""

INVOICE = """from utils import fmt


def render_invoice(total):
    return f"Total due: {fmt(total)}"
"""

TEXT = """import re


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def word_count(text):
    return len(text.split())
"""

SETTINGS = """import os


def load_settings():
    env = os.environ["APP_ENV"]
    return {"env": env, "debug": env == "dev"}


def describe(settings):
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
"""

BILLING = """def legacy_total(amounts):
    return int(sum(amounts) + 0.5)


def invoice_total(amounts):
    return round(sum(amounts), 2)


def tax(amount, rate=0.2):
    return round(amount * rate, 2)
"""


STORIES = [
    Story(
        "bug fix",
        {"pricing.py": PRICING, "tests/test_pricing.py": PRICING_TEST},
        [
            Session(
                "The 10% discount makes orders dearer: fix it",
                [
                    read("pricing.py"),
                    grep("apply_discount"),
                    bash("python -m pytest -q -p no:cacheprovider tests"),
                    edit("pricing.py", "price * (1 + rate)", "price * (1 - rate)"),
                    bash("python -m pytest -q -p no:cacheprovider tests"),
                ],
                "Fixed apply_discount in pricing.py: it added the rate instead of taking it "
                "off; test_apply_discount passes now.",
            )
        ],
        expected=["pricing.py", "apply_discount", "1 - rate", "test_apply_discount"],
        read_only=["line_total", "format_price"],
    ),
    Story(
        "feature",
        {"pricing.py": PRICING.replace("1 + rate", "1 - rate")},
        [
            Session(
                "Add a bulk discount: 5% off from 10 items",
                [
                    read("pricing.py"),
                    edit(
                        "pricing.py",
                        "def format_price(value):",
                        "def bulk_discount(price, qty):\n"
                        "    return apply_discount(price, 0.05) if qty >= 10 else price\n\n\n"
                        "def format_price(value):",
                    ),
                    write(
                        "tests/test_bulk.py",
                        "from pricing import bulk_discount\n\n\n"
                        "def test_bulk_discount_from_ten():\n"
                        "    assert bulk_discount(100, 10) == 95\n",
                    ),
                    bash("python -m pytest -q -p no:cacheprovider tests"),
                ],
                "Added bulk_discount (5% from 10 items) and tests/test_bulk.py; tests pass.",
            )
        ],
        expected=["pricing.py", "bulk_discount", "tests/test_bulk.py"],
        read_only=["apply_discount", "line_total", "format_price"],
    ),
    Story(
        "refactor across files",
        {"utils.py": UTILS, "report.py": REPORT, "invoice.py": INVOICE},
        [
            Session(
                "Rename fmt to format_money everywhere",
                [
                    grep("fmt("),
                    read("utils.py"),
                    edit("utils.py", "def fmt(value):", "def format_money(value):"),
                    read("report.py"),
                    edit("report.py", "import fmt, parse_line", "import format_money, parse_line"),
                    edit("report.py", "{fmt(amount)}", "{format_money(amount)}"),
                    read("invoice.py"),
                    edit("invoice.py", "import fmt", "import format_money"),
                    edit("invoice.py", "{fmt(total)}", "{format_money(total)}"),
                ],
                "Renamed fmt to format_money in utils.py, report.py and invoice.py.",
            )
        ],
        expected=[
            "utils.py",
            "report.py",
            "invoice.py",
            "format_money",
            "render_report",
            "render_invoice",
        ],  # fmt: skip
        read_only=["parse_line"],
    ),
    Story(
        "failing tests then fixed",
        {"text.py": TEXT},
        [
            Session(
                "Slugs must keep accented letters",
                [
                    read("text.py"),
                    write(
                        "tests/test_text.py",
                        "from text import slugify\n\n\n"
                        "def test_slugify_keeps_accents():\n"
                        "    assert slugify('Café au lait') == 'café-au-lait'\n",
                    ),
                    bash("python -m pytest -q -p no:cacheprovider tests"),
                ],
                "Wrote test_slugify_keeps_accents; it fails: slugify drops é. Left open: fix "
                "slugify.",
            ),
            Session(
                "Fix slugify so the new test passes",
                [
                    read("text.py"),
                    edit("text.py", 'r"[^a-z0-9]+"', 'r"[^\\w]+"'),
                    bash("python -m pytest -q -p no:cacheprovider tests"),
                ],
                "slugify keeps accented letters now (\\w); test_slugify_keeps_accents passes.",
            ),
        ],
        expected=["text.py", "slugify", "test_slugify_keeps_accents", "tests/test_text.py"],
        read_only=["word_count"],
    ),
    Story(
        "learning recorded",
        {"settings.py": SETTINGS},
        [
            Session(
                "Why does the app crash on start?",
                [
                    read("settings.py"),
                    bash('python -c "import settings; settings.load_settings()"'),
                    learn(
                        "load_settings needs APP_ENV set: without it the app fails at start.",
                        ("load_settings",),
                    ),
                ],
                "The crash is load_settings reading APP_ENV, which was not set; recorded it.",
            )
        ],
        expected=["APP_ENV", "load_settings"],
        read_only=["load_settings", "describe"],
    ),
    Story(
        "function deleted",
        {"billing.py": BILLING},
        [
            Session(
                "Which total do invoices use?",
                [
                    read("billing.py"),
                    learn("Invoices round with legacy_total (half up).", ("legacy_total",)),
                ],
                "Invoices use legacy_total, which rounds half up.",
            ),
            Session(
                "Remove legacy_total: invoices use invoice_total now",
                [
                    read("billing.py"),
                    edit(
                        "billing.py",
                        "def legacy_total(amounts):\n    return int(sum(amounts) + 0.5)\n\n\n",
                        "",
                    ),
                ],
                "Deleted legacy_total from billing.py; invoice_total is the one total.",
            ),
        ],
        expected=["billing.py", "legacy_total", "deleted"],
        read_only=["invoice_total", "tax"],
        stale=["Invoices round with legacy_total"],
    ),
]


# Playing a story


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository with the story's files in one commit."""
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(root)]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "start"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return root


def _patch(before: str, after: str) -> list[dict[str, Any]]:
    """Claude Code's structuredPatch: hunks with three lines of context."""
    a, b = before.splitlines(), after.splitlines()
    hunks = []
    for group in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(3):
        lines = []
        for op, i1, i2, j1, j2 in group:
            if op == "equal":
                lines += [f" {line}" for line in a[i1:i2]]
            else:
                lines += [f"-{line}" for line in a[i1:i2]] + [f"+{line}" for line in b[j1:j2]]
        first, last = group[0], group[-1]
        hunks.append(
            {
                "oldStart": first[1] + 1,
                "oldLines": last[2] - first[1],
                "newStart": first[3] + 1,
                "newLines": last[4] - first[3],
                "lines": lines,
            }
        )
    return hunks


class Player:
    """Plays stories through one Datasette's hook route and a worker on the same file."""

    def __init__(self, ds: Datasette, token: str, db_path: Path, work: Path) -> None:
        self.ds, self.token, self.db_path, self.work = ds, token, db_path, work
        self.uses = 0

    async def hook(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.ds.client.post(
            f"{PREFIX}/hooks", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert response.status_code == 200, response.text[:500]
        return response.json()

    async def work_queue(self) -> None:
        with Store(self.db_path) as store:
            while (await run_batch(Worker(batch_size=10), LocalBackend(store))).outcomes:
                pass

    async def learning(self, session_id: str, content: str, functions: list[str]) -> None:
        response = await self.ds.client.post(
            f"{PREFIX}/learnings",
            json={"content": content, "category": "gotcha", "confidence": 0.9,
                  "source_session_id": session_id, "project": str(self.repo),
                  "functions": functions},
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        assert response.status_code == 201, response.text[:500]

    async def play(self, story: Story) -> Outcome:
        slug = re.sub(r"\W+", "-", story.name)
        self.repo = make_repo(self.work / slug, story.files)
        for n, session in enumerate(story.sessions):
            sid = f"{slug}-{n}"
            await self.event(sid, "SessionStart", source="startup")
            await self.event(sid, "UserPromptSubmit", prompt=session.prompt)
            for step in session.steps:
                await self.step(sid, step)
                await self.work_queue()
            await self.event(sid, "Stop", stop_hook_active=False,
                             last_assistant_message=session.summary)  # fmt: skip
            await self.event(sid, "SessionEnd", reason="other")
        await self.work_queue()
        answer = await self.event(f"{slug}-next", "SessionStart", source="startup")
        context = answer.get("hookSpecificOutput", {}).get("additionalContext", "")
        return judge(story, context, self.repo)

    async def event(self, sid: str, name: str, **fields: Any) -> dict[str, Any]:
        payload = {
            "session_id": sid,
            "transcript_path": f"{self.work}/transcripts/{sid}.jsonl",
            "cwd": str(self.repo),
            "permission_mode": "default",
            "hook_event_name": name,
            **fields,
        }
        return await self.hook(payload)

    async def step(self, sid: str, step: Step) -> None:
        self.uses += 1
        use = f"toolu_{self.uses:04d}"
        path = str(self.repo / step.path) if step.path else ""
        if step.tool == "Learn":
            await self.learning(sid, step.new, [f for f in step.command.split(",") if f])
            return
        if step.tool == "Read":
            text = Path(path).read_text(encoding="utf-8")
            response: Any = {"type": "text", "file": {"filePath": path, "content": text,
                             "numLines": text.count("\n"), "startLine": 1,
                             "totalLines": text.count("\n")}}  # fmt: skip
            await self.tool(sid, use, "Read", {"file_path": path}, response)
        elif step.tool == "Grep":
            found = subprocess.run(["git", "-C", str(self.repo), "grep", "-n", "-F", step.old],
                                   capture_output=True, text=True).stdout  # fmt: skip
            lines = found.count("\n")
            await self.tool(sid, use, "Grep", {"pattern": step.old, "path": path,
                            "output_mode": "content"},
                            {"mode": "content", "numFiles": lines, "filenames": [],
                             "content": found, "numLines": lines})  # fmt: skip
        elif step.tool == "Edit":
            before = Path(path).read_text(encoding="utf-8")
            assert step.old in before, (path, step.old)
            after = before.replace(step.old, step.new, 1)
            Path(path).write_text(after, encoding="utf-8")
            response = {"filePath": path, "oldString": step.old, "newString": step.new,
                        "originalFile": before, "structuredPatch": _patch(before, after),
                        "userModified": False, "replaceAll": False}  # fmt: skip
            await self.tool(sid, use, "Edit", {"file_path": path, "old_string": step.old,
                            "new_string": step.new, "replace_all": False}, response)  # fmt: skip
        elif step.tool == "Write":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            existed = Path(path).exists()
            before = Path(path).read_text(encoding="utf-8") if existed else None
            Path(path).write_text(step.new, encoding="utf-8")
            response = {"type": "update" if existed else "create", "filePath": path,
                        "content": step.new, "structuredPatch": _patch(before or "", step.new),
                        "originalFile": before}  # fmt: skip
            await self.tool(sid, use, "Write", {"file_path": path, "content": step.new},
                            response)  # fmt: skip
        else:
            # The agent types `python`; the story runs it with this interpreter, which has
            # pytest, and without the caller's environment variables that matter here.
            run = re.sub(r"^python ", f"{sys.executable} ", step.command)
            env = {k: v for k, v in os.environ.items() if k != "APP_ENV"}
            env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # this project's plugins are not theirs
            done = subprocess.run(run, shell=True, cwd=self.repo, capture_output=True,
                                  text=True, timeout=120, env=env)  # fmt: skip
            command = {"command": step.command, "description": "Run it"}
            if done.returncode:
                error = f"Exit code {done.returncode}\n{done.stdout}{done.stderr}"
                await self.event(sid, "PostToolUseFailure", tool_name="Bash",
                                 tool_input=command, tool_use_id=use, error=error,
                                 is_interrupt=False)  # fmt: skip
            else:
                await self.tool(sid, use, "Bash", command, {"stdout": done.stdout,
                                "stderr": done.stderr, "interrupted": False,
                                "isImage": False})  # fmt: skip

    async def tool(self, sid: str, use: str, name: str, tool_input: dict, response: Any) -> None:
        await self.event(sid, "PostToolUse", tool_name=name, tool_input=tool_input,
                         tool_response=response, tool_use_id=use)  # fmt: skip


# Judging a context


def section(context: str, title: str) -> list[str]:
    """The lines of one section of a context."""
    for block in context.split("\n\n"):
        if block.startswith(f"## {title}\n"):
            return block.split("\n")[1:]
    return []


def judge(story: Story, context: str, repo: Path) -> Outcome:
    recalled = [name for name in story.expected if name in context]
    missed = [name for name in story.expected if name not in context]
    noise = []
    for line in section(context, "Changes to code"):
        changes = line.split(" — ", 1)[0]
        for name in story.read_only:
            if re.search(rf"`{re.escape(name)}`", changes):
                noise.append(f"read-only function listed as changed: {name}")
    for line in context.split("\n"):
        if str(repo.parent) in line or sys.prefix in line or sys.base_prefix in line:
            noise.append(f"absolute path: {line[:80]}")
        for fact in story.stale:
            if fact in line and "stale" not in line:
                noise.append(f"stale fact shown as current: {fact}")
    return Outcome(story.name, context, recalled, missed, noise)
