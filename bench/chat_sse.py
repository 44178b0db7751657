"""Benchmark `POST /chat` (AIAvatarKit's SSE endpoint): requests/s and time to first chunk.

What it measures, and why this way (docs/benchmarks.md#targets): requests/s, time to first
chunk and server CPU per turn with 1 / 10 / 50 concurrent clients holding 30-turn conversations
against an LLM at zero latency, as AIAvatarKit's figures were taken. Each simulated client sends
turn 1 without a context_id, turns 2..30 with the context_id of the `start` event, then starts a
new conversation, and the LLM is the tests' FakeOpenAI answering at once. What remains is our
own cost per turn: HTTP, authentication, the history load, the pipeline, the SSE framing and the
history write.

Against the peer: with the peer harness set up (PEER_BENCH_DIR, or --peer-dir, naming the
folder whose `.venv-peer` runs AIAvatarKit 0.9.2's `peer_server.py`), the same load runs
against AIAvatarKit too, in the same run, on the same fake LLM, the two servers alternating
at each level, and the report gives ratios. Without it, no ratio is printed: figures taken on
another machine or day say nothing about this one.

The pieces run as separate processes on 127.0.0.1, like production:

* the server, one process: uvicorn (as `make run`) or `--server daphne`, started with
  `tests.processes.start_asgi_server` with scripts/run.sh's flags;
* the fake LLM (`bench.fake_llm`), in its own interpreter so its threads never compete with
  the load generator for a GIL;
* this process, the load generator: one asyncio loop, one keep-alive HTTP/1.1 connection per
  client, parsing the response by hand. An HTTP library costs several times more CPU per
  event, and on 2 cores every cycle the generator burns is taken from the server; the
  generator's own CPU use is printed per level so a reader can see whether it was the limit.

The database is the bench's own: a fresh SQLite file `var/bench.sqlite3`, or whatever
DATABASE_URL names (used as is, after `migrate`). Every level runs for a fixed time after a
warm-up, and every subprocess is stopped in a `finally`, whatever happens (Ctrl-C included).

    make bench
    python -m bench.chat_sse --levels 1,10,50 --warmup 2 --duration 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/avatarsite_bench make bench

Over ~400 lines on purpose: the load generator parses HTTP by hand (see below), and its
clients, levels and report belong to this one benchmark; the shared parts are in
bench/harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import (
    DEFAULT_SECRET_KEY,
    LLM_KEY_VARIABLE,
    PEER_NAME,
    PEER_VARIABLE,
    VAR_DIR,
    add_smoke_flag,
    database_url,
    library_versions,
    machine_cpu_ticks,
    machine_description,
    manage,
    percentile,
    process_cpu_seconds,
    shown,
    start_fake_llm,
    start_peer,
    stop_fake,
)
from tests.fakes.openai_server import FAKE_API_KEY
from tests.processes import (
    ASGI_SERVERS,
    DEFAULT_ASGI_SERVER,
    start_asgi_server,
    stop_process,
)

# The goal (issue 13): at least this many times the peer's requests/s, at every level.
GOAL_RATIO = 1.5

CHARACTER_SLUG = "bench"

# Far above any healthy turn (milliseconds at zero LLM latency) yet bounded, so a wedged
# server turns into counted errors instead of a benchmark that never ends.
TURN_TIMEOUT_SECONDS = 30.0
# After a level's window, in-flight turns may finish (so the server records no spurious
# interrupted turns); past this they are cancelled.
DRAIN_TIMEOUT_SECONDS = 30.0
# A failing server answers in microseconds; without a pause the error loop would spin and
# starve the event loop.
ERROR_BACKOFF_SECONDS = 0.1
# Above this share of one core the single-process generator may be what limits the figures.
CLIENT_SATURATION_PERCENT = 80.0
# One Python process cannot use much more than one core (the GIL; only database calls run
# beside it), so from here on the server process is what limits the figures.
SERVER_BOUND_PERCENT = 90.0


def results_path(endpoint: str) -> Path:
    return VAR_DIR / f"bench-chat-sse-{endpoint}.json"


def server_log(number: int) -> Path:
    return VAR_DIR / f"bench-server-{number}.log"


PEER_LOG = VAR_DIR / "bench-peer.log"


FAKE_LLM_LOG = VAR_DIR / "bench-fake-llm.log"

# Run by `manage.py shell -c` in a subprocess, with the same environment daphne gets, so the
# character and key land in exactly the database the server reads. It prints one marked JSON
# line; anything else the shell prints is ignored.
SETUP_MARKER = "BENCH_SETUP "
SETUP_CODE = f"""
import json, os
from django.db import connection
from bench.harness import store_secrets
from characters.models import Character
from conversations.models import ApiKey
from conversations.speech.models import VoiceSettings

bench, _ = Character.objects.update_or_create(
    slug={CHARACTER_SLUG!r},
    defaults=dict(
        name="Bench",
        persona="You are Bench, a terse benchmark character. Answer in one sentence.",
        llm_provider="openai",
        llm_model="gpt-4o-mini",
        llm_base_url=os.environ["BENCH_LLM_BASE_URL"],
        llm_api_key_env={LLM_KEY_VARIABLE!r},
        is_default=True,
        is_active=True,
    ),
)
store_secrets(bench.tenant, [{LLM_KEY_VARIABLE!r}])
# Text only: this benchmark measures the conversation path, as AIAvatarKit's figures do.
VoiceSettings.objects.update_or_create(character=bench, defaults=dict(tts_provider="none"))
# The query /chat uses to pick the default character: another default in a reused database
# could win it, and then the bench must name its character explicitly.
default = Character.objects.filter(is_active=True, is_default=True).first()
db = connection.settings_dict
if connection.vendor == "sqlite":
    database = f"SQLite {{connection.Database.sqlite_version}} (file {{db['NAME']}}, WAL)"
else:
    connection.ensure_connection()
    major, minor = divmod(connection.pg_version, 10000)
    database = (
        f"{{connection.display_name}} {{major}}.{{minor}} "
        f"({{db['HOST'] or 'local socket'}}:{{db['PORT'] or 5432}}/{{db['NAME']}}, "
        f"pool max {{db['OPTIONS'].get('pool', {{}}).get('max_size', 'off')}})"
    )
print({SETUP_MARKER!r} + json.dumps(dict(
    api_key=ApiKey.issue("bench")[1],
    default_is_bench=default is not None and default.slug == {CHARACTER_SLUG!r},
    database=database,
    vendor=connection.vendor,
)))
"""


# --- Load generator ---------------------------------------------------------------------


class ProtocolError(Exception):
    """The response broke HTTP/1.1 or SSE framing."""


@dataclass(slots=True)
class Turn:
    """What one `/chat` request produced, as seen by the client."""

    sent_at: float
    status: int = 0
    context_id: str | None = None
    first_chunk_at: float | None = None
    chunks: int = 0
    final_text: str | None = None
    error_event: str | None = None
    ended: bool = False  # the protocol's own end marker (Dify's message_end, OpenAI's [DONE])


@dataclass(slots=True)
class TurnResult:
    """One finished request: when it ended, how long it took, and what went wrong if anything."""

    finished_at: float
    total_s: float
    first_chunk_s: float | None
    error_kind: str | None = None
    error_detail: str = ""


JSON = dict[str, Any]
# Tells this run's users from the ones earlier runs left in the same database; conversations
# are numbered across levels, so no two share a user.
RUN_ID = uuid.uuid4().hex[:8]
CONVERSATION_NUMBERS = itertools.count()


class Endpoint:
    """How one chat API is spoken: its path, its request body, and what its events mean.

    The same 30-turn conversations run against AIAvatarKit's `/chat`, Dify's `/chat-messages`
    (the conversation id carried by the client) and OpenAI's `/v1/chat/completions` (history
    kept by the server per user: each conversation is a new `user`)."""

    name = "chat"
    path = "/chat"

    def body(self, index: int, conversation: int, number: int, context: str | None) -> JSON:
        payload: JSON = {
            "type": "start",
            "session_id": f"bench-session-{index}",
            "user_id": f"bench-user-{index}",
            "text": f"Hello from client {index}, this is turn {number}",
        }
        if context is not None:
            payload["context_id"] = context
        return payload

    def event(self, turn: Turn, line: bytes) -> str | None:
        """Read one `data:` line into `turn`; the kind of event ("chunk" counts)."""
        if _event_type_fast(line) == b"chunk":
            return "chunk"
        event = json.loads(line[5:])
        kind = event.get("type")
        if kind == "start":
            turn.context_id = event.get("context_id")
        elif kind in ("final", "vision"):
            turn.final_text = event.get("text") or ""
        elif kind == "error":
            turn.error_event = str((event.get("metadata") or {}).get("error"))
        return kind


class DifyEndpoint(Endpoint):
    name = "dify"
    path = "/chat-messages"

    def body(self, index: int, conversation: int, number: int, context: str | None) -> JSON:
        return {
            "query": f"Hello from client {index}, this is turn {number}",
            "user": f"bench-user-{index}",
            "conversation_id": context or "",
            "response_mode": "streaming",
            "inputs": {},
        }

    def event(self, turn: Turn, line: bytes) -> str | None:
        event = json.loads(line[5:])
        kind = event.get("event")
        turn.context_id = event.get("conversation_id") or turn.context_id
        if kind == "message":
            turn.final_text = (turn.final_text or "") + (event.get("answer") or "")
            return "chunk"
        if kind == "error":
            turn.error_event = str(event.get("message"))
        elif kind == "message_end":
            turn.ended = True
        return kind


class OpenAIEndpoint(Endpoint):
    name = "openai"
    path = "/v1/chat/completions"

    def body(self, index: int, conversation: int, number: int, context: str | None) -> JSON:
        return {
            "model": CHARACTER_SLUG,
            "messages": [{"role": "user", "content": f"Hello from {index}, turn {number}"}],
            "stream": True,
            # A user per conversation (history lives on the server), new in every run.
            "user": f"bench-{RUN_ID}-{index}-{conversation}",
        }

    def event(self, turn: Turn, line: bytes) -> str | None:
        data = line[5:].strip()
        if data == b"[DONE]":
            turn.ended = True
            return "done"
        event = json.loads(data)
        if "error" in event:
            turn.error_event = str(event["error"].get("message"))
            return "error"
        turn.context_id = "server-side"
        content = event["choices"][0]["delta"].get("content")
        if content:
            turn.final_text = (turn.final_text or "") + content
            return "chunk"
        return None


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (Endpoint(), DifyEndpoint(), OpenAIEndpoint())}


def _event_type_fast(line: bytes) -> bytes | None:
    """`chunk` events are the bulk of the stream and carry nothing the client needs beyond
    their arrival time; the server writes compact JSON with `type` first (AIAvatarKit's byte
    shape), so a prefix test spares a JSON parse for each. Anything else gets parsed."""
    return b"chunk" if line.startswith(b'data: {"type":"chunk"') else None


class ChatConnection:
    """One client's keep-alive HTTP/1.1 connection to `/chat`, read as SSE by hand.

    Handles what daphne sends: chunked transfer encoding for the event stream, Content-Length
    for JSON error responses, and `Connection: close`. The connection is re-opened lazily
    after an error or a close.
    """

    def __init__(
        self, url: str, api_key: str, extra_headers: dict[str, str], endpoint: Endpoint
    ) -> None:
        self.endpoint = endpoint
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self.host, self.port = parts.hostname, parts.port
        headers = {
            "Host": f"{self.host}:{self.port}",
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **extra_headers,
        }
        self._head = (
            f"POST {endpoint.path} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def turn(self, body: bytes) -> Turn:
        """Send one request and read its whole response; the timing starts at the send."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        reader = self._reader
        turn = Turn(sent_at=time.perf_counter())
        self._writer.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)

        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        try:
            turn.status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {status_line[:80]!r}") from None
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()

        buffer = b""
        async for piece in self._body(reader, headers):
            buffer += piece
            if turn.status != 200 or b"\n" not in buffer:
                continue  # an error's JSON body is kept whole, for the report
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    kind = self.endpoint.event(turn, line.rstrip(b"\r"))
                    if kind == "chunk":
                        if turn.first_chunk_at is None:
                            turn.first_chunk_at = time.perf_counter()
                        turn.chunks += 1
        if turn.status != 200:
            turn.error_event = buffer[:200].decode(errors="replace")
        if headers.get(b"connection") == b"close":
            self.close()
        return turn

    async def _body(
        self, reader: asyncio.StreamReader, headers: dict[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size_line = await reader.readline()
                if not size_line:
                    raise ProtocolError("connection closed in the middle of a chunked body")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield (await reader.readexactly(size + 2))[:-2]
        elif b"content-length" in headers:
            yield await reader.readexactly(int(headers[b"content-length"]))
        else:  # delimited by the server closing the connection
            yield await reader.read()
            self.close()


def judge(turn: Turn, number: int, sent_context: str | None) -> tuple[str, str] | None:
    """Why a complete response is not a successful turn, or None if it is.

    The history check matters: the fake's default reply counts the user messages it was
    sent, so a server that dropped history (or fell back to its echo provider) would look
    fast here for the wrong reason.
    """
    if turn.status != 200:
        return f"http-{turn.status}", turn.error_event or ""
    if turn.error_event is not None:
        return "error-event", turn.error_event
    if turn.context_id is None:
        return "protocol", "no start event"
    if turn.chunks == 0 or turn.first_chunk_at is None:
        return "protocol", "no chunk event"
    if turn.final_text is None or (turn.context_id == "server-side" and not turn.ended):
        return "protocol", "no final event"
    if sent_context not in (None, "server-side") and turn.context_id != sent_context:
        return "context", f"sent {sent_context}, server continued {turn.context_id}"
    if f"I have seen {number} user messages" not in turn.final_text:
        return "history", f"turn {number}: LLM replied {turn.final_text[:120]!r}"
    return None


async def run_client(
    index: int,
    connection: ChatConnection,
    results: list[TurnResult],
    stopping: asyncio.Event,
    conversation_turns: int,
) -> None:
    """One user holding `conversation_turns`-turn conversations back to back until told to
    stop.

    A failed turn ends its conversation (the client cannot trust its context any more), like
    a real client would after an error.
    """
    context_id: str | None = None
    number, conversation = 0, next(CONVERSATION_NUMBERS)
    while not stopping.is_set():
        number += 1
        payload = connection.endpoint.body(index, conversation, number, context_id)
        body = json.dumps(payload, separators=(",", ":")).encode()
        started = time.perf_counter()
        failure: tuple[str, str] | None
        turn: Turn | None = None
        try:
            async with asyncio.timeout(TURN_TIMEOUT_SECONDS):
                turn = await connection.turn(body)
            failure = judge(turn, number, context_id)
        except TimeoutError:
            failure = "timeout", f"no complete response within {TURN_TIMEOUT_SECONDS:g} s"
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            failure = "connection", f"{type(exc).__name__}: {exc}"
        except (ProtocolError, ValueError) as exc:
            failure = "protocol", f"{type(exc).__name__}: {exc}"
        finished = time.perf_counter()
        sent_at = turn.sent_at if turn is not None else started
        first_chunk = (
            turn.first_chunk_at - turn.sent_at
            if turn is not None and turn.first_chunk_at is not None
            else None
        )
        results.append(
            TurnResult(
                finished_at=finished,
                total_s=finished - sent_at,
                first_chunk_s=first_chunk,
                error_kind=failure[0] if failure else None,
                error_detail=failure[1] if failure else "",
            )
        )
        if failure is None and turn is not None:
            context_id = turn.context_id
            if number == conversation_turns:
                context_id, number = None, 0
                conversation = next(CONVERSATION_NUMBERS)
        else:
            if turn is None or turn.status == 200:
                connection.close()  # the stream's state is unknown: start afresh
            context_id, number = None, 0
            conversation = next(CONVERSATION_NUMBERS)
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)


# --- CPU accounting ---------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters at one instant, so a level's window can be charged to each process."""

    wall: float
    client: float
    server: float
    fake_llm: float
    machine_busy: int
    machine_total: int

    @classmethod
    def take(cls, server_pids: Sequence[int], fake_pid: int) -> CpuSnapshot:
        busy, total = machine_cpu_ticks()
        return cls(
            wall=time.perf_counter(),
            client=time.process_time(),
            server=sum(process_cpu_seconds(pid) for pid in server_pids),
            fake_llm=process_cpu_seconds(fake_pid),
            machine_busy=busy,
            machine_total=total,
        )

    def percent_since(self, earlier: CpuSnapshot) -> dict[str, float]:
        """Per-process CPU as % of one core; the machine as % of all its cores."""
        wall = self.wall - earlier.wall
        total = self.machine_total - earlier.machine_total

        def pct(now: float, before: float) -> float:
            return round(100 * (now - before) / wall, 1)

        ours = {
            "client": pct(self.client, earlier.client),
            "server": pct(self.server, earlier.server),
            "fake_llm": pct(self.fake_llm, earlier.fake_llm),
        }
        busy = (self.machine_busy - earlier.machine_busy) / total if total else math.nan
        # What the rest of the machine took (other users, the kernel's own threads): if it
        # is large, the figures were measured on a machine that was not idle.
        cores = os.cpu_count() or 1
        return {
            **ours,
            "other": round(max(0.0, 100 * busy * cores - sum(ours.values())), 1),
            "machine_busy_of_all_cores": round(100 * busy, 1),
        }


# --- One concurrency level ----------------------------------------------------------------


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass
class LevelResult:
    server: str  # "avatarsite" or PEER_NAME
    clients: int
    measured_seconds: float
    completed_turns: int
    errors: int
    requests_per_second: float
    first_chunk_ms: dict[str, float | None]
    turn_ms: dict[str, float | None]
    cpu_percent: dict[str, float]
    # The server's CPU time in the window per turn completed in it: less sensitive to what
    # else the machine runs than requests/s.
    cpu_ms_per_turn: float | None
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)
    errors_outside_window: int = 0
    drained: bool = True


async def run_level(
    server: str,
    urls: Sequence[str],
    api_key: str,
    extra_headers: dict[str, str],
    clients: int,
    warmup: float,
    duration: float,
    server_pids: Sequence[int],
    fake_pid: int,
    endpoint: Endpoint,
    conversation_turns: int,
) -> LevelResult:
    """Run `clients` users for warm-up + duration; count only turns that end in the window.

    Clients keep going through the window's edges, so the window sees a steady state;
    once it closes they finish the turn in hand and stop.
    """
    results: list[TurnResult] = []
    stopping = asyncio.Event()
    # Clients spread over the server processes round-robin, as a load balancer would.
    connections = [
        ChatConnection(urls[i % len(urls)], api_key, extra_headers, endpoint)
        for i in range(clients)
    ]
    tasks = [
        asyncio.create_task(run_client(i, connections[i], results, stopping, conversation_turns))
        for i in range(clients)
    ]
    drained = False
    try:
        await asyncio.sleep(warmup)
        before = CpuSnapshot.take(server_pids, fake_pid)
        await asyncio.sleep(duration)
        after = CpuSnapshot.take(server_pids, fake_pid)
        stopping.set()
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_SECONDS)
        drained = not pending
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for connection in connections:
            connection.close()
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome  # a bug in the generator: never report figures over it

    window = [r for r in results if before.wall <= r.finished_at <= after.wall]
    ok = [r for r in window if r.error_kind is None]
    failed = [r for r in window if r.error_kind is not None]
    seconds = after.wall - before.wall
    first_chunk = sorted(r.first_chunk_s for r in ok if r.first_chunk_s is not None)
    total = sorted(r.total_s for r in ok)
    samples: dict[str, str] = {}
    for r in failed:
        assert r.error_kind is not None
        samples.setdefault(r.error_kind, r.error_detail)
    rps = len(ok) / seconds
    cpu = after.percent_since(before)
    server_seconds = cpu["server"] / 100 * seconds
    return LevelResult(
        server=server,
        clients=clients,
        measured_seconds=round(seconds, 3),
        completed_turns=len(ok),
        errors=len(failed),
        requests_per_second=round(rps, 1),
        first_chunk_ms={f"p{q}": _ms(percentile(first_chunk, q)) for q in (50, 95, 99)},
        turn_ms={f"p{q}": _ms(percentile(total, q)) for q in (50, 99)},
        cpu_percent=cpu,
        cpu_ms_per_turn=round(1000 * server_seconds / len(ok), 1) if ok else None,
        errors_by_kind=dict(Counter(r.error_kind for r in failed if r.error_kind)),
        error_samples=samples,
        errors_outside_window=sum(1 for r in results if r.error_kind) - len(failed),
        drained=drained,
    )


# --- Processes and set-up -----------------------------------------------------------------


def set_up_database(env: dict[str, str], llm_base_url: str) -> dict[str, Any]:
    """Migrate, then create the `bench` character and an API key, in the server's database."""
    manage(env, "migrate", "--noinput")
    output = manage({**env, "BENCH_LLM_BASE_URL": llm_base_url}, "shell", "-c", SETUP_CODE)
    for line in output.splitlines():
        if line.startswith(SETUP_MARKER):
            return json.loads(line.removeprefix(SETUP_MARKER))
    raise RuntimeError(f"the set-up script printed no result:\n{output}")


# --- Report -------------------------------------------------------------------------------


def _fmt(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}}"


def print_table(levels: list[LevelResult]) -> None:
    print(
        f"{'server':>11} {'clients':>7} {'turns':>6} {'errors':>6} {'req/s':>6} {'CPU ms/turn':>11}"
        f" | {'first chunk ms p50':>18} {'p95':>6} {'p99':>6} | {'turn ms p50':>11} {'p99':>6}"
    )
    for r in levels:
        print(
            f"{r.server:>11} {r.clients:>7} {r.completed_turns:>6} {r.errors:>6}"
            f" {r.requests_per_second:>6.1f} {_fmt(r.cpu_ms_per_turn, 11)}"
            f" | {_fmt(r.first_chunk_ms['p50'], 18)} {_fmt(r.first_chunk_ms['p95'], 6)}"
            f" {_fmt(r.first_chunk_ms['p99'], 6)}"
            f" | {_fmt(r.turn_ms['p50'], 11)} {_fmt(r.turn_ms['p99'], 6)}"
        )
    print()
    print(
        "CPU during each measured window (% of one core; other = everything else on the "
        "machine, PostgreSQL's backends included; machine: % of all cores)"
    )
    print(
        f"{'server':>11} {'clients':>7} {'generator':>9} {'server':>7} {'fake LLM':>8}"
        f" {'other':>6} {'machine':>8}"
    )
    for r in levels:
        cpu = r.cpu_percent
        print(
            f"{r.server:>11} {r.clients:>7} {cpu['client']:>9.1f} {cpu['server']:>7.1f}"
            f" {cpu['fake_llm']:>8.1f} {cpu['other']:>6.1f}"
            f" {cpu['machine_busy_of_all_cores']:>8.1f}"
        )


def ratios(levels: list[LevelResult]) -> list[dict[str, Any]]:
    """Ours against the peer's, per level measured for both: requests/s (goal: GOAL_RATIO
    times), first chunk p50 (lower is better) and CPU per turn (lower is better)."""
    ours = {r.clients: r for r in levels if r.server != PEER_NAME}
    rows = []
    for peer in (r for r in levels if r.server == PEER_NAME):
        mine = ours.get(peer.clients)
        if mine is None or not peer.requests_per_second:
            continue
        first, peer_first = mine.first_chunk_ms["p50"], peer.first_chunk_ms["p50"]
        rows.append(
            {
                "clients": peer.clients,
                "rps": round(mine.requests_per_second / peer.requests_per_second, 2),
                "first_chunk_p50": round(first / peer_first, 2) if first and peer_first else None,
                "cpu_per_turn": round(mine.cpu_ms_per_turn / peer.cpu_ms_per_turn, 2)
                if mine.cpu_ms_per_turn and peer.cpu_ms_per_turn
                else None,
            }
        )
    return rows


def print_ratios(rows: list[dict[str, Any]]) -> None:
    print(f"avatarsite / {PEER_NAME}, same run (goal: req/s >= {GOAL_RATIO}x, the others <= 1):")
    print(f"{'clients':>7} {'req/s':>7} {'first chunk p50':>15} {'CPU per turn':>12}")
    for row in rows:
        goal = "ok" if row["rps"] >= GOAL_RATIO else "NO"
        print(
            f"{row['clients']:>7} {row['rps']:>6.2f}x {_fmt(row['first_chunk_p50'], 14, 2)}x"
            f" {_fmt(row['cpu_per_turn'], 11, 2)}x  {goal}"
        )


def print_notes(levels: list[LevelResult], servers: int) -> None:
    notes: list[str] = []
    for r in levels:
        if r.cpu_percent["client"] >= CLIENT_SATURATION_PERCENT:
            notes.append(
                f"{r.clients} clients: the load generator used {r.cpu_percent['client']:.0f}% "
                "of a core; one Python process may be the limit at this level."
            )
        if r.cpu_percent["server"] >= SERVER_BOUND_PERCENT * servers:
            notes.append(
                f"{r.clients} clients: {r.server} used {r.cpu_percent['server']:.0f}% of a core "
                f"while the machine was {r.cpu_percent['machine_busy_of_all_cores']:.0f}% busy: "
                f"the {servers} server process(es) were the limit."
            )
        if r.errors or r.errors_outside_window:
            notes.append(
                f"{r.clients} clients: {r.errors} errors in the window "
                f"({r.errors_outside_window} more in warm-up/drain): {r.errors_by_kind}; "
                f"samples: {r.error_samples} (server logs: {server_log(0)}, {PEER_LOG})"
            )
        if not r.drained:
            notes.append(f"{r.clients} clients: turns still running after the window; cancelled.")
    for note in notes:
        print(f"NOTE {note}")


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels must be positive integers, e.g. 1,10,50")
    return levels


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chat_sse",
        description="Requests/s and time to first chunk of POST /chat (SSE) on daphne "
        "process against a zero-latency fake LLM, and against AIAvatarKit's when the peer "
        "harness is set up.",
    )
    parser.add_argument("--levels", type=parse_levels, default=[1, 10, 50], help="1,10,50")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per level (2)")
    parser.add_argument("--duration", type=positive, default=10.0, help="seconds per level (10)")
    parser.add_argument(
        "--endpoint",
        choices=sorted(ENDPOINTS),
        default="chat",
        help="chat: AIAvatarKit's /chat; dify: /chat-messages; openai: /v1/chat/completions",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="server processes, clients spread over them as behind a load balancer (1)",
    )
    parser.add_argument(
        "--server",
        choices=sorted(ASGI_SERVERS),
        default=DEFAULT_ASGI_SERVER,
        help=f"the ASGI server ({DEFAULT_ASGI_SERVER}, as make run)",
    )
    parser.add_argument(
        "--peer-dir",
        type=Path,
        default=os.environ.get(PEER_VARIABLE) or None,
        help=f"the peer harness, to measure {PEER_NAME} in the same run (${PEER_VARIABLE})",
    )
    parser.add_argument(
        "--conversation-turns",
        type=int,
        default=30,
        help="turns per conversation before a client starts a new one (30); 1, 15 and 30 "
        "tell what a turn costs by its depth (docs/benchmarks.md)",
    )
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.peer_dir is not None and not (args.peer_dir / ".venv-peer" / "bin" / "python").exists():
        parser.error(f"{args.peer_dir} has no .venv-peer: run the peer harness's setup.sh first")
    if args.smoke:  # one client for a second: every part runs, nothing is measured
        args.levels, args.warmup, args.duration = [1], 0.0, 1.0
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.servers < 1:
        parser.error("--servers must be >= 1")
    if args.conversation_turns < 1:
        parser.error("--conversation-turns must be >= 1")
    return args


# --- Main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    # SIGTERM takes the same path as Ctrl-C, through every `finally` below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    db_url, fresh_sqlite = database_url("bench.sqlite3")
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",  # DEBUG would keep every SQL query in memory
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or DEFAULT_SECRET_KEY,
        "DATABASE_URL": db_url,
        LLM_KEY_VARIABLE: FAKE_API_KEY,
    }
    machine = machine_description()
    fake, llm_base_url = start_fake_llm(env, FAKE_LLM_LOG)
    try:
        setup = set_up_database(env, llm_base_url)
        servers: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []
        peer: subprocess.Popen[bytes] | None = None
        try:
            for number in range(args.servers):
                server, url = start_asgi_server(args.server, env, server_log(number))
                servers.append(server)
                urls.append(url)
            if args.peer_dir is not None:
                peer, peer_url = start_peer(
                    args.peer_dir, llm_base_url, FAKE_API_KEY, setup["api_key"], PEER_LOG
                )
            extra = {} if setup["default_is_bench"] else {"X-Character": CHARACTER_SLUG}
            lib = library_versions()
            endpoint = ENDPOINTS[args.endpoint]
            print(f"avatarsite POST {endpoint.path} (SSE, {endpoint.name}) benchmark")
            print(
                f"machine : {machine['cpu_model']}, {machine['cores']} cores "
                f"({machine['cores_usable']} usable), Linux {machine['kernel']}, "
                f"Python {machine['python']}"
            )
            print(
                f"server  : {args.server} {lib[args.server]} (uvloop {lib['uvloop']}, httptools "
                f"{lib['httptools']} for uvicorn), {args.servers} process(es), Django "
                f"{lib['django']}, at {', '.join(urls)}; log {shown(server_log(0))}"
            )
            if peer is not None:
                print(
                    f"peer    : {PEER_NAME} from {args.peer_dir} at {peer_url}, one process, "
                    "alternating with ours at each level"
                )
            print(f"database: {setup['database']}{' (fresh)' if fresh_sqlite else ''}")
            print(
                f"LLM     : FakeOpenAI in its own process at {llm_base_url}, zero latency, "
                f"openai {lib['openai']} SDK in the server"
            )
            print(
                f"load    : {args.conversation_turns}-turn conversations per client, "
                f"{args.warmup:g} s warm-up + {args.duration:g} s measured per level; "
                "one Python process (asyncio, raw HTTP/1.1 keep-alive)"
                + ("" if not extra else "; X-Character: bench (another default exists)")
            )
            print()
            levels: list[LevelResult] = []
            ours = ("avatarsite", urls, extra, [server.pid for server in servers])
            runs = [ours]
            if peer is not None:
                runs.append((PEER_NAME, [peer_url], {}, [peer.pid]))
            for index, clients in enumerate(args.levels):
                # The order flips at each level, so a drift in the machine's load hits both.
                for name, level_urls, headers, pids in runs if index % 2 == 0 else runs[::-1]:
                    result = asyncio.run(
                        run_level(
                            name,
                            level_urls,
                            setup["api_key"],
                            headers,
                            clients,
                            args.warmup,
                            args.duration,
                            pids,
                            fake.pid,
                            ENDPOINTS[args.endpoint],
                            args.conversation_turns,
                        )
                    )
                    levels.append(result)
                    print(
                        f"  {name} {clients} clients: {result.requests_per_second:.1f} req/s, "
                        f"{_fmt(result.cpu_ms_per_turn, 0)} ms CPU per turn, "
                        f"{result.errors} errors, load average {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
            print()
        finally:
            for server in servers:
                stop_process(server)
            if peer is not None:
                stop_process(peer)
    finally:
        stop_fake(fake)

    wall = time.perf_counter() - began
    print_table(levels)
    print()
    compared = ratios(levels)
    if compared:
        print_ratios(compared)
    elif args.peer_dir is None:
        print(f"No peer in this run: set {PEER_VARIABLE} (docs/benchmarks.md) for ratios.")
    else:
        print(f"No ratio: {PEER_NAME} completed no turn (its log: {PEER_LOG}).")
    print_notes(levels, args.servers)
    results = results_path(args.endpoint)
    print(f"total wall time: {wall:.1f} s; results in {shown(results)}")
    results.write_text(
        json.dumps(
            {
                "benchmark": "chat_sse",
                "endpoint": args.endpoint,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "server": {"kind": args.server, "processes": args.servers, "versions": lib},
                "peer": str(args.peer_dir) if args.peer_dir else None,
                "load_average_after": os.getloadavg(),
                "database": setup["database"],
                "parameters": {
                    "levels": args.levels,
                    "warmup_seconds": args.warmup,
                    "duration_seconds": args.duration,
                    "turns_per_conversation": args.conversation_turns,
                    "llm": "FakeOpenAI, zero latency, own process",
                },
                "goal_ratio_rps": GOAL_RATIO,
                "levels": [asdict(r) for r in levels],
                "ratios_to_peer": compared,
                "wall_seconds": round(wall, 1),
            },
            indent=2,
        )
        + "\n"
    )
    # A smoke run measures nothing, but an error even in its warm-up or drain is a failure.
    failed = any(r.errors or (args.smoke and r.errors_outside_window) for r in levels)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; all subprocesses stopped", file=sys.stderr)
        sys.exit(130)
