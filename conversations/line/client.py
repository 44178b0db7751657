"""The Messaging API calls a channel makes, through line-bot-sdk.

The SDK's synchronous client is used, kept per process and access token: building a client
costs tens of milliseconds of CPU (it loads the CA store), while its urllib3 pool is
thread-safe and keeps connections to LINE alive between events. `LineApi` applies our
timeout and retry policy and turns the SDK's exceptions into two of ours that say what an
operator can act on.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import urllib3
from django.conf import settings
from linebot.v3.messaging import (
    ApiClient,
    Configuration,
    Message,
    MessagingApi,
    MessagingApiBlob,
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
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


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


@functools.lru_cache(maxsize=64)
def _clients(token: str, host: str, data_host: str) -> tuple[MessagingApi, MessagingApiBlob]:
    # A blank host keeps the SDK's own per-operation host (api.line.me or api-data.line.me).
    def client(base: str) -> ApiClient:
        return ApiClient(Configuration(access_token=token, host=base or None))

    return MessagingApi(client(host)), MessagingApiBlob(client(data_host))


class LineApi:
    """A channel's Messaging API: messages on api.line.me, content on api-data.line.me."""

    def __init__(self, channel: LineChannel) -> None:
        token = channel.access_token
        if not token:
            raise LineNotConfigured(
                f"No provider secret or allowed platform variable {channel.access_token_env} "
                f"(access token of LINE channel {channel.slug!r}) is set."
            )
        self.messaging, self.blob = _clients(
            token, settings.LINE_API_BASE_URL, settings.LINE_API_DATA_BASE_URL
        )
        self._timeout = settings.LINE_API_TIMEOUT_SECONDS

    def show_loading(self, chat_id: str, seconds: int) -> None:
        """Best effort: the animation is cosmetic, so a failure is logged and the turn goes on."""
        request = ShowLoadingAnimationRequest(chatId=chat_id, loadingSeconds=seconds)
        try:
            self.messaging.show_loading_animation(request, _request_timeout=self._timeout)
        except (ApiException, *NETWORK_ERRORS) as exc:
            logger.warning("LINE loading animation failed: %s", _describe(exc))

    def reply(self, reply_token: str, messages: list[Message]) -> None:
        """One attempt only: a reply token works once, so a retry after an unclear failure
        could not tell a lost reply from a delivered one."""
        request = ReplyMessageRequest(replyToken=reply_token, messages=messages)
        try:
            self.messaging.reply_message(request, _request_timeout=self._timeout)
        except ApiException as exc:
            message = _error_message(exc)
            if exc.status == 400 and "reply token" in message.lower():
                raise ReplyTokenInvalid(400, message) from exc
            raise LineApiError(exc.status or 0, message) from exc
        except NETWORK_ERRORS as exc:
            raise LineApiError(0, f"LINE API unreachable: {_describe(exc)}") from exc

    def push(self, to: str, messages: list[Message], retry_key: uuid.UUID) -> None:
        """Retried safely: LINE accepts a retry key once and answers 409 to its repeats."""
        request = PushMessageRequest(to=to, messages=messages)
        try:
            self._with_retries(
                lambda: self.messaging.push_message(
                    request, x_line_retry_key=str(retry_key), _request_timeout=self._timeout
                )
            )
        except LineApiError as exc:
            if exc.status != 409:
                raise
            logger.info("LINE push %s was already accepted; not sent again", retry_key)

    def content(self, message_id: str) -> tuple[bytes, str]:
        """The bytes a user sent (image, audio...) and their content type."""
        response = self._with_retries(
            lambda: self.blob.get_message_content_with_http_info(
                message_id, _request_timeout=self._timeout
            )
        )
        headers = response.headers or {}
        return bytes(response.data), headers.get("Content-Type", "application/octet-stream")

    def _with_retries(self, call: Callable[[], T]) -> T:
        retries_left = settings.LINE_API_MAX_RETRIES
        delay = BACKOFF_SECONDS
        while True:
            try:
                return call()
            except ApiException as exc:
                if not retries_left or exc.status not in RETRIABLE_STATUSES:
                    raise LineApiError.from_exception(exc) from exc
                reason = _describe(exc)
            except NETWORK_ERRORS as exc:
                if not retries_left:
                    raise LineApiError(0, f"LINE API unreachable: {_describe(exc)}") from exc
                reason = _describe(exc)
            logger.warning("LINE API call failed (%s); retrying in %.1f s", reason, delay)
            time.sleep(delay)
            retries_left -= 1
            delay *= 2


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {_error_message(exc)}"
    return type(exc).__name__
