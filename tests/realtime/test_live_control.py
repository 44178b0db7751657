"""Live control: staff make a live session speak or stop, from the REST API and the admin,
also when the session lives in another server process (Redis channel layer)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import Message, TurnRecord
from tests.conftest import AsgiServer, require_service, server_env
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_daphne, stop_process
from tests.realtime.ws import Socket, types

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three. ", "Four."], chunk_delay=1.0)
PASSWORD = "staff-password-for-tests"


@pytest.fixture
def staff(django_user_model: type[User]) -> httpx.BasicAuth:
    django_user_model.objects.create_superuser("staff", "staff@example.com", PASSWORD)
    return httpx.BasicAuth("staff", PASSWORD)


async def live_id(session_id: str) -> str:
    return str((await LiveSession.objects.aget(session_id=session_id)).pk)


async def api_post(server: str, auth: httpx.BasicAuth, path: str, **body: str) -> int:
    async with httpx.AsyncClient(base_url=server, auth=auth, timeout=30) as client:
        return (await client.post(path, json=body)).status_code


async def test_the_api_makes_a_live_session_speak(
    asgi_server: AsgiServer, character: Character, api_key: str, staff: httpx.BasicAuth
) -> None:
    socket = await Socket.open(asgi_server.url, api_key, session_id="kiosk")
    try:
        await socket.start(user_id="u1")
        path = f"/api/live-sessions/{await live_id('kiosk')}/speak/"
        status = await api_post(asgi_server.url, staff, path, text="[face:joy]Welcome! Hi.")
        messages = await socket.until("final")
    finally:
        await socket.close()

    assert status == 202
    assert types(messages) == ["stop", "chunk", "chunk", "final"]
    assert messages[1]["avatar_control_request"]["face_name"] == "joy"
    assert base64.b64decode(messages[1]["audio_data"])[:4] == b"RIFF"
    assert messages[-1]["text"] == "[face:joy]Welcome! Hi."
    assert not await Message.objects.aexists()  # not part of the user's conversation


async def test_the_api_refuses_non_staff_and_empty_text(
    asgi_server: AsgiServer, character: Character, api_key: str, staff: httpx.BasicAuth
) -> None:
    socket = await Socket.open(asgi_server.url, api_key, session_id="kiosk")
    try:
        await socket.start(user_id="u1")
        path = f"/api/live-sessions/{await live_id('kiosk')}/speak/"
        anonymous = await api_post(asgi_server.url, httpx.BasicAuth("x", "y"), path, text="Hi")
        empty = await api_post(asgi_server.url, staff, path, text=" ")
    finally:
        await socket.close()

    assert (anonymous, empty) == (403, 400)


async def test_the_api_interrupts_a_live_session(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    staff: httpx.BasicAuth,
    fake_llm: FakeOpenAI,
) -> None:
    fake_llm.script(SLOW)
    socket = await Socket.open(asgi_server.url, api_key, session_id="kiosk")
    try:
        await socket.start(user_id="u1")
        await socket.send("invoke", text="Tell me a long story")
        await socket.until("chunk")
        path = f"/api/live-sessions/{await live_id('kiosk')}/interrupt/"
        status = await api_post(asgi_server.url, staff, path)
        messages = await socket.until("final")
    finally:
        await socket.close()

    assert status == 202
    assert types(messages)[types(messages).index("stop") :] == ["stop", "final"]
    assert messages[-1]["metadata"] == {"interrupted": True}
    assert "Four." not in messages[-1]["text"]
    assert [r.status async for r in TurnRecord.objects.all()] == ["interrupted"]
    assert not await Message.objects.aexists()


async def test_the_admin_action_makes_a_live_session_speak(
    asgi_server: AsgiServer, character: Character, api_key: str, staff: httpx.BasicAuth
) -> None:
    socket = await Socket.open(asgi_server.url, api_key, session_id="kiosk")
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30) as browser:
        try:
            await socket.start(user_id="u1")
            login = await browser.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
            assert token
            await browser.post(
                "/admin/login/?next=/admin/",
                data={
                    "csrfmiddlewaretoken": token[1],
                    "username": "staff",
                    "password": PASSWORD,
                },
            )
            changelist = "/admin/channels_app/livesession/"
            page = await browser.get(changelist)
            csrf = {"csrfmiddlewaretoken": browser.cookies["csrftoken"]}
            selected = {"_selected_action": await live_id("kiosk")}
            form = await browser.post(changelist, data={**csrf, **selected, "action": "speak"})
            done = await browser.post(
                changelist, data={**csrf, **selected, "action": "speak", "text": "Hello there."}
            )
            messages = await socket.until("final")
        finally:
            await socket.close()

    assert "kiosk" in page.text and 'name="text"' in form.text
    assert done.status_code == 302
    assert types(messages) == ["stop", "chunk", "final"]
    assert messages[-1]["text"] == "Hello there."


@pytest.fixture
def second_server(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    require_service("Redis (REDIS_URL), to share a channel layer", bool(settings.REDIS_URL))
    process, url = start_daphne(server_env(fake_openai), tmp_path / "second.log")
    try:
        yield url
    finally:
        stop_process(process)


async def test_a_second_server_process_makes_a_session_speak_and_stop(
    asgi_server: AsgiServer,
    second_server: str,
    character: Character,
    api_key: str,
    staff: httpx.BasicAuth,
    fake_llm: FakeOpenAI,
) -> None:
    socket = await Socket.open(asgi_server.url, api_key, session_id="kiosk")
    try:
        await socket.start(user_id="u1")
        session = await live_id("kiosk")
        await api_post(second_server, staff, f"/api/live-sessions/{session}/speak/", text="Hi.")
        spoken = await socket.until("final")
        fake_llm.script(SLOW)
        await socket.send("invoke", text="Tell me a long story")
        await socket.until("chunk")
        await api_post(second_server, staff, f"/api/live-sessions/{session}/interrupt/")
        stopped = await socket.until("final")
    finally:
        await socket.close()

    assert types(spoken) == ["stop", "chunk", "final"] and spoken[-1]["text"] == "Hi."
    assert types(stopped)[types(stopped).index("stop") :] == ["stop", "final"]
    assert stopped[-1]["metadata"] == {"interrupted": True}
