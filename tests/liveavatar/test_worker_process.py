"""The worker as operators run it: `manage.py run_liveavatar_agents` in a process of its own
opens the enabled agent's session, answers through it, and on SIGTERM stops the session
(`session.stop`) before it exits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from characters.models import Character
from tests.conftest import server_env
from tests.fakes.liveavatar_platform import FakePlatform
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.liveavatar.test_agent import make_agent
from tests.processes import BASE_DIR
from tests.waiting import WAIT_SECONDS

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_the_worker_command_serves_the_enabled_agent_until_sigterm(
    character: Character, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_llm.script(ScriptedReply(text="Hello from the worker."))
    log_path = tmp_path / "agents.log"
    async with FakePlatform() as platform:
        await sync_to_async(make_agent)(character, platform.base_url)
        env = server_env(fake_llm, LIVEAVATAR_POLL_SECONDS="0.2")
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "manage.py",
                "run_liveavatar_agents",
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            connection = await platform.connected()
            await connection.send(
                {"event": "input.text", "requestId": "req_1", "data": {"text": "Hi"}}
            )
            await platform.wait_for(lambda: platform.sent("response.done"), "the answer")
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), WAIT_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, log_path.read_text()
    assert platform.problems == []
    assert platform.sent("response.chunk")[0]["data"]["text"] == "Hello from the worker."
    assert platform.events()[-1] == "session.stop"
