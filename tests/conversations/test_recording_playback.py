"""A recorded voice turn plays back in headless Chromium: the conversation page, opened with a
staff member's session on the live server, loads both recordings into its <audio> elements
(their metadata gives each its length); another tenant's staff get 404 for the same page."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.models import TurnRecord
from conversations.speech.audio import wav_bytes
from tests.browser import TIMEOUT, chromium
from tests.conftest import AsgiServer
from tests.speech.audio import RATE, utterance

pytestmark = pytest.mark.django_db(transaction=True)

# Resolves with each <audio>'s length once its metadata is loaded, or -1 if it failed to load.
DURATIONS = """Promise.all(Array.from(document.querySelectorAll("audio")).map((audio) =>
  new Promise((resolve) => {
    if (audio.readyState >= 1) { resolve(audio.duration); return; }
    audio.addEventListener("loadedmetadata", () => resolve(audio.duration));
    audio.addEventListener("error", () => resolve(-1));
  })))"""


def session_of(username: str, tenant: Tenant) -> str:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def durations(
    server: AsgiServer, profile: Path, session: str, path: str
) -> tuple[str, list[float]]:
    async with chromium(profile) as page:
        await page.call("Network.enable")
        await page.call("Network.setCookie", name="sessionid", value=session, url=server.url)
        await page.open(server.url + path)
        title: str = await page.evaluate("document.title")
        found: list[float] = await asyncio.wait_for(page.evaluate(DURATIONS), TIMEOUT)
        return title, found


def test_a_recorded_voice_turn_plays_back_in_the_browser(
    asgi_server: AsgiServer, character: Character, tmp_path: Path
) -> None:
    heard = utterance("What is the capital of France?").pcm
    said = utterance("Paris, of course.", before=0.1, after=0.1).pcm
    turn = TurnRecord(
        character=character,
        context_id=uuid.uuid4(),
        channel="websocket",
        status="completed",
        request_text="What is the capital of France?",
        response_text="Paris, of course.",
    )
    turn.request_audio.save("r.wav", ContentFile(wav_bytes(heard, RATE)), save=False)
    turn.response_audio.save("a.wav", ContentFile(wav_bytes(said, RATE)), save=False)
    turn.save()
    mine = session_of("ann", character.tenant)
    theirs = session_of("bob", Tenant.named("globex"))
    page = f"/admin/conversations/turnrecord/conversation/{turn.context_id}/"

    # Only the browser is asynchronous: this process's database work stays on this thread.
    title, lengths = async_to_sync(durations)(asgi_server, tmp_path / "mine", mine, page)
    other_title, none = async_to_sync(durations)(asgi_server, tmp_path / "theirs", theirs, page)

    assert "Conversation with Mia" in title
    assert len(lengths) == 2, json.dumps(lengths)
    assert lengths[0] == pytest.approx(len(heard) / 2 / RATE, abs=0.05)
    assert lengths[1] == pytest.approx(len(said) / 2 / RATE, abs=0.05)
    assert "Not Found" in other_title and none == []
