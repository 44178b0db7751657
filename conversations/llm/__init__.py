"""Choosing the provider a character speaks through."""

from __future__ import annotations

import logging
import os

from characters.models import Character
from characters.models import LLMProvider as ProviderChoice

from .base import ChatMessage, LLMError, LLMProvider, LLMRequest, ToolCallRequest, ToolSpec
from .echo import ECHO_MARK, EchoProvider
from .openai_compat import OpenAICompatibleProvider

__all__ = [
    "ECHO_MARK",
    "ChatMessage",
    "LLMError",
    "LLMProvider",
    "LLMRequest",
    "ToolCallRequest",
    "ToolSpec",
    "provider_for",
    "warn_about_unconfigured_providers",
]

logger = logging.getLogger(__name__)


def provider_for(character: Character) -> LLMProvider:
    """The character's provider; the echo provider when its key variable is empty."""
    if character.llm_provider == ProviderChoice.OPENAI:
        api_key = os.environ.get(character.llm_api_key_env, "")
        if api_key:
            return OpenAICompatibleProvider(
                api_key=api_key, base_url=character.llm_base_url or None
            )
    return EchoProvider()


def warn_about_unconfigured_providers() -> None:
    """Say at start-up when characters will fall back to the echo provider."""
    if not os.environ.get("OPENAI_API_KEY"):
        logger.warning(
            "OPENAI_API_KEY is not set: characters that rely on it answer with the "
            "development echo provider, and every reply starts with %r.",
            ECHO_MARK,
        )
