"""Choosing the provider a character speaks through."""

from __future__ import annotations

import functools
import logging
import os

from avatarsite.tenants.provider_secrets import resolve
from characters.models import Character
from characters.models import LLMProvider as ProviderChoice

from .anthropic import AnthropicProvider
from .base import (
    ChatMessage,
    LLMError,
    LLMProvider,
    LLMRequest,
    ToolCallRequest,
    ToolSpec,
    Usage,
)
from .dify import DifyProvider
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
    "Usage",
    "key_variable",
    "provider_for",
    "warn_about_unconfigured_providers",
]

logger = logging.getLogger(__name__)

# Each provider's own key variable. A character's key variable left at the field default
# (OPENAI_API_KEY) means "my provider's variable", so choosing Anthropic in the admin needs no
# second edit; any other name is used as written.
DEFAULT_KEY_VARIABLES: dict[str, str] = {
    ProviderChoice.OPENAI: "OPENAI_API_KEY",
    ProviderChoice.ANTHROPIC: "ANTHROPIC_API_KEY",
    ProviderChoice.GEMINI: "GEMINI_API_KEY",
    ProviderChoice.DIFY: "DIFY_API_KEY",
}
# Gemini speaks the chat-completions protocol here, so the OpenAI provider serves it.
GEMINI_OPENAI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"


def key_variable(character: Character) -> str:
    """The environment variable holding the key `character` speaks with."""
    variable = character.llm_api_key_env
    if variable == Character._meta.get_field("llm_api_key_env").default:
        return DEFAULT_KEY_VARIABLES.get(character.llm_provider, variable)
    return variable


def provider_for(character: Character) -> LLMProvider:
    """The character's provider; the echo provider when its key variable is empty."""
    if character.llm_provider == ProviderChoice.ECHO:
        return EchoProvider()
    variable = key_variable(character)
    api_key = resolve(character, variable)
    if not api_key:
        _warn_echo_fallback(character.slug, character.llm_provider, variable)
        return EchoProvider()
    base_url = character.llm_base_url or None
    if character.llm_provider == ProviderChoice.ANTHROPIC:
        return AnthropicProvider(api_key=api_key, base_url=base_url)
    if character.llm_provider == ProviderChoice.DIFY:
        return DifyProvider(api_key=api_key, base_url=base_url)
    if character.llm_provider == ProviderChoice.GEMINI:
        return OpenAICompatibleProvider(
            api_key=api_key, base_url=base_url or GEMINI_OPENAI_BASE_URL, name="gemini"
        )
    return OpenAICompatibleProvider(api_key=api_key, base_url=base_url)


@functools.cache
def _warn_echo_fallback(slug: str, provider: str, variable: str) -> None:
    """Once per process and character: every reply of the echo provider says so anyway."""
    logger.warning(
        "Character %r uses the %s provider but %s is not set: it answers with the development "
        "echo provider.",
        slug,
        provider,
        variable,
    )


def warn_about_unconfigured_providers() -> None:
    """Say at start-up when characters will fall back to the echo provider.

    Only the default provider's variable is checked here (new characters use it); characters
    on another provider are named once, on their first turn, by `provider_for`.
    """
    if not os.environ.get("OPENAI_API_KEY"):
        logger.warning(
            "OPENAI_API_KEY is not set: characters that rely on it answer with the "
            "development echo provider, and every reply starts with %r.",
            ECHO_MARK,
        )
