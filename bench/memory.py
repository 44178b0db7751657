"""Benchmark long-term memory retrieval: recall@5 and search latency, ours against a
ChatMemory-style search, on SQLite and on PostgreSQL.

The data is bench/data/memory.json (bench/memory_dataset.py): 60 people, half of them talking
in Japanese, 1,920 turns, 240 questions whose answer is one turn. Each person's turns are
written as the app writes them, embedded by the memory tick (the offline model), then every
question is searched among that person's memories:

- ours: `memory.search.search` (lexical BM25 fused with embeddings, memory/search.py);
- baseline: ChatMemory's ranking re-implemented on the same rows and the same model: the
  query's embedding against each row's, nearest by L2 distance, nothing else.

recall@5 counts the questions whose answer is among the five results (by question language
and type too), recall@1 those whose answer comes first. Latency is one search's
wall time, query embedding and database read included. SQLite is a fresh file
`var/bench-memory.sqlite3`; PostgreSQL a fresh database `avatarsite_bench_memory` on
BENCH_MEMORY_POSTGRES (default postgres://postgres@127.0.0.1:5432), skipped with a note when
unreachable. Each database runs in a child process of its own. Results go to
`var/bench-memory.json`.

    make bench-memory
    python -m bench.memory --databases sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from bench.harness import (
    DEFAULT_SECRET_KEY,
    VAR_DIR,
    add_smoke_flag,
    fresh_postgres,
    machine_description,
    percentile,
)
from bench.memory_dataset import DATA_FILE

POSTGRES_SERVER = os.environ.get("BENCH_MEMORY_POSTGRES", "postgres://postgres@127.0.0.1:5432")
POSTGRES_DATABASE = "avatarsite_bench_memory"
TOP_K = 5
SMOKE_PEOPLE = 3


def _fresh_postgres() -> str | None:
    return fresh_postgres(POSTGRES_SERVER, POSTGRES_DATABASE)


def _fresh_sqlite() -> str:
    path = VAR_DIR / "bench-memory.sqlite3"
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def measure(people: int | None) -> dict[str, Any]:
    """In a child process whose DATABASE_URL is the database to measure."""
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from avatarsite.tenants.models import Tenant
    from characters.models import Character
    from memory.embeddings import default_embedder
    from memory.models import MemoryItem
    from memory.search import search
    from memory.store import add_turn, resolve_key
    from memory.tasks import index_pending

    call_command("migrate", verbosity=0)
    data = json.loads(DATA_FILE.read_text())
    conversations = data["conversations"][:people] if people else data["conversations"]
    users = {c["user"] for c in conversations}
    questions = [q for q in data["questions"] if q["user"] in users]
    tenant = Tenant.default()
    character = Character.objects.create(slug="bench-memory", name="Mia", tenant=tenant)
    keys: dict[str, str] = {}
    started = time.perf_counter()
    for conversation in conversations:
        owner = resolve_key(tenant.pk, f"{conversation['user']}_{character.slug}", create=True)
        keys[conversation["user"]] = owner.key
        for turn in conversation["turns"]:
            add_turn(
                tenant.pk,
                owner,
                user_text=turn["user"],
                reply=turn["reply"],
                session_id=turn["session"],
                occurred_at=datetime.fromisoformat(turn["at"]),
            )
    written = time.perf_counter() - started
    started = time.perf_counter()
    indexed = 0
    while batch := index_pending():
        indexed += batch
    indexing = time.perf_counter() - started
    embedder = default_embedder()
    assert embedder is not None, "the benchmark needs the embedding model (MEMORY_EMBEDDINGS)"

    def ours(question: dict[str, Any]) -> list[str]:
        hits = search(tenant.pk, [keys[question["user"]]], question["question"], top_k=TOP_K)
        return [hit.item.content for hit in hits]

    def chatmemory(question: dict[str, Any]) -> list[str]:
        rows = list(MemoryItem.objects.filter(tenant=tenant, key=keys[question["user"]]))
        wanted = embedder.embed([question["question"]], query=True)[0]
        vectors = np.stack([row.vector() for row in rows])  # type: ignore[misc]
        nearest = np.argsort(np.linalg.norm(vectors - wanted, axis=1))[:TOP_K]
        return [rows[i].content for i in nearest]

    results: dict[str, Any] = {
        "database": connection.vendor,
        "people": len(conversations),
        "turns": MemoryItem.objects.count(),
        "questions": len(questions),
        "write_seconds": round(written, 2),
        "index_seconds": round(indexing, 2),
        "indexed": indexed,
    }
    for name, method in (("ours", ours), ("chatmemory_l2", chatmemory)):
        method(questions[0])  # warm: the model is loaded once per process
        found: dict[str, list[int]] = {}
        latencies = []
        for question in questions:
            began = time.perf_counter()
            top = method(question)
            latencies.append((time.perf_counter() - began) * 1000)
            hit = int(question["answer"] in top)
            for group in ("all", question["language"], question["type"]):
                found.setdefault(group, []).append(hit)
            found.setdefault("first", []).append(int(top[:1] == [question["answer"]]))
        latencies.sort()
        first = found.pop("first")
        results[name] = {
            "recall_at_5": {group: round(sum(h) / len(h), 3) for group, h in found.items()},
            "recall_at_1": round(sum(first) / len(first), 3),
            "p50_ms": round(percentile(latencies, 50) or 0, 2),
            "p95_ms": round(percentile(latencies, 95) or 0, 2),
        }
    return results


def report(result: dict[str, Any]) -> None:
    print(f"load average at start: {result['load_average']}")
    for run in result["runs"]:
        print(
            f"\n{run['database']}: {run['people']} people, {run['turns']} turns, "
            f"{run['questions']} questions; written in {run['write_seconds']} s, "
            f"embedded in {run['index_seconds']} s"
        )
        groups = ("all", "en", "ja", "paraphrase", "entity")
        header = "".join(f"{g:>11}" for g in groups)
        print(f"{'recall@5':<16}{header}   recall@1     p50 ms    p95 ms")
        for name in ("ours", "chatmemory_l2"):
            row = run[name]
            recall = "".join(f"{row['recall_at_5'].get(g, '-')!s:>11}" for g in groups)
            print(
                f"{name:<16}{recall}{row['recall_at_1']:>11}{row['p50_ms']:>11}{row['p95_ms']:>10}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--people", type=int, default=0, help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("DJANGO_SECRET_KEY", DEFAULT_SECRET_KEY)
    if args.child:
        print(json.dumps(measure(args.people or None)))
        return 0

    VAR_DIR.mkdir(exist_ok=True)
    wanted = [name.strip() for name in args.databases.split(",") if name.strip()]
    if args.smoke:
        wanted = ["sqlite"]
    runs = []
    load = os.getloadavg()
    for name in wanted:
        url = {"sqlite": _fresh_sqlite, "postgres": _fresh_postgres}[name]()
        if url is None:
            continue
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.memory",
                "--child",
                *(["--people", str(SMOKE_PEOPLE)] if args.smoke else []),
            ],
            env={**os.environ, "DATABASE_URL": url, "MEMORY_EMBEDDINGS": "local"},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if child.returncode != 0:
            print(child.stdout, child.stderr, file=sys.stderr)
            return child.returncode
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    result = {
        "machine": machine_description(),
        "load_average": [round(value, 2) for value in load],
        "runs": runs,
    }
    report(result)
    (VAR_DIR / "bench-memory.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
