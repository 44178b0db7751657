"""A tenant's own embedding API, and what happens when it fails: turns go on, memories stay
searchable by their words, and the memory tick embeds them once the provider is back."""

from __future__ import annotations

import pytest

from avatarsite.tenants.models import ProviderSecret
from characters.models import Character
from conversations.line.models import LineChannel
from memory.models import EmbeddingProvider, MemoryItem, MemorySettings
from memory.tasks import index_pending
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.memory.test_recall import chat, system_prompt, told_on_line

# Committed rows, as in test_recall: the LINE turn writes on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "text-embedding-3-small"


@pytest.fixture
def provider(character: Character, fake_llm: FakeOpenAI) -> EmbeddingProvider:
    secret = ProviderSecret(tenant=character.tenant, name="EMBEDDINGS_KEY")
    secret.set_value(fake_llm.api_key)
    secret.save()
    provider = EmbeddingProvider(
        tenant=character.tenant,
        base_url=fake_llm.base_url,
        model=MODEL,
        api_key_env="EMBEDDINGS_KEY",
    )
    provider.full_clean()
    provider.save()
    return provider


def embedding_calls(fake: FakeOpenAI) -> list[dict[str, object]]:
    return [r for r in fake.audio_requests if r["path"] == "/v1/embeddings"]


def test_a_tenants_provider_embeds_its_memories_and_searches(
    app: InProcessApp,
    api_key: str,
    character: Character,
    line_channel: LineChannel,
    provider: EmbeddingProvider,
    fake_llm: FakeOpenAI,
) -> None:
    told_on_line(line_channel, "My dog is called Pochi.")
    # The offline model's vectors are not the provider's: nothing is compared across models.
    MemoryItem.objects.update(embedding_model="multilingual-e5-small-q4", index_state="indexed")

    assert index_pending() == 1
    item = MemoryItem.objects.get()
    assert (item.index_state, item.embedding_model) == ("indexed", f"openai:{MODEL}")
    assert embedding_calls(fake_llm)[-1]["model"] == MODEL
    MemorySettings.objects.create(character=character, auto_recall=True)
    chat(app, api_key, "hana-web", "Tell me about my dog")
    assert "Pochi" in system_prompt(fake_llm)
    assert embedding_calls(fake_llm)[-1]["input"] == ["Tell me about my dog"]


def test_a_failing_provider_loses_nothing_and_is_retried(
    app: InProcessApp,
    api_key: str,
    character: Character,
    line_channel: LineChannel,
    provider: EmbeddingProvider,
    fake_llm: FakeOpenAI,
) -> None:
    fake_llm.script_audio(ScriptedReply(status=500, repeat=100))
    told_on_line(line_channel, "My dog is called Pochi.")

    assert index_pending() == 0
    item = MemoryItem.objects.get()
    assert (item.index_state, item.index_attempts) == ("failed", 1)
    # Recall still finds it by its words; the turn goes on.
    MemorySettings.objects.create(character=character, auto_recall=True)
    chat(app, api_key, "hana-web", "Is my dog still called Pochi?")
    assert "My dog is called Pochi" in system_prompt(fake_llm)

    fake_llm.reset()  # the provider is back
    assert index_pending() == 2  # the LINE turn and the /chat turn
    assert set(MemoryItem.objects.values_list("index_state", flat=True)) == {"indexed"}


def test_a_provider_key_must_be_the_tenants_own_secret(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    provider = EmbeddingProvider(
        tenant=character.tenant,
        base_url=fake_llm.base_url,
        model=MODEL,
        api_key_env="FAKE_OPENAI_API_KEY",  # a platform variable, not for the tenant's URL
    )
    with pytest.raises(Exception, match="only sent to its provider's own"):
        provider.full_clean()
