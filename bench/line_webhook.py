"""Benchmark LINE webhook acknowledgement at a fixed request rate, with every reply delivered.

What it measures (target: p99 < 50 ms at 100 requests/s, docs/benchmarks.md#targets): LINE
expects the webhook answered at once, so the figure is the time from sending a signed webhook
to its 200, while the events pile up behind it for the Celery worker. An acknowledgement only
counts when every event it carried is then answered: the run waits (bounded) until the fake
LINE platform has received one reply per event, and reports how long the worker took to drain
them.

The load is open-loop: request i leaves at start + i / rate whatever happened to earlier ones,
so a slow answer cannot hide behind fewer requests (no coordinated omission). Each webhook
holds one text event from one of 50 users, signed with the channel secret, with its own
webhookEventId and reply token.

Processes, all on 127.0.0.1: daphne (as the tests start it), a Celery worker (prefork, on the
configured broker: the filesystem broker under var/ by default, Redis with REDIS_URL), the
fake LLM and the fake LINE platform in processes of their own, and this load generator.

    .venv/bin/python -m bench.line_webhook
    .venv/bin/python -m bench.line_webhook --rate 100 --duration 10 --warmup 2
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/avatarsite_bench \\
        REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.line_webhook
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx

from bench.harness import (
    DEFAULT_SECRET_KEY,
    LLM_KEY_VARIABLE,
    VAR_DIR,
    add_smoke_flag,
    database_url,
    machine_cpu_ticks,
    machine_description,
    manage,
    percentile,
    process_cpu_seconds,
    shown,
    start_fake,
    start_fake_llm,
    stop_fake,
)
from tests.fakes.line_server import (
    ACCESS_TOKEN,
    CHANNEL_SECRET,
    STATS_PATH,
    signature,
    text_event,
    user_id,
    webhook_body,
)
from tests.fakes.openai_server import FAKE_API_KEY
from tests.processes import start_celery_worker, start_daphne, stop_process

TARGET_P99_MS = 50.0
USERS = 50
REQUEST_TIMEOUT_SECONDS = 10.0
DRAIN_TIMEOUT_SECONDS = 300.0
RESULTS_PATH = VAR_DIR / "bench-line-webhook.json"
SECRET_VARIABLE, TOKEN_VARIABLE = "BENCH_LINE_CHANNEL_SECRET", "BENCH_LINE_ACCESS_TOKEN"

SETUP_CODE = f"""
import os
from bench.harness import store_secrets
from characters.models import Character
from conversations.line.models import LineChannel
character, _ = Character.objects.update_or_create(
    slug="bench-line",
    defaults=dict(
        name="Bench", persona="You are Bench. Answer in one sentence.", llm_provider="openai",
        llm_model="gpt-4o-mini", llm_base_url=os.environ["BENCH_LLM_BASE_URL"],
        llm_api_key_env={LLM_KEY_VARIABLE!r},
    ),
)
LineChannel.objects.update_or_create(
    slug="bench", defaults=dict(character=character, channel_secret_env={SECRET_VARIABLE!r},
    access_token_env={TOKEN_VARIABLE!r}, is_active=True),
)
store_secrets(character.tenant, [{LLM_KEY_VARIABLE!r}, {SECRET_VARIABLE!r}, {TOKEN_VARIABLE!r}])
"""


@dataclass
class Result:
    rate: float
    duration: float
    sent: int
    acknowledged: int
    errors: int
    achieved_rate: float
    ack_p50_ms: float | None
    ack_p95_ms: float | None
    ack_p99_ms: float | None
    ack_max_ms: float | None
    replies_expected: int
    replies_delivered: int
    drain_seconds: float
    daphne_cpu_percent: float  # of one core, during the measured window
    daphne_cpu_ms_per_webhook: float  # what an acknowledgement costs, however busy the machine
    machine_busy_percent: float  # of all cores: ours, the worker's and anything else running


async def send_at_rate(
    client: httpx.AsyncClient, url: str, rate: float, duration: float, offset: int
) -> tuple[list[float], int, float]:
    """Open-loop load: the latencies of the 200s, the number of failures, elapsed time."""
    count = round(rate * duration)
    bodies = [
        webhook_body([text_event(f"Hello number {offset + i}", user=user_id(1 + i % USERS))])
        for i in range(count)
    ]
    requests = [(body, {"X-Line-Signature": signature(CHANNEL_SECRET, body)}) for body in bodies]
    latencies: list[float] = []
    errors = 0

    async def one(body: bytes, headers: dict[str, str]) -> None:
        nonlocal errors
        began = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            errors += 1
            return
        if response.status_code == 200:
            latencies.append(time.perf_counter() - began)
        else:
            errors += 1

    start = time.perf_counter()
    tasks = []
    for i, (body, headers) in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, headers)))
    await asyncio.gather(*tasks)
    return latencies, errors, time.perf_counter() - start


def delivered(line_url: str) -> int:
    return httpx.get(f"{line_url}{STATS_PATH}", timeout=5).json()["replies"]


async def run(
    url: str, line_url: str, daphne_pid: int, rate: float, duration: float, warmup: float
) -> Result:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        warm, warm_errors, _ = await send_at_rate(client, url, rate, warmup, 0)
        busy_before, total_before = machine_cpu_ticks()
        daphne_before = process_cpu_seconds(daphne_pid)
        latencies, errors, elapsed = await send_at_rate(client, url, rate, duration, len(warm))
        daphne_cpu = process_cpu_seconds(daphne_pid) - daphne_before
        busy_after, total_after = machine_cpu_ticks()
    expected = len(warm) + len(latencies)
    drain_began = time.perf_counter()
    seen = delivered(line_url)
    while seen < expected and time.perf_counter() - drain_began < DRAIN_TIMEOUT_SECONDS:
        await asyncio.sleep(0.2)
        seen = delivered(line_url)
    ms = sorted(1000 * x for x in latencies)
    return Result(
        rate=rate,
        duration=duration,
        sent=round(rate * duration),
        acknowledged=len(latencies),
        errors=errors + warm_errors,
        achieved_rate=round(len(ms) / elapsed, 1),
        ack_p50_ms=percentile(ms, 50),
        ack_p95_ms=percentile(ms, 95),
        ack_p99_ms=percentile(ms, 99),
        ack_max_ms=round(ms[-1], 2) if ms else None,
        replies_expected=expected,
        replies_delivered=seen,
        drain_seconds=round(time.perf_counter() - drain_began, 1),
        daphne_cpu_percent=round(100 * daphne_cpu / elapsed, 1),
        daphne_cpu_ms_per_webhook=round(1000 * daphne_cpu / max(1, len(latencies) + errors), 2),
        machine_busy_percent=round(
            100 * (busy_after - busy_before) / max(1, total_after - total_before), 1
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent first, not counted")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=10,
        help="CPU niceness of the worker (0: same priority as daphne)",
    )
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:  # a few webhooks through one worker process
        args.rate, args.warmup, args.duration, args.workers = 5.0, 0.0, 1.0, 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    database, _ = database_url("bench-line.sqlite3")
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or DEFAULT_SECRET_KEY,
        "DATABASE_URL": database,
        "CELERY_QUEUE": f"bench-line-{uuid.uuid4().hex}",
        LLM_KEY_VARIABLE: FAKE_API_KEY,
        SECRET_VARIABLE: CHANNEL_SECRET,
        TOKEN_VARIABLE: ACCESS_TOKEN,
    }
    processes: list[subprocess.Popen[bytes]] = []
    fakes: list[subprocess.Popen[bytes]] = []
    try:
        llm, llm_url = start_fake_llm(env, VAR_DIR / "bench-line-fake-llm.log")
        fakes.append(llm)
        line, line_url = start_fake(
            ["tests.fakes.line_server"], env, VAR_DIR / "bench-line-fake.log"
        )
        fakes.append(line)
        env |= {"LINE_API_BASE_URL": line_url, "LINE_API_DATA_BASE_URL": line_url}
        manage(env, "migrate", "--noinput")
        manage({**env, "BENCH_LLM_BASE_URL": llm_url}, "shell", "-c", SETUP_CODE)
        processes.append(
            start_celery_worker(
                env,
                VAR_DIR / "bench-line-worker.log",
                concurrency=args.workers,
                niceness=args.worker_nice,
            )
        )
        daphne, url = start_daphne(env, VAR_DIR / "bench-line-daphne.log")
        processes.append(daphne)
        machine = machine_description()
        broker = "Redis" if env.get("CELERY_BROKER_URL", env.get("REDIS_URL")) else "filesystem"
        print("avatarsite LINE webhook benchmark")
        print(
            f"machine : {machine['cpu_model']}, {machine['cores']} cores "
            f"({machine['cores_usable']} usable), Linux {machine['kernel']}, "
            f"Python {machine['python']}"
        )
        print(
            f"setup   : 1 daphne, Celery worker x{args.workers} (prefork, {broker} broker, "
            f"nice {args.worker_nice}), "
            f"database {'SQLite (fresh)' if database.startswith('sqlite') else 'PostgreSQL'}; "
            "fake LLM and fake LINE in their own processes, zero latency"
        )
        print(
            f"load    : {args.rate:g} webhooks/s open-loop, {args.warmup:g} s warm-up + "
            f"{args.duration:g} s measured, 1 text event each from {USERS} users"
        )
        result = asyncio.run(
            run(
                f"{url}/line/bench/webhook",
                line_url,
                daphne.pid,
                args.rate,
                args.duration,
                args.warmup,
            )
        )
    finally:
        for process in processes:
            stop_process(process)
        for fake in fakes:
            stop_fake(fake)
    print()
    print(
        f"acknowledged {result.acknowledged}/{result.sent} at {result.achieved_rate} req/s, "
        f"{result.errors} error(s)"
    )
    print(
        f"ack latency ms: p50 {result.ack_p50_ms:.1f}  p95 {result.ack_p95_ms:.1f}  "
        f"p99 {result.ack_p99_ms:.1f}  max {result.ack_max_ms:.1f}  "
        f"(target: p99 < {TARGET_P99_MS:g})"
    )
    print(
        f"cpu: daphne {result.daphne_cpu_percent}% of a core "
        f"({result.daphne_cpu_ms_per_webhook} ms per webhook); the machine "
        f"{result.machine_busy_percent}% busy (all cores, anything running on it included)"
    )
    print(
        f"replies delivered {result.replies_delivered}/{result.replies_expected} "
        f"(warm-up included), the last {result.drain_seconds} s after the load stopped"
    )
    RESULTS_PATH.write_text(
        json.dumps(
            {"when": datetime.now(UTC).isoformat(), "machine": machine, "result": asdict(result)},
            indent=2,
        )
    )
    print(f"results : {shown(RESULTS_PATH)}")
    ok = result.replies_delivered == result.replies_expected and not result.errors
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
