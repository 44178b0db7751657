"""The two entry points that are not HTTP request/response pairs, fuzzed over the real stack:
`/ws` frames on one live socket, and LINE webhooks signed with the channel's secret, handled
by a real Celery worker.

A frame must never close the socket with an error (1011) or leave it silent: after each one a
probe (a frame that is not JSON) must still get its `error` reply. A signed webhook must get a
JSON answer below 500, and every event it queued must end handled (done, ignored or failed),
none left `processing`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from characters.models import Character
from conversations.line.models import LineChannel, LineEvent
from tests.conftest import AsgiServer
from tests.conversations.line.conftest import LineStack
from tests.fakes.line_server import CHANNEL_SECRET, signature, text_event
from tests.fakes.openai_server import FakeOpenAI
from tests.fuzz.conftest import examples
from tests.fuzz.report import only_in_shard, tally
from tests.fuzz.test_chat_endpoints import junk
from tests.realtime.ws import Socket
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PROBE = "{not json"
PROBE_REPLY = "Message is not valid JSON."
SESSION = "fuzz"

frame_fields = {
    "type": st.sampled_from(["start", "config", "invoke", "interrupt", "dance"]) | junk,
    "session_id": st.just(SESSION) | junk,
    "user_id": junk,
    "context_id": junk,
    "text": junk,
    "audio_data": st.sampled_from(["AAAA", "not base64", ""]) | junk,
    "files": junk,
    "system_prompt_params": junk,
    "metadata": st.fixed_dictionaries(
        {},
        optional={
            "response_audio_chunk_size": junk,
            "volume_db_threshold": junk,
            "barge_in_enabled": junk,
            "inline_llm_params": junk,
        },
    )
    | junk,
}
frames = st.fixed_dictionaries({}, optional=frame_fields).map(json.dumps) | junk.map(json.dumps)


class Prober:
    """One socket, reopened (and counted) whenever a frame ends it."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.socket: Socket | None = None

    async def send(self, frame: str) -> str | None:
        """Send `frame` then the probe; what went wrong, or None."""
        if self.socket is None:
            self.socket = await Socket.open(self.url, self.key, session_id=SESSION)
            await self.socket.start(user_id="fuzzer")
        try:
            await self.socket.connection.send(frame)
            await self.socket.connection.send(PROBE)
            while True:
                message = await self.socket.recv()
                if message["type"] == "error" and message["metadata"]["error"] == PROBE_REPLY:
                    return None
        except ConnectionClosed as closed:
            self.socket = None
            code = closed.rcvd.code if closed.rcvd else None
            # `stop` closes normally, an oversized frame with 4009: the socket's own answers.
            return None if code in (1000, 4009) else f"socket closed with {code}"
        except TimeoutError:
            await self.close()
            return "no reply to the probe"

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
            self.socket = None


@only_in_shard(0)
def test_ws_frames_never_break_the_socket(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    counted = tally("/ws frames")
    prober = Prober(asgi_server.url, api_key)
    loop = asyncio.new_event_loop()

    @given(frame=frames)
    @settings(
        max_examples=examples(40),
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(frame: str) -> None:
        found = loop.run_until_complete(prober.send(frame))
        counted.record("failed" if found else "ok", found and f"{found}: {frame[:300]}")

    try:
        run()
    finally:
        loop.run_until_complete(prober.close())
        loop.close()
    assert counted.failures == 0, counted.examples


line_events = st.lists(
    st.builds(
        lambda text, extra: {**text_event(text), **extra},
        st.text(max_size=40) | st.sampled_from(["\udfff", "a\x00"]),
        st.dictionaries(
            st.sampled_from(["mode", "source", "message", "type", "replyToken", "timestamp"]),
            junk,
            max_size=2,
        ),
    )
    | st.dictionaries(st.text(max_size=10), junk, max_size=4),
    max_size=3,
)


def _post(url: str, events: list[dict[str, Any]]) -> httpx.Response:
    body = json.dumps({"destination": "U" + "0" * 32, "events": events}).encode()
    return httpx.post(
        url,
        content=body,
        headers={"X-Line-Signature": signature(CHANNEL_SECRET, body)},
        timeout=20,
    )


@only_in_shard(1)
def test_signed_line_webhooks_are_answered_and_every_event_handled(
    line_stack: LineStack, line_channel: LineChannel, fake_llm: FakeOpenAI
) -> None:
    counted = tally("POST /line/<slug>/webhook (signed)")

    @given(events=line_events)
    @settings(
        max_examples=examples(30),
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(events: list[dict[str, Any]]) -> None:
        response = _post(line_stack.webhook_url(), events)
        json_answer = response.headers.get("content-type", "").startswith("application/json")
        found = None
        if response.status_code >= 500 or not json_answer:
            found = f"{response.status_code}: {response.text[:200]}"
        counted.record(str(response.status_code), found and f"{found}: {events!r:.300}")

    run()
    # A genuine event after the campaign: the worker still answers, and nothing is left
    # `processing` once it has (events are handled in order of arrival).
    last = text_event("still there?")
    assert _post(line_stack.webhook_url(), [last]).status_code == 200
    wait_until(
        lambda: (
            LineEvent.objects.filter(webhook_event_id=last["webhookEventId"])
            .exclude(status=LineEvent.Status.PROCESSING)
            .exists()
        ),
        "the worker to handle an event sent after the campaign",
    )
    assert not LineEvent.objects.filter(status=LineEvent.Status.PROCESSING).exists()
    assert counted.failures == 0, counted.examples
