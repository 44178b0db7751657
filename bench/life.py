"""Benchmark character life: our own cost of writing a day (schedule + diary) per character.

The LLM is the tests' FakeOpenAI in its own process, answering every request at once with one
valid life answer in a single delta, so what is measured is avatarsite's overhead: building
the prompts, the SDK round trip on loopback, validating the JSON, leasing and saving the rows.
To separate the two, the same LLM call is first timed bare (SDK + fake only).

For N characters (default 1000) spread over eight timezones, it times:

1. the beat tick's planning (`days.due_days`): which characters and dates are due;
2. writing one day per character, sequentially: weekly plan present, so four LLM calls each
   (day plan, schedule table, diary topics, diary), no news;
3. the same again, when everything exists: what a redelivered task or a second tick costs.

The database is a fresh SQLite file `var/bench-life.sqlite3`, or whatever DATABASE_URL names
(it must be a database of its own: it is migrated and characters are added to it). Every
subprocess is stopped in a `finally`. Results also go to `var/bench-life.json`.

    make bench-life
    python -m bench.life --characters 1000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/avatarsite_bench_life python -m bench.life
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.harness import (
    VAR_DIR,
    add_smoke_flag,
    database_url,
    machine_description,
    start_fake_llm,
    stop_fake,
    store_secrets,
)
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FAKE_API_KEY

KEY_VARIABLE = "BENCH_LIFE_LLM_KEY"
ZONES = (
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Auckland",
)
DAY = date(2026, 1, 16)
CALIBRATION_CALLS = 200
CALLS_PER_DAY = 4


def timed(work: Any) -> tuple[Any, float, float]:
    """Run `work()`; its result, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run(count: int, base_url: str) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from avatarsite.tenants.models import Tenant
    from characters import thread_loops
    from characters.life import bridge, days
    from characters.models import Character, WeeklySchedule

    call_command("migrate", verbosity=0)
    if Character.objects.filter(slug__startswith="bench-life-").exists():
        raise SystemExit("This database already holds bench-life characters: use a fresh one.")
    born = datetime.combine(DAY - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    tenant = Tenant.default()
    store_secrets(tenant, [KEY_VARIABLE])
    characters = Character.objects.bulk_create(
        Character(
            slug=f"bench-life-{n}",
            name=f"Bench {n}",
            persona=f"You are Bench {n}, a baker who loves the sea and old films.",
            timezone=ZONES[n % len(ZONES)],
            llm_model="gpt-4o-mini",
            llm_base_url=base_url,
            llm_api_key_env=KEY_VARIABLE,
            tenant=tenant,  # bulk_create skips save(), which would fill in the default
        )
        for n in range(count)
    )
    Character.objects.update(created_at=born)
    WeeklySchedule.objects.bulk_create(
        WeeklySchedule(
            character=c,
            tenant=tenant,
            content="| Time | Monday |\n|---|---|\n| 0:00-1:00 | sleep |",
        )
        for c in characters
    )
    characters = list(Character.objects.filter(slug__startswith="bench-life-").order_by("pk"))

    # The bare LLM call: the openai SDK and the fake, nothing of ours around it.
    llm, probe = bridge.connected(), [bridge.Prompt("user", "Plan the day.")]
    thread_loops.run(llm.complete(characters[0], probe, "gpt-4o-mini"))  # warm the connection
    _, calibration_wall, _ = timed(
        lambda: [
            thread_loops.run(llm.complete(characters[0], probe, "gpt-4o-mini"))
            for _ in range(CALIBRATION_CALLS)
        ]
    )
    llm_call_ms = calibration_wall / CALIBRATION_CALLS * 1000

    tick_at = datetime(2026, 1, 16, 23, 30, tzinfo=UTC)
    due, tick_wall, _ = timed(lambda: days.due_days(tick_at))

    results, write_wall, write_cpu = timed(lambda: [days.generate_day(c, DAY) for c in characters])
    failures = [r for r in results if r.error or not (r.schedule_generated and r.diary_generated)]
    if failures:
        raise SystemExit(f"{len(failures)} day(s) failed, e.g. {failures[0]}")
    _, again_wall, again_cpu = timed(lambda: [days.generate_day(c, DAY) for c in characters])

    per_character_ms = write_wall / count * 1000
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "database": f"{connection.vendor} {connection.settings_dict['NAME']}",
        "characters": count,
        "timezones": len(ZONES),
        "llm_call_bare_ms": round(llm_call_ms, 2),
        "tick_planning_ms": round(tick_wall * 1000, 1),
        "tick_due_pairs": len(due),
        "write_day_total_s": round(write_wall, 2),
        "write_day_per_character_ms": round(per_character_ms, 2),
        "write_day_cpu_per_character_ms": round(write_cpu / count * 1000, 2),
        "write_day_overhead_per_character_ms": round(
            per_character_ms - CALLS_PER_DAY * llm_call_ms, 2
        ),
        "existing_day_per_character_ms": round(again_wall / count * 1000, 3),
        "existing_day_cpu_per_character_ms": round(again_cpu / count * 1000, 3),
    }


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(
        f"machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"Python {m['python']}, kernel {m['kernel']}, {result['when']}"
    )
    print(f"database: {result['database']}")
    n = result["characters"]
    print(f"characters: {n} in {result['timezones']} timezones; fake LLM at zero latency")
    print(f"bare LLM call (SDK + fake, loopback):       {result['llm_call_bare_ms']:8.2f} ms")
    print(
        f"beat tick planning, {n} characters:      {result['tick_planning_ms']:8.1f} ms "
        f"({result['tick_due_pairs']} character-days due)"
    )
    print(
        f"write one day (schedule + diary, {CALLS_PER_DAY} calls): "
        f"{result['write_day_per_character_ms']:8.2f} ms per character "
        f"({result['write_day_total_s']} s in all, "
        f"CPU {result['write_day_cpu_per_character_ms']} ms)"
    )
    print(
        f"  of which ours (minus {CALLS_PER_DAY} bare calls):      "
        f"{result['write_day_overhead_per_character_ms']:8.2f} ms per character"
    )
    print(
        f"day already written (no LLM call):        "
        f"{result['existing_day_per_character_ms']:8.3f} ms per character "
        f"(CPU {result['existing_day_cpu_per_character_ms']} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--characters", type=int, default=1000, help="how many (default 1000)")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.characters = 2
    if not 1 <= args.characters <= 100_000:
        parser.error("--characters must be between 1 and 100000")

    VAR_DIR.mkdir(exist_ok=True)
    os.environ["DATABASE_URL"] = database_url("bench-life.sqlite3")[0]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ[KEY_VARIABLE] = FAKE_API_KEY
    reply_file = VAR_DIR / "bench-life-reply.json"
    reply_file.write_text(life_reply("bench"))
    process, base_url = start_fake_llm(
        {**os.environ}, VAR_DIR / "bench-life-fake-llm.log", "--reply-file", str(reply_file)
    )
    try:
        result = run(args.characters, base_url)
    finally:
        stop_fake(process)
    report(result)
    (VAR_DIR / "bench-life.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
