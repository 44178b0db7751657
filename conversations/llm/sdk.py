"""What the SDK-backed providers share: one client per event loop, and how failures read."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

Client = TypeVar("Client")

# One SDK client (and so one connection pool) per event loop and endpoint: building a client
# per turn would cost a TLS handshake per turn; sharing one across loops breaks its pool.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


def loop_client(key: Hashable, build: Callable[[], Client]) -> Client:
    """The client for `key` on the running event loop, built on first use."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(key)
    if client is None:
        client = per_loop[key] = build()
    return client


def failure_message(
    *, status_code: int | None = None, timed_out: bool = False, streaming: bool = False
) -> str:
    """The client-safe wording of a provider failure, the same for every provider: it names
    what went wrong without echoing the upstream's error text (which may quote the prompt)."""
    if status_code is not None:
        return f"LLM provider returned HTTP {status_code}"
    if timed_out:
        return "LLM provider timed out"
    if streaming:
        return "LLM provider stream broke off"
    return "LLM provider is unreachable"
