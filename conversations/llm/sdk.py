"""What the SDK-backed providers share: one client per event loop, and how failures read.

Speech providers use the same wording, so every provider failure reads alike to a client."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx

from .base import LLMError

Client = TypeVar("Client")

LLM = "LLM provider"  # how failures name an LLM provider

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
    what: str,
    *,
    status_code: int | None = None,
    timed_out: bool = False,
    streaming: bool = False,
) -> str:
    """The client-safe wording of a provider failure, the same for every provider: it names
    what went wrong without echoing the upstream's error text (which may quote the prompt)."""
    if status_code is not None:
        return f"{what} returned HTTP {status_code}"
    if timed_out:
        return f"{what} timed out"
    if streaming:
        return f"{what} stream broke off"
    return f"{what} is unreachable"


def http_failure_message(what: str, exc: httpx.HTTPError, *, streaming: bool = False) -> str:
    """`failure_message` for an error raised by httpx."""
    return failure_message(
        what,
        status_code=exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None,
        timed_out=isinstance(exc, httpx.TimeoutException),
        streaming=streaming,
    )


def broke_off() -> LLMError:
    """The failure of a stream that ended without its terminator (`[DONE]`'s finish reason,
    `message_stop`, `message_end`), sent nothing, or sent a line that is not JSON: whatever
    arrived is not a whole answer, so it is never saved as one."""
    return LLMError(failure_message(LLM, streaming=True))
