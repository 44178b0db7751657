"""A fake Dify service API (a chat app) on 127.0.0.1, for the Dify LLM provider's tests.

It speaks Dify's wire format: `POST /v1/chat-messages` streaming `message` events and a
`message_end` that names the conversation, `POST /v1/files/upload` (multipart), and Dify's
error body `{"code", "message", "status"}`. It keeps each conversation's queries, like Dify
does, so a test can prove a conversation id was carried from turn to turn. Script replies
with the OpenAI fake's `ScriptedReply` (`text`, `status`, `delay`, `chunk_delay`, `cut_after`,
`ending`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

from tests.fakes.openai_server import (
    _RETRY_HEADERS,
    JSON,
    ScriptedFake,
    ScriptedReply,
    _dumps,
    _Handler,
    split_into_deltas,
)

FAKE_DIFY_API_KEY = "app-fake-dify-key"
THREAD_NAME_PREFIX = "FakeDify"


def dify_error(status: int, code: str, message: str) -> JSON:
    return {"code": code, "message": message, "status": status}


class _DifyHandler(_Handler):
    server_version = "FakeDify/1.0"

    def _route(self, path: str, raw: bytes) -> None:
        fake = cast(FakeDify, self.server.fake)
        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            self._send_json(401, dify_error(401, "unauthorized", "Invalid API key"))
        elif (self.command, path) == ("POST", "/v1/chat-messages"):
            self._chat(raw)
        elif (self.command, path) == ("POST", "/v1/files/upload"):
            self._upload(raw)
        else:
            self._send_json(404, dify_error(404, "not_found", f"No route {self.path}"))

    def _chat(self, raw: bytes) -> None:
        fake = cast(FakeDify, self.server.fake)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("user") or "query" not in body:
            self._send_json(400, dify_error(400, "invalid_param", "query and user are required"))
            return
        conversation_id = body.get("conversation_id") or ""
        if conversation_id and conversation_id not in fake.conversations:
            self._send_json(404, dify_error(404, "not_found", "Conversation Not Exists."))
            return
        reply = fake._accept(body)
        self._hold(reply)
        if reply.status != 200:
            error = dify_error(reply.status, "upstream_error", reply.text or "Failed")
            self._send_json(reply.status, error, _RETRY_HEADERS)
            return
        conversation_id = conversation_id or str(uuid.uuid4())
        queries = fake.remember(conversation_id, body["query"])
        text = reply.text or f"You said: {body['query']}. Turn {len(queries)} of our chat."
        message_id = str(uuid.uuid4())
        self._start_response(200, "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk_delay = fake.default_chunk_delay if reply.chunk_delay is None else reply.chunk_delay
        common = {"conversation_id": conversation_id, "message_id": message_id}
        if self._ends_short(reply.ending, started=False):
            return
        pieces = split_into_deltas(text)
        for sent, piece in enumerate(pieces):
            if sent == reply.cut_after:
                self._cut()
            self._pause(chunk_delay)
            self._event(
                {"event": "message", "answer": piece, "created_at": int(time.time()), **common}
            )
        if reply.cut_after is not None:
            self._cut()
        if self._ends_short(reply.ending, started=True):
            return
        # Approximate counts, as Dify reports its model's: words asked, one a piece answered.
        asked = len(str(body["query"]).split())
        usage = {
            "prompt_tokens": asked,
            "completion_tokens": len(pieces),
            "total_tokens": asked + len(pieces),
            "currency": "USD",
        }
        self._event({"event": "message_end", "metadata": {"usage": usage}, **common})
        self._write_chunk(b"")

    def _upload(self, raw: bytes) -> None:
        fields, upload = self._multipart(raw)
        if upload is None or not fields.get("user"):
            self._send_json(400, dify_error(400, "no_file_uploaded", "file and user required"))
            return
        file_id = cast(FakeDify, self.server.fake).store_upload(upload)
        self._send_json(
            201,
            {
                "id": file_id,
                "name": upload["filename"],
                "size": len(upload["data"]),
                "mime_type": upload["content_type"],
            },
        )

    def _event(self, payload: JSON) -> None:
        self._write_chunk(b"data: %b\n\n" % _dumps(payload))


class FakeDify(ScriptedFake):
    """An in-process Dify chat app; `requests` holds the chat-message bodies received."""

    handler_class = _DifyHandler
    thread_prefix = THREAD_NAME_PREFIX
    api_key = FAKE_DIFY_API_KEY
    default_reply = ScriptedReply()

    def __init__(self) -> None:
        super().__init__()
        self.conversations: dict[str, list[str]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def remember(self, conversation_id: str, query: str) -> list[str]:
        with self._lock:
            queries = self.conversations.setdefault(conversation_id, [])
            queries.append(query)
            return list(queries)

    def store_upload(self, upload: dict[str, Any]) -> str:
        file_id = str(uuid.uuid4())
        with self._lock:
            self.uploads[file_id] = upload
        return file_id

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.conversations.clear()
            self.uploads.clear()
