"""Benchmark the operator dashboard's query time at a million turn records on PostgreSQL.

A fresh database `avatarsite_bench_dashboard` on BENCH_DASHBOARD_POSTGRES (default
postgres://postgres@127.0.0.1:5432) is migrated and filled by `generate_series` with turn
records spread evenly over the last 30 days: three tenants (the first holds 80 % of the turns)
of five characters each, five channels, a few percent of failures, each phase present on part
of the turns. Then `conversations.console.figures.figures` (everything the dashboard page
asks the database) runs for a tenant and for one character over 24 hours, 7 days and 30 days,
a few times each after one warm-up run; the report gives the median and slowest wall time.
The smoke configuration does the same on a fresh SQLite file with 2,000 turns. Results go to
`var/bench-dashboard.json`.

    make bench-dashboard
    python -m bench.dashboard --turns 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from bench.harness import (
    DEFAULT_SECRET_KEY,
    VAR_DIR,
    add_smoke_flag,
    database_url,
    fresh_postgres,
    machine_description,
)

POSTGRES_SERVER = os.environ.get("BENCH_DASHBOARD_POSTGRES", "postgres://postgres@127.0.0.1:5432")
POSTGRES_DATABASE = "avatarsite_bench_dashboard"
SMOKE_TURNS = 2_000
CHARACTERS_PER_TENANT = 5
TENANT_SHARES = (0.8, 0.1, 0.1)
CHANNELS = ("http", "websocket", "line", "dify", "openai")
WINDOWS = {"24 hours": 24, "7 days": 24 * 7, "30 days": 24 * 30}
# Per phase: the share of turns that went through it and its typical milliseconds.
PHASE_SHAPES = {
    "stt_ms": (0.3, 200.0),
    "llm_first_token_ms": (0.95, 250.0),
    "first_chunk_ms": (0.95, 350.0),
    "first_audio_ms": (0.5, 500.0),
    "tool_ms": (0.2, 150.0),
    "llm_ms": (0.95, 900.0),
    "tts_ms": (0.5, 400.0),
    "total_ms": (1.0, 1200.0),
}


def _fill_postgres(characters: list[Any], per_character: list[int]) -> None:
    """Insert the turns with one INSERT ... SELECT per character (fast at a million)."""
    from django.db import connection

    from conversations.models import TurnRecord

    channels = "ARRAY[" + ",".join(f"'{c}'" for c in CHANNELS) + "]"
    given = {
        "id": "gen_random_uuid()",
        "context_id": "gen_random_uuid()",
        "channel": f"({channels})[1 + floor(random() * {len(CHANNELS)})::int]",
        "status": "CASE WHEN random() < 0.04 THEN 'failed' WHEN random() < 0.05 "
        "THEN 'interrupted' ELSE 'completed' END",
        "started_at": "now() - random() * interval '30 days'",
        **{
            column: f"CASE WHEN random() < {share} THEN -ln(1 - random()) * {typical} END"
            for column, (share, typical) in PHASE_SHAPES.items()
        },
    }
    for character, count in zip(characters, per_character, strict=True):
        given_here = {**given, "tenant_id": str(character.tenant_id), "character_id": "%s"}
        columns: list[str] = []
        values: list[str] = []
        for field in TurnRecord._meta.concrete_fields:
            column = field.column
            assert column is not None  # concrete fields have one
            columns.append(column)
            # Every other column: what Django would write for a turn that did not set it.
            values.append(given_here.get(column, "NULL" if field.null else "''"))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TurnRecord._meta.db_table} ({', '.join(columns)}) "
                f"SELECT {', '.join(values)} FROM generate_series(1, {count})",
                [character.pk],
            )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TurnRecord._meta.db_table}")


def _fill_orm(characters: list[Any], per_character: list[int]) -> None:
    """The smoke configuration's few turns, through the ORM (SQLite has no generate_series)."""
    import random
    import uuid

    from django.utils import timezone

    from conversations.models import TurnRecord

    rng = random.Random(16)
    now = timezone.now()
    rows = [
        TurnRecord(
            tenant_id=character.tenant_id,
            character=character,
            context_id=uuid.uuid4(),
            channel=rng.choice(CHANNELS),
            status="failed" if rng.random() < 0.04 else "completed",
            started_at=now - timedelta(days=30 * rng.random()),
            **{
                column: rng.expovariate(1 / typical) if rng.random() < share else None
                for column, (share, typical) in PHASE_SHAPES.items()
            },
        )
        for character, count in zip(characters, per_character, strict=True)
        for _ in range(count)
    ]
    TurnRecord.objects.bulk_create(rows, batch_size=500)


def measure(turns: int, repeats: int) -> dict[str, Any]:
    """In a child process whose DATABASE_URL is the database to measure."""
    import django

    django.setup()
    from zoneinfo import ZoneInfo

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from avatarsite.tenants.models import Tenant
    from characters.models import Character
    from conversations.console.figures import figures
    from conversations.models import TurnRecord

    call_command("migrate", verbosity=0)
    characters = []
    per_character = []
    for t, share in enumerate(TENANT_SHARES):
        tenant = Tenant.named(f"tenant-{t}")
        for c in range(CHARACTERS_PER_TENANT):
            characters.append(
                Character.objects.create(
                    tenant=tenant, slug=f"c{t}-{c}", name=f"C{t}-{c}", timezone="Asia/Tokyo"
                )
            )
            per_character.append(round(turns * share / CHARACTERS_PER_TENANT))
    started = time.perf_counter()
    (_fill_postgres if connection.vendor == "postgresql" else _fill_orm)(characters, per_character)
    fill_seconds = time.perf_counter() - started

    biggest, one = characters[0].tenant, characters[0]
    scopes = {
        f"tenant ({TENANT_SHARES[0]:.0%} of turns)": (
            TurnRecord.objects.filter(tenant=biggest),
            ZoneInfo("UTC"),
        ),
        "one character": (TurnRecord.objects.filter(character=one), one.zone),
    }
    end = timezone.now()
    timings = []
    for scope, (queryset, zone) in scopes.items():
        for window, hours in WINDOWS.items():
            start = end - timedelta(hours=hours)
            seconds = []
            for attempt in range(repeats + 1):
                began = time.perf_counter()
                found = figures(queryset, start, end, zone)
                if attempt:  # the first run warms the cache
                    seconds.append(time.perf_counter() - began)
            timings.append(
                {
                    "scope": scope,
                    "window": window,
                    "turns_in_window": found.turns,
                    "median_ms": round(1000 * statistics.median(seconds), 1),
                    "slowest_ms": round(1000 * max(seconds), 1),
                }
            )
    return {
        "database": connection.vendor,
        "turns": TurnRecord.objects.count(),
        "fill_seconds": round(fill_seconds, 1),
        "repeats": repeats,
        "timings": timings,
    }


def report(result: dict[str, Any]) -> None:
    print(f"load average at start: {result['load_average']}, at end: {result['load_after']}")
    run = result["run"]
    print(
        f"{run['database']}: {run['turns']:,} turn records (filled in {run['fill_seconds']} s); "
        f"{run['repeats']} runs each after a warm-up"
    )
    print(f"{'scope':<28}{'window':<10}{'turns':>10}{'median ms':>12}{'slowest ms':>12}")
    for row in run["timings"]:
        print(
            f"{row['scope']:<28}{row['window']:<10}{row['turns_in_window']:>10,}"
            f"{row['median_ms']:>12}{row['slowest_ms']:>12}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("DJANGO_SECRET_KEY", DEFAULT_SECRET_KEY)
    if args.child:
        print(json.dumps(measure(args.turns, args.repeats)))
        return 0

    VAR_DIR.mkdir(exist_ok=True)
    if args.smoke:
        url: str | None = database_url("bench-dashboard.sqlite3")[0]
        args.turns, args.repeats = SMOKE_TURNS, 1
    else:
        url = fresh_postgres(POSTGRES_SERVER, POSTGRES_DATABASE)
    if url is None:
        return 1
    load = os.getloadavg()
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.dashboard",
            "--child",
            "--turns",
            str(args.turns),
            "--repeats",
            str(args.repeats),
        ],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if child.returncode != 0:
        print(child.stdout, child.stderr, file=sys.stderr)
        return child.returncode
    result = {
        "machine": machine_description(),
        "load_average": [round(value, 2) for value in load],
        "load_after": [round(value, 2) for value in os.getloadavg()],
        "run": json.loads(child.stdout.strip().splitlines()[-1]),
    }
    report(result)
    (VAR_DIR / "bench-dashboard.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
