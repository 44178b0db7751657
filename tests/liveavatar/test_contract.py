"""The fake platform against the platform's own agent SDK (liveavatar-channel-sdk): the fake our
agent is tested against must also satisfy the vendor's client, so it cannot merely mirror our
own reading of the protocol."""

from __future__ import annotations

import time
import uuid

from liveavatar_channel_sdk import AgentListener, AudioFrame, AvatarAgent, AvatarAgentConfig

from tests.fakes.liveavatar_platform import API_KEY, FakePlatform


class Answering(AgentListener):
    """Answers each text with one chunk for the platform's voice, then 80 ms of our audio."""

    def __init__(self) -> None:
        self.agent: AvatarAgent | None = None

    async def on_text_input(self, text: str, request_id: str) -> None:
        agent = self.agent
        assert agent is not None
        response_id = str(uuid.uuid4())
        await agent.send_response_start(request_id, response_id)
        now = int(time.time() * 1000)
        await agent.send_response_chunk(request_id, response_id, 0, now, f"You said {text}.")
        await agent.send_response_done(request_id, response_id)
        audio_id = str(uuid.uuid4())
        await agent.send_response_audio_start(request_id, audio_id)
        for seq in range(2):
            frame = AudioFrame(
                key=int(seq == 0),
                seq=seq,
                timestamp=40 * seq,
                sample_rate=1,  # 24 kHz
                samples=960,
                payload=bytes(1920),
            )
            await agent.send_audio_frame(frame)
        await agent.send_response_audio_finish(request_id, audio_id)


async def test_the_vendors_sdk_completes_a_turn_against_the_fake() -> None:
    async with FakePlatform() as platform:
        listener = Answering()
        config = AvatarAgentConfig(
            api_key=API_KEY, avatar_id="avatar-123", base_url=platform.base_url, reconnect=False
        )
        agent = listener.agent = AvatarAgent(config, listener)
        started = await agent.start()
        connection = await platform.connected()
        await connection.send({"event": "input.text", "requestId": "req_1", "data": {"text": "hi"}})
        await platform.wait_for(lambda: platform.sent("response.audio.finish"), "the SDK's answer")
        await agent.stop()
        await platform.wait_for(connection.closed.is_set, "the socket to close")

    assert platform.problems == []
    assert (started.session_id, started.user_token) == ("sess-123", "fake-rtc-user-token")
    [(_, body)] = platform.starts
    assert body == {"avatarId": "avatar-123", "mode": "websocketAgent"}
    assert platform.sent("response.chunk")[0]["data"]["text"] == "You said hi."
    assert len(platform.frames()) == 2 and platform.events()[-1] == "session.stop"
