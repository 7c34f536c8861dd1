"""How fast the queue worker turns real-shaped tool outputs into observations.

For each payload shape (Read of a Python file, Read of a text file, Edit of a Python file,
Bash output) and size (1 KB to 500 KB) the same queue is drained three ways, each on a fresh
memory file holding the same items:

  baseline  claim + complete with a compressor that does nothing (a fixed tiny result): the
            cost of the queue itself, reading the payload and writing the observation
  default   the default, offline compressor (what the worker runs)
  +index    the default compressor with the Python file on disk in a git project, so the
            worker also refreshes the function map and call graph (Read/Edit of .py only)

and compress() alone is timed in memory. Results are items per second and ratios to the
baseline measured in the same run, so they compare across machines.

A second table times compress() now against compress() as it is at another git revision
(--before, default main), loaded from that revision's files into this process and run on the
same payloads of 100 KB and 1 MB in the same run: the cost the change took away, as a ratio.

usage: python bench/bench_worker.py [--quick] [--repeat N] [--json PATH] [--render PATH]
                                    [--before REF] [--compare-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasette_claude_mem.storage.models import QueueItem, QueueItemCreate, SessionStart
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.compress import Compressed, compress
from datasette_claude_mem.worker.loop import DefaultCompressor, Worker

KB = 1024
SIZES = [1 * KB, 10 * KB, 100 * KB, 500 * KB]
KINDS = ["read_py", "read_text", "edit_py", "bash"]
# Items per run: enough to time, few enough to keep the whole bench to a minute or two.
COUNTS = {1 * KB: 300, 10 * KB: 100, 100 * KB: 20, 500 * KB: 6}


# Payloads shaped as Claude Code sends them


def python_source(size: int, seed: int) -> str:
    parts = [f'"""Module {seed}: helpers for the data pipeline."""\n\nimport json\nimport os\n\n']
    total = len(parts[0])
    k = 0
    while total < size:
        if k % 5 == 4:
            chunk = (
                f"\n\nclass Stage{seed}_{k}:\n"
                f'    """A pipeline stage ({k})."""\n\n'
                f"    def __init__(self, limit={k}):\n"
                f"        self.limit = limit\n\n"
                f"    def run(self, rows):\n"
                f"        kept = [r for r in rows if len(r) < self.limit]\n"
                f"        return transform_{seed}_{k - 1}(kept)\n"
            )
        else:
            chunk = (
                f"\n\ndef transform_{seed}_{k}(rows, *, key='id'):\n"
                f'    """Transform rows, step {k}."""\n'
                f"    out = []\n"
                f"    for row in rows:\n"
                f"        if row.get(key) is None:\n"
                f"            continue\n"
                f"        out.append({{**row, 'step': {k}, 'path': os.path.join('a', str(row))}})\n"
                f"    return json.loads(json.dumps(out))\n"
            )
        parts.append(chunk)
        total += len(chunk)
        k += 1
    return "".join(parts)  # whole definitions only: a little over size, and valid Python


def text_file(size: int, seed: int) -> str:
    line = (
        "The ingestion service retries failed batches with exponential backoff; "
        "see the runbook section {n} for the alert thresholds (seed {seed}).\n"
    )
    out, n = [], 0
    total = 0
    while total < size:
        piece = line.format(n=n, seed=seed)
        out.append(piece)
        total += len(piece)
        n += 1
    return "".join(out)[:size]


def bash_output(size: int, seed: int) -> str:
    lines, n, total = [], 0, 0
    while total < size:
        if n % 97 == 96:
            piece = (
                f"tests/test_mod_{seed}.py::test_case_{n} FAILED\n"
                "Traceback (most recent call last):\n"
                f'  File "src/pipeline/stage_{n}.py", line {n}, in run\n'
                f"    assert total == expected, (total, expected)\n"
                f"AssertionError: ({n}, {n + 1})\n"
            )
        else:
            piece = f"tests/test_mod_{seed}.py::test_case_{n} PASSED{' ' * (n % 7)}[ {n % 100}%]\n"
        lines.append(piece)
        total += len(piece)
        n += 1
    failed = sum(1 for k in range(n) if k % 97 == 96)
    return "".join(lines)[:size] + f"\n{failed} failed, {n - failed} passed in {seed}.42s\n"


def make_item(kind: str, size: int, seed: int, root: Path) -> tuple[QueueItemCreate, str | None]:
    """One queue item, and the Python file it touched (to write to disk), if any."""
    if kind == "read_py":
        path = root / "pkg" / f"module_{seed}.py"
        content = python_source(size, seed)
        response = {
            "type": "text",
            "file": {
                "filePath": str(path),
                "content": content,
                "numLines": content.count("\n") + 1,
                "startLine": 1,
                "totalLines": content.count("\n") + 1,
            },
        }
        tool_input = {"file_path": str(path)}
        return _item(seed, "Read", tool_input, response, [str(path)]), content
    if kind == "read_text":
        path = root / "docs" / f"notes_{seed}.md"
        content = text_file(size, seed)
        response = {"type": "text", "file": {"filePath": str(path), "content": content}}
        return _item(seed, "Read", {"file_path": str(path)}, response, [str(path)]), None
    if kind == "edit_py":
        path = root / "pkg" / f"module_{seed}.py"
        original = python_source(size, seed)
        old = (
            "        if row.get(key) is None:\n"
            "            continue\n"
            "        out.append({**row, 'step': 1,"
        )
        new = old.replace("row.get(key) is None", "not row.get(key)")
        if old not in original:  # a 1 KB file may end before transform 1
            old, new = "import os\n", "import os\nimport sys\n"
        edited = original.replace(old, new, 1)
        tool_input = {"file_path": str(path), "old_string": old, "new_string": new}
        response = {
            "filePath": str(path),
            "oldString": old,
            "newString": new,
            "originalFile": original,
            "structuredPatch": [
                {
                    "oldStart": 20,
                    "oldLines": 3,
                    "newStart": 20,
                    "newLines": 3,
                    "lines": [f"-{x}" for x in old.splitlines()]
                    + [f"+{x}" for x in new.splitlines()],
                }
            ],
            "userModified": False,
            "replaceAll": False,
        }
        return _item(seed, "Edit", tool_input, response, [str(path)]), edited
    if kind == "bash":
        stdout = bash_output(size, seed)
        response = {"stdout": stdout, "stderr": "", "interrupted": False, "isImage": False}
        tool_input = {"command": f"pytest -v tests/test_mod_{seed}.py", "description": "Run tests"}
        return _item(seed, "Bash", tool_input, response, []), None
    raise ValueError(kind)


def _item(seed: int, tool: str, tool_input: dict, response: dict, files: list[str]):
    return QueueItemCreate(
        session_id="bench-session",
        tool_use_id=f"use-{seed}",
        tool_name=tool,
        tool_input=tool_input,
        raw_output=json.dumps(response),
        files_touched=files,
    )


# Compressors


class NullCompressor:
    """The baseline: no work at all, a tiny result of its own per item."""

    name = "null"

    def __call__(self, item: QueueItem) -> Compressed:
        return Compressed(title=f"item {item.id}", summary="", detail=None)


# Runs


@dataclass
class Case:
    kind: str
    size: int
    count: int
    items: list[tuple[QueueItemCreate, str | None]]


def build_case(kind: str, size: int, count: int, root: Path) -> Case:
    return Case(kind, size, count, [make_item(kind, size, seed, root) for seed in range(count)])


def fresh_queue(case: Case, workdir: Path, on_disk: bool) -> tuple[Store, Path]:
    """A new memory file holding the case's items, and (optionally) their files on disk."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    project = run_dir / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    store = Store(run_dir / "memory.db")
    store.create_session(SessionStart(id="bench-session", project_dir=str(project)))
    for data, source in case.items:
        files = data.files_touched
        if on_disk:
            # Re-point the item at this run's project and put the file there.
            rel = [Path(f).relative_to(PLACEHOLDER) for f in files]
            files = [str(project / r) for r in rel]
            if source is not None:
                for path in files:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    Path(path).write_text(source)
        store.enqueue(data.model_copy(update={"files_touched": files}))
    store.checkpoint()
    return store, run_dir


PLACEHOLDER = Path("/bench/project")


def drain(store: Store, compressor: Callable, index_code: bool) -> tuple[float, int]:
    worker = Worker(compressor, worker_id="bench", batch_size=5, index_code=index_code)
    started = time.perf_counter()
    handled = 0
    while True:
        report = worker.run_once(store)
        if not report.outcomes:
            break
        assert report.failed == 0, report.outcomes
        handled += len(report.outcomes)
    return time.perf_counter() - started, handled


def compress_only(case: Case) -> float:
    started = time.perf_counter()
    for data, _ in case.items:
        compress(data.tool_name, data.tool_input, data.raw_output)
    return time.perf_counter() - started


def measure(case: Case, workdir: Path, repeat: int) -> dict:
    modes: dict[str, list[float]] = {"baseline": [], "default": [], "index": [], "compress": []}
    indexed = case.kind in ("read_py", "edit_py")
    for _ in range(repeat):
        for mode in ("baseline", "default", "index"):
            if mode == "index" and not indexed:
                continue
            store, _ = fresh_queue(case, workdir, on_disk=(mode == "index"))
            compressor = NullCompressor() if mode == "baseline" else DefaultCompressor()
            seconds, handled = drain(store, compressor, index_code=(mode == "index"))
            assert handled == case.count
            if mode == "index":
                rows = store.db.execute("SELECT count(*) FROM function_map").fetchone()[0]
                assert rows > 0, "the index run indexed nothing"
            store.close()
            modes[mode].append(case.count / seconds)
        modes["compress"].append(case.count / compress_only(case))
    result = {"kind": case.kind, "size": case.size, "items": case.count}
    for mode, rates in modes.items():
        result[mode] = statistics.median(rates) if rates else None
    return result


def load_compress_at(ref: str, workdir: Path) -> Callable:
    """compress() as it is at git revision `ref`, with the code index it uses from there too."""
    root = Path(__file__).resolve().parents[1]
    modules = {}
    for name in ("code_index", "compress"):
        text = subprocess.run(
            ["git", "-C", str(root), "show", f"{ref}:datasette_claude_mem/worker/{name}.py"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        text = text.replace("datasette_claude_mem.worker.code_index", "before_code_index")
        path = workdir / f"before_{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"before_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"before_{name}"] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules["compress"].compress


# 960 KB is under the 1,000,000 characters above which the old compress() gave up parsing.
COMPARE_SIZES = [100 * KB, 960 * KB, 1024 * KB]


def compare_compress(before: Callable, repeat: int) -> list[dict]:
    """ms per compress() call, now and before, on the same payloads (best of `repeat` runs
    of 5 different payloads each: the least disturbed figure of a shared machine)."""
    results = []
    for kind in KINDS:
        for size in COMPARE_SIZES:
            items = [make_item(kind, size, seed, PLACEHOLDER)[0] for seed in range(5)]
            timings = {}
            for label, fn in (("before", before), ("now", compress)):
                best = float("inf")
                for _ in range(repeat):
                    started = time.perf_counter()
                    for data in items:
                        fn(data.tool_name, data.tool_input, data.raw_output)
                    best = min(best, (time.perf_counter() - started) / len(items))
                timings[label] = best * 1000
            results.append({"kind": kind, "size": size, **timings})
            print(f"{kind:10s} {size // KB:5d} KB  before {timings['before']:8.2f} ms  "
                  f"now {timings['now']:7.2f} ms", file=sys.stderr)  # fmt: skip
    return results


def compare_table(results: list[dict], ref: str) -> str:
    lines = [
        f"| payload | size | compress() at {ref}, ms | compress() now, ms | now / before |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['kind']} | {r['size'] // KB} KB | {_num(r['before'])} | {_num(r['now'])} "
            f"| {_num(r['now'] / r['before'])} |"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    """Three significant figures, without a misleading 0 for small rates and ratios."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def table(results: list[dict]) -> str:
    lines = [
        "| payload | size | items | baseline items/s | default items/s | default / baseline "
        "| default ms/item | +index items/s | +index / baseline | compress() alone items/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        index_ratio = r["index"] / r["baseline"] if r["index"] else None
        lines.append(
            f"| {r['kind']} | {r['size'] // KB} KB | {r['items']} | {_num(r['baseline'])} "
            f"| {_num(r['default'])} | {_num(r['default'] / r['baseline'])} "
            f"| {_num(1000 / r['default'])} | {_num(r['index'])} | {_num(index_ratio)} "
            f"| {_num(r['compress'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 KB and 100 KB only, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--render", type=Path, help="print the table of saved results, and stop")
    parser.add_argument("--before", default="main", help="git revision to compare compress() to")
    parser.add_argument("--compare-only", action="store_true", help="only the compress() table")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        print(compare_table(saved["compare"], args.before) + "\n\n" + table(saved["drain"]))
        return 0
    sizes = [1 * KB, 100 * KB] if args.quick else SIZES
    repeat = 1 if args.quick else args.repeat
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {platform.system()}; median of {repeat}",
        file=sys.stderr,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        workdir = Path(tmp)
        compared = compare_compress(load_compress_at(args.before, workdir), max(repeat, 3))
        print(compare_table(compared, args.before) + "\n")
        if args.compare_only:
            return 0
        for kind in KINDS:
            for size in sizes:
                case = build_case(kind, size, COUNTS[size], PLACEHOLDER)
                result = measure(case, workdir, repeat)
                results.append(result)
                print(
                    f"{kind:10s} {size // KB:4d} KB  baseline {result['baseline']:8.0f}/s  "
                    f"default {result['default']:8.0f}/s  "
                    f"ratio {result['default'] / result['baseline']:.2f}",
                    file=sys.stderr,
                )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"compare": compared, "drain": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
