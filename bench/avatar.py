"""Benchmark the avatar socket /avatar/ws: frame jitter and server CPU per second of speech with
many avatars speaking at once.

Each simulated client connects to /avatar/ws, sends a two-sentence text, reads the reply's
`sync_frame`s to `transcript_done`, and starts again, until the run ends. The LLM is the tests'
fake OpenAI server at zero latency (its reply quotes the question); speech is espeak-ng, lip
sync the built-in engine (phonemes from espeak-ng too). All on 127.0.0.1, one daphne process.

- *jitter*: for each pair of consecutive frames after the first 8 of a turn (the lead the
  server sends at once), how far the gap between their arrivals is from 1/30 s (33.3 ms);
  p50/p99 over all pairs, and the share of gaps over 100 ms (stalls a client would hear).
- *CPU per speech second*: daphne's CPU (and that of espeak-ng, its children) over the run,
  divided by the seconds of speech delivered to all clients (frames / 30).

    .venv/bin/python -m bench.avatar                     # 20 sessions, 20 s
    .venv/bin/python -m bench.avatar --sessions 5 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import websockets

from bench.harness import (
    DEFAULT_SECRET_KEY,
    LLM_KEY_VARIABLE,
    VAR_DIR,
    add_smoke_flag,
    children_cpu_seconds,
    database_url,
    machine_description,
    manage,
    percentile,
    process_cpu_seconds,
    start_fake_llm,
    stop_fake,
)
from tests.fakes.openai_server import FAKE_API_KEY
from tests.processes import start_daphne, stop_process

FRAME_SECONDS = 1 / 30
LEAD_FRAMES = 8
STALL_MS = 100.0
QUESTION = "Please tell me about the weather in Paris today. Is it a good day for a long walk?"
SETUP_MARKER = "AVATAR_BENCH_SETUP "
SETUP_CODE = f"""
import json, os
from bench.harness import store_secrets
from characters.models import Character
from conversations.models import ApiKey
from conversations.speech.models import VoiceSettings

bench, _ = Character.objects.update_or_create(
    slug="avatar-bench",
    defaults=dict(
        name="Avatar bench", persona="Answer briefly.", llm_provider="openai",
        llm_model="gpt-4o-mini", llm_base_url=os.environ["BENCH_LLM_BASE_URL"],
        llm_api_key_env={LLM_KEY_VARIABLE!r}, is_active=True,
    ),
)
VoiceSettings.objects.update_or_create(character=bench, defaults=dict(tts_provider="espeak"))
store_secrets(bench.tenant, [{LLM_KEY_VARIABLE!r}])
print({SETUP_MARKER!r} + json.dumps({{"key": ApiKey.issue("avatar-bench")[1]}}))
"""


@dataclass
class Run:
    turns: int = 0
    frames: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def client(url: str, key: str, run: Run, stop_at: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as socket:
        assert json.loads(await socket.recv())["type"] == "config"
        while True:  # at least one turn, then until the run ends
            await socket.send(json.dumps({"type": "text", "data": QUESTION}))
            arrivals: list[float] = []
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "sync_frame":
                    arrivals.append(time.monotonic())
                elif message["type"] == "error":
                    run.errors.append(message["message"])
                elif message["type"] == "transcript_done" and message["role"] == "assistant":
                    break
            run.turns += 1
            run.frames += len(arrivals)
            steady = arrivals[LEAD_FRAMES:]
            run.gaps_ms += [
                abs((b - a) - FRAME_SECONDS) * 1000 for a, b in itertools.pairwise(steady)
            ]
            if time.monotonic() >= stop_at:
                return


async def run_clients(url: str, key: str, sessions: int, duration: float) -> Run:
    run = Run()
    stop_at = time.monotonic() + duration
    results = await asyncio.gather(
        *(client(url, key, run, stop_at) for _ in range(sessions)), return_exceptions=True
    )
    run.errors += [repr(r) for r in results if isinstance(r, BaseException)]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0)
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:  # one client, one turn
        args.sessions, args.duration = 1, 0.1
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    db_url, _ = database_url("bench-avatar.sqlite3")
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or DEFAULT_SECRET_KEY,
        "DATABASE_URL": db_url,
        "TTS_CACHE_DIR": "",  # every sentence synthesised, as with distinct replies
        LLM_KEY_VARIABLE: FAKE_API_KEY,
    }
    machine = machine_description()
    fake, fake_url = start_fake_llm(env, VAR_DIR / "bench-avatar-fake.log")
    server: subprocess.Popen[bytes] | None = None
    try:
        manage(env, "migrate", "--noinput")
        output = manage({**env, "BENCH_LLM_BASE_URL": fake_url}, "shell", "-c", SETUP_CODE)
        key = next(
            json.loads(line.removeprefix(SETUP_MARKER))["key"]
            for line in output.splitlines()
            if line.startswith(SETUP_MARKER)
        )
        server, http_url = start_daphne(env, VAR_DIR / "bench-avatar-daphne.log")
        url = http_url.replace("http://", "ws://") + "/avatar/ws?character=avatar-bench"
        own_before = process_cpu_seconds(server.pid)
        children_before = children_cpu_seconds(server.pid)
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        run = asyncio.run(run_clients(url, key, args.sessions, args.duration))
        elapsed = time.perf_counter() - began
        own = process_cpu_seconds(server.pid) - own_before
        children = children_cpu_seconds(server.pid) - children_before
    finally:
        if server is not None:
            stop_process(server)
        stop_fake(fake)
    speech = run.frames * FRAME_SECONDS
    gaps = sorted(run.gaps_ms)
    stalls = sum(g > STALL_MS for g in gaps)
    print("avatarsite /avatar/ws benchmark")
    print(
        f"machine : {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), Linux {machine['kernel']}, "
        f"Python {machine['python']}, {datetime.now(UTC):%Y-%m-%d}, "
        f"load average {load_before:.2f} before the run"
    )
    print(
        f"setup   : 1 daphne process, espeak-ng speech, built-in lip sync, fake LLM at zero "
        f"latency; {args.sessions} clients for {args.duration:g} s ({elapsed:.1f} s with the "
        f"last turns)"
    )
    print(f"turns {run.turns}, frames {run.frames} ({speech:.1f} s of speech)")
    print(
        f"jitter  : |gap - 33.3 ms| p50 {percentile(gaps, 50) or 0:.1f} ms, "
        f"p99 {percentile(gaps, 99) or 0:.1f} ms, max {max(gaps, default=0):.1f} ms; "
        f"gaps over {STALL_MS:.0f} ms: {stalls} of {len(gaps)}"
    )
    if speech:
        print(
            f"CPU     : daphne {own / speech * 1000:.1f} ms per second of speech, espeak-ng "
            f"(children) {children / speech * 1000:.1f} ms; "
            f"{100 * (own + children) / elapsed:.0f}% of one core over the run"
        )
    for error in run.errors[:3]:
        print(f"error   : {error}")
    return 1 if run.errors or not run.frames else 0


if __name__ == "__main__":
    raise SystemExit(main())
