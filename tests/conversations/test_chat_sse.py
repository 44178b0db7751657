"""`POST /chat` and `POST /start` over a real daphne process, the LLM behind a fake server.

Over ~400 lines on purpose: one module per endpoint, and /chat carries most of the
AIAvatarKit protocol.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from characters.models import Character
from conversations.models import ChannelIdentity, Context, EndUser, Message, TurnRecord
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from conversations.transports.aiavatar_wire import RESPONSE_KEYS
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

TAGGED_REPLY = (
    '[face:joy]Hello! <animation name="wave" />Nice to meet you. '
    "[language:en-US]Bye.[vision:camera]"
)


def hello(**fields: object) -> dict[str, object]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello", **fields}


def history_is_empty() -> bool:
    return not Message.objects.exists() and not Context.objects.exists()


def test_it_streams_start_chunks_and_final(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Hi there! How are you today? I am fine."))

    result = app.post_sse("/chat", hello(), key=api_key)

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["cache-control"] == "no-store"
    assert result.types[0] == "start" and result.types[-1] == "final"
    assert all(list(event) == list(RESPONSE_KEYS) for event in result.events)
    start, chunks, final = result.events[0], result.of_type("chunk"), result.events[-1]
    context_id = start["context_id"]
    assert uuid.UUID(context_id).version == 4
    assert start["metadata"] == {"request_text": "Hello", "recognized_text": "Hello"}
    assert [c["metadata"]["is_first_chunk"] for c in chunks] == [True] + [False] * (len(chunks) - 1)
    assert [c["voice_text"] for c in chunks if c["voice_text"]] == [
        "Hi there!",
        "How are you today?",
        "I am fine.",
    ]
    assert final["text"] == "".join(c["text"] for c in chunks)
    assert final["voice_text"] == "Hi there! How are you today? I am fine."
    assert {e["context_id"] for e in result.events} == {context_id}
    assert {e["user_id"] for e in result.events} == {"u1"}
    record = TurnRecord.objects.get()
    assert record.status == TurnRecord.Status.COMPLETED
    assert record.llm_first_token_ms is not None and record.total_ms >= record.first_chunk_ms


def test_it_continues_a_conversation_across_requests(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    first = app.post_sse("/chat", hello(text="My name is Ada"), key=api_key)
    context_id = first.events[0]["context_id"]

    second = app.post_sse(
        "/chat",
        hello(text="What is my name?", context_id=context_id),
        key=api_key,
    )

    assert second.events[0]["context_id"] == context_id
    assert second.events[-1]["text"] == "You said: What is my name?. I have seen 2 user messages."
    sent = fake_llm.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "My name is Ada"
    assert sent[2]["content"] == first.events[-1]["text"]
    context = Context.objects.get()
    assert (str(context.id), context.message_count) == (context_id, 4)
    assert list(context.messages.values_list("role", flat=True)) == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    identity = ChannelIdentity.objects.get()
    assert (identity.channel, identity.external_id, identity.end_user_id) == (
        "http",
        "u1",
        context.end_user_id,
    )


def test_it_parses_control_tags_into_avatar_control_request(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text=TAGGED_REPLY))

    result = app.post_sse("/chat", hello(), key=api_key)

    chunks = result.of_type("chunk")
    joy = next(c for c in chunks if c["text"].startswith("[face:joy]"))
    assert joy["voice_text"] == "Hello!"
    assert joy["control_tags"] == [{"name": "face", "attributes": {"name": "joy"}}]
    assert joy["avatar_control_request"] == {
        "animation_name": None,
        "animation_duration": None,
        "face_name": "joy",
        "face_duration": 4.0,
    }
    wave = next(c for c in chunks if c["avatar_control_request"]["animation_name"])
    assert wave["avatar_control_request"]["animation_name"] == "wave"
    assert wave["avatar_control_request"]["animation_duration"] == 4.0
    bye = next(c for c in chunks if "Bye." in c["text"])
    assert bye["language"] == "en-US"
    assert all(c["avatar_control_request"] is not None for c in chunks)
    assert not any("[" in c["voice_text"] or "<" in c["voice_text"] for c in chunks)
    last = result.events[-1]
    assert (last["type"], last["metadata"]) == ("vision", {"source": "camera"})
    assert last["text"] == TAGGED_REPLY


@pytest.mark.parametrize(
    "fault",
    [
        ScriptedReply(status=500, repeat=2),  # first try and the one retry both fail
        ScriptedReply(text="One. Two. Three. Four.", cut_after=2),
        ScriptedReply(delay=4.0, repeat=2),  # past the server's 3 s LLM timeout, twice
        ScriptedReply(text="One. Two. Three. Four.", ending="eof"),  # no finish, no [DONE]
        ScriptedReply(text="One. Two.", ending="garbage"),
        ScriptedReply(ending="empty"),
    ],
    ids=["http-500", "cut-stream", "timeout", "eof", "malformed", "empty"],
)
def test_it_reports_a_provider_failure_and_leaves_history_untouched(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fault: ScriptedReply,
) -> None:
    character.apology = "Sorry, I lost my words."
    character.save()
    first = app.post_sse("/chat", hello(), key=api_key)
    context_id = first.events[0]["context_id"]
    fake_llm.script(fault)

    result = app.post_sse("/chat", hello(text="Again", context_id=context_id), key=api_key)

    assert result.status == 200
    assert result.types[0] == "start" and result.types[-2:] == ["chunk", "error"]
    assert result.events[-2]["text"] == "Sorry, I lost my words."  # said, not silence
    assert "final" not in result.types
    assert result.events[-1]["context_id"] == context_id
    assert result.events[-1]["metadata"]["error"].startswith("LLM provider")
    assert Context.objects.get().message_count == 2
    assert Message.objects.count() == 2
    failed = TurnRecord.objects.get(status=TurnRecord.Status.FAILED)
    assert failed.error.startswith("LLM provider") and str(failed.context_id) == context_id


def test_it_gives_a_new_context_id_when_the_first_turn_failed(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=2))
    failed = app.post_sse("/chat", hello(), key=api_key)
    failed_id = failed.events[0]["context_id"]

    retry = app.post_sse("/chat", hello(context_id=failed_id), key=api_key)

    assert retry.types[-1] == "final"
    assert retry.events[0]["context_id"] != failed_id
    assert str(Context.objects.get().id) == retry.events[0]["context_id"]


def test_it_starts_afresh_after_the_context_timeout(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    first = app.post_sse("/chat", hello(), key=api_key)
    old_id = first.events[0]["context_id"]
    Context.objects.update(updated_at=timezone.now() - timedelta(hours=2))

    second = app.post_sse("/chat", hello(context_id=old_id), key=api_key)

    assert second.events[0]["context_id"] != old_id
    assert second.events[-1]["text"].endswith("I have seen 1 user messages.")


def test_it_fills_system_prompt_params_and_keeps_literal_braces(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.persona = 'You are {name}. Reply as JSON like {"mood": "joy"}. Unset: {missing}.'
    character.save()

    app.post_sse("/chat", hello(system_prompt_params={"name": "Mia"}), key=api_key)

    system = fake_llm.requests[-1]["messages"][0]
    assert system["role"] == "system"
    # The persona comes first; the day's schedule and the local time follow it.
    assert system["content"].startswith(
        'You are Mia. Reply as JSON like {"mood": "joy"}. Unset: {missing}.\n\n'
    )


def test_it_sends_attached_images_to_the_llm(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="

    result = app.post_sse(
        "/chat",
        hello(text="What is this?", files=[{"type": "image", "url": image}]),
        key=api_key,
    )

    assert result.types[-1] == "final"
    assert fake_llm.requests[-1]["messages"][-1]["content"] == [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "text", "text": "What is this?"},
    ]
    assert Message.objects.get(role="user").files == [{"type": "image", "url": image}]


def test_it_picks_the_character_by_path_or_header(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    other = Character.objects.create(
        slug="kai",
        name="Kai",
        persona="You are Kai.",
        llm_base_url=fake_llm.base_url,
        llm_api_key_env=character.llm_api_key_env,
    )

    by_path = app.post_sse("/characters/kai/chat", hello(), key=api_key)
    by_header = app.post_sse(
        "/chat",
        hello(session_id="s2"),
        key=api_key,
        headers={"X-Character": "kai"},
    )
    unknown = app.post_sse("/characters/nobody/chat", hello(), key=api_key)

    assert by_path.types[-1] == by_header.types[-1] == "final"
    personas = [r["messages"][0]["content"].split("\n\n")[0] for r in fake_llm.requests]
    assert personas == ["You are Kai."] * 2
    assert set(TurnRecord.objects.values_list("character", flat=True)) == {other.pk}
    assert (unknown.status, unknown.body) == (404, {"detail": "Unknown character 'nobody'."})


def test_it_says_when_there_is_no_default_character(app: InProcessApp, api_key: str) -> None:
    result = app.post_sse("/chat", hello(), key=api_key)

    assert result.status == 404
    assert "No default character" in result.body["detail"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "bearer"])
def test_it_rejects_a_wrong_or_missing_key(
    app: InProcessApp, character: Character, header: str | None
) -> None:
    result = app.post_sse(
        "/chat",
        {"type": "start"},  # the body is invalid too: the key is checked first
        headers={"Authorization": header} if header else {},
    )

    assert (result.status, result.body) == (401, {"detail": "Invalid or missing API Key"})
    assert not TurnRecord.objects.exists() and not EndUser.objects.exists()


@pytest.mark.parametrize(
    ("content", "status", "expected"),
    [
        (b"{not json", 422, {"loc": ["body"], "type": "json"}),
        (b"[1, 2]", 422, {"loc": ["body"], "type": "model_type"}),
        (json.dumps({"session_id": "s1"}).encode(), 422, {"loc": ["body", "type"]}),
        (
            json.dumps(hello(files=[{"url": 3}])).encode(),
            422,
            {"loc": ["body", "files", 0, "url"]},
        ),
        (
            json.dumps(hello(files=[{"url": "file:///etc/passwd"}])).encode(),
            422,
            {"loc": ["body", "files"]},
        ),
        (json.dumps(hello(context_id="bogus")).encode(), 422, {"loc": ["body", "context_id"]}),
        (
            json.dumps(hello(audio_data="not base64!")).encode(),
            422,
            {"loc": ["body", "audio_data"]},
        ),
    ],
    ids=[
        "malformed",
        "not-object",
        "no-type",
        "file-not-string",
        "file-scheme",
        "context",
        "audio",
    ],
)
def test_it_rejects_a_malformed_envelope(
    app: InProcessApp,
    character: Character,
    api_key: str,
    content: bytes,
    status: int,
    expected: dict[str, object],
) -> None:
    result = app.post_sse("/chat", None, content=content, key=api_key)

    assert result.status == status
    assert any(expected.items() <= error.items() for error in result.body["detail"])
    assert not TurnRecord.objects.exists() and not EndUser.objects.exists()


def test_it_requires_a_session_id(app: InProcessApp, character: Character, api_key: str) -> None:
    result = app.post_sse("/chat", hello(session_id=None), key=api_key)

    assert (result.status, result.body) == (400, {"error": "session_id is required."})


def test_it_rejects_a_context_id_it_never_issued(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    result = app.post_sse("/chat", hello(context_id=str(uuid.uuid4())), key=api_key)

    assert result.status == 404
    assert result.body["detail"].startswith("Unknown context_id")
    assert not TurnRecord.objects.exists() and not EndUser.objects.exists()
    assert history_is_empty()


def test_it_refuses_an_oversized_body(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    huge = hello(text="x" * (11 * 1024 * 1024))

    result = app.post_sse("/chat", huge, key=api_key)

    assert result.status == 413
    assert "larger than" in result.body["detail"]
    assert not TurnRecord.objects.exists()


def test_it_reports_audio_without_speech_to_text_as_an_error(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    VoiceSettings.objects.create(character=character, stt_provider=STTProvider.NONE)

    result = app.post_sse("/chat", hello(text=None, audio_data="AAAAAA=="), key=api_key)

    assert result.types == ["error"]
    assert "Speech-to-text is not configured" in result.events[0]["metadata"]["error"]
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED
    assert history_is_empty()


def test_it_sends_pings_while_the_llm_is_quiet(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=["Slow ", "reply."], chunk_delay=0.8))

    result = app.post_sse("/chat", hello(), key=api_key)

    assert result.types[-1] == "final"
    assert result.comments and all(c.startswith(": ping - ") for c in result.comments)


@pytest.mark.django_db(transaction=True)  # a client hanging up needs a real socket
def test_it_records_an_interrupted_turn_when_the_client_leaves(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    # Text only: spoken chunks leave later, and "Second." arrives just as the 1 s LLM read
    # timeout would fire. Leaving while speaking is tested in tests/speech.
    VoiceSettings.objects.create(character=character, tts_provider=TTSProvider.NONE)
    fake_llm.script(ScriptedReply(chunks=["First. ", "Second. ", "Third."], chunk_delay=1.0))

    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            f"{asgi_server.url}/chat",
            json=hello(),
            headers={"Authorization": f"Bearer {api_key}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["type"] == "chunk":
                break  # leave mid-answer

    wait_until(TurnRecord.objects.exists, "the turn record")
    record = TurnRecord.objects.get()
    assert (record.status, record.error) == (TurnRecord.Status.INTERRUPTED, "")
    assert record.response_text.startswith("First.")
    assert history_is_empty()


def test_start_answers_connected_and_assigns_a_user(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    result = app.post_sse("/start", {"type": "start", "session_id": "s9"}, key=api_key)

    [connected] = result.events
    assert connected["type"] == "connected" and connected["session_id"] == "s9"
    assert connected["metadata"] == {"charactername": "Mia"}
    user = EndUser.objects.get()
    assert connected["user_id"] == str(user.id)
    chat = app.post_sse("/chat", hello(user_id=connected["user_id"]), key=api_key)
    assert TurnRecord.objects.get().end_user == user
    assert chat.types[-1] == "final"


def test_it_applies_inline_llm_params_and_refuses_unsafe_ones(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    tuned = app.post_sse(
        "/chat",
        hello(metadata={"inline_llm_params": {"temperature": 0.2, "max_tokens": 64}}),
        key=api_key,
    )
    refused = app.post_sse(
        "/chat",
        hello(metadata={"inline_llm_params": {"messages": []}}),
        key=api_key,
    )

    assert tuned.types[-1] == "final"
    sent = fake_llm.requests[-1]
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 64)
    assert refused.status == 422
    assert "may not set messages" in refused.body["detail"][0]["msg"]
    assert len(fake_llm.requests) == 1
