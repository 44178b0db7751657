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
class Usage:
    """Tokens an LLM call used, as the provider counted them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


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


# Each numeric parameter's range as the chat-completions API documents it.
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}
_TOKEN_COUNTS = ("max_tokens", "max_completion_tokens")
_EFFORTS = ("minimal", "low", "medium", "high")


def _value_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be parameter `name`, or None."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    integer = isinstance(value, int) and not isinstance(value, bool)
    if name in _RANGES:
        low, high = _RANGES[name]
        if not (number and low <= value <= high):
            return f"must be a number from {low} to {high}"
    elif name in _TOKEN_COUNTS and not (integer and value >= 1):
        return "must be a whole number of at least 1"
    elif name == "seed" and not (integer and abs(value) < 2**63):
        return "must be a whole number"
    elif name == "model" and not (isinstance(value, str) and value.strip()):
        return "must be the name of a model"
    elif name == "reasoning_effort" and value not in _EFFORTS:
        return f"must be one of {', '.join(_EFFORTS)}"
    elif name == "stop" and not (
        isinstance(value, str)
        or (isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value))
    ):
        return "must be a string or a list of up to 4 strings"
    return None


def check_inline_params(params: dict[str, Any], where: str = "inline_llm_params") -> dict[str, Any]:
    """`params` when every key is allowed and every value has its type and range; ValueError
    naming the first field that does not (as `where.field`)."""
    unknown = sorted(set(params) - INLINE_PARAMS)
    if unknown:
        allowed = ", ".join(sorted(INLINE_PARAMS))
        raise ValueError(f"{where} may not set {', '.join(unknown)}; allowed: {allowed}")
    for name, value in params.items():
        if (problem := _value_problem(name, value)) is not None:
            raise ValueError(f"{where}.{name} {problem}")
    return params


class LLMError(Exception):
    """A provider failed after its retries; the message is safe to show to a client.

    `status_code` and `body` are what the provider answered (its HTTP status, and its error
    body as parsed JSON or text), for the character's on_error hook to tell a refusal from an
    outage; they may quote the prompt, so they never reach a client."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class LLMProvider(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest | Usage]:
        """Yield text deltas, then any tool calls and, from providers that count them, the
        call's `Usage`; raise LLMError when the provider fails."""
        ...
