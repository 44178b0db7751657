"""A character whose LLM is a Dify app: Dify keeps the conversation, we keep its id."""

from __future__ import annotations

import pytest

from characters.models import Character, LLMProvider
from conversations.llm.dify import STATE_KEY
from conversations.models import Context, Message, TurnRecord
from tests.conftest import DIFY_KEY_VARIABLE
from tests.fakes.dify_server import FakeDify
from tests.fakes.openai_server import ScriptedReply
from tests.inprocess import InProcessApp
from tests.sse import SSEResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def dify_character(fake_dify: FakeDify) -> Character:
    return Character.objects.create(
        slug="difi",
        name="Difi",
        llm_provider=LLMProvider.DIFY,
        llm_model="dify-app",
        llm_base_url=fake_dify.base_url,
        llm_api_key_env=DIFY_KEY_VARIABLE,
        is_default=True,
    )


def say(app: InProcessApp, key: str, text: str, **fields: object) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": text, **fields}
    return app.post_sse("/chat", body, key=key)


def test_it_carries_difys_conversation_from_turn_to_turn(
    app: InProcessApp, dify_character: Character, api_key: str, fake_dify: FakeDify
) -> None:
    first = say(app, api_key, "Hi, I am Ada")
    context_id = first.events[0]["context_id"]
    second = say(app, api_key, "Who am I?", context_id=context_id)

    assert second.events[-1]["text"] == "You said: Who am I?. Turn 2 of our chat."
    conversation_id = fake_dify.requests[1]["conversation_id"]
    assert fake_dify.requests[0]["conversation_id"] == ""
    assert fake_dify.conversations[conversation_id] == ["Hi, I am Ada", "Who am I?"]
    assert fake_dify.requests[1]["query"] == "Who am I?"  # Dify holds the history itself
    assert fake_dify.requests[1]["user"] == str(Context.objects.get().end_user_id)
    assert Context.objects.get().provider_state == {STATE_KEY: conversation_id}
    assert Message.objects.count() == 4


def test_it_sends_images_by_url_or_uploads_them(
    app: InProcessApp, dify_character: Character, api_key: str, fake_dify: FakeDify
) -> None:
    files = [
        {"type": "image", "url": "https://example.com/cat.png"},
        {"type": "image", "url": "data:image/png;base64,iVBORw0KGgo="},
    ]

    result = say(app, api_key, "What are these?", files=files)

    assert result.types[-1] == "final"
    remote, uploaded = fake_dify.requests[0]["files"]
    assert remote == {
        "type": "image",
        "transfer_method": "remote_url",
        "url": "https://example.com/cat.png",
    }
    assert uploaded["transfer_method"] == "local_file"
    stored = fake_dify.uploads[uploaded["upload_file_id"]]
    assert (stored["content_type"], stored["data"]) == ("image/png", b"\x89PNG\r\n\x1a\n")


def test_it_retries_then_reports_a_failing_dify(
    app: InProcessApp, dify_character: Character, api_key: str, fake_dify: FakeDify
) -> None:
    fake_dify.script(ScriptedReply(status=503))
    recovered = say(app, api_key, "Hello")
    fake_dify.script(ScriptedReply(status=500, repeat=2))
    failed = say(app, api_key, "Hello again", session_id="s2")
    fake_dify.script(ScriptedReply(text="One. Two. Three.", cut_after=1))
    cut = say(app, api_key, "And again", session_id="s3")

    assert recovered.types[-1] == "final"
    assert failed.events[-1]["metadata"]["error"] == "LLM provider returned HTTP 500"
    assert cut.events[-1]["metadata"]["error"] == "LLM provider stream broke off"
    assert Message.objects.count() == 2


@pytest.mark.parametrize("ending", ["eof", "empty"])
def test_a_dify_stream_without_message_end_is_a_failed_turn(
    app: InProcessApp, dify_character: Character, api_key: str, fake_dify: FakeDify, ending: str
) -> None:
    dify_character.apology = "Sorry, I lost my words."
    dify_character.save()
    fake_dify.script(ScriptedReply(text="One. Two. Three.", ending=ending))

    result = say(app, api_key, "Hello")

    assert result.types[-1] == "error" and "final" not in result.types
    assert result.events[-2]["text"] == "Sorry, I lost my words."
    assert result.events[-1]["metadata"]["error"] == "LLM provider stream broke off"
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED
    assert not Message.objects.exists()
