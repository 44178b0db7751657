"""What happens to a request between the user's words and the LLM
(docs/turn.md#before-the-llm-shaping-the-request).

- validators (REQUEST_VALIDATORS): refuse a request with a reason, before anything is paid for;
- merging: a request arriving within the character's merge window after the previous one of
  its session joins it, so a user who paused mid-sentence gets one answer to the whole thing;
- wake words: an always-listening device's session only gets answers once awake;
- timestamps: the local date and time in the character's timezone, now and then.

All session memory lives in `SessionState` rows, so every server process sees the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from conversations.models import SessionState

from .events import TurnRequest

MERGE_PREFIX = (
    "$Previous user's request and your response have been canceled. "
    "Please respond again to the following request:\n\n"
)
TIMESTAMP_PREFIX = "$Current date and time: "

Validator = Callable[[TurnRequest, str], Awaitable[str | None] | str | None]


@dataclass(frozen=True, slots=True)
class ShapedRequest:
    text: str  # what the LLM receives
    files: list[dict[str, str]]
    awake: bool


@cache
def _validators() -> list[Validator]:
    return [import_string(path) for path in settings.REQUEST_VALIDATORS]


async def refusal(request: TurnRequest, text: str) -> str | None:
    """The first validator's reason to refuse this request, or None. A plain function runs in
    a worker thread, so it may use the ORM."""
    for validator in _validators():
        if inspect.iscoroutinefunction(validator):
            reason = await validator(request, text)
        else:
            reason = await sync_to_async(validator)(request, text)
        if reason:
            return str(reason)
    return None


def needs_shaping(request: TurnRequest) -> bool:
    character = request.character
    return bool(
        character.merge_window_seconds
        or character.wake_words.strip()
        or character.timestamp_interval_seconds
    )


def shape(request: TurnRequest, text: str, now: datetime) -> ShapedRequest:
    """Merge, wake-check and timestamp a request, updating its session's memory."""
    character = request.character
    files = request.files
    with transaction.atomic():
        state, _ = SessionState.objects.select_for_update().get_or_create(
            key=request.session_key, defaults={"character": character}
        )
        window = character.merge_window_seconds
        if (
            window
            and request.allow_merge
            and state.previous_request_at
            and now - state.previous_request_at < timedelta(seconds=window)
        ):
            previous = state.previous_request_text.removeprefix(MERGE_PREFIX)
            text = f"{MERGE_PREFIX}{previous}\n{text}"
            files = files or state.previous_request_files
        state.previous_request_at = now
        state.previous_request_text = text
        state.previous_request_files = files

        wake_words = character.wake_word_list()
        awake = (
            not wake_words
            or any(word.casefold() in text.casefold() for word in wake_words)
            or (
                state.awake_at is not None
                and now - state.awake_at < timedelta(seconds=character.wake_timeout_seconds)
            )
        )
        if awake:
            state.awake_at = now  # the window runs from the last request, not the last reply
            interval = character.timestamp_interval_seconds
            if interval and (
                state.timestamp_inserted_at is None
                or now - state.timestamp_inserted_at > timedelta(seconds=interval)
            ):
                local = now.astimezone(character.zone)
                text = f"{TIMESTAMP_PREFIX}{local:%Y/%m/%d %H:%M:%S}\n\n{text}"
                state.timestamp_inserted_at = now
        state.character = character
        state.save()
    return ShapedRequest(text=text, files=files, awake=awake)
