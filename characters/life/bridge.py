"""The LLM bridge: how the generators ask the character's LLM for validated JSON.

The LLM is asked for JSON, validated by the pydantic models in prompts.py, and asked again (at
most LIFE_LLM_ATTEMPTS times in all) with the validation error when it drifts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from typing import Any, TypeVar

from django.conf import settings
from pydantic import BaseModel, ValidationError

from conversations.llm import ChatMessage, LLMError, LLMRequest, provider_for
from conversations.llm.echo import EchoProvider

from ..models import Character
from . import prompts
from .errors import GenerationFailed
from .lease import Claim

Schema = TypeVar("Schema", bound=BaseModel)

_thread_state = threading.local()


def run(coroutine: Any) -> Any:
    """Run a coroutine on this thread's own event loop.

    One loop per thread, kept, rather than a new one per call: the provider keeps its HTTP
    client per loop, so its connections are reused from one LLM call to the next.
    """
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


async def complete(character: Character, messages: list[ChatMessage], model: str) -> str:
    request = LLMRequest(messages=messages, model=model, temperature=character.llm_temperature)
    # No tools are offered, so the provider yields text only.
    stream = provider_for(character).stream(request)
    return "".join([delta async for delta in stream if isinstance(delta, str)])


def strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def fingerprint(messages: list[ChatMessage], model: str) -> str:
    body = json.dumps([model, [[m.role, m.content] for m in messages]], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def ask_json(
    character: Character,
    claim: Claim,
    step: str,
    messages: list[ChatMessage],
    schema: type[Schema],
    *,
    model: str | None = None,
    last: bool = False,
) -> tuple[Schema, str]:
    """Ask for a JSON answer matching `schema`; returns it with the raw reply.

    An answer already paid for with the same messages is reused. An invalid one is shown back
    to the LLM with what was wrong, within LIFE_LLM_ATTEMPTS attempts in all. A valid one is
    kept on the claim, unless it is the `last` step, whose row is saved right after anyway.
    """
    if provider_for(character).name == EchoProvider.name:
        # The echo provider only repeats the prompt: asking it would fail every attempt.
        raise GenerationFailed(f"{step}: {character.slug} has no LLM configured (echo provider)")
    model = model or character.llm_model
    conversation = list(messages)
    paid_with = fingerprint(messages, model)
    reply = claim.paid(step, paid_with)
    error = ""
    for _ in range(settings.LIFE_LLM_ATTEMPTS):
        if reply is None:
            try:
                reply = run(complete(character, conversation, model))
            except LLMError as exc:
                raise GenerationFailed(f"{step}: {exc}") from exc
        try:
            value = schema.model_validate_json(strip_fences(reply))
        except ValidationError as exc:
            error = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()
            )[:1000]
            conversation += [
                ChatMessage(role="assistant", content=reply),
                ChatMessage(role="user", content=prompts.INVALID_REPLY.format(error=error)),
            ]
            reply = None
            continue
        if not last:
            claim.keep(step, paid_with, reply)
        return value, reply
    raise GenerationFailed(
        f"{step}: no valid answer in {settings.LIFE_LLM_ATTEMPTS} attempts ({error})"
    )
