"""A fake OpenAI-compatible server (chat completions, transcription, speech, embeddings) for
tests and benchmarks.

Why a real HTTP server instead of mocking the SDK: the project talks to the LLM
through the `openai` SDK (httpx underneath), and the behaviours worth testing —
streaming, retries, timeouts, broken streams, connection reuse — live in that
HTTP stack. Mocking above it would test nothing of the kind. The server uses
only the standard library so it can run anywhere the tests run, in-process, on
an ephemeral port, with no network access.

Typical use::

    with FakeOpenAI() as fake:
        fake.script(ScriptedReply(text="Hello there."), ScriptedReply(status=429))
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)
        ...
        assert fake.requests[0]["messages"][-1]["content"] == "hi"

When nothing is scripted the server answers deterministically from the request
(see `default_reply_text`), so tests can check that conversation history
reached the LLM without scripting anything.

The audio endpoints have their own script (`script_audio`): `/v1/audio/transcriptions`
parses the multipart upload the SDK sends and answers `{"text": ...}`;
`/v1/audio/speech` answers a WAV tone whose length grows with the input text. Both record
what they received in `audio_requests`. `/v1/embeddings` shares that script and record: it
answers each input with a deterministic unit vector of its words (hashed into
EMBEDDING_DIMENSIONS), so texts sharing words are near each other.

Over ~400 lines on purpose: chat completions, transcription, speech and embeddings share the
scripting, the fault injection and the HTTP server of one fake.
"""

import contextlib
import hashlib
import io
import json
import math
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
import wave
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

JSON = dict[str, Any]

FAKE_API_KEY = "sk-fake-openai-test-key"
"""The only key the fake accepts; anything else gets a 401 like the real API."""

THREAD_NAME_PREFIX = "FakeOpenAI"
"""Every thread the fake starts is named with this prefix, so tests can check for leaks."""

MODELS = ("gpt-4o-mini", "gpt-4o")
"""What GET /v1/models lists. Chat requests may name any model: it is echoed back."""

_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"
_TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
_SPEECH_PATH = "/v1/audio/speech"
_EMBEDDINGS_PATH = "/v1/embeddings"
_ROUTES = {
    ("POST", _CHAT_PATH),
    ("GET", _MODELS_PATH),
    ("POST", _TRANSCRIPTIONS_PATH),
    ("POST", _SPEECH_PATH),
    ("POST", _EMBEDDINGS_PATH),
}
EMBEDDING_DIMENSIONS = 64
# What the speech endpoint answers: a 440 Hz tone at OpenAI's WAV rate, 40 ms per character.
SPEECH_SAMPLE_RATE = 24000
_SPEECH_SECONDS_PER_CHARACTER = 0.04
_DEFAULT_MODEL = MODELS[0]
_SYSTEM_FINGERPRINT = "fp_fake0penai"
_MODELS_CREATED = 1_700_000_000

# `\s*\S+` yields word-sized pieces that carry their leading space, like real
# tokens (" world."), so clients that split sentences on streamed text see the
# boundary arrive split across deltas. The `\s+` branch keeps trailing blanks.
_DELTA_PATTERN = re.compile(r"\s*\S+|\s+")
# Tool-call arguments are sliced into pieces of this many characters so a single
# argument string always spans several deltas, as it does with the real API.
_ARGUMENT_PIECE_CHARS = 8
# serve_forever() only notices shutdown() between polls; keep stop() snappy.
_POLL_INTERVAL = 0.05
_JOIN_TIMEOUT = 5.0
# socketserver's default listen backlog is 5: with 50 clients connecting at once
# the kernel would drop SYNs and the benchmark would measure TCP retransmits.
_LISTEN_BACKLOG = 256

# The openai SDK ignores `retry-after: 0` (it needs a positive value) and falls
# back to exponential backoff starting at ~0.5 s; `retry-after-ms` wins over
# `retry-after` and 1 ms keeps retried tests fast. `retry-after: 0` is kept for
# other clients that only read the standard header.
_RETRY_HEADERS = (("retry-after-ms", "1"), ("retry-after", "0"))

_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "We could not parse the JSON body of your request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "unknown_url", "Unknown request URL."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
}


ENDINGS = ("complete", "eof", "garbage", "misshapen", "empty")


@dataclass
class ScriptedReply:
    """One scripted answer, consumed by the next `repeat` chat-completion requests.

    Fields left at their defaults fall back to the fake's normal behaviour, so a
    reply only spells out what the test is about.
    """

    text: str | None = None
    """Content to stream (split into word-sized deltas). None -> the default
    reply computed from the request, unless `chunks` or `tool_calls` is given.
    For an error `status` it is the error message instead."""
    chunks: list[str] | None = None
    """Exact content deltas to send; overrides `text` for tests that care about
    chunk boundaries."""
    tool_calls: list[JSON] | None = None
    """[{"id": optional, "name": ..., "arguments": "<json string>" or a dict}],
    streamed as tool-call deltas with arguments split over several deltas;
    the finish_reason becomes "tool_calls"."""
    status: int = 200
    """Non-200 -> an OpenAI-style error body with this status (plus fast
    retry-after headers, so SDK retries cost ~1 ms)."""
    code: str | None = None
    """The error body's `code` (e.g. "content_filter", as Azure OpenAI refuses a prompt); None:
    the usual code of `status`."""
    cut_after: int | None = None
    """Stream this many content deltas, then shut the socket down with no final
    chunk and no [DONE]. Non-streaming requests are dropped before any response."""
    ending: str = "complete"
    """How a stream ends when it is not cut: "complete" (the API's own terminator), "eof" (the
    body ends cleanly after the content, without the final chunk or terminator), "garbage"
    (the same, after a `data:` line that is not JSON), "misshapen" (the same, after a JSON
    event that is no chunk: its content a number) or "empty" (a 200 stream ending before its
    first event)."""
    delay: float = 0.0
    """Seconds to wait before sending response headers (for client timeouts)."""
    gate: threading.Event | None = None
    """Answer only once the test sets this event: it holds the reply (after the request is
    recorded) while the test checks what happens meanwhile."""
    pause_after: int | None = None
    """Stream this many content deltas, then wait for `resume` before the rest: the test sees
    what happens while the model is still writing, without counting on timing."""
    resume: threading.Event | None = None
    chunk_delay: float | None = None
    """Seconds between streamed deltas. None -> FakeOpenAI.default_chunk_delay,
    so one server-wide pace applies unless a reply overrides it (0.0 included)."""
    repeat: int = 1
    """How many consecutive requests this reply answers."""

    def __post_init__(self) -> None:
        """Reject bad scripts here, in the test's thread: the same mistake found
        later in a server thread would only surface as a dropped connection."""
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if self.ending not in ENDINGS:
            raise ValueError(f"ending must be one of {', '.join(ENDINGS)}, got {self.ending!r}")
        if (self.pause_after is None) != (self.resume is None):
            raise ValueError("pause_after and resume go together")
        if self.cut_after is not None and self.cut_after < 0:
            raise ValueError(f"cut_after must be >= 0, got {self.cut_after}")
        if self.delay < 0 or (self.chunk_delay is not None and self.chunk_delay < 0):
            raise ValueError("delays must be >= 0")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        for call in self.tool_calls or ():
            if not isinstance(call.get("name"), str):
                raise ValueError(f"every tool call needs a string 'name': {call!r}")


def message_text(message: object) -> str:
    """Text of a chat message whose content is a string or a list of parts.

    Text parts are joined with a space (non-text parts such as images are
    skipped), so `[{"text": "Look"}, {"image_url": ...}, {"text": "at this"}]`
    reads "Look at this".
    """
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def default_reply_text(messages: Iterable[object]) -> str:
    """The unscripted answer: it quotes the last user message and counts user
    messages, so a test can prove the whole history reached the LLM."""
    user_texts = [
        message_text(message)
        for message in messages
        if isinstance(message, dict) and message.get("role") == "user"
    ]
    last = user_texts[-1] if user_texts else ""
    return f"You said: {last}. I have seen {len(user_texts)} user messages."


def split_into_deltas(text: str) -> list[str]:
    """Word-sized pieces that concatenate back to `text` exactly."""
    return _DELTA_PATTERN.findall(text)


def error_body(status: int, message: str | None = None, code: str | None = None) -> JSON:
    """An OpenAI-style error payload; the SDK reads `error.message`/`code` from it."""
    kind, usual_code, default_message = _ERROR_KINDS.get(
        status,
        (
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            f"Fake error with status {status}.",
        ),
    )
    error = {"message": message or default_message, "type": kind, "param": None}
    return {"error": {**error, "code": code or usual_code}}


def _dumps(payload: JSON) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class _ToolCall(NamedTuple):
    id: str
    name: str
    arguments: str

    @classmethod
    def from_script(cls, call: JSON) -> "_ToolCall":
        arguments = call.get("arguments", "{}")
        return cls(
            id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            name=call["name"],
            arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
        )

    def argument_pieces(self) -> list[str]:
        args = self.arguments
        return [
            args[i : i + _ARGUMENT_PIECE_CHARS] for i in range(0, len(args), _ARGUMENT_PIECE_CHARS)
        ]


@dataclass(frozen=True, slots=True)
class _Completion:
    """One answer, worked out once per request so the streaming loop only has
    to format and write — the part that runs 50 times concurrently in the
    benchmark stays cheap."""

    id: str
    created: int
    model: str
    content: list[str]
    tool_calls: list[_ToolCall]
    usage: JSON
    include_usage: bool

    @classmethod
    def build(cls, body: JSON, reply: ScriptedReply) -> "_Completion":
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        tool_calls = [_ToolCall.from_script(call) for call in reply.tool_calls or ()]
        if reply.chunks is not None:
            content = list(reply.chunks)
        elif reply.text is not None:
            content = split_into_deltas(reply.text)
        elif tool_calls:
            content = []
        else:
            content = split_into_deltas(default_reply_text(messages))
        # Approximate, word-based counts: enough for code that records usage.
        prompt_tokens = sum(len(message_text(message).split()) for message in messages)
        completion_tokens = len(content) + sum(len(c.argument_pieces()) for c in tool_calls)
        stream_options = body.get("stream_options")
        return cls(
            id=f"chatcmpl-{uuid.uuid4().hex[:29]}",
            created=int(time.time()),
            model=str(body.get("model") or _DEFAULT_MODEL),
            content=content,
            tool_calls=tool_calls,
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            include_usage=isinstance(stream_options, dict)
            and bool(stream_options.get("include_usage")),
        )

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        """A chat.completion.chunk; like the real API, `usage` is null on every
        chunk but the last when the client asked for usage."""
        return self._envelope(
            "chat.completion.chunk",
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            None,
        )

    def usage_chunk(self) -> JSON:
        return self._envelope("chat.completion.chunk", [], self.usage)

    def tool_call_deltas(self) -> Iterator[JSON]:
        """First delta of each call names it (with empty arguments), the rest
        carry argument pieces keyed only by `index` — what SDK accumulators expect."""
        for index, call in enumerate(self.tool_calls):
            yield {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            for piece in call.argument_pieces():
                yield {"index": index, "function": {"arguments": piece}}

    def as_completion(self) -> JSON:
        """The non-streaming chat.completion object."""
        message: JSON = {
            "role": "assistant",
            "content": "".join(self.content) if self.content or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }
        return self._envelope("chat.completion", [choice], self.usage)

    def _envelope(self, kind: str, choices: list[JSON], usage: JSON | None) -> JSON:
        payload: JSON = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if kind == "chat.completion" or self.include_usage:
            payload["usage"] = usage
        return payload


class _AbortResponse(Exception):
    """Abandon the current response and close the connection without finishing it
    (a scripted cut, or the server stopping mid-response)."""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that can be stopped without leaving threads behind.

    Handler threads are daemons (a wedged test must not hang interpreter exit),
    but socketserver does not track daemon threads and a keep-alive connection
    parks its thread in recv() forever. So this server remembers each thread's
    socket, and `close_connections` shuts them down to wake those threads.
    """

    daemon_threads = True
    request_queue_size = _LISTEN_BACKLOG

    def __init__(self, fake: "LoopbackFake") -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._live_lock = threading.Lock()
        self._live: dict[threading.Thread, socket.socket] = {}
        super().__init__(("127.0.0.1", 0), fake.handler_class)

    def server_bind(self) -> None:
        """Skip HTTPServer's socket.getfqdn() call: a reverse DNS lookup that can
        take seconds in sandboxes and is useless for a loopback server."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.fake.connections += 1  # only the serving thread accepts
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.fake.thread_prefix}-connection-{client_address[1]}",
            daemon=True,
        )
        with self._live_lock:
            self._live[thread] = request
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._live_lock:
                self._live.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, cancelled streams, stop()) is routine
        here; only real bugs in the fake deserve a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> list[threading.Thread]:
        """Shut down every open connection and join its thread; returns the
        threads that failed to finish within `timeout`."""
        with self._live_lock:
            live = list(self._live.items())
        for _, connection in live:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in live:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread, _ in live if thread.is_alive()]


class _Handler(BaseHTTPRequestHandler):
    """Wire-level behaviour: routing, auth, JSON and SSE framing."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, so clients and the benchmark reuse connections
    disable_nagle_algorithm = True  # small SSE chunks must not wait for ACKs
    server_version = "FakeOpenAI/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging: 50 streaming clients would flood stderr."""

    @property
    def fake(self) -> "ScriptedFake":
        """The scripted fake this handler answers for (its server's owner)."""
        assert isinstance(self.server.fake, ScriptedFake)
        return self.server.fake

    def _openai_fake(self) -> "FakeOpenAI":
        """The fake behind OpenAI's own routes (audio is OpenAI's alone)."""
        assert isinstance(self.server.fake, FakeOpenAI)
        return self.server.fake

    def _dispatch(self) -> None:
        # Read the body first, whatever the outcome, so the next request on this
        # keep-alive connection starts at the right byte.
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            self._route(urlsplit(self.path).path.rstrip("/"), raw)
        except (_AbortResponse, OSError):
            self.close_connection = True

    def _route(self, path: str, raw: bytes) -> None:
        """OpenAI's routes; fakes of other APIs override this and reuse the rest."""
        route = (self.command, path)
        if route not in _ROUTES:
            self._send_json(
                404, error_body(404, f"Unknown request URL: {self.command} {self.path}.")
            )
        elif self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            self._send_json(401, error_body(401))
        elif route[0] == "GET":
            self._send_json(200, {"object": "list", "data": [_model_entry(m) for m in MODELS]})
        elif path == _TRANSCRIPTIONS_PATH:
            self._transcription(raw)
        elif path == _SPEECH_PATH:
            self._speech(raw)
        elif path == _EMBEDDINGS_PATH:
            self._embeddings(raw)
        else:
            self._chat_completions(raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _chat_completions(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, error_body(400))
            return
        reply = self.fake._accept(body)
        self._hold(reply)
        if reply.status != 200:
            error = error_body(reply.status, reply.text, reply.code)
            self._send_json(reply.status, error, _RETRY_HEADERS)
            return
        completion = _Completion.build(body, reply)
        if body.get("stream") is True:
            chunk_delay = reply.chunk_delay
            if chunk_delay is None:
                chunk_delay = self.fake.default_chunk_delay
            self._stream(completion, reply, chunk_delay)
        elif reply.cut_after is not None:
            self._cut()
        else:
            self._send_json(200, completion.as_completion())

    def _transcription(self, raw: bytes) -> None:
        """Multipart in (fields and the `file` part), `{"text": ...}` out."""
        fields, upload = self._multipart(raw)
        if upload is None or "model" not in fields:
            self._send_json(400, error_body(400, "A `file` and a `model` are required."))
            return
        reply = self._openai_fake()._accept_audio(
            {"path": _TRANSCRIPTIONS_PATH, **fields, **upload}
        )
        self._hold(reply)
        if reply.status != 200:
            self._send_json(reply.status, error_body(reply.status), _RETRY_HEADERS)
            return
        text = reply.text if reply.text is not None else f"{len(upload['data'])} bytes heard."
        self._send_json(200, {"text": text})

    def _embeddings(self, raw: bytes) -> None:
        """JSON in ({"model", "input": str or [str]}), one hashed bag-of-words vector out per
        input, in OpenAI's list shape."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        inputs = body.get("input") if isinstance(body, dict) else None
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            self._send_json(400, error_body(400, "`input` must be a string or strings."))
            return
        reply = self._openai_fake()._accept_audio({"path": _EMBEDDINGS_PATH, **body})
        self._hold(reply)
        if reply.status != 200:
            self._send_json(reply.status, error_body(reply.status), _RETRY_HEADERS)
            return
        data = [
            {"object": "embedding", "index": index, "embedding": _bag_of_words(text)}
            for index, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        self._send_json(
            200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    def _speech(self, raw: bytes) -> None:
        """JSON in, a WAV tone out (40 ms per input character)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("input"), str):
            self._send_json(400, error_body(400, "`input` is required."))
            return
        reply = self._openai_fake()._accept_audio({"path": _SPEECH_PATH, **body})
        self._hold(reply)
        if reply.status != 200:
            self._send_json(reply.status, error_body(reply.status), _RETRY_HEADERS)
            return
        audio = tone_wav(len(body["input"]) * _SPEECH_SECONDS_PER_CHARACTER, SPEECH_SAMPLE_RATE)
        self._start_response(200, "audio/wav")
        self.send_header("Content-Length", str(len(audio)))
        self.end_headers()
        self.wfile.write(audio)

    def _stream(self, completion: _Completion, reply: ScriptedReply, chunk_delay: float) -> None:
        """Server-sent events over chunked transfer encoding: the connection
        survives the response (keep-alive), and every event is written with its
        own send() so clients see deltas as soon as they are produced."""
        cut_after = reply.cut_after
        self._start_response(200, "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self._ends_short(reply.ending, started=False):
            return
        self._send_event(completion.chunk({"role": "assistant", "content": "", "refusal": None}))
        journal = self.server.fake.journal
        for sent, piece in enumerate(completion.content):
            if sent == cut_after:
                self._cut()
            if sent == reply.pause_after:
                self._wait_for(reply.resume)
            self._pause(chunk_delay)
            if journal is not None:
                journal.add("llm", piece)
            self._send_event(completion.chunk({"content": piece}))
        if cut_after is not None:  # cut_after >= number of content deltas
            self._cut()
        if self._ends_short(reply.ending, started=True):
            return
        for tool_delta in completion.tool_call_deltas():
            self._pause(chunk_delay)
            self._send_event(completion.chunk({"tool_calls": [tool_delta]}))
        self._send_event(completion.chunk({}, completion.finish_reason))
        if completion.include_usage:
            self._send_event(completion.usage_chunk())
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # zero-length chunk: end of the chunked body

    def _ends_short(self, ending: str, *, started: bool) -> bool:
        """End the body cleanly here, without the stream's terminator, if the reply's `ending`
        says so at this point (before the first event, or after the content); True if so."""
        if ending == "complete" or (ending == "empty") == started:
            return False
        if ending == "garbage":
            self._write_chunk(b"data: {not json\n\n")
        if ending == "misshapen":
            self._send_event({"choices": [{"index": 0, "delta": {"content": 7}}]})
        self._write_chunk(b"")  # zero-length chunk: a well-formed end of the body
        return True

    def _send_event(self, payload: JSON) -> None:
        self._write_chunk(b"data: " + _dumps(payload) + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        # One write per HTTP chunk (size line, data and CRLF together): wfile is
        # unbuffered (wbufsize=0), so this is one sendall() and the flush is a no-op.
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(
        self, status: int, payload: JSON, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        data = _dumps(payload)
        self._start_response(status, "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_response(self, status: int, content_type: str) -> None:
        """Status line and the headers every response shares; the SDK exposes
        `x-request-id` as `_request_id`, so code that logs it sees a real value."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")

    def _hold(self, reply: ScriptedReply) -> None:
        """Wait for the reply's gate, then its delay; stopping the server ends both."""
        self._wait_for(reply.gate)
        self._pause(reply.delay)

    def _wait_for(self, event: threading.Event | None) -> None:
        """Wait until `event` is set (None: not at all); stopping the server ends the wait."""
        while event is not None and not event.wait(_POLL_INTERVAL):
            if self.server.stopping.is_set():
                raise _AbortResponse

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once (and abandon the response) if the server is
        stopping, so stop() never waits for a scripted delay."""
        if seconds > 0 and self.server.stopping.wait(seconds):
            raise _AbortResponse

    def _multipart(self, raw: bytes) -> tuple[JSON, JSON | None]:
        """A multipart/form-data body: its plain fields, and its file part (if any)."""
        content_type = self.headers.get("Content-Type", "")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: JSON = {}
        upload: JSON | None = None
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                upload = {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "data": data,
                }
            elif name:
                fields[str(name)] = data.decode()
        return fields, upload

    def _cut(self) -> None:
        """Drop the connection mid-response, as a crashed upstream would."""
        self.connection.shutdown(socket.SHUT_RDWR)
        raise _AbortResponse


@dataclass(slots=True)
class _Queued:
    """A scripted reply and how many more requests it will answer."""

    reply: ScriptedReply
    remaining: int


def _model_entry(model: str) -> JSON:
    return {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "fake-openai"}


class Journal:
    """What several fakes saw, in one order: proof of how their calls interleaved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[str, str]] = []

    def add(self, source: str, what: str) -> None:
        with self._lock:
            self.entries.append((source, what))

    def position(self, source: str, what: str) -> int:
        """Index of the first entry from `source` whose text contains `what`."""
        with self._lock:
            for index, (entry_source, entry) in enumerate(self.entries):
                if entry_source == source and what in entry:
                    return index
        raise LookupError(f"{source} never saw {what!r}")


def tone_wav(seconds: float, sample_rate: int) -> bytes:
    """A 440 Hz tone at half scale: audio that is plainly not silence."""
    frames = bytearray()
    for n in range(max(1, round(seconds * sample_rate))):
        frames += int(16383 * math.sin(2 * math.pi * 440 * n / sample_rate)).to_bytes(
            2, "little", signed=True
        )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


class LoopbackFake:
    """Start and stop a fake HTTP server on 127.0.0.1 (random port) whose requests
    `handler_class` serves; every thread it starts is named after `thread_prefix`."""

    handler_class: type[BaseHTTPRequestHandler]
    thread_prefix: str
    journal: Journal | None = None

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0
        """TCP connections accepted (clients that reuse theirs open few)."""

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, valid once started."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"{self.thread_prefix}-server-{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort in-flight responses (delays wake up at once),
        close keep-alive connections, and join every thread. Idempotent.

        Raises RuntimeError if a handler thread refuses to finish, because a
        leaked thread would otherwise surface as a confusing failure elsewhere.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        thread.join()
        stuck = server.close_connections(_JOIN_TIMEOUT)
        server.server_close()
        if stuck:
            raise RuntimeError(f"{type(self).__name__} handler threads did not stop: {stuck}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ScriptedFake(LoopbackFake):
    """A fake LLM API answering from a script of replies (the default reply when it is
    empty); subclasses name the wire protocol through `handler_class`.

    Thread-safe: the test thread scripts and inspects while handler threads
    record requests and consume the script. Use as a context manager (or call
    start()/stop()); it can be restarted after stop(), on a new port.
    """

    api_key: str
    default_reply: ScriptedReply = ScriptedReply()
    """What a request gets when nothing is scripted."""

    def __init__(self, default_chunk_delay: float = 0.0) -> None:
        super().__init__()
        self.default_chunk_delay = default_chunk_delay
        self.requests: list[JSON] = []
        """Bodies of authenticated requests whose body was a JSON object, in arrival
        order (retries included). Cleared in place by reset()."""
        self._lock = threading.Lock()
        self._script: deque[_Queued] = deque()

    def script(self, *replies: ScriptedReply) -> None:
        """Queue replies behind any already queued; each answers `repeat`
        consecutive requests, then the default behaviour resumes."""
        with self._lock:
            self._script.extend(_Queued(reply, reply.repeat) for reply in replies)

    def reset(self) -> None:
        """Forget the script and the recorded requests (between test phases)."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.connections = 0

    def forget_requests(self) -> None:
        """Drop the recorded requests but keep the script (long benchmark runs)."""
        with self._lock:
            self.requests.clear()

    def _accept(self, body: JSON) -> ScriptedReply:
        """Record a request and take its reply in one critical section, so under
        concurrency the n-th recorded request is the one that got the n-th reply."""
        with self._lock:
            self.requests.append(body)
            return _take(self._script, self.default_reply)


class FakeOpenAI(ScriptedFake):
    """An in-process OpenAI-compatible server: chat completions, models and audio."""

    handler_class = _Handler
    thread_prefix = THREAD_NAME_PREFIX
    api_key = FAKE_API_KEY

    def __init__(self, default_chunk_delay: float = 0.0) -> None:
        super().__init__(default_chunk_delay)
        self.audio_requests: list[JSON] = []
        """Transcription uploads (form fields plus filename, content_type, data), speech and
        embeddings bodies, each with its `path`, in arrival order."""
        self.journal: Journal | None = None
        """When set, every streamed content delta is added as ("llm", piece)."""
        self._audio_script: deque[_Queued] = deque()

    @property
    def base_url(self) -> str:
        """Pass as `base_url` to the openai client; valid once started."""
        return f"{self.url}/v1"

    def script_audio(self, *replies: ScriptedReply) -> None:
        """Queue replies for the audio and embeddings endpoints: `status`, `delay` and
        `repeat` apply; `text` is the transcript to return."""
        with self._lock:
            self._audio_script.extend(_Queued(reply, reply.repeat) for reply in replies)

    def reset(self) -> None:
        """Also forget the audio script and requests, and the journal."""
        super().reset()
        with self._lock:
            self._audio_script.clear()
            self.audio_requests.clear()
            self.journal = None

    def _accept_audio(self, request: JSON) -> ScriptedReply:
        with self._lock:
            self.audio_requests.append(request)
            return _take(self._audio_script, self.default_reply)


def _bag_of_words(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in text.casefold().split():
        digest = hashlib.sha256(word.strip(".,!?").encode()).digest()
        vector[digest[0] % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _take(script: deque[_Queued], default: ScriptedReply) -> ScriptedReply:
    """The reply at the head of a script (`default` when it is empty)."""
    if not script:
        return default
    queued = script[0]
    queued.remaining -= 1
    if queued.remaining == 0:
        script.popleft()
    return queued.reply


__all__ = [
    "FAKE_API_KEY",
    "MODELS",
    "THREAD_NAME_PREFIX",
    "FakeOpenAI",
    "Journal",
    "LoopbackFake",
    "ScriptedFake",
    "ScriptedReply",
    "default_reply_text",
    "error_body",
    "message_text",
    "split_into_deltas",
    "tone_wav",
]
