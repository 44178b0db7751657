from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """The agent's database work runs through sync_to_async on asgiref's one shared thread;
    close that thread's connections after each test, or PostgreSQL's test database could not
    be dropped at the end of the run."""
    yield
    await sync_to_async(connections.close_all)()
