"""The fuzz campaign's size, its row check, and the report hooks
(tests/fuzz/report.py; docs/testing.md#fuzzing).

`FUZZ_EXAMPLES` sets how many inputs each endpoint gets; unset, the small slice `make test`
runs. `make fuzz` sets it to 10,000.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator
from typing import Any, cast

import httpx
import pytest
from django.db import connection, models
from pytest_django.fixtures import Settings

from avatarsite.asgi import application
from tests.conversations.line.conftest import (  # noqa: F401  (fixtures for the LINE fuzzer)
    fake_line,
    fake_line_server,
    line_channel,
    line_stack,
)
from tests.fuzz.report import REPORT, lines, report_path, save


def examples(default: int) -> int:
    """Inputs per endpoint: FUZZ_EXAMPLES when set (the campaign), else `default`."""
    return int(os.environ.get("FUZZ_EXAMPLES") or default)


def row_counts(tables: Iterable[type[models.Model]]) -> tuple[int, ...]:
    """The number of rows of each model, in one statement (one round trip per input, where a
    count() per model took one each)."""
    counts = ", ".join(
        f"(SELECT count(*) FROM {connection.ops.quote_name(model._meta.db_table)})"
        for model in tables
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
    return tuple(row)


LEFTOVER_SECONDS = 20


class InProcessClient:
    """Requests to the ASGI app in this process (httpx's ASGI transport: no socket, no
    server process), all on one event loop that lives as long as the test. One loop, unlike
    the `app` fixture's loop per request, so the configured channel layer (Redis in CI) and
    the loop's session coordinator serve every request as in a server process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # An exception escaping the app is a 500 here, as a server would answer it.
        # (Channels types its scopes more narrowly than httpx's generic ASGI signature.)
        app = cast(Any, application)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def post(
        self, path: str, content: bytes, headers: dict[str, str], timeout: float
    ) -> httpx.Response:
        """The whole answer (a stream to its end); TimeoutError after `timeout` seconds."""
        request = self.client.post(path, content=content, headers=headers)
        return self.loop.run_until_complete(asyncio.wait_for(request, timeout))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        # What the requests left running (the coordinator's channel-layer listener) ends
        # with the loop, as asyncio.run ends it; a task that outlives its cancellation would
        # hold a server's shutdown too, so it fails the test, named with where it waits.
        stuck = self.loop.run_until_complete(_cancel_leftovers())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        assert not stuck, (
            f"tasks still running {LEFTOVER_SECONDS} s after their cancellation: {stuck}"
        )


async def _cancel_leftovers() -> list[str]:
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    if not leftovers:
        return []
    _, pending = await asyncio.wait(leftovers, timeout=LEFTOVER_SECONDS)
    return [f"{task!r} at {task.get_stack()}" for task in pending]


@pytest.fixture
def inprocess_client(server_settings: Settings) -> Iterator[InProcessClient]:
    client = InProcessClient()
    try:
        yield client
    finally:
        client.close()


def pytest_runtest_logfinish() -> None:
    save()  # after every test, so a campaign stopped part-way still reports what it sent


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.section("fuzz report")
    for line in lines(REPORT):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {report_path()}")
