"""Hybrid search: words and meaning, Japanese and English, time windows on the character's
clock, and the keys that wall one person's memories off from another's."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.models import EndUser
from memory.models import MemoryItem
from memory.search import Window, search, tokens
from memory.store import Owner, add_turn, character_key, upsert_diary, user_key
from memory.tasks import index_pending

pytestmark = pytest.mark.django_db

FACTS = [
    "私の犬の名前はポチです。",
    "I work as a nurse at a hospital in Osaka.",
    "週末はよく京都でお寺を見て回ります。",
    "My favourite food is ramen with extra garlic.",
    "I am learning to play the violin.",
]


def remember(character: Character, end_user: EndUser, texts: list[str]) -> list[MemoryItem]:
    owner = Owner(user_key(end_user, character), character, end_user)
    return [
        add_turn(character.tenant_id, owner, user_text=text, reply="", session_id="s1")
        for text in texts
    ]


def best(character: Character, end_user: EndUser, query: str, **options: object) -> str:
    keys = [user_key(end_user, character), character_key(character)]
    hits = search(character.tenant_id, keys, query, **options)  # type: ignore[arg-type]
    return hits[0].item.content if hits else ""


def test_tokens_are_words_and_japanese_bigrams() -> None:
    assert tokens("My dog Pochi, 私の犬です") == ["dog", "pochi", "私の", "の犬", "犬で"]
    assert tokens("ＡＢＣ１２３") == ["abc123"]  # full-width folds to ASCII
    assert tokens("\x00\ud800") == []


def test_it_finds_memories_by_meaning_across_languages_once_indexed(
    character: Character, hana: EndUser
) -> None:
    remember(character, hana, FACTS)
    assert index_pending() == len(FACTS)
    assert set(MemoryItem.objects.values_list("index_state", flat=True)) == {"indexed"}

    assert best(character, hana, "What is my dog called?") == FACTS[0]
    assert best(character, hana, "病院で働いていますか") == FACTS[1]
    assert best(character, hana, "temples in Kyoto") == FACTS[2]
    assert best(character, hana, "What do I like to eat?") == FACTS[3]
    assert best(character, hana, "which instrument am I learning") == FACTS[4]


def test_it_finds_exact_words_without_any_model(
    settings: Settings, character: Character, hana: EndUser
) -> None:
    settings.MEMORY_EMBEDDINGS = "none"
    remember(character, hana, FACTS)

    assert index_pending() == 0
    assert best(character, hana, "ポチ") == FACTS[0]
    assert best(character, hana, "violin") == FACTS[4]
    assert best(character, hana, "submarine") == ""


def test_one_persons_memories_are_not_found_for_another(
    character: Character, globex_character: Character, hana: EndUser
) -> None:
    other = EndUser.objects.create(tenant=character.tenant)
    foreigner = EndUser.objects.create(tenant=globex_character.tenant)
    remember(character, hana, FACTS[:1])
    index_pending()

    assert best(character, hana, "ポチ") == FACTS[0]
    assert best(character, other, "ポチ") == ""
    assert best(globex_character, foreigner, "ポチ") == ""
    # Even a foreign tenant naming the right key finds nothing.
    assert search(globex_character.tenant_id, [user_key(hana, character)], "ポチ") == []


def test_time_windows_are_read_on_the_characters_clock(character: Character, hana: EndUser) -> None:
    character.timezone = "Asia/Tokyo"
    character.save()
    owner = Owner(user_key(hana, character), character, hana)

    def said(text: str, at: datetime) -> None:
        add_turn(character.tenant_id, owner, user_text=text, reply="", occurred_at=at)

    said("fireworks before", datetime(2026, 8, 1, 14, 59, tzinfo=UTC))  # 23:59 on the 1st, JST
    said("fireworks during", datetime(2026, 8, 1, 15, 0, tzinfo=UTC))  # 00:00 on the 2nd
    said("fireworks after", datetime(2026, 8, 2, 15, 0, tzinfo=UTC))  # 00:00 on the 3rd
    upsert_diary(character.tenant_id, Owner("mia", character), date(2026, 8, 2), "fireworks diary")
    upsert_diary(character.tenant_id, Owner("mia", character), date(2026, 8, 3), "fireworks next")

    day = Window(date(2026, 8, 2), date(2026, 8, 2), character.zone)
    keys = [user_key(hana, character), "mia"]
    found = {hit.item.content for hit in search(character.tenant_id, keys, "fireworks", window=day)}
    assert found == {"fireworks during", "fireworks diary"}
    since = Window(date(2026, 8, 3), None, character.zone)
    found = {
        hit.item.content for hit in search(character.tenant_id, keys, "fireworks", window=since)
    }
    assert found == {"fireworks after", "fireworks next"}


def test_a_diary_is_found_by_a_question_about_that_day(character: Character, hana: EndUser) -> None:
    upsert_diary(
        character.tenant_id,
        Owner("mia", character),
        date(2026, 8, 2),
        "今日は隅田川の花火大会に行った。ユイと一緒にかき氷を食べた。",
    )
    upsert_diary(
        character.tenant_id, Owner("mia", character), date(2026, 8, 3), "一日中、家で本を読んだ。"
    )
    remember(character, hana, ["I had a quiet day."])
    index_pending()

    assert best(character, hana, "花火大会はどうだった？").startswith("今日は隅田川")
    assert best(character, hana, "What did you eat at the fireworks?").startswith("今日は隅田川")
