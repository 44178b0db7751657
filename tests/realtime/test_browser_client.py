"""The browser voice client page in headless Chromium: a fake microphone plays espeak-ng
speech, the page streams it to /ws, and the reply's text lands in the page (read back over
the DevTools protocol)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from characters.models import Character
from conversations.models import Message
from conversations.speech.audio import wav_bytes
from tests.browser import TIMEOUT, DevTools, chromium
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.speech.audio import RATE, require_local_stt, utterance

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_for_text(page: DevTools, element_id: str) -> str:
    for _ in range(TIMEOUT * 5):
        if text := await page.text_of(element_id):
            return text
        await asyncio.sleep(0.2)
    status = await page.text_of("status")
    raise AssertionError(f"#{element_id} stayed empty; the page says {status!r}")


async def test_the_page_completes_a_voice_turn_in_chromium(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
) -> None:
    require_local_stt()
    fake_llm.script(ScriptedReply(text="[face:joy]Paris! It is the capital of France."))
    microphone = tmp_path / "microphone.wav"
    # Silence first: the page opens its microphone only once the session is connected.
    microphone.write_bytes(wav_bytes(utterance(before=3.0, after=3.0).pcm, RATE))

    async with chromium(tmp_path / "profile", microphone) as page:
        await page.open(f"{asgi_server.url}/voice/")
        await page.evaluate(f"document.getElementById('key').value = {json.dumps(api_key)}")
        # Note every face the page shows.
        await page.evaluate(
            "window.faces = []; new MutationObserver(() => window.faces.push("
            "document.getElementById('face').dataset.face)).observe("
            "document.getElementById('face'), {attributes: true})"
        )
        await page.click("connect")
        final = await wait_for_text(page, "final")
        recognized = await page.text_of("recognized")
        faces = await page.evaluate("window.faces")

    assert "capital of france" in recognized.lower()
    assert final == "Paris! It is the capital of France."
    assert "joy" in faces
    contents = [m.content async for m in Message.objects.order_by("position")]
    assert contents == [recognized, "[face:joy]Paris! It is the capital of France."]
