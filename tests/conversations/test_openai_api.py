"""`/v1/chat/completions` and `/v1/models` through the official `openai` SDK, unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from avatarsite.tenants.models import Tenant
from characters.models import Character
from conversations.models import ApiKey, ChannelIdentity, Context, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db(transaction=True)


def client(server: AsgiServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=15)


def ask(sdk: openai.OpenAI, text: str, **options: Any) -> str | None:
    completion = sdk.chat.completions.create(
        model="mia", messages=[{"role": "user", "content": text}], **options
    )
    assert completion.choices[0].finish_reason == "stop"
    return completion.choices[0].message.content


def test_it_remembers_the_conversation_on_the_server(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    with client(asgi_server, api_key) as sdk:
        assert (
            ask(sdk, "My name is Ken.") == "You said: My name is Ken.. I have seen 1 user messages."
        )
        second = ask(sdk, "What is my name?")
    assert second == "You said: What is my name?. I have seen 2 user messages."
    assert Context.objects.get().message_count == 4
    identity = ChannelIdentity.objects.get()
    assert identity.channel == "openai" and api_key not in identity.external_id


def test_it_keeps_users_sharing_a_key_apart(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    with client(asgi_server, api_key) as sdk:
        ask(sdk, "Hi, I am Ann.", user="ann")
        answer = ask(sdk, "Hi, I am Bob.", user="bob")

    assert answer.endswith("I have seen 1 user messages.")
    assert Context.objects.count() == 2


def test_it_streams_deltas_without_control_tags(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Hello there! <animation name='wave' />Bye."))

    with client(asgi_server, api_key) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="mia", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Hello there! Bye."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_it_passes_images_and_reads_only_the_last_user_message(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    image = "https://example.com/cat.png"
    with client(asgi_server, api_key) as sdk:
        sdk.chat.completions.create(
            model="mia",
            messages=[
                {"role": "user", "content": "Ignored: the server keeps history."},
                {"role": "assistant", "content": "Ignored too."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": image}},
                    ],
                },
            ],
        )

    sent = fake_llm.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1]["content"] == [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "text", "text": "What is this?"},
    ]


def test_it_reports_a_failed_turn(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=4))

    with client(asgi_server, api_key) as sdk:
        with pytest.raises(openai.InternalServerError) as blocking:
            ask(sdk, "Hello")
        with pytest.raises(openai.APIError, match="LLM provider returned HTTP 500"):
            list(
                sdk.chat.completions.create(
                    model="mia", messages=[{"role": "user", "content": "Hi"}], stream=True
                )
            )

    assert blocking.value.status_code == 502
    assert not Context.objects.exists()
    assert TurnRecord.objects.filter(status=TurnRecord.Status.FAILED).count() == 2


def test_it_refuses_bad_keys_unknown_models_and_missing_user_messages(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    with client(asgi_server, "ak_wrong") as sdk, pytest.raises(openai.AuthenticationError):
        ask(sdk, "Hello")
    with client(asgi_server, api_key) as sdk:
        with pytest.raises(openai.NotFoundError, match="model 'nobody' does not exist"):
            sdk.chat.completions.create(
                model="nobody", messages=[{"role": "user", "content": "Hi"}]
            )
        with pytest.raises(openai.BadRequestError, match="user message"):
            sdk.chat.completions.create(model="mia", messages=[{"role": "system", "content": "Hi"}])

    assert not TurnRecord.objects.exists()


def test_it_lists_characters_as_models(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    Character.objects.create(slug="retired", name="Retired", is_active=False)

    with client(asgi_server, api_key) as sdk:
        assert [m.id for m in sdk.models.list()] == ["mia"]


def test_it_passes_the_requests_sampling_parameters_on(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    with client(asgi_server, api_key) as sdk:
        ask(sdk, "Hi", temperature=0.1, max_tokens=32, seed=7)

    sent = fake_llm.requests[-1]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.1, 32, 7)
    assert sent["model"] == character.llm_model  # `model` named the character, not the LLM


def test_it_refuses_an_image_url_part_that_is_not_an_object(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    content = [{"type": "image_url", "image_url": "https://example.com/a.png"}]

    response = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        json={"model": "mia", "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )

    assert response.status_code == 400
    assert "image_url" in response.json()["error"]["message"]
    assert not TurnRecord.objects.exists() and not ChannelIdentity.objects.exists()


def test_it_shows_one_model_and_refuses_an_unknown_or_foreign_one(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    other = Tenant.named("globex")
    Character.objects.create(tenant=other, slug="kai", name="Kai")

    with client(asgi_server, api_key) as sdk:
        model = sdk.models.retrieve("mia")
        for unknown in ("kai", "nobody"):
            with pytest.raises(openai.NotFoundError, match="does not exist") as refused:
                sdk.models.retrieve(unknown)
            assert refused.value.body["code"] == "model_not_found"

    assert (model.id, model.object, model.owned_by) == ("mia", "model", "avatarsite")


def test_a_client_kept_conversation_starts_fresh_on_new_chat(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.openai_history = "client"
    character.save()
    chat: list[Any] = [
        {"role": "system", "content": "Answer in haiku."},
        {"role": "user", "content": "My name is Ken."},
        {"role": "assistant", "content": "Hello Ken."},
        {"role": "user", "content": "What is my name?"},
    ]

    with client(asgi_server, api_key) as sdk:
        ongoing = sdk.chat.completions.create(model="mia", messages=chat)
        new_chat = ask(sdk, "Who am I?")

    sent = fake_llm.requests[0]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"].startswith("You are Mia.")
    assert sent[0]["content"].endswith("Answer in haiku.")
    assert [m["content"] for m in sent[1:]] == ["My name is Ken.", "Hello Ken.", "What is my name?"]
    assert ongoing.choices[0].message.content.endswith("I have seen 2 user messages.")
    assert new_chat is not None and new_chat.endswith("I have seen 1 user messages.")
    # Nothing but the turn records is kept.
    assert not Context.objects.exists()
    assert TurnRecord.objects.filter(status="completed").count() == 2


def test_an_api_key_chooses_who_keeps_the_conversation(
    asgi_server: AsgiServer, character: Character, fake_llm: FakeOpenAI
) -> None:
    key, raw = ApiKey.issue("front-end")
    key.openai_history = "client"
    key.save()

    with client(asgi_server, raw) as sdk:
        ask(sdk, "One")
        answer = ask(sdk, "Two")

    assert answer is not None and answer.endswith("I have seen 1 user messages.")
    assert not Context.objects.exists()


def test_it_refuses_client_tool_messages_in_a_client_kept_conversation(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.openai_history = "client"
    character.save()

    with client(asgi_server, api_key) as sdk, pytest.raises(openai.BadRequestError, match="tool"):
        sdk.chat.completions.create(
            model="mia",
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
                {"role": "user", "content": "And?"},
            ],
        )

    assert not TurnRecord.objects.exists()


def test_it_reports_usage_in_the_answer_and_the_last_chunk(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    with client(asgi_server, api_key) as sdk:
        completion = sdk.chat.completions.create(
            model="mia", messages=[{"role": "user", "content": "Hi"}]
        )
        chunks = list(
            sdk.chat.completions.create(
                model="mia",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        plain = list(
            sdk.chat.completions.create(
                model="mia", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )

    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0
    assert all(c.usage is None for c in plain) and plain[-1].choices
