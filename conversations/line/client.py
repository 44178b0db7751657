"""The Messaging API calls a channel makes, through line-bot-sdk's async client.

One `LineApi` per event or operator request: it opens the SDK's aiohttp sessions for messages
(api.line.me) and content (api-data.line.me), applies our timeout and retry policy, and turns
the SDK's exceptions into two of ours that say what an operator can act on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
from django.conf import settings
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    Message,
    PushMessageRequest,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
)
from linebot.v3.messaging.exceptions import ApiException

from .models import LineChannel

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_SECONDS = 0.5


class LineApiError(Exception):
    """The Messaging API refused a call or could not be reached (after retries)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"LINE API answered {status}: {message}" if status else message)
        self.status = status
        self.message = message

    @classmethod
    def from_exception(cls, exc: ApiException) -> LineApiError:
        return cls(exc.status or 0, _error_message(exc))


class ReplyTokenInvalid(LineApiError):
    """The reply token expired (about a minute) or was already used: push instead."""


class LineNotConfigured(Exception):
    """The channel's access token variable is unset; names the variable, never a value."""


def _error_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return exc.reason or "no error message"


class LineApi:
    """A channel's Messaging API client; use as `async with LineApi(channel) as api:`."""

    def __init__(self, channel: LineChannel) -> None:
        self._token = channel.access_token
        if not self._token:
            raise LineNotConfigured(
                f"The environment variable {channel.access_token_env} (access token of LINE "
                f"channel {channel.slug!r}) is not set."
            )
        self._timeout = settings.LINE_API_TIMEOUT_SECONDS
        self._clients: list[AsyncApiClient] = []

    def _client(self, host: str) -> AsyncApiClient:
        # A blank host keeps the SDK's own per-operation host (api.line.me or api-data.line.me).
        client = AsyncApiClient(Configuration(access_token=self._token, host=host or None))
        self._clients.append(client)
        return client

    async def __aenter__(self) -> Self:
        # Created here, inside the running loop, because the SDK opens its aiohttp session
        # in the client's constructor.
        self.messaging = AsyncMessagingApi(self._client(settings.LINE_API_BASE_URL))
        self.blob = AsyncMessagingApiBlob(self._client(settings.LINE_API_DATA_BASE_URL))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for client in self._clients:
            await client.close()

    async def show_loading(self, chat_id: str, seconds: int) -> None:
        """Best effort: the animation is cosmetic, so a failure is logged and the turn goes on."""
        request = ShowLoadingAnimationRequest(chatId=chat_id, loadingSeconds=seconds)
        try:
            await self.messaging.show_loading_animation(request, _request_timeout=self._timeout)
        except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("LINE loading animation failed: %s", _describe(exc))

    async def reply(self, reply_token: str, messages: list[Message]) -> None:
        """One attempt only: a reply token works once, so a retry after an unclear failure
        could not tell a lost reply from a delivered one."""
        request = ReplyMessageRequest(replyToken=reply_token, messages=messages)
        try:
            await self.messaging.reply_message(request, _request_timeout=self._timeout)
        except ApiException as exc:
            message = _error_message(exc)
            if exc.status == 400 and "reply token" in message.lower():
                raise ReplyTokenInvalid(400, message) from exc
            raise LineApiError(exc.status or 0, message) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LineApiError(0, f"LINE API unreachable: {_describe(exc)}") from exc

    async def push(self, to: str, messages: list[Message], retry_key: uuid.UUID) -> None:
        """Retried safely: LINE accepts a retry key once and answers 409 to its repeats."""
        request = PushMessageRequest(to=to, messages=messages)
        try:
            await self._with_retries(
                lambda: self.messaging.push_message(
                    request, x_line_retry_key=str(retry_key), _request_timeout=self._timeout
                )
            )
        except LineApiError as exc:
            if exc.status != 409:
                raise
            logger.info("LINE push %s was already accepted; not sent again", retry_key)

    async def content(self, message_id: str) -> tuple[bytes, str]:
        """The bytes a user sent (image, audio...) and their content type."""
        response = await self._with_retries(
            lambda: self.blob.get_message_content_with_http_info(
                message_id, _request_timeout=self._timeout
            )
        )
        headers = response.headers or {}
        return bytes(response.data), headers.get("Content-Type", "application/octet-stream")

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        retries_left = settings.LINE_API_MAX_RETRIES
        delay = BACKOFF_SECONDS
        while True:
            try:
                return await call()
            except ApiException as exc:
                if not retries_left or exc.status not in RETRIABLE_STATUSES:
                    raise LineApiError.from_exception(exc) from exc
                reason = _describe(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not retries_left:
                    raise LineApiError(0, f"LINE API unreachable: {_describe(exc)}") from exc
                reason = _describe(exc)
            logger.warning("LINE API call failed (%s); retrying in %.1f s", reason, delay)
            await asyncio.sleep(delay)
            retries_left -= 1
            delay *= 2


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {_error_message(exc)}"
    return type(exc).__name__
