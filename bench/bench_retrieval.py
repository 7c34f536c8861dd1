"""Retrieval quality and speed of the memory's search: keyword, semantic and hybrid.

Builds a coding memory of five small projects (observations, learnings and session
summaries, plus the reads and test runs around them), asks it 120 questions whose one right
answer is known, a third of them paraphrases that share no word with their answer, and
reports recall@5, recall@10 and MRR for each mode; then grows the memory to 10,000 and
100,000 items and reports p50 latency, against a bare FTS5 match and a bare numpy product
measured in the same run. Needs the embeddings extra. Writes RESULTS-retrieval.md beside it.

    python bench/bench_retrieval.py
"""

from __future__ import annotations

import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import machine, percentile, versions

from datasette_claude_mem.storage.documents import index_docs
from datasette_claude_mem.storage.embeddings import backfill
from datasette_claude_mem.storage.models import LearningCreate, ObservationCreate, SessionStart
from datasette_claude_mem.storage.search import search
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.storage.vectors import SemanticSearch, SentenceTransformerEmbedder

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS-retrieval.md"
SEED = 13

# Each project's parts: the word the memory uses, and words a person might use instead.
PROJECTS = {
    "/src/shop": {
        "cart": "shopping basket",
        "invoice": "billing statement",
        "checkout": "payment flow",
        "coupon": "promo voucher",
        "inventory": "stock levels",
        "shipping": "parcel delivery",
        "refund": "money returned to customers",
        "tax": "sales levy",
    },
    "/src/chat": {
        "websocket": "live socket connection",
        "message": "chat text",
        "notification": "push alert",
        "avatar": "profile picture",
        "presence": "online status",
        "emoji": "smiley symbols",
        "thread": "reply chain",
        "attachment": "uploaded file",
    },
    "/src/blog": {
        "markdown": "formatting syntax",
        "comment": "reader reply",
        "feed": "rss syndication",
        "slug": "url path segment",
        "tag": "category label",
        "draft": "unpublished post",
        "sitemap": "site index xml",
        "thumbnail": "small preview picture",
    },
    "/src/infra": {
        "scheduler": "cron timer",
        "cache": "memoized store",
        "migration": "schema upgrade",
        "backup": "snapshot copy",
        "logging": "log output",
        "queue": "job backlog",
        "config": "settings file",
        "container": "docker image",
    },
    "/src/data": {
        "parser": "input reader",
        "csv": "comma separated export",
        "timezone": "utc offset",
        "query": "sql statement",
        "index": "lookup acceleration",
        "pagination": "page by page listing",
        "unicode": "character set",
        "report": "summary spreadsheet",
    },
}
PROBLEMS = {
    "rounding": "decimal precision error",
    "timeout": "takes forever then gives up",
    "crash": "process dies unexpectedly",
    "leak": "memory keeps growing",
    "race": "concurrent threads conflict",
    "duplicate": "same entry appears twice",
    "slowness": "sluggish performance",
    "permission": "access denied",
    "overflow": "number too large",
    "deadlock": "everything freezes waiting",
    "retry": "attempt again after failure",
    "validation": "bad input accepted",
    "ordering": "wrong sort sequence",
    "null": "missing value",
    "truncation": "text cut short",
    "stale": "outdated data shown",
}
_STOP_WORDS = (
    "a an the in on of to for and or is are was were be it its this that with from by as at "
    "we our i you how why what when where which who did does do after then too same"
)
STOP = set(_STOP_WORDS.split())
# Each project's docs/guide.md has a section per topic; people ask in other words too.
TOPICS = {
    "deploy": "ship to production servers",
    "release": "version tagging",
    "onboarding": "new developer setup",
    "monitoring": "health dashboards alerts",
}


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP}


def build(
    store: Store, rng: random.Random, docs_root: Path
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """The corpus; returns (project, part, problem) -> (kind, id) for each answer, and
    (project, "doc", topic) for each section of the projects' guides."""
    answers = {}
    for p, (project, parts) in enumerate(PROJECTS.items()):
        sessions = []
        for s in range(12):
            sid = f"s{p}-{s}"
            store.create_session(SessionStart(id=sid, project_dir=project, project=project))
            sessions.append(sid)
        for part in parts:
            for problem in PROBLEMS:
                sid = rng.choice(sessions)
                roll = rng.random()
                if roll < 0.6:
                    made = store.create_observation(
                        ObservationCreate(
                            session_id=sid,
                            tool_name="Edit",
                            title=f"Fixed {problem} in {part}",
                            summary=f"The {part} {problem} is resolved; a test covers it.",
                            files_touched=[f"src/{part}.py"],
                        )
                    ).row
                    answers[(project, part, problem)] = ("observation", made.id)
                elif roll < 0.8:
                    made = store.create_learning(
                        LearningCreate(
                            category="gotcha",
                            content=f"{part.capitalize()} has a {problem} pitfall: guard it.",
                            project=project,
                        )
                    ).row
                    answers[(project, part, problem)] = ("learning", made.id)
                else:
                    sid = f"sum-{project}-{part}-{problem}"
                    store.create_session(SessionStart(id=sid, project_dir=project, project=project))
                    store.conn.execute(
                        "UPDATE sessions SET summary = ? WHERE id = ?",
                        [f"Chased the {problem} bug of {part} and closed it.", sid],
                    )
                    answers[(project, part, problem)] = ("session", sid)
            # The reads and runs around the work mention the part, never the problem.
            for n in range(40):
                tool, title = rng.choice(
                    [
                        ("Read", f"Read {part} module"),
                        ("Bash", f"Ran {part} tests: {rng.randint(5, 90)} passed"),
                        ("Grep", f"Searched for {part} callers"),
                    ]
                )
                store.create_observation(
                    ObservationCreate(
                        session_id=rng.choice(sessions),
                        tool_name=tool,
                        title=title,
                        summary=f"{title} ({n}).",
                        files_touched=[f"src/{part}.py"],
                    )
                )
        root = docs_root / project.strip("/").replace("/", "-")
        (root / "docs").mkdir(parents=True)
        guide = [f"# {project} guide", ""]
        for topic in TOPICS:
            guide += [f"## {topic.capitalize()}", "", f"The {topic} checklist: see below.", ""]
        (root / "docs" / "guide.md").write_text("\n".join(guide), encoding="utf-8")
        index_docs(store, root, project)
        for chunk_id, heading in store.conn.execute(
            "SELECT id, heading FROM doc_chunks WHERE project = ?", [project]
        ):
            if heading.lower() in TOPICS:
                answers[(project, "doc", heading.lower())] = ("doc", chunk_id)
    return answers


def queries(answers: dict, rng: random.Random) -> list[tuple[str, str, str, tuple]]:
    """(kind of query, text, project, answer): 90 in the memory's words, 50 paraphrases."""
    keys = [key for key in answers if key[1] != "doc"]
    docs = [key for key in answers if key[1] == "doc"]
    rng.shuffle(keys)
    rng.shuffle(docs)
    asked = []
    for project, _, topic in docs[:10]:
        asked.append(("keyword", topic, project, answers[(project, "doc", topic)]))
    for project, _, topic in docs[10:]:
        asked.append(("paraphrase", TOPICS[topic], project, answers[(project, "doc", topic)]))
    for project, part, problem in keys[:80]:
        asked.append(("keyword", f"{problem} {part}", project, answers[(project, part, problem)]))
    for project, part, problem in keys[80:120]:
        text = f"{PROJECTS[project][part]} {PROBLEMS[problem]}"
        asked.append(("paraphrase", text, project, answers[(project, part, problem)]))
    return asked


def answer_text(store: Store, kind: str, item: str) -> str:
    sql = {
        "observation": "SELECT title || ' ' || summary || ' ' || files_touched FROM observations",
        "learning": "SELECT category || ' ' || content FROM learnings",
        "session": "SELECT summary FROM sessions",
        "doc": "SELECT path || ' ' || heading || ' ' || body FROM doc_chunks",
    }[kind]
    return store.conn.execute(f"{sql} WHERE id = ?", [item]).fetchone()[0]


def quality(store: Store, semantic: SemanticSearch, asked: list) -> dict:
    scores: dict = {}
    for mode in ("keyword", "semantic", "hybrid"):
        for group in ("all", "keyword", "paraphrase"):
            scores[(mode, group)] = {"r5": [], "r10": [], "mrr": []}
        for group, text, project, answer in asked:
            found = search(store.conn, text, project=project, mode=mode, semantic=semantic,
                           limit=10)  # fmt: skip
            ranked = [(h.kind, h.id) for h in found.hits]
            place = ranked.index(answer) + 1 if answer in ranked else None
            for key in ("all", group):
                scores[(mode, key)]["r5"].append(1.0 if place and place <= 5 else 0.0)
                scores[(mode, key)]["r10"].append(1.0 if place else 0.0)
                scores[(mode, key)]["mrr"].append(1.0 / place if place else 0.0)
    return {key: {m: sum(v) / len(v) for m, v in value.items()} for key, value in scores.items()}


def grow(store: Store, embedder, total: int, rng: random.Random, base_vectors: np.ndarray):
    """Filler observations (and their vectors) up to `total` searchable items. Filler vectors
    are real ones with noise: they only need to cost what real ones cost to compare."""
    have = (
        sum(
            store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("observations", "learnings", "prompts", "doc_chunks")
        )
        + store.conn.execute("SELECT count(*) FROM sessions WHERE summary IS NOT NULL").fetchone()[
            0
        ]
    )
    missing = total - have
    if missing <= 0:
        return
    parts = [part for parts in PROJECTS.values() for part in parts]
    projects = list(PROJECTS)
    rows, vectors = [], []
    noise = np.random.default_rng(SEED)
    for n in range(missing):
        project = rng.choice(projects)
        part = rng.choice(list(PROJECTS[project]))
        title, summary = f"Read {part} notes {n}", f"Notes on {rng.choice(parts)} item {n}."
        session_id = f"s{projects.index(project)}-0"
        rows.append((f"fill-{have + n}", project, session_id, "Read", title, summary, "[]"))
        vector = base_vectors[n % len(base_vectors)] + noise.normal(0, 0.05, 384)
        vectors.append(("observation", f"fill-{have + n}", embedder.name, embedder.version, 384,
                        vector.astype("<f4").tobytes(), ""))  # fmt: skip
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO observations (id, project, session_id, tool_name, title, summary, "
            "files_touched) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO embeddings (kind, item_id, model, version, dims, vector, text_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            vectors,
        )


def latency(store: Store, semantic: SemanticSearch, asked: list, rounds: int = 3) -> dict:
    times: dict[str, list[float]] = {k: [] for k in ("keyword", "hybrid", "fts", "numpy", "q")}
    index = semantic.index(store.conn)
    for _ in range(rounds):
        for _, text, project, _ in asked:
            for mode in ("keyword", "hybrid"):
                started = time.perf_counter()
                search(store.conn, text, project=project, mode=mode, semantic=semantic)
                times[mode].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            store.conn.execute(
                "SELECT rowid FROM observations_fts WHERE observations_fts MATCH ? "
                "ORDER BY rank LIMIT 20",
                [" ".join(f'"{w}"' for w in text.split())],
            ).fetchall()
            times["fts"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            vector = semantic.embedder.embed([text])[0]
            times["q"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            scores = index.matrix @ vector
            np.argpartition(-scores, 20)[:20]
            times["numpy"].append((time.perf_counter() - started) * 1000)
    return {key: percentile(value, 0.5) for key, value in times.items()}


def main() -> None:
    started = time.time()
    rng = random.Random(SEED)
    import os

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        answers = build(store, rng, Path(tmp) / "projects")
        asked = queries(answers, rng)
        for group, text, _, (kind, item) in asked:
            if group == "paraphrase":
                shared = words(text) & words(answer_text(store, kind, item))
                assert not shared, (text, shared)
        embedder = SentenceTransformerEmbedder()
        t = time.perf_counter()
        embedded = backfill(store, embedder)
        embed_seconds = time.perf_counter() - t
        semantic = SemanticSearch(embedder)
        items = semantic.count(store.conn)
        scores = quality(store, semantic, asked)
        base = semantic.index(store.conn).matrix.copy()
        speeds = {}
        for total in (10_000, 100_000):
            grow(store, embedder, total, rng, base)
            semantic.index(store.conn)
            speeds[total] = latency(store, semantic, asked[:40])
        store.close()
    write_results(scores, speeds, items, asked, embedded, embed_seconds, started,
                  load_before)  # fmt: skip


def write_results(scores, speeds, items, asked, embedded, embed_seconds, started, load):
    import os

    n_queries = len(asked)
    n_para = sum(1 for group, *_ in asked if group == "paraphrase")
    r = scores
    para_gain = r[("hybrid", "paraphrase")]["r5"] / max(r[("keyword", "paraphrase")]["r5"], 1e-9)
    targets = [
        ("corpus >= 2,000 items, >= 100 questions, a third paraphrases",
         f"{items:,} items, {n_queries} questions, {n_para} paraphrases",
         items >= 2000 and n_queries >= 100 and n_para * 3 >= n_queries),
        ("hybrid recall@5 >= 0.85 overall", f"{r[('hybrid', 'all')]['r5']:.3f}",
         r[("hybrid", "all")]["r5"] >= 0.85),
        ("hybrid >= 1.3x keyword recall@5 on paraphrases",
         f"{r[('hybrid', 'paraphrase')]['r5']:.3f} vs {r[('keyword', 'paraphrase')]['r5']:.3f}",
         para_gain >= 1.3),
        ("keyword p50 <= 10 ms at 100k items", f"{speeds[100_000]['keyword']:.1f} ms",
         speeds[100_000]["keyword"] <= 10),
        ("hybrid p50 <= 50 ms at 100k items", f"{speeds[100_000]['hybrid']:.1f} ms",
         speeds[100_000]["hybrid"] <= 50),
    ]  # fmt: skip
    lines = [
        "# Retrieval benchmark",
        "",
        f"Run: `python bench/bench_retrieval.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s "
        "in all.",
        "",
        f"- Machine: {machine()}",
        "- "
        + ", ".join(
            f"{k} {v}"
            for k, v in versions("sentence-transformers", "torch", "numpy", "sqlite-utils").items()
        ),  # fmt: skip
        f"- Load average (1 min): {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        "(other work shared the machine: latencies move with it)",
        f"- Corpus: {items} searchable items of five projects (observations, learnings, session "
        "summaries, sections of each project's docs/guide.md; reads and test runs around the "
        f"work); {n_queries} questions with one known answer each, searched within the "
        f"answer's project: {n_queries - n_para} in the memory's words, {n_para} paraphrases "
        "sharing no word with their answer (checked by the script).",
        f"- Embedding: all-MiniLM-L6-v2 (384-d), {embedded} rows in {embed_seconds:.0f} s.",
        "- Latency: 40 questions x 3 rounds per size; filler rows and their vectors (real "
        "vectors plus noise) grow the memory to the size. Baselines in the same run: a bare "
        "FTS5 MATCH on observations_fts, and a bare numpy product over the same matrix.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {t} | {m} | {'met' if ok else '**MISSED**'} |" for t, m, ok in targets],
        "",
        "## Quality",
        "",
        "| mode | questions | recall@5 | recall@10 | MRR |",
        "|---|---|---|---|---|",
    ]
    for mode in ("keyword", "semantic", "hybrid"):
        for group in ("all", "keyword", "paraphrase"):
            s = r[(mode, group)]
            lines.append(f"| {mode} | {group} | {s['r5']:.3f} | {s['r10']:.3f} | {s['mrr']:.3f} |")
    lines += [
        "",
        "## Latency (p50, ms)",
        "",
        "| items | keyword search | bare FTS5 | ratio | hybrid search | query embedding | "
        "bare numpy | hybrid - embedding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for total, s in speeds.items():
        lines.append(
            f"| {total:,} | {s['keyword']:.2f} | {s['fts']:.2f} | "
            f"{s['keyword'] / max(s['fts'], 1e-9):.1f}x | {s['hybrid']:.2f} | {s['q']:.2f} | "
            f"{s['numpy']:.2f} | {s['hybrid'] - s['q']:.2f} |"
        )
    lines += [
        "",
        "Keyword search asks every word to match, so a paraphrase finds nothing by keyword; "
        "hybrid's recall on paraphrases is semantic's. A hybrid search's time is the query "
        "embedding (MiniLM on the CPU, one thread) and one product over every vector; both move "
        "with the machine's load.",
        "",
    ]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
