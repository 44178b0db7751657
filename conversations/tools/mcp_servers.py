"""MCP servers' tools as avatarsite tools, through the official `mcp` SDK
(docs/turn.md#mcp-servers).

Each process keeps one client session per configured server, started on first use and
restarted when it dies; sessions are not opened per call. A session lives in its own task
(the SDK's transports are anyio task groups, which must be exited by the task that entered
them), and turns talk to it through the client object. Tool listings are cached for
`MCP_TOOLS_CACHE_SECONDS` and dropped early when the server says its tools changed.

A tool is offered as `<server>__<tool>` with the MCP tool's input schema; calls time out after
`MCP_TIMEOUT_SECONDS`; tool errors and lost servers become `{"error": ...}` results.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types
from django.conf import settings
from django.db.models import Q
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from avatarsite.tenants.config_cache import cached
from avatarsite.tenants.provider_secrets import resolve
from characters.models import Character
from conversations.models import McpServer

from .base import Tool, ToolContext, ToolLister

logger = logging.getLogger(__name__)

# OpenAI's limit on function names (the strictest of our providers).
MAX_TOOL_NAME = 64
UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """The registry name of an MCP tool: unique per server, valid for every provider."""
    return UNSAFE_NAME_CHARACTERS.sub("_", f"{server}__{tool}")[:MAX_TOOL_NAME]


class McpUnavailable(Exception):
    """The MCP server could not be reached or went away; the message names it."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What a session was opened with; a session whose row (or a secret it names) changed is
    replaced. Environment and header values are resolved here, from the tenant's provider
    secrets or allowed platform variables (avatarsite/tenants/provider_secrets.py)."""

    id: int
    name: str
    transport: str
    command: str
    args: tuple[str, ...]
    # (variable, value) passed to a stdio command; (header, value). Never in a repr or a log.
    environment: tuple[tuple[str, str], ...] = field(repr=False)
    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    dynamic_tools: bool = False  # its tools are dynamic (conversations/tools/offer.py)
    instruction: str = ""  # every one of its tools' instruction

    @classmethod
    def of(cls, server: McpServer, character: Character) -> ServerConfig:
        def value(name: str) -> str:
            return resolve(character, name)

        return cls(
            id=server.pk,
            name=server.name,
            transport=server.transport,
            command=server.command,
            args=tuple(server.args),
            environment=tuple((n, value(n)) for n in server.environment if value(n)),
            url=server.url,
            headers=tuple(sorted((h, value(n)) for h, n in server.headers.items())),
            dynamic_tools=server.dynamic_tools,
            instruction=server.instruction,
        )


def _configs_for(character: Character) -> list[ServerConfig]:
    """The enabled servers that apply to `character`, cached with the tenant's configuration."""

    def read() -> list[ServerConfig]:
        servers = McpServer.objects.filter(
            Q(character=character) | Q(character__isnull=True),
            tenant_id=character.tenant_id,
            enabled=True,
        )
        return [ServerConfig.of(server, character) for server in servers]

    return cached(character.tenant_id, ("mcp_servers", character.pk), read) or []


def _mcp_result(result: mcp_types.CallToolResult) -> dict[str, Any]:
    """An MCP tool result as the dict the LLM gets back."""
    texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
    if result.is_error:
        return {"error": "\n".join(texts) or "The MCP tool reported an error."}
    if isinstance(result.structured_content, dict):
        return result.structured_content
    if result.structured_content is not None:
        return {"result": result.structured_content}
    data: dict[str, Any] = {"text": "\n".join(texts)}
    others = [
        block.model_dump(mode="json", by_alias=True, exclude_none=True)
        for block in result.content
        if not isinstance(block, mcp_types.TextContent)
    ]
    if others:
        data["content"] = others
    return data


class _Session:
    """One server's client session, owned by a task of its own."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._tools: list[Tool] | None = None
        self._listed_at = 0.0

    def _transport(self) -> Any:
        config = self.config
        if config.transport == McpServer.Transport.STDIO:
            passed = dict(config.environment)
            return StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env={**get_default_environment(), **passed},
            )
        headers = dict(config.headers)
        http = create_mcp_http_client(
            headers=headers, timeout=httpx2.Timeout(settings.MCP_TIMEOUT_SECONDS)
        )
        return _OwnedHttpTransport(config.url, http)

    async def _run(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with Client(
                self._transport(),
                read_timeout_seconds=settings.MCP_TIMEOUT_SECONDS,
                message_handler=self._on_message,
                client_info=mcp_types.Implementation(name="avatarsite", version="1"),
            ) as client:
                self._client = client
                ready.set_result(client)
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._watch_tool_changes, client)
                    await self._stop.wait()
                    tasks.cancel_scope.cancel()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.warning("MCP server %s disconnected: %s", self.config.name, exc)
        finally:
            self._client = None
            if not ready.done():
                ready.cancel()

    async def _on_message(self, message: IncomingMessage) -> None:
        # Tool-list changes arrive here as notifications (on 2026-era connections only while
        # the subscription below is open).
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools = None

    async def _watch_tool_changes(self, client: Client) -> None:
        """Ask a 2026-era server for tool-list change events (older servers send them
        unasked); the subscription lasts as long as the session."""
        try:
            async with client.listen(tools_list_changed=True) as changes:
                async for _ in changes:
                    self._tools = None
        except (ListenNotSupportedError, MCPError, RuntimeError, TimeoutError) as exc:
            logger.debug("MCP server %s: no tool change events (%s)", self.config.name, exc)

    async def client(self) -> Client:
        """The connected client; the session is started first when it is not running."""
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._ready), name=self.config.name)
        try:
            async with asyncio.timeout(settings.MCP_TIMEOUT_SECONDS):
                # Shielded: a turn interrupted while waiting leaves the start to others.
                return await asyncio.shield(self._ready)
        except Exception as exc:
            await self.close()
            raise McpUnavailable(
                f"MCP server {self.config.name!r} could not be started: {_describe(exc)}"
            ) from exc

    async def close(self) -> None:
        """End the session's task, which closes the transport (and stops a stdio command)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(settings.MCP_TIMEOUT_SECONDS):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def tools(self) -> list[Tool]:
        """The server's tools, listed again once the cached listing is stale or changed."""
        stale = time.monotonic() - self._listed_at > settings.MCP_TOOLS_CACHE_SECONDS
        if self._tools is None or stale:
            client = await self.client()
            listed: list[Tool] = []
            cursor: str | None = None
            try:
                while True:
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(self._wrap(t) for t in page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            except Exception as exc:
                await self._forget_if_lost(exc)
                raise McpUnavailable(
                    f"MCP server {self.config.name!r} did not list its tools: {_describe(exc)}"
                ) from exc
            self._tools, self._listed_at = listed, time.monotonic()
        return self._tools

    def _wrap(self, listed: mcp_types.Tool) -> Tool:
        remote_name = listed.name

        async def call(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
            return await self.call(remote_name, arguments)

        return Tool(
            name=tool_name(self.config.name, remote_name),
            description=listed.description or listed.title or remote_name,
            parameters=listed.input_schema or {"type": "object", "properties": {}},
            func=call,
            is_dynamic=self.config.dynamic_tools,
            instruction=self.config.instruction,
        )

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        client = await self.client()
        try:
            result = await client.call_tool(
                name, arguments, read_timeout_seconds=settings.MCP_TIMEOUT_SECONDS
            )
        except Exception as exc:
            await self._forget_if_lost(exc)
            return {"error": f"MCP server {self.config.name!r} failed: {_describe(exc)}"}
        return _mcp_result(result)

    async def _forget_if_lost(self, exc: Exception) -> None:
        """A session whose connection is gone is closed, so the next use starts a new one."""
        lost = not isinstance(exc, MCPError) or exc.code == mcp_types.CONNECTION_CLOSED
        if lost or self._task is None or self._task.done():
            await self.close()


class _OwnedHttpTransport:
    """Streamable HTTP through our own httpx client (for the headers), closed with it."""

    def __init__(self, url: str, http: httpx2.AsyncClient) -> None:
        self._url = url
        self._http = http
        self._streams: Any = None

    async def __aenter__(self) -> Any:
        self._streams = streamable_http_client(self._url, http_client=self._http)
        return await self._streams.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._streams.__aexit__(*exc_info)
        finally:
            await self._http.aclose()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {settings.MCP_TIMEOUT_SECONDS} s"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


class McpSessions:
    """This process's sessions, one per configured server, on the process's event loop."""

    def __init__(self) -> None:
        self._sessions: dict[int, _Session] = {}
        self._closing: set[asyncio.Task[None]] = set()  # replaced sessions, until closed
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self, config: ServerConfig) -> _Session:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Sessions belong to the loop that started them (a new loop: a new process
            # lifetime, e.g. a management command); those of a closed loop are gone.
            self._sessions, self._loop = {}, loop
        session = self._sessions.get(config.id)
        if session is None or session.config != config:
            if session is not None:  # the operator edited the server: reconnect
                closing = asyncio.get_running_loop().create_task(session.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            session = self._sessions[config.id] = _Session(config)
        return session

    def load(self, character: Character) -> ToolLister:
        """A tool source (plain ORM): lists the tools of every enabled server that applies to
        `character`."""
        return functools.partial(self._tools_of, _configs_for(character))

    async def _tools_of(self, configs: list[ServerConfig]) -> list[Tool]:
        """The servers' tools; a server that cannot be reached is left out (and logged), so
        the character still talks."""
        listed = await asyncio.gather(
            *(self._session(c).tools() for c in configs), return_exceptions=True
        )
        tools: list[Tool] = []
        for config, result in zip(configs, listed, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                logger.warning("MCP server %s left out: %s", config.name, result)
                continue
            tools.extend(result)
        return tools


sessions = McpSessions()
