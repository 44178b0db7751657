"""A fake VOICEVOX / AivisSpeech engine: the two-step API over loopback HTTP.

`POST /audio_query?speaker=&text=` answers an audio query (JSON) like the real engine;
`POST /synthesis?speaker=` takes that query back as the body and answers a WAV whose length
follows the text and `speedScale`. Everything received is recorded in `requests`; `fail()`
scripts error statuses and `hold()` delays one sentence's synthesis, and with a `journal`
set every step is written down so tests can prove how calls interleaved with the LLM.

    with FakeVoicevox() as engine:
        engine.fail("/synthesis", status=500)
        ...
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.openai_server import LoopbackFake, _AbortResponse, _Server, tone_wav

JSON = dict[str, Any]

THREAD_NAME_PREFIX = "FakeVoicevox"
SAMPLE_RATE = 24000  # VOICEVOX's default outputSamplingRate
SECONDS_PER_CHARACTER = 0.08
SPEAKERS = range(0, 1_000_000_000)  # AivisSpeech uses large speaker ids


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "FakeVoicevox/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet, like the OpenAI fake."""

    @property
    def fake(self) -> FakeVoicevox:
        fake = self.server.fake
        assert isinstance(fake, FakeVoicevox)
        return fake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        try:
            self._route(url.path, params, body)
        except (_AbortResponse, OSError):
            self.close_connection = True

    def _route(self, path: str, params: dict[str, str], body: Any) -> None:
        fake = self.fake
        if path not in ("/audio_query", "/synthesis"):
            self._send(404, b'{"detail":"Not Found"}', "application/json")
            return
        status = fake._record(path, params, body)
        speaker = params.get("speaker", "")
        if not speaker.isdigit() or int(speaker) not in SPEAKERS:
            self._send(422, b'{"detail":"speaker is required"}', "application/json")
        elif status != 200:
            self._send(status, b'{"detail":"Internal Server Error"}', "application/json")
        elif path == "/audio_query":
            text = params.get("text")
            if not text:
                self._send(422, b'{"detail":"text is required"}', "application/json")
                return
            self._send(200, json.dumps(audio_query(text)).encode(), "application/json")
        elif not isinstance(body, dict) or "kana" not in body:
            self._send(422, b'{"detail":"an audio query is required"}', "application/json")
        else:
            kana = str(body["kana"])
            fake._wait_for_release(kana, self.server.stopping)
            if fake.journal is not None:
                fake.journal.add("voicevox", f"synthesized {kana}")
            speed = float(body.get("speedScale") or 1.0)
            seconds = len(kana) * SECONDS_PER_CHARACTER / speed
            self._send(200, tone_wav(seconds, SAMPLE_RATE), "audio/wav")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def audio_query(text: str) -> JSON:
    """The shape of the real engine's query; `kana` carries the text to the fake synthesis."""
    return {
        "accent_phrases": [],
        "speedScale": 1.0,
        "pitchScale": 0.0,
        "intonationScale": 1.0,
        "volumeScale": 1.0,
        "prePhonemeLength": 0.1,
        "postPhonemeLength": 0.1,
        "outputSamplingRate": SAMPLE_RATE,
        "outputStereo": False,
        "kana": text,
    }


class FakeVoicevox(LoopbackFake):
    handler_class = _Handler
    thread_prefix = THREAD_NAME_PREFIX

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[JSON] = []
        """{"path", "params", "json"} of every request, in arrival order."""
        self._lock = threading.Lock()
        self._failures: dict[str, list[int]] = {}
        self._held: dict[str, threading.Event] = {}

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        """The next `times` requests to `path` answer `status`."""
        with self._lock:
            self._failures.setdefault(path, []).extend([status] * times)

    def hold(self, text: str) -> threading.Event:
        """Delay synthesis of sentences containing `text` until the returned event is set
        (or the server stops)."""
        with self._lock:
            return self._held.setdefault(text, threading.Event())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            for event in self._held.values():
                event.set()
            self._held.clear()
            self.journal = None

    def _record(self, path: str, params: dict[str, str], body: Any) -> int:
        with self._lock:
            self.requests.append({"path": path, "params": params, "json": body})
            if self.journal is not None:
                what = params.get("text") if path == "/audio_query" else (body or {}).get("kana")
                self.journal.add("voicevox", f"{path.strip('/')} {what}")
            failures = self._failures.get(path)
            return failures.pop(0) if failures else 200

    def _wait_for_release(self, kana: str, stopping: threading.Event) -> None:
        with self._lock:
            events = [event for text, event in self._held.items() if text in kana]
        for event in events:
            while not event.wait(0.05):
                if stopping.is_set():
                    raise _AbortResponse
