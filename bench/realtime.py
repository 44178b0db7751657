"""Benchmark realtime voice sessions over /ws: how many concurrent sessions one server sustains
with p99 from the VAD's end-of-speech decision to the first audio chunk under 300 ms, and how
far each session's VAD lags behind real time.

Each simulated session is a microphone: it streams espeak-ng speech (a question, then
silence) as 32 ms PCM16 frames, paced at real time, over its own WebSocket, forever, while it
reads the replies. STT, LLM and TTS are the tests' fake OpenAI server (transcription, chat
completions and speech endpoints) at zero latency in a process of its own; the server runs
the real Silero VAD (batched across sessions), pipeline and ASGI server (`--server`: uvicorn,
as `make run`, or daphne; one process). All on 127.0.0.1.

- *speech end -> first audio*: from `accepted` (sent the moment the VAD decides the utterance
  is over) to the first `chunk` carrying audio, as the client sees them.
- *VAD lag*: from sending the frame at which the VAD decides (found by running the same
  detector over the same frames in this process beforehand) to receiving `accepted`: how late
  the decision comes compared with real time, network and queueing included.

    .venv/bin/python -m bench.realtime                       # levels 10,25,50,100
    .venv/bin/python -m bench.realtime --levels 20,40 --duration 15

Over ~400 lines on purpose: its own load generator and the side-by-side run against
AIAvatarKit share one setup (the fake, the bench character and key, the server process).

Against AIAvatarKit: with the peer harness set up (its folder in PEER_BENCH_DIR or
`--peer-dir`), the same server and AIAvatarKit's server (`peer_server.py`, in the harness's own
virtualenv) are then both driven by the harness's load generator (`load_ws.py`: speech end ->
first audio, pass at p99 <= 1000 ms), level by level, the order alternating, with each server's
CPU per session-second and the ratios printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import websockets

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-benchmarks-only")
django.setup()

from bench.harness import (  # noqa: E402
    DEFAULT_SECRET_KEY,
    LLM_KEY_VARIABLE,
    PEER_NAME,
    VAR_DIR,
    add_smoke_flag,
    database_url,
    library_versions,
    machine_description,
    manage,
    peer_dir,
    percentile,
    process_cpu_seconds,
    start_fake_llm,
    start_peer,
    stop_fake,
)
from channels_app.listening import speech_detector  # noqa: E402
from tests.fakes.openai_server import FAKE_API_KEY  # noqa: E402
from tests.processes import (  # noqa: E402
    ASGI_SERVERS,
    DEFAULT_ASGI_SERVER,
    start_asgi_server,
    stop_process,
)
from tests.speech.audio import utterance  # noqa: E402

FRAME_BYTES = 1024  # 512 samples: one Silero window, 32 ms
FRAME_SECONDS = FRAME_BYTES / 2 / 16000
TARGET_P99_MS = 300.0
PEER_THRESHOLD_MS = 1000.0  # the harness's pass mark: p99 speech end -> first audio
PEER_TURNS = 5
# The end-of-speech silence both servers wait for (ours: REALTIME_VAD_SILENCE_SECONDS' default;
# AIAvatarKit's Silero detector: 0.5 s too), subtracted from `accepted` to get the inbound lag.
VAD_SILENCE_MS = 500.0
INBOUND_LAG_GOAL_MS = 200.0
SETUP_MARKER = "RT_BENCH_SETUP "
SETUP_CODE = f"""
import json, os
from bench.harness import store_secrets
from characters.models import Character
from conversations.models import ApiKey
from conversations.speech.models import VoiceSettings

fake = os.environ["BENCH_LLM_BASE_URL"]
bench, _ = Character.objects.update_or_create(
    slug="rt-bench",
    defaults=dict(
        name="Realtime bench", persona="Answer in one sentence.", llm_provider="openai",
        llm_model="gpt-4o-mini", llm_base_url=fake, llm_api_key_env={LLM_KEY_VARIABLE!r},
        is_active=True,
    ),
)
VoiceSettings.objects.update_or_create(character=bench, defaults=dict(
    stt_provider="openai", stt_base_url=fake, stt_api_key_env={LLM_KEY_VARIABLE!r},
    tts_provider="openai", tts_base_url=fake, tts_api_key_env={LLM_KEY_VARIABLE!r},
))
store_secrets(bench.tenant, [{LLM_KEY_VARIABLE!r}])
print({SETUP_MARKER!r} + json.dumps({{"key": ApiKey.issue("realtime-bench")[1]}}))
"""


def speech_cycle() -> bytes:
    pcm = utterance("What is the capital of France?", before=0.5, after=1.5).pcm
    return pcm[: len(pcm) - len(pcm) % FRAME_BYTES]


async def decision_frames(cycle: bytes) -> list[int]:
    """Indices (within one cycle) of the frames after which the server's VAD ends an
    utterance: the same detector over the same frames, repeated until steady."""
    detector = speech_detector()
    frames = len(cycle) // FRAME_BYTES
    found: list[int] = []
    for repeat in range(3):
        for index in range(frames):
            frame = cycle[index * FRAME_BYTES : (index + 1) * FRAME_BYTES]
            if await detector.process("probe", frame):
                if repeat == 2:
                    found.append(index)
                detector.reset_session("probe")  # what the server does on `accepted`
    return found


@dataclass
class Level:
    sessions: int
    turns: int = 0
    first_audio_ms: list[float] = field(default_factory=list)
    vad_lag_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    frames_late_ms: list[float] = field(default_factory=list)  # the generator's own slack


async def run_session(
    url: str,
    key: str,
    number: int,
    cycle: bytes,
    decisions: set[int],
    level: Level,
    stop_at: float,
    measure_from: float,
) -> None:
    session_id = f"bench-{number}"
    frames = [
        json.dumps(
            {
                "type": "data",
                "session_id": session_id,
                "audio_data": base64.b64encode(cycle[i : i + FRAME_BYTES]).decode(),
            }
        )
        for i in range(0, len(cycle), FRAME_BYTES)
    ]
    decided_at: list[float] = []  # send times of decision frames, in order
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
    ) as socket:
        await socket.send(
            json.dumps({"type": "start", "session_id": session_id, "user_id": session_id})
        )

        async def receive() -> None:
            accepted_at: float | None = None
            async for raw in socket:
                now = time.perf_counter()
                message = json.loads(raw)
                kind = message["type"]
                if kind == "accepted":
                    accepted_at = now
                    # The decision frame sent last: the one this `accepted` answers.
                    if decided_at and now >= measure_from:
                        level.vad_lag_ms.append((now - decided_at[-1]) * 1000)
                    decided_at.clear()
                elif kind == "chunk" and message["audio_data"] and accepted_at is not None:
                    if accepted_at >= measure_from:
                        level.first_audio_ms.append((now - accepted_at) * 1000)
                        level.turns += 1
                    accepted_at = None
                elif kind in ("error", "canceled"):
                    level.errors.append(f"{kind}: {message['metadata']}")

        receiver = asyncio.create_task(receive())
        try:
            # Sessions start at random moments: people do not all talk at once. Each streams
            # the cycle from its start, so its VAD decides where the probe's did.
            await asyncio.sleep(random.uniform(0, len(frames) * FRAME_SECONDS))
            offset = 0
            began = time.perf_counter()
            sent = 0
            while time.perf_counter() < stop_at:
                index = (offset + sent) % len(frames)
                due = began + sent * FRAME_SECONDS
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    level.frames_late_ms.append(-delay * 1000)
                await socket.send(frames[index])
                if index in decisions:
                    decided_at.append(time.perf_counter())
                sent += 1
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)


async def run_level(
    url: str,
    key: str,
    sessions: int,
    cycle: bytes,
    decisions: set[int],
    warmup: float,
    duration: float,
) -> Level:
    level = Level(sessions)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    results = await asyncio.gather(
        *(
            run_session(url, key, n, cycle, decisions, level, stop_at, measure_from)
            for n in range(sessions)
        ),
        return_exceptions=True,
    )
    level.errors += [repr(r) for r in results if isinstance(r, BaseException)]
    return level


def fmt(values: list[float], q: float) -> str:
    value = percentile(sorted(values), q)
    return "-" if value is None else f"{value:.0f}"


# --- Against AIAvatarKit (the peer harness) ------------------------------------------------


@dataclass
class PeerRun:
    """One server at one level of the harness's `load_ws.py`."""

    server: str
    sessions: int
    summary: dict[str, Any]  # load_ws.py's JSON line
    cpu_seconds: float  # the server process's CPU over the run
    wall_seconds: float
    load: str  # /proc/loadavg's 1-minute figure before and after

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_seconds / self.wall_seconds

    @property
    def cpu_ms_per_session_second(self) -> float:
        """Server CPU per second of one live microphone: comparable across levels and loads."""
        return 1000 * self.cpu_seconds / (self.sessions * self.wall_seconds)

    @property
    def inbound_lag_p99_ms(self) -> float | None:
        """How far behind real time the server heard the speech's end: `accepted` after speech
        end minus the silence both VADs wait for before deciding (goal: at most 200 ms)."""
        accepted = self.latency("latency_accepted_ms", "p99")
        return None if accepted is None else accepted - VAD_SILENCE_MS

    def latency(self, name: str, q: str) -> float | None:
        value = (self.summary.get(name) or {}).get(q)
        return float(value) if value is not None else None


def _load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def peer_level(
    directory: Path, server: str, url: str, pid: int, key: str, sessions: int
) -> PeerRun:
    """Run the harness's load generator once against one server, timing its CPU."""
    load_before = _load_average()
    cpu_before, began = process_cpu_seconds(pid), time.perf_counter()
    command = [
        str(directory / ".venv-bench" / "bin" / "python"),
        "load_ws.py",
        *("--url", url, "--api-key", key, "--clients", str(sessions)),
        *("--turns", str(PEER_TURNS), "--threshold-ms", str(PEER_THRESHOLD_MS)),
        *("--max-seconds", "150", "--label", server),
    ]
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=240)
    wall = time.perf_counter() - began
    cpu = process_cpu_seconds(pid) - cpu_before
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[0]) if lines else {"pass": False, "stderr": done.stderr[-500:]}
    return PeerRun(server, sessions, summary, cpu, wall, f"{load_before}->{_load_average()}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_peer_runs(runs: list[PeerRun]) -> None:
    print(
        f"{'sessions':>8} {'server':<11} {'turns ok':>9} {'first audio p50/p99 ms':>23} "
        f"{'accepted p99':>12} {'inbound lag p99':>15} {'CPU %':>6} {'CPU ms/session-s':>16} "
        f"{'pass':>5} {'load':>11}"
    )
    for run in runs:
        planned = run.summary.get("turns_planned", run.sessions * PEER_TURNS)
        print(
            f"{run.sessions:>8} {run.server:<11} "
            f"{str(run.summary.get('turns_ok', 0)) + '/' + str(planned):>9} "
            f"{_ms(run.latency('latency_first_audio_ms', 'p50')):>11}/"
            f"{_ms(run.latency('latency_first_audio_ms', 'p99')):<11} "
            f"{_ms(run.latency('latency_accepted_ms', 'p99')):>12} "
            f"{_ms(run.inbound_lag_p99_ms):>15} {run.cpu_percent:>6.1f} "
            f"{run.cpu_ms_per_session_second:>16.2f} {bool(run.summary.get('pass'))!s:>5} "
            f"{run.load:>11}"
        )


def peer_ratios(runs: list[PeerRun]) -> list[str]:
    """The comparison's lines: sessions passing at the harness's mark, and CPU per
    session-second at each level measured for both (ours / AIAvatarKit's)."""
    passing = {
        server: max(
            (r.sessions for r in runs if r.server == server and r.summary.get("pass")), default=0
        )
        for server in ("avatarsite", PEER_NAME)
    }
    ratio = f"{passing['avatarsite'] / passing[PEER_NAME]:.2f}" if passing[PEER_NAME] else "-"
    lines = [
        f"sessions passing (p99 speech end -> first audio <= {PEER_THRESHOLD_MS:.0f} ms): "
        f"avatarsite {passing['avatarsite']}, {PEER_NAME} {passing[PEER_NAME]}, ratio {ratio} "
        "(goal: at least 2)"
    ]
    peers = {r.sessions: r for r in runs if r.server == PEER_NAME}
    for ours in (r for r in runs if r.server == "avatarsite"):
        peer = peers.get(ours.sessions)
        if peer is not None and peer.cpu_seconds > 0:
            lines.append(
                f"{ours.sessions} sessions: CPU per session-second avatarsite / {PEER_NAME} = "
                f"{ours.cpu_ms_per_session_second / peer.cpu_ms_per_session_second:.2f}; "
                f"inbound lag p99 avatarsite {_ms(ours.inbound_lag_p99_ms)} ms, {PEER_NAME} "
                f"{_ms(peer.inbound_lag_p99_ms)} ms (goal: at most {INBOUND_LAG_GOAL_MS:.0f})"
            )
    return lines


def compare_with_peer(
    directory: Path,
    levels: list[int],
    fake_url: str,
    key: str,
    server: subprocess.Popen[bytes],
    ws_url: str,
) -> None:
    """Both servers under the harness's load, level by level, the order alternating."""
    peer, peer_url = start_peer(
        directory, fake_url, FAKE_API_KEY, key, VAR_DIR / "bench-realtime-peer.log"
    )
    try:
        targets = [
            ("avatarsite", ws_url, server.pid),
            (PEER_NAME, peer_url.replace("http://", "ws://") + "/ws", peer.pid),
        ]
        runs: list[PeerRun] = []
        for index, sessions in enumerate(levels):
            for name, url, pid in targets if index % 2 == 0 else targets[::-1]:
                runs.append(peer_level(directory, name, url, pid, key, sessions))
        print()
        print(
            f"against {PEER_NAME} 0.9.2 (peer harness at {directory}): its load_ws.py, "
            f"{PEER_TURNS} spoken turns per session, speech end -> first audio, servers "
            "alternating; CPU of each server process"
        )
        print_peer_runs(sorted(runs, key=lambda r: (r.sessions, r.server)))
        for line in peer_ratios(runs):
            print(line)
    finally:
        stop_process(peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10,25,50,100")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--peer-dir", type=Path, default=None, help="the peer harness's folder")
    parser.add_argument("--peer-levels", default="10,20,40")
    parser.add_argument(
        "--server",
        choices=sorted(ASGI_SERVERS),
        default=DEFAULT_ASGI_SERVER,
        help=f"the ASGI server ({DEFAULT_ASGI_SERVER}, as make run)",
    )
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    peer = None if args.smoke else peer_dir(args.peer_dir)
    if args.smoke:  # one session, one speech cycle (set below, once its length is known)
        args.levels, args.warmup = "1", 0.0
    levels = [int(n) for n in args.levels.split(",") if n]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    db_url, _ = database_url("bench.sqlite3")
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or DEFAULT_SECRET_KEY,
        "DATABASE_URL": db_url,
        "TTS_CACHE_DIR": "",  # every sentence synthesised, as with distinct replies
        LLM_KEY_VARIABLE: FAKE_API_KEY,
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SECRET_KEY", "DATABASE_URL")})
    cycle = speech_cycle()
    if args.smoke:
        args.duration = len(cycle) / 32000
    decisions = set(asyncio.run(decision_frames(cycle)))
    machine = machine_description()
    fake, fake_url = start_fake_llm(env, VAR_DIR / "bench-realtime-fake.log")
    server: subprocess.Popen[bytes] | None = None
    try:
        manage(env, "migrate", "--noinput")
        output = manage({**env, "BENCH_LLM_BASE_URL": fake_url}, "shell", "-c", SETUP_CODE)
        key = next(
            json.loads(line.removeprefix(SETUP_MARKER))["key"]
            for line in output.splitlines()
            if line.startswith(SETUP_MARKER)
        )
        server, http_url = start_asgi_server(
            args.server, env, VAR_DIR / f"bench-realtime-{args.server}.log"
        )
        ws_url = http_url.replace("http://", "ws://") + "/ws?character=rt-bench"
        lib = library_versions()
        port = http_url.rsplit(":", 1)[1]
        flags = " ".join(ASGI_SERVERS[args.server][1:]).replace("{port}", port)
        print("avatarsite realtime /ws benchmark")
        print(
            f"machine : {machine['cpu_model']}, {machine['cores']} cores "
            f"({machine['cores_usable']} usable), Linux {machine['kernel']}, "
            f"Python {machine['python']}, {datetime.now(UTC):%Y-%m-%d}, "
            f"load average {_load_average()}"
        )
        print(
            f"server  : 1 {args.server} {lib[args.server]} process ({flags}), "
            f"Django {lib['django']}"
        )
        print(
            f"setup   : Silero VAD (batched), fake OpenAI STT/LLM/TTS at zero latency in its "
            f"own process; {len(cycle) / 32000:.1f} s speech cycle "
            f"(question + silence) per session at real time in 32 ms frames; "
            f"{args.warmup:g} s warm-up + {args.duration:g} s measured per level"
        )
        print()
        print(
            f"{'sessions':>8} {'turns':>6} {'first audio p50/p95/p99 ms':>27} "
            f"{'VAD lag p50/p99/max ms':>23} {'server CPU%':>11} {'load CPU%':>9} "
            f"{'fake CPU%':>8} {'CPU ms/session-s':>16} {'errors':>6}"
        )
        sustained = 0
        errors = 0
        for sessions in levels:
            cpu_before = process_cpu_seconds(server.pid)
            own_before = time.process_time()
            fake_before = process_cpu_seconds(fake.pid)
            began = time.perf_counter()
            level = asyncio.run(
                run_level(ws_url, key, sessions, cycle, decisions, args.warmup, args.duration)
            )
            elapsed = time.perf_counter() - began
            cpu = (process_cpu_seconds(server.pid) - cpu_before) / elapsed
            own = (time.process_time() - own_before) / elapsed
            fake_cpu = (process_cpu_seconds(fake.pid) - fake_before) / elapsed
            p99 = percentile(sorted(level.first_audio_ms), 99)
            lag_max = max(level.vad_lag_ms, default=0.0)
            print(
                f"{sessions:>8} {level.turns:>6} "
                f"{fmt(level.first_audio_ms, 50):>9}/{fmt(level.first_audio_ms, 95)}/"
                f"{fmt(level.first_audio_ms, 99):<8} "
                f"{fmt(level.vad_lag_ms, 50):>9}/{fmt(level.vad_lag_ms, 99)}/{lag_max:<6.0f} "
                f"{100 * cpu:>11.0f} {100 * own:>9.0f} {100 * fake_cpu:>8.0f} "
                f"{1000 * cpu / sessions:>16.2f} {len(level.errors):>6}"
            )
            errors += len(level.errors)
            for error in level.errors[:3]:
                print(f"         error: {error}")
            late = percentile(sorted(level.frames_late_ms), 99) or 0.0
            if late > 20:
                print(f"         note: the load generator sent frames late (p99 {late:.0f} ms)")
            if p99 is not None and p99 < TARGET_P99_MS and not level.errors:
                sustained = max(sustained, sessions)
        print()
        print(
            f"sustained: {sustained} concurrent sessions with p99 speech end -> first audio "
            f"under {TARGET_P99_MS:.0f} ms"
        )
        if peer is not None:
            peer_levels = [int(n) for n in args.peer_levels.split(",") if n]
            compare_with_peer(peer, peer_levels, fake_url, key, server, ws_url)
    finally:
        if server is not None:
            stop_process(server)
        stop_fake(fake)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
