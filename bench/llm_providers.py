"""Benchmark what each LLM provider itself costs per call: converting the history, the SDK's
request and the parsing of its stream, against a fake LLM answering at zero latency.

Each provider streams the same request (a system prompt, a 30-message history, one tool
offered) from the tests' fake server for its protocol, run by `bench.fake_llm` in a process of
its own so its threads never compete with this one for the GIL. Calls run one after the other
on one event loop and one SDK client, after a warm-up. Printed per provider: calls/s, time to
the first text delta and to the end of the stream (p50 / p95), and this process's CPU per call,
which is the provider's cost a turn pays on top of the LLM's own latency. Loopback only; the
fakes are stopped in a `finally`.

    .venv/bin/python -m bench.llm_providers [--calls 500 --warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-benchmarks-only")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # not a line per HTTP request
django.setup()

from bench.harness import (  # noqa: E402
    add_smoke_flag,
    machine_description,
    start_fake_llm,
    stop_fake,
)
from conversations.llm import ChatMessage, LLMProvider, LLMRequest  # noqa: E402
from conversations.llm.anthropic import AnthropicProvider  # noqa: E402
from conversations.llm.openai_compat import OpenAICompatibleProvider  # noqa: E402
from conversations.tools import Tool  # noqa: E402
from tests.fakes import anthropic_server, openai_server  # noqa: E402

HISTORY_PAIRS = 15

LOOKUP = Tool(
    name="lookup",
    description="Look a city up.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    func=lambda context, arguments: {},
)


def request() -> LLMRequest:
    history = [
        message
        for n in range(HISTORY_PAIRS)
        for message in (
            ChatMessage("user", f"Question number {n}: what do you think about the weather?"),
            ChatMessage("assistant", f"Answer number {n}: it is a fine day, thank you for asking."),
        )
    ]
    return LLMRequest(
        messages=[
            ChatMessage("system", "You are Mia, a cheerful guide."),
            *history,
            ChatMessage("user", "And tomorrow?"),
        ],
        model="bench-model",
        tools=[LOOKUP],
    )


@dataclass
class Figures:
    provider: str
    calls: int
    seconds: float
    first_delta_ms: list[float]
    total_ms: list[float]
    cpu_seconds: float

    def row(self) -> str:
        def p(values: list[float], q: int) -> float:
            return statistics.quantiles(values, n=100)[q - 1]

        return (
            f"| {self.provider} | {self.calls / self.seconds:.0f} | "
            f"{p(self.first_delta_ms, 50):.2f} / {p(self.first_delta_ms, 95):.2f} | "
            f"{p(self.total_ms, 50):.2f} / {p(self.total_ms, 95):.2f} | "
            f"{self.cpu_seconds / self.calls * 1000:.2f} |"
        )


async def measure(name: str, provider: LLMProvider, calls: int, warmup: int) -> Figures:
    llm_request = request()
    first: list[float] = []
    total: list[float] = []
    for n in range(warmup + calls):
        if n == warmup:
            started, cpu_started = time.perf_counter(), time.process_time()
        begin = time.perf_counter()
        first_at: float | None = None
        async for item in provider.stream(llm_request):
            if first_at is None and isinstance(item, str):
                first_at = time.perf_counter()
        end = time.perf_counter()
        if first_at is None:
            raise RuntimeError(f"{name}: the fake sent no text")
        if n >= warmup:
            first.append((first_at - begin) * 1000)
            total.append((end - begin) * 1000)
    return Figures(
        name,
        calls,
        time.perf_counter() - started,
        first,
        total,
        time.process_time() - cpu_started,
    )


def run_against_fake(
    protocol: str, build: Callable[[str], LLMProvider], calls: int, warmup: int
) -> Figures:
    with tempfile.TemporaryDirectory() as logs:
        fake, base_url = start_fake_llm(
            dict(os.environ), Path(logs) / "fake.log", "--protocol", protocol
        )
        try:
            return asyncio.run(measure(protocol, build(base_url), calls, warmup))
        finally:
            stop_fake(fake)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.calls, args.warmup = 2, 0
    if args.calls < 2 or args.warmup < 0:
        parser.error("--calls must be at least 2 and --warmup at least 0")

    figures = [
        run_against_fake(
            "openai",
            lambda url: OpenAICompatibleProvider(api_key=openai_server.FAKE_API_KEY, base_url=url),
            args.calls,
            args.warmup,
        ),
        run_against_fake(
            "anthropic",
            lambda url: AnthropicProvider(api_key=anthropic_server.FAKE_API_KEY, base_url=url),
            args.calls,
            args.warmup,
        ),
    ]
    machine = machine_description()
    print(
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}, {datetime.now(UTC):%Y-%m-%d}; "
        f"{args.calls} sequential calls after {args.warmup} warm-up, "
        f"{2 * HISTORY_PAIRS + 2} messages, 1 tool"
    )
    print(
        "| provider | calls/s | first delta p50 / p95 ms | whole stream p50 / p95 ms "
        "| CPU ms/call |"
    )
    print("|---|---|---|---|---|")
    for figure in figures:
        print(figure.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
