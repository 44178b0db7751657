"""Headless Chromium driven over the DevTools protocol, for tests of browser pages."""

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
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import require_service

TIMEOUT = 90  # seconds a page may take to load; a hang fails instead of stalling


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
async def chromium(profile: Path, microphone: Path | None = None) -> AsyncIterator[DevTools]:
    """Headless Chromium with one page under DevTools control; `microphone`: a WAV file the
    page hears as its microphone."""
    binary = shutil.which("chromium")
    require_service("Chromium (scripts/install-test-deps.sh installs it)", binary is not None)
    assert binary
    browser = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        *(
            [
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}%noloop",
            ]
            if microphone
            else []
        ),
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
