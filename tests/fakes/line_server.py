"""A fake LINE platform for tests and benchmarks: the Messaging API on 127.0.0.1, and webhooks
signed the way LINE signs them.

The real `line-bot-sdk` client talks to it unmodified (its hosts are configurable): reply,
push (with retry keys: a repeated key gets 409, as on LINE), the loading animation, and the
content endpoint of api-data. Every call is recorded; reply tokens work once and can be made
invalid, and any path can be made to fail. Standard library only, so it also runs in a
benchmark's separate process (`python -m tests.fakes.line_server`).

    with FakeLine() as line:
        line.add_content("m1", b"...", "image/jpeg")
        response = post_webhook(url, SECRET, [text_event("hello")])
        line.wait_for(lambda calls: len(calls.replies()) == 1)

Over ~400 lines on purpose: one fake per platform; the Messaging API endpoints share its
recording, failure injection and signing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx

from tests.waiting import WAIT_SECONDS

JSON = dict[str, Any]

ACCESS_TOKEN = "fake-line-channel-access-token"
CHANNEL_SECRET = "fake-line-channel-secret"
TEXT_LIMIT = 5000
MESSAGES_LIMIT = 5

_CONTENT = re.compile(r"^/v2/bot/message/([^/]+)/content$")
_DELIVERING = ("/v2/bot/message/reply", "/v2/bot/message/push")
STATS_PATH = "/fake/stats"  # not LINE's: lets a benchmark in another process read the counts
_ids = itertools.count(100000000)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: JSON | None
    status: int

    @property
    def messages(self) -> list[JSON]:
        return (self.body or {}).get("messages", [])

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if m.get("type") == "text"]


class Calls(list[Call]):
    """The recorded calls, with the filters tests need."""

    def to(self, path: str, status: int | None = 200) -> Calls:
        return Calls(c for c in self if c.path == path and (status is None or c.status == status))

    def replies(self) -> Calls:
        return self.to("/v2/bot/message/reply")

    def pushes(self) -> Calls:
        return self.to("/v2/bot/message/push")

    def loadings(self) -> Calls:
        return self.to("/v2/bot/chat/loading/start", status=202)

    def contents(self) -> Calls:
        return Calls(c for c in self if _CONTENT.match(c.path))

    def delivered(self) -> Calls:
        """Replies and pushes LINE accepted (a 409 push is a repeat, not a delivery)."""
        return Calls(c for c in self if c.status == 200 and c.path in _DELIVERING)

    def summary(self) -> dict[str, int]:
        return {
            "calls": len(self),
            "replies": len(self.replies()),
            "pushes": len(self.pushes()),
            "loadings": len(self.loadings()),
            "failed": sum(1 for c in self if c.status >= 400),
        }


@dataclass
class _State:
    access_token: str
    calls: Calls = field(default_factory=Calls)
    used_tokens: set[str] = field(default_factory=set)
    retry_keys: set[str] = field(default_factory=set)
    contents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0


def _error(message: str, details: list[JSON] | None = None) -> JSON:
    return {"message": message, **({"details": details} if details else {})}


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _message_errors(body: JSON) -> list[JSON]:
    """The checks LINE makes that our client could get wrong: count and text length."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MESSAGES_LIMIT:
        return [{"message": "Size must be between 1 and 5", "property": "messages"}]
    errors = []
    for index, message in enumerate(messages):
        if message.get("type") == "text":
            text = message.get("text")
            if not isinstance(text, str) or not 1 <= _utf16_length(text) <= TEXT_LIMIT:
                errors.append(
                    {
                        "message": "Length must be between 1 and 5000",
                        "property": f"messages[{index}].text",
                    }
                )
        elif message.get("type") == "image":
            for key in ("originalContentUrl", "previewImageUrl"):
                if not str(message.get(key, "")).startswith("https://"):
                    errors.append(
                        {"message": "Must be an HTTPS URL", "property": f"messages[{index}].{key}"}
                    )
    return errors


def _sent(body: JSON) -> JSON:
    return {
        "sentMessages": [
            {"id": str(next(_ids)), "quoteToken": uuid.uuid4().hex} for _ in body["messages"]
        ]
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark sends thousands of calls."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.state
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?")[0]
        if path == STATS_PATH:
            with self.server.lock:
                summary = fake.calls.summary()
            self._reply(200, summary, "application/json", {})
            return
        status, payload, content_type, extra = self._route(fake, path, body)
        with self.server.lock:
            fake.calls.append(Call(self.command, path, dict(self.headers), body, status))
            self.server.changed.notify_all()
        self._reply(status, payload, content_type, extra)

    def _reply(self, status: int, payload: Any, content_type: str, extra: dict[str, str]) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-line-request-id", uuid.uuid4().hex)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _dispatch

    def _route(
        self, fake: _State, path: str, body: JSON | None
    ) -> tuple[int, Any, str, dict[str, str]]:
        as_json = "application/json"
        if self.headers.get("Authorization") != f"Bearer {fake.access_token}":
            return (
                401,
                _error(
                    "Authentication failed. Confirm that the access token in the "
                    "authorization header is valid."
                ),
                as_json,
                {},
            )
        if fake.delay:
            time.sleep(fake.delay)
        with self.server.lock:
            injected = fake.failures.get(path)
            status = injected.pop(0) if injected else None
        if status is not None:
            return status, _error(f"Injected failure {status}"), as_json, {}
        content = _CONTENT.match(path)
        if self.command == "GET" and content:
            with self.server.lock:
                found = fake.contents.get(content.group(1))
            if found is None:
                return 404, _error("Not found"), as_json, {}
            return 200, found[0], found[1], {}
        if self.command != "POST" or not isinstance(body, dict):
            return (
                404 if self.command != "POST" else 400,
                _error("The request body has 1 error(s)"),
                as_json,
                {},
            )
        if path == "/v2/bot/chat/loading/start":
            seconds = body.get("loadingSeconds", 5)
            if not isinstance(body.get("chatId"), str) or seconds % 5 or not 5 <= seconds <= 60:
                return 400, _error("The request body has 1 error(s)"), as_json, {}
            return 202, {}, as_json, {}
        if path not in ("/v2/bot/message/reply", "/v2/bot/message/push"):
            return 404, _error("Not found"), as_json, {}
        errors = _message_errors(body)
        if errors:
            return 400, _error(f"The request body has {len(errors)} error(s)", errors), as_json, {}
        with self.server.lock:
            if path.endswith("/reply"):
                token = body.get("replyToken")
                if not isinstance(token, str) or token in fake.used_tokens:
                    return 400, _error("Invalid reply token"), as_json, {}
                fake.used_tokens.add(token)
                return 200, _sent(body), as_json, {}
            key = self.headers.get("X-Line-Retry-Key")
            if key is not None:
                if key in fake.retry_keys:
                    return (
                        409,
                        _error("The retry key is already accepted"),
                        as_json,
                        {"x-line-accepted-request-id": uuid.uuid4().hex},
                    )
                fake.retry_keys.add(key)
            return 200, _sent(body), as_json, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, state: _State) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # Skip the reverse DNS lookup HTTPServer does: useless on loopback, slow in sandboxes.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class FakeLine:
    """The Messaging API (api.line.me and api-data.line.me) on one loopback port."""

    def __init__(self, access_token: str = ACCESS_TOKEN) -> None:
        self._state = _State(access_token)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """For both LINE_API_BASE_URL and LINE_API_DATA_BASE_URL."""
        assert self._server is not None, "FakeLine is not running"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Self:
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        assert self._server is not None, "FakeLine is not running"
        with self._server.lock:
            yield self._state

    def reset(self) -> None:
        with self._locked() as state:
            state.calls.clear()
            state.used_tokens.clear()
            state.retry_keys.clear()
            state.contents.clear()
            state.failures.clear()
            state.delay = 0.0

    @property
    def calls(self) -> Calls:
        with self._locked() as state:
            return Calls(state.calls)

    def add_content(self, message_id: str, data: bytes, content_type: str) -> None:
        """What GET /v2/bot/message/<id>/content serves (a user's image or audio)."""
        with self._locked() as state:
            state.contents[message_id] = (data, content_type)

    def expire(self, reply_token: str) -> None:
        """Make a reply token invalid, as LINE does after about a minute or one use."""
        with self._locked() as state:
            state.used_tokens.add(reply_token)

    def fail(self, path: str, *statuses: int) -> None:
        """Answer the next calls to `path` with these statuses, one each."""
        with self._locked() as state:
            state.failures.setdefault(path, []).extend(statuses)

    def slow_down(self, seconds: float) -> None:
        with self._locked() as state:
            state.delay = seconds

    def wait_for(self, condition: Callable[[Calls], bool], timeout: float = WAIT_SECONDS) -> Calls:
        """Block until the recorded calls satisfy `condition`; fail with what was seen."""
        assert self._server is not None, "FakeLine is not running"
        deadline = time.monotonic() + timeout
        with self._server.changed:
            while not condition(self._state.calls):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"LINE calls never matched; got {self._state.calls!r}")
                self._server.changed.wait(remaining)
            return Calls(self._state.calls)


# --- The other direction: webhooks, as LINE sends them -------------------------------------


def signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_body(events: list[JSON], destination: str = "U" + "0" * 32) -> bytes:
    return json.dumps({"destination": destination, "events": events}, ensure_ascii=False).encode()


def post_webhook(
    url: str, events: list[JSON], secret: str = CHANNEL_SECRET, *, sign: str | None = None
) -> httpx.Response:
    """POST a webhook signed with `secret` (or with the literal signature `sign`)."""
    body = webhook_body(events)
    headers = {
        "Content-Type": "application/json",
        "X-Line-Signature": sign or signature(secret, body),
    }
    return httpx.post(url, content=body, headers=headers, timeout=10)


def user_id(n: int = 1) -> str:
    return "U" + f"{n:032x}"


def event(
    kind: str,
    *,
    user: str | None = None,
    redelivery: bool = False,
    event_id: str | None = None,
    reply_token: str | None = None,
    source: JSON | None = None,
    **fields: Any,
) -> JSON:
    """A webhook event with the fields LINE always sends."""
    event_id = event_id or uuid.uuid4().hex.upper()[:26]
    base: JSON = {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": redelivery},
        "source": source or {"type": "user", "userId": user or user_id()},
    }
    if kind not in ("unfollow", "leave", "memberLeft"):
        base["replyToken"] = reply_token or f"rt-{event_id}"
    return {**base, **fields}


def message_event(message: JSON, **options: Any) -> JSON:
    message = {"id": str(next(_ids)), "quoteToken": uuid.uuid4().hex, **message}
    return event("message", message=message, **options)


def text_event(text: str, **options: Any) -> JSON:
    return message_event({"type": "text", "text": text}, **options)


if __name__ == "__main__":
    # For benchmarks: run in a process of its own, print the base URL, serve until stdin closes.
    with FakeLine() as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()
