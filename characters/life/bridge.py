"""The LLM bridge: how the generators reach the character's LLM and the day's conversations,
and how they ask for validated JSON.

characters provides, conversations uses: the LLM providers and the messages live on the
conversations side, which plugs them in at start-up (`connect`, called by conversations/apps.py)
so this package imports nothing of it. The LLM is asked for JSON, validated by the pydantic
models in prompts.py, and asked again (at most LIFE_LLM_ATTEMPTS times in all) with the
validation error when it drifts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel, ValidationError

from ..models import Character
from ..thread_loops import run
from . import prompts
from .errors import GenerationFailed
from .lease import Claim

Schema = TypeVar("Schema", bound=BaseModel)


@dataclass(frozen=True)
class Prompt:
    """One message of what the LLM is asked."""

    role: Literal["system", "user", "assistant"]
    content: str


class LLMFailed(Exception):
    """The LLM failed after its own retries; the message is safe to record."""


class Bridge(Protocol):
    """What writing a character's life needs from the apps that use characters."""

    def has_llm(self, character: Character) -> bool:
        """Whether the character has a real LLM (a development stand-in only echoes prompts)."""
        ...

    async def complete(self, character: Character, messages: Sequence[Prompt], model: str) -> str:
        """The LLM's whole answer; raises LLMFailed."""
        ...

    def said(self, character: Character, start: datetime, end: datetime) -> list[tuple[bool, str]]:
        """What users and the character said from `start` to `end`, oldest first, as
        (said by the user, text)."""
        ...


_bridges: list[Bridge] = []


def connect(bridge: Bridge) -> None:
    """Plug in the other side of the bridge (once per process; the last one wins)."""
    _bridges[:] = [bridge]


def connected() -> Bridge:
    if not _bridges:
        raise ImproperlyConfigured(
            "Nothing is connected to characters/life/bridge.py: the conversations app does that "
            "when Django starts; is it in INSTALLED_APPS?"
        )
    return _bridges[0]


def strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def fingerprint(messages: Sequence[Prompt], model: str) -> str:
    body = json.dumps([model, [[m.role, m.content] for m in messages]], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def ask_json(
    character: Character,
    claim: Claim,
    step: str,
    messages: list[Prompt],
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
    bridge = connected()
    if not bridge.has_llm(character):
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
                reply = run(bridge.complete(character, conversation, model))
            except LLMFailed as exc:
                raise GenerationFailed(f"{step}: {exc}") from exc
        try:
            value = schema.model_validate_json(strip_fences(reply))
        except ValidationError as exc:
            error = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()
            )[:1000]
            conversation += [
                Prompt("assistant", reply),
                Prompt("user", prompts.INVALID_REPLY.format(error=error)),
            ]
            reply = None
            continue
        if not last:
            claim.keep(step, paid_with, reply)
        return value, reply
    raise GenerationFailed(
        f"{step}: no valid answer in {settings.LIFE_LLM_ATTEMPTS} attempts ({error})"
    )
