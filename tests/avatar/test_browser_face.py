"""The voice page's face in headless Chromium: typed text, a spoken reply with face frames,
and the mouth seen moving in screenshots (live: a real daphne and browser)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from characters.models import Character
from conversations.speech.audio import wav_bytes
from tests.browser import TIMEOUT, DevTools, chromium
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.speech.audio import RATE, require_espeak, silence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

REPLY = "[face:joy]Hello! What a wonderful day it is to open my mouth and talk to you."


async def _poll(page: DevTools, expression: str, what: str) -> Any:
    for _ in range(TIMEOUT * 10):
        if value := await page.evaluate(expression):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}; the page says {await page.text_of('status')!r}")


MOUTH_PATH = "document.getElementById('mouth').getAttribute('d')"


async def _mouth_shot(page: DevTools) -> bytes:
    """A screenshot of the face's mouth region only (brows and eyes blink on their own)."""
    x, y, w, h = await page.evaluate(
        "(() => { const r = document.querySelector('#face svg').getBoundingClientRect();"
        " return [r.x, r.y, r.width, r.height]; })()"
    )
    clip = {"x": x + 0.36 * w, "y": y + 0.6 * h, "width": 0.28 * w, "height": 0.35 * h, "scale": 1}
    shot = await page.call("Page.captureScreenshot", format="png", clip=clip)
    return base64.b64decode(shot["data"])


async def test_the_face_moves_its_mouth_with_the_reply(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
) -> None:
    require_espeak()
    fake_llm.script(ScriptedReply(text=REPLY))
    microphone = tmp_path / "microphone.wav"
    microphone.write_bytes(wav_bytes(silence(30.0), RATE))

    async with chromium(tmp_path / "profile", microphone) as page:
        await page.open(f"{asgi_server.url}/voice/")
        await page.evaluate(f"document.getElementById('key').value = {json.dumps(api_key)}")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=800,
            height=760,
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.click("connect")
        await _poll(page, "!document.getElementById('send').disabled", "never connected")
        await _poll(
            page,
            "document.getElementById('status').textContent.startsWith('Connected')",
            "no session",
        )
        resting = await _mouth_shot(page)
        resting_mouth = await page.evaluate(MOUTH_PATH)
        await page.evaluate("document.getElementById('say').value = 'Say hello'")
        await page.click("send")
        await _poll(
            page, "Number(document.getElementById('face').dataset.jaw) > 0.3", "mouth never opened"
        )
        talking = await _mouth_shot(page)
        page_talking = await page.call("Page.captureScreenshot", format="png")
        face = await page.evaluate("document.getElementById('face').dataset.face")
        await _poll(page, "document.getElementById('final').textContent", "no final")
        # The page's own player state: nothing playing, nothing queued.
        await _poll(page, "state.playing === null && state.queue.length === 0", "still playing")
        await _poll(
            page, "document.getElementById('face').dataset.jaw === '0.000'", "mouth stayed open"
        )
        closed_mouth = await page.evaluate(MOUTH_PATH)
        (tmp_path / "resting.png").write_bytes(resting)
        (tmp_path / "talking.png").write_bytes(talking)
        (tmp_path / "page.png").write_bytes(base64.b64decode(page_talking["data"]))

    assert talking != resting  # the mouth region looks different while speaking
    # Once the voice has stopped the mouth is drawn exactly as before. Compared as the drawn
    # shape, not pixels: text shown below the face can move it by a fraction of a pixel.
    assert closed_mouth == resting_mouth
    assert face == "joy"
