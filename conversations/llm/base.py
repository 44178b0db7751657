"""The one interface every LLM provider implements, in provider-neutral types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message in neutral form; each provider converts it to its own wire shape."""

    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    files: list[dict[str, str]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_call_id: str = ""


class ToolSpec(Protocol):
    """What a provider needs to offer a tool; each provider converts it to its own format.
    Read-only members, so frozen dataclasses such as `conversations.tools.Tool` qualify."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A complete tool call the model asked for (streamed pieces already joined)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True, slots=True)
class LLMRequest:
    messages: list[ChatMessage]
    model: str
    temperature: float | None = None
    tools: Sequence[ToolSpec] = ()
    user: str = ""  # a stable id of the end user, for providers that track users
    # The conversation's provider-side memory (e.g. Dify's conversation id): read and updated
    # by providers that keep history themselves, saved with the turn.
    state: dict[str, Any] = field(default_factory=dict)
    # This request's own provider parameters (checked against INLINE_PARAMS), merged last.
    options: dict[str, Any] = field(default_factory=dict)


# Parameters a request may set for itself (`inline_llm_params`), over the character's own.
# Nothing that changes what is sent (messages, tools, stream) can be overridden this way.
INLINE_PARAMS = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "reasoning_effort",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
    }
)


def check_inline_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` when every key is allowed; ValueError naming the others."""
    unknown = sorted(set(params) - INLINE_PARAMS)
    if unknown:
        allowed = ", ".join(sorted(INLINE_PARAMS))
        raise ValueError(f"inline_llm_params may not set {', '.join(unknown)}; allowed: {allowed}")
    return params


class LLMError(Exception):
    """A provider failed after its retries; the message is safe to show to a client."""


class LLMProvider(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest]:
        """Yield text deltas, then any tool calls; raise LLMError when the provider fails."""
        ...
