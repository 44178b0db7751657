"""The browser voice client page in headless Chromium: a fake microphone plays espeak-ng
speech, the page streams it to /ws, and the reply's text lands in the page (read back over
the DevTools protocol)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from characters.models import Character
from conversations.models import Message
from conversations.speech.audio import wav_bytes
from tests.conftest import AsgiServer, require_service
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.speech.audio import RATE, utterance
from tests.speech.test_speech_api import require_local_stt

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 90  # seconds for the whole conversation; a hang fails instead of stalling


class DevTools:
    """Just enough of the Chrome DevTools protocol: evaluate JavaScript, click."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.connection.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.connection.recv())
            if reply.get("id") == call_id:
                assert "error" not in reply, reply
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        for _ in range(TIMEOUT * 10):
            if await self.evaluate(
                f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
            ):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the page never finished loading")

    async def click(self, element_id: str) -> None:
        """A real mouse click (a user gesture, so the page may start audio)."""
        box = await self.evaluate(
            f"(() => {{ const r = document.getElementById('{element_id}')"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    async def text_of(self, element_id: str) -> str:
        return await self.evaluate(f"document.getElementById('{element_id}').textContent")


async def _devtools_port(profile: Path, browser: asyncio.subprocess.Process) -> int:
    active = profile / "DevToolsActivePort"
    for _ in range(300):
        if active.exists() and active.read_text().strip():
            return int(active.read_text().split()[0])
        assert browser.returncode is None, "Chromium exited at start-up"
        await asyncio.sleep(0.1)
    raise AssertionError("Chromium never opened its DevTools port")


@asynccontextmanager
async def chromium(microphone: Path, profile: Path) -> AsyncIterator[DevTools]:
    binary = shutil.which("chromium")
    require_service("Chromium (scripts/install-test-deps.sh installs it)", binary is not None)
    assert binary
    browser = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = await _devtools_port(profile, browser)
        async with httpx.AsyncClient() as client:
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as connection:
            yield DevTools(connection)
    finally:
        browser.terminate()
        try:
            await asyncio.wait_for(browser.wait(), 10)
        except TimeoutError:
            browser.kill()
            await browser.wait()


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

    async with chromium(microphone, tmp_path / "profile") as page:
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
