"""Steps the /ws turn tests share: a character heard through the fake speech-to-text, a user
talking over a long reply, and the turns the server recorded."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from characters.models import Character
from conversations.models import TurnRecord
from conversations.speech.models import STTProvider, VoiceSettings
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.realtime.ws import Socket
from tests.speech.audio import utterance

# A reply long enough to talk over: four chunks a second apart.
SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three. ", "Four."], chunk_delay=1.0)


@sync_to_async
def heard_by_fake_stt(character: Character, fake_llm: FakeOpenAI, **voice: Any) -> None:
    """The character's speech-to-text is the fake OpenAI server's (scripted with
    `fake_llm.script_audio`); `voice` sets the rest of its VoiceSettings."""
    VoiceSettings.objects.create(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        **voice,
    )


@sync_to_async
def turns() -> list[tuple[str, float | None]]:
    """Each recorded turn's status and seconds of speech heard, oldest first."""
    rows = TurnRecord.objects.order_by("started_at").values_list("status", "speech_in_seconds")
    return list(rows)


async def talk_over_a_reply(
    url: str, api_key: str, metadata: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ask for a long story (script SLOW first), then speak over it as soon as its first chunk
    arrives: the messages up to that chunk, and those of the user's turn that follows."""
    socket = await Socket.open(url, api_key)
    try:
        await socket.start(user_id="u1", metadata=metadata)
        await socket.send("invoke", text="Tell me a long story")
        before = await socket.until("chunk")
        await socket.stream(utterance(after=1.0).pcm)
        rest = await socket.turn()
    finally:
        await socket.close()
    return before, rest
