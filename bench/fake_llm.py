"""Run the tests' FakeOpenAI (or FakeAnthropic) server in a process of its own, for benchmarks.

Why a separate process: in the load generator's process the fake's handler threads would
compete with the generator for the GIL, and the generator would measure its own contention
instead of the server. Here the fake has an interpreter to itself.

Protocol with the parent: the first stdout line is the base URL (`http://127.0.0.1:PORT/v1`,
or `http://127.0.0.1:PORT` with `--protocol anthropic`);
the fake then serves until SIGTERM or SIGINT, or, with `--watch-stdin`, until its stdin
closes, so even a parent killed with SIGKILL leaves no orphan behind. It answers every
request with the fake's deterministic default reply, at zero latency, or with the content of
`--reply-file` (in one delta) when given.

    python -m bench.fake_llm --watch-stdin [--protocol anthropic] [--reply-file answer.json]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

# The fake records every request body for tests to inspect; a benchmark never reads them,
# and 30-turn conversations make them large, so they are dropped this often.
FORGET_REQUESTS_EVERY_SECONDS = 1.0
FOREVER = 2**62


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--watch-stdin",
        action="store_true",
        help="also stop when stdin reaches end of file (for a parent holding a pipe)",
    )
    parser.add_argument("--protocol", choices=("openai", "anthropic"), default="openai")
    parser.add_argument(
        "--reply-file",
        type=Path,
        help="answer every request with this file's content, sent as one delta",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.watch_stdin:

        def watch_stdin() -> None:
            sys.stdin.buffer.read()  # returns at end of file: the parent has gone
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    with FakeAnthropic() if args.protocol == "anthropic" else FakeOpenAI() as fake:
        if args.reply_file:
            reply = args.reply_file.read_text()
            fake.script(ScriptedReply(chunks=[reply], repeat=FOREVER))
        print(fake.base_url, flush=True)
        while not stop.wait(FORGET_REQUESTS_EVERY_SECONDS):
            fake.forget_requests()
    return 0


if __name__ == "__main__":
    sys.exit(main())
