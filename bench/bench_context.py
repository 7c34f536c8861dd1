"""What the next session's context says after scripted multi-session stories.

    python bench/bench_context.py [--show]

Each story of tests/stories.py (a bug fix, a feature, a refactor across files, failing tests
then fixed, a learning recorded, a function deleted) is played on a small real git
repository of its own, as Claude Code's hook events through the memory's hooks route, with
the worker run after each tool use; then a new session starts. Its SessionStart context is
checked for the names that matter (files, functions changed, the fix, the learning, the
failing test) and for noise (a function only read listed as changed, an absolute path of
this machine, a stale fact shown as current). Tokens are the memory's estimate and, with the
`tokenizer` extra, Claude's tokenizer (anthropic 0.37.1's tokenizer.json). The table goes
into bench/RESULTS-context.md between its markers; the analysis there is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from datasette.app import Datasette  # noqa: E402
from helpers import SECRET, empty_sqlite_file, load_serve_config  # noqa: E402
from stories import GOAL_RECALL, GOAL_TOKENS, STORIES, Outcome, Player  # noqa: E402

from datasette_claude_mem.claude_code.tokens import real_tokenizer  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS-context.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PACKAGES = ("datasette", "sqlite-utils", "tokenizers", "anthropic", "datasette-claude-mem")


async def play_all(work: Path) -> list[Outcome]:
    os.environ["CLAUDE_MEM_DIR"] = str(work / "mem")
    os.environ["CLAUDE_MEM_WORKER"] = "0"  # the stories run the worker themselves
    db = empty_sqlite_file(work / "mem" / "claude-mem.db")
    ds = Datasette([str(db)], config=load_serve_config(), secret=SECRET)
    await ds.invoke_startup()
    try:
        token = await ds.create_token("claude-mem")
        return [await Player(ds, token, db, work / "repos").play(s) for s in STORIES]
    finally:
        ds.close()


def table(outcomes: list[Outcome]) -> str:
    tokenizer = real_tokenizer()
    rows = [
        "| story | names recalled / expected | missed | noise lines | bytes | tokens "
        "(estimate) | tokens (Claude's tokenizer) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    largest = 0
    for o in outcomes:
        real = len(tokenizer.encode(o.context).ids) if tokenizer else "-"
        largest = max(largest, o.tokens, real if isinstance(real, int) else 0)
        rows.append(
            f"| {o.story} | {len(o.recalled)} / {len(o.recalled) + len(o.missed)} | "
            f"{', '.join(o.missed) or '-'} | {len(o.noise)} | {o.bytes:,} | {o.tokens:,} | "
            f"{real} |"
        )
    recalled = sum(len(o.recalled) for o in outcomes)
    expected = sum(len(o.recalled) + len(o.missed) for o in outcomes)
    noise = sum(len(o.noise) for o in outcomes)
    share = recalled / expected if expected else 1.0
    goals = (
        f"Goals: {share:.0%} of expected names (goal ≥ {GOAL_RECALL:.0%}): "
        f"{'met' if share >= GOAL_RECALL else 'missed'}; {noise} misreported or noise lines "
        f"(goal 0): {'met' if noise == 0 else 'missed'}; at most {largest:,} tokens a context, "
        "by the estimate or the tokenizer, whichever says more "
        f"(goal ≤ {GOAL_TOKENS:,}): {'met' if largest <= GOAL_TOKENS else 'missed'}."
    )
    noise_lines = [f"- {o.story}: {line}" for o in outcomes for line in o.noise]
    return "\n".join([*rows, "", goals, *([""] + noise_lines if noise_lines else [])])


def write_results(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    found = versions(*PACKAGES)
    header = (
        f"Run {stamp} on {machine()}; "
        + ", ".join(f"{k} {v}" for k, v in found.items())
        + f"; {len(STORIES)} stories."
    )
    block = f"{START}\n{header}\n\n{text}\n{END}"
    if RESULTS.exists():
        old = RESULTS.read_text(encoding="utf-8")
        if START in old and END in old:
            before, rest = old.split(START, 1)
            after = rest.split(END, 1)[1]
            RESULTS.write_text(before + block + after, encoding="utf-8")
            return
    RESULTS.write_text(
        "# The next session's context after scripted stories\n\n"
        "`python bench/bench_context.py` (see its docstring for what is measured). The table "
        "between the markers is rewritten by each run; what follows it is written by hand.\n\n"
        f"{block}\n",
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--show", action="store_true", help="print each story's context")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-context-") as work:
        outcomes = asyncio.run(play_all(Path(work)))
    if args.show:
        for o in outcomes:
            print(f"===== {o.story}\n{o.context}\n")
    text = table(outcomes)
    print(text)
    write_results(text)


if __name__ == "__main__":
    main()
