"""Characters that think aloud in text but speak only their answer
(docs/turn.md#thinking-aloud-voice-tags)."""

from __future__ import annotations

import openai
import pytest

from characters.models import Character
from conversations.models import Message
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

THINKING = (
    "<think>plan it</think><answer>[face:joy]Hi there! The URL is <artifact src='a?b'/> ok. "
    "Long sentence, with commas, that exceeds fifty visible characters, really</answer>"
    " and then the model repeats <answer>Hi there!</answer>"
)


@pytest.fixture
def thinker(character: Character) -> Character:
    character.voice_text_tags = "answer"
    character.terminal_voice_tag = "answer"
    character.save()
    return character


def hello() -> dict[str, object]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello"}


def test_it_speaks_the_answer_and_drops_what_follows_it(
    app: InProcessApp, thinker: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text=THINKING))

    result = app.post_sse("/chat", hello(), key=api_key)

    chunks = result.of_type("chunk")
    assert chunks[0]["text"].startswith("<think>") and chunks[0]["voice_text"] is None
    spoken = [c["voice_text"] for c in chunks if c["voice_text"]]
    assert spoken[0] == "Hi there!"
    assert not any("<" in v or "[" in v for v in spoken)
    final = result.events[-1]
    assert final["text"].endswith("really</answer>")
    assert "repeats" not in final["text"]
    assert Message.objects.get(role="assistant").content == final["text"]


def test_it_speaks_a_reply_without_voice_tags_whole(
    app: InProcessApp, thinker: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]No tags here. Just words."))

    result = app.post_sse("/chat", hello(), key=api_key)

    chunks = result.of_type("chunk")
    assert all(c["voice_text"] is None for c in chunks[:-1])
    assert (chunks[-1]["text"], chunks[-1]["voice_text"]) == ("", "No tags here. Just words.")


@pytest.mark.django_db(transaction=True)  # the live server reads the data
def test_text_clients_read_only_the_answer(
    asgi_server: AsgiServer, thinker: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="<think>hmm</think><answer>Fine. Thanks!</answer>"))

    with openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=api_key, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(
            model="mia", messages=[{"role": "user", "content": "How are you?"}]
        )

    assert reply.choices[0].message.content == "Fine. Thanks!"


def test_the_terminal_tag_must_be_a_voice_tag(admin_client, character: Character) -> None:
    response = admin_client.patch(
        "/api/characters/mia/",
        {"voice_text_tags": "answer", "terminal_voice_tag": "final"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "terminal_voice_tag" in response.json()
