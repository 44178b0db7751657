"""A fake Anthropic Messages API for tests, driven by the real `anthropic` SDK.

It shares the loopback server, the script of replies and the SSE-over-chunked framing with
the fake OpenAI server (tests/fakes/openai_server.py) and speaks Anthropic's wire format:
`POST /v1/messages`, streamed as named events (message_start, content_block_start, ping,
content_block_delta with text_delta / input_json_delta, content_block_stop, message_delta,
message_stop) or answered as one Message; errors carry Anthropic's body
`{"type": "error", "error": {"type": ..., "message": ...}}`. It checks what the real API
checks and a conversion bug would break: the key and `anthropic-version` headers,
`max_tokens`, no sampling parameters (refused since API version 2026-10-21, the one SDK 2.x
sends), no `system` role inside `messages`, no empty text, and every `tool_use` answered by a
`tool_result` at the start of the next message.

Typical use::

    with FakeAnthropic() as fake:
        fake.script(ScriptedReply(status=529), ScriptedReply(text="Hello there."))
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=fake.api_key)
        ...
        assert fake.requests[-1]["messages"][-1]["content"] == "hi"
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from tests.fakes import openai_server
from tests.fakes.openai_server import (
    _RETRY_HEADERS,
    ScriptedFake,
    _dumps,
    _Handler,
    _ToolCall,
    default_reply_text,
    message_text,
    split_into_deltas,
)

JSON = dict[str, Any]

FAKE_API_KEY = "sk-ant-fake-test-key"
"""The only key the fake accepts; anything else gets a 401 like the real API."""

THREAD_NAME_PREFIX = "FakeAnthropic"

_MESSAGES_PATH = "/v1/messages"
# From this API version on, sampling parameters are refused (even at their defaults).
_NO_SAMPLING_SINCE = "2026-10-21"
_SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class ScriptedReply(openai_server.ScriptedReply):
    """The fake OpenAI server's scripted reply (text, chunks, tool_calls, status, cut_after,
    delays, repeat; `tool_calls` become `tool_use` blocks), plus what only Anthropic does."""

    error_event_after: int | None = None
    """Stream this many text deltas, then an `error` event (overloaded_error) and end the
    stream, as the real API does when it runs out of capacity mid-answer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.error_event_after is not None and self.error_event_after < 0:
            raise ValueError(f"error_event_after must be >= 0, got {self.error_event_after}")


def error_body(status: int, message: str | None = None) -> JSON:
    """An Anthropic-style error payload; the SDK reads `error.type` and `error.message`."""
    kind, default_message = _ERROR_KINDS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Fake {status}.")
    )
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default_message},
        "request_id": _request_id(),
    }


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _blocks(content: object) -> list[JSON]:
    """A message's content as blocks (a plain string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def request_problem(body: JSON, version: str) -> str | None:
    """What the real API (at `version`) would refuse in this body with a 400, or None."""
    if version >= _NO_SAMPLING_SINCE:
        for name in _SAMPLING_PARAMETERS:
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    pending: set[str] = set()  # tool_use ids the next message must answer first
    for number, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f'messages.{number}.role: Input should be "user" or "assistant"'
        blocks = _blocks(message.get("content"))
        if not blocks:
            return f"messages.{number}: all messages must have non-empty content"
        if any(b.get("type") == "text" and not str(b.get("text", "")).strip() for b in blocks):
            return f"messages.{number}: text content blocks must contain non-whitespace text"
        answered = []
        for block in blocks:
            if block.get("type") != "tool_result":
                break
            answered.append(block.get("tool_use_id"))
        if pending and (role != "user" or set(answered) != pending):
            return (
                f"messages.{number}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(pending))}"
            )
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if len(results) != len(answered):
            return f"messages.{number}: `tool_result` blocks must come first in the message"
        if results and not pending:
            return f"messages.{number}: unexpected `tool_use_id` found in `tool_result` blocks"
        uses = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
        if uses and role != "assistant":
            return f"messages.{number}: tool_use blocks are only allowed in assistant messages"
        pending = set(uses)
    return None


class _ToolUse(NamedTuple):
    call: _ToolCall

    @property
    def input(self) -> JSON:
        """The arguments as the object the real API returns (it only writes valid JSON)."""
        try:
            parsed = json.loads(self.call.arguments) if self.call.arguments.strip() else {}
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def block(self, *, complete: bool) -> JSON:
        return {
            "type": "tool_use",
            "id": self.call.id,
            "name": self.call.name,
            "input": self.input if complete else {},
        }


@dataclass(frozen=True, slots=True)
class _Message:
    """One answer, worked out once per request."""

    id: str
    model: str
    content: list[str]
    tool_uses: list[_ToolUse]
    input_tokens: int

    @classmethod
    def build(cls, body: JSON, reply: openai_server.ScriptedReply) -> _Message:
        messages = body["messages"]
        tool_uses = [
            _ToolUse(_ToolCall.from_script({"id": f"toolu_{uuid.uuid4().hex[:24]}", **call}))
            for call in reply.tool_calls or ()
        ]
        if reply.chunks is not None:
            content = list(reply.chunks)
        elif reply.text is not None:
            content = split_into_deltas(reply.text)
        elif tool_uses:
            content = []
        else:
            content = split_into_deltas(default_reply_text(messages))
        system = body.get("system")
        words = sum(len(message_text(m).split()) for m in messages)
        return cls(
            id=f"msg_{uuid.uuid4().hex[:24]}",
            model=body["model"],
            content=content,
            tool_uses=tool_uses,
            input_tokens=words + (len(system.split()) if isinstance(system, str) else 0),
        )

    @property
    def output_tokens(self) -> int:
        return len(self.content) + sum(len(t.call.argument_pieces()) for t in self.tool_uses)

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool_uses else "end_turn"

    @property
    def has_text_block(self) -> bool:
        return bool(self.content) or not self.tool_uses

    def as_message(self, *, complete: bool) -> JSON:
        """The Message object: whole (non-streaming), or empty as message_start carries it."""
        content: list[JSON] = []
        if complete:
            if self.has_text_block:
                content.append({"type": "text", "text": "".join(self.content)})
            content.extend(t.block(complete=True) for t in self.tool_uses)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason if complete else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens if complete else 1,
            },
        }


class _AnthropicHandler(_Handler):
    """Anthropic's routes, headers, errors and named SSE events; the socket handling, chunked
    framing, pauses and cuts are the OpenAI fake's."""

    server_version = "FakeAnthropic/1.0"

    def _route(self, path: str, raw: bytes) -> None:
        # SDK 2.x sends the key as a bearer token; the API takes either, x-api-key first.
        key = self.headers.get("x-api-key")
        if key is None:
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        version = self.headers.get("anthropic-version")
        if (self.command, path) != ("POST", _MESSAGES_PATH):
            self._send_json(404, error_body(404, f"Not found: {self.command} {self.path}"))
        elif key != self.fake.api_key:
            self._send_json(401, error_body(401))
        elif not version:
            self._send_json(400, error_body(400, "anthropic-version: header is required"))
        else:
            self._messages(raw, version)

    def _messages(self, raw: bytes, version: str) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, error_body(400, "There was an issue with the JSON body."))
            return
        problem = request_problem(body, version)
        if problem is not None:
            self._send_json(400, error_body(400, problem))
            return
        reply = self.fake._accept(body)
        self._hold(reply)
        if reply.status != 200:
            self._send_json(reply.status, error_body(reply.status, reply.text), _RETRY_HEADERS)
            return
        message = _Message.build(body, reply)
        if body.get("stream") is True:
            assert isinstance(reply, ScriptedReply), "script FakeAnthropic with its ScriptedReply"
            chunk_delay = reply.chunk_delay
            if chunk_delay is None:
                chunk_delay = self.fake.default_chunk_delay
            self._stream_message(message, reply, chunk_delay)
        elif reply.cut_after is not None:
            self._cut()
        else:
            self._send_json(200, message.as_message(complete=True))

    def _stream_message(self, message: _Message, reply: ScriptedReply, chunk_delay: float) -> None:
        """The event sequence of the real API, in its order (ping after the first block
        starts, a tool's JSON opened by an empty piece)."""
        self._start_response(200, "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self._ends_short(reply.ending, started=False):
            return
        self._event("message_start", message=message.as_message(complete=False))
        index = 0
        pinged = False

        def start(block: JSON) -> None:
            nonlocal pinged
            self._event("content_block_start", index=index, content_block=block)
            if not pinged:
                self._event("ping")
                pinged = True

        if message.has_text_block:
            start({"type": "text", "text": ""})
            for sent, piece in enumerate(message.content):
                if sent == reply.cut_after:
                    self._cut()
                if sent == reply.error_event_after:
                    self._overloaded()
                    return
                self._pause(chunk_delay)
                self._delta(index, {"type": "text_delta", "text": piece})
            self._event("content_block_stop", index=index)
            index += 1
        if reply.cut_after is not None:  # cut_after >= number of text deltas
            self._cut()
        if self._ends_short(reply.ending, started=True):
            return
        if reply.error_event_after is not None:
            self._overloaded()
            return
        for tool_use in message.tool_uses:
            start(tool_use.block(complete=False))
            for piece in ["", *tool_use.call.argument_pieces()]:
                self._pause(chunk_delay)
                self._delta(index, {"type": "input_json_delta", "partial_json": piece})
            self._event("content_block_stop", index=index)
            index += 1
        self._event(
            "message_delta",
            delta={"stop_reason": message.stop_reason, "stop_sequence": None},
            usage={"output_tokens": message.output_tokens},
        )
        self._event("message_stop")
        self._write_chunk(b"")  # zero-length chunk: end of the chunked body

    def _event(self, kind: str, **fields: Any) -> None:
        self._write_chunk(
            b"event: %b\ndata: %b\n\n" % (kind.encode(), _dumps({"type": kind, **fields}))
        )

    def _delta(self, index: int, delta: JSON) -> None:
        self._event("content_block_delta", index=index, delta=delta)

    def _overloaded(self) -> None:
        overloaded = error_body(529)
        self._write_chunk(b"event: error\ndata: %b\n\n" % _dumps(overloaded))
        self._write_chunk(b"")

    def _start_response(self, status: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("request-id", _request_id())


class FakeAnthropic(ScriptedFake):
    """An in-process Anthropic Messages API on 127.0.0.1 with a random port.

    Script it with this module's ScriptedReply; `requests` holds the bodies of accepted
    (authenticated, well-formed) requests, retries included.
    """

    handler_class = _AnthropicHandler
    thread_prefix = THREAD_NAME_PREFIX
    api_key = FAKE_API_KEY
    default_reply = ScriptedReply()

    @property
    def base_url(self) -> str:
        """Pass as `base_url` to the anthropic client (it adds /v1/messages itself)."""
        return self.url


__all__ = [
    "FAKE_API_KEY",
    "THREAD_NAME_PREFIX",
    "FakeAnthropic",
    "ScriptedReply",
    "error_body",
    "request_problem",
]
