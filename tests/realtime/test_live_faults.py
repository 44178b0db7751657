"""Faults of live control.

- A daphne process killed with live sessions open: nothing runs their disconnect, so their
  rows stop being renewed and expire (LIVE_SESSION_TTL_SECONDS). Expired sessions are not
  listed (REST API, admin, AIAvatarKit's /ws/sessions) nor controllable, and the next session
  that starts anywhere deletes them.
- Redis unreachable: commands answer 503 with the API's JSON error (the admin shows an error)
  and /healthz 503 naming the channel layer, and all work again once Redis is back, without a
  restart; a socket keeps talking meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import EndUser
from tests.conftest import server_env
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp
from tests.processes import RedisServer, start_daphne, stop_process
from tests.realtime.ws import Socket
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TTL_SECONDS = 3
SESSION = "kiosk-on-a-dead-server"


def listed(client: Client) -> list[str]:
    response = client.get("/api/live-sessions/")
    assert response.status_code == 200
    return [row["session_id"] for row in response.json()["results"]]


@pytest.mark.live
def test_a_killed_servers_sessions_expire_and_cannot_be_commanded(
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    settings: Settings,
    admin_client: Client,
    tmp_path: Path,
) -> None:
    settings.LIVE_SESSION_TTL_SECONDS = TTL_SECONDS
    env = server_env(
        fake_llm,
        LIVE_SESSION_HEARTBEAT_SECONDS="0.3",
        LIVE_SESSION_TTL_SECONDS=str(TTL_SECONDS),
    )
    process, url = start_daphne(env, tmp_path / "daphne.log")
    loop = asyncio.new_event_loop()
    socket = loop.run_until_complete(Socket.open(url, api_key, session_id=SESSION))
    try:
        loop.run_until_complete(socket.start(user_id="u1"))
        row = LiveSession.objects.get(session_id=SESSION)
        # Alive, the server renews the row: it is still listed after its first TTL.
        wait_until(
            lambda: (
                timezone.now() > row.seen_at + timedelta(seconds=TTL_SECONDS)
                and listed(admin_client) == [SESSION]
            ),
            "the session to outlive its first TTL while its server runs",
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        stop_process(process)
        loop.run_until_complete(socket.close())
        loop.close()
    assert LiveSession.objects.filter(pk=row.pk).exists()  # no disconnect ran

    wait_until(lambda: listed(admin_client) == [], "the dead server's session to expire")
    speak = admin_client.post(
        f"/api/live-sessions/{row.pk}/speak/", {"text": "Hi"}, content_type="application/json"
    )
    interrupt = admin_client.post(f"/api/live-sessions/{row.pk}/interrupt/")
    detail = admin_client.get(f"/api/live-sessions/{row.pk}/")
    assert (speak.status_code, interrupt.status_code, detail.status_code) == (404, 404, 404)
    changelist = admin_client.get("/admin/channels_app/livesession/")
    assert changelist.status_code == 200 and SESSION not in changelist.content.decode()
    found = Client().get(
        "/ws/sessions", {"user_id": "u1"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert found.json() == {"session_id": None}


async def test_a_new_session_deletes_expired_ones(
    app: InProcessApp, character: Character, api_key: str, settings: Settings
) -> None:
    settings.LIVE_SESSION_TTL_SECONDS = TTL_SECONDS
    end_user = await EndUser.objects.acreate(display_name="gone")
    expired = await LiveSession.objects.acreate(
        channel_name="specific.dead-process!1",
        session_id="gone",
        end_user=end_user,
        character=character,
        seen_at=timezone.now() - timedelta(seconds=TTL_SECONDS + 1),
    )
    socket = await Socket.open(app.url, api_key, session_id="fresh")
    try:
        await socket.start(user_id="u2")
    finally:
        await socket.close()

    assert not await LiveSession.objects.filter(pk=expired.pk).aexists()


def test_live_control_answers_503_while_redis_is_down_then_recovers(
    character: Character, admin_client: Client, settings: Settings, redis_server: RedisServer
) -> None:
    settings.CHANNEL_LAYERS = {  # the layer the settings name for Redis
        "default": {
            "BACKEND": "channels_app.layers.OutageTolerantRedisChannelLayer",
            "CONFIG": {"hosts": [redis_server.url]},
        }
    }
    session = LiveSession.objects.create(
        channel_name="specific.elsewhere!1",
        session_id="kiosk",
        end_user=EndUser.objects.create(display_name="Ada"),
        character=character,
    )
    speak = f"/api/live-sessions/{session.pk}/speak/"
    interrupt = f"/api/live-sessions/{session.pk}/interrupt/"
    admin_interrupt = {"action": "interrupt", "_selected_action": [str(session.pk)]}

    def say() -> int:
        body = {"text": "Hello"}
        return admin_client.post(speak, body, content_type="application/json").status_code

    def health() -> tuple[int, str]:
        response = admin_client.get("/healthz")
        return response.status_code, response.json()["checks"]["channel_layer"]

    before, healthy = say(), health()
    redis_server.stop()
    spoken, stopped = (
        admin_client.post(speak, {"text": "Hello"}, content_type="application/json"),
        admin_client.post(interrupt),
    )
    in_admin = admin_client.post("/admin/channels_app/livesession/", admin_interrupt, follow=True)
    unhealthy = health()
    redis_server.restart()
    after, healthy_again = say(), health()

    assert (before, spoken.status_code, stopped.status_code, after) == (202, 503, 503, 202)
    assert healthy == healthy_again == (200, "ok")
    assert unhealthy[0] == 503 and unhealthy[1].startswith("failed: ")
    assert spoken["Content-Type"] == "application/json"
    assert "Redis" in spoken.json()["detail"] and stopped.json() == spoken.json()
    shown = [str(m) for m in in_admin.context["messages"]]
    assert shown == [spoken.json()["detail"]]


async def test_a_socket_keeps_talking_while_redis_is_down(
    app: InProcessApp, character: Character, api_key: str, settings: Settings
) -> None:
    """The layer the settings name for Redis waits out the outage: the socket starts, answers
    and closes cleanly, without live control."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_app.layers.OutageTolerantRedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    socket = await Socket.open(app.url, api_key, session_id="offline")
    try:
        connected = await socket.start(user_id="u3")
        await socket.send("invoke", text="Hello")
        answered = await socket.until("final")
    finally:
        await socket.close()

    assert connected["type"] == "connected"
    assert answered[-1]["type"] == "final" and answered[-1]["text"]
    assert not await LiveSession.objects.filter(session_id="offline").aexists()
