"""AIAvatarKit's own ChatMemory client (`aiavatar.character.MemoryClient`, unmodified) against
/memory on a real server: it records turns, upserts diaries and searches, and a search for a
person finds the character's diary too (AIAvatarKit's own ChatMemory never does)."""

from __future__ import annotations

from datetime import datetime

import pytest
from aiavatar.character.memory import MemoryClient
from aiavatar.sts.models import STSRequest, STSResponse
from asgiref.sync import sync_to_async

from characters.models import Character
from memory.models import MemoryItem
from tests.conftest import AsgiServer
from tests.waiting import wait_until_async

pytestmark = pytest.mark.django_db(transaction=True)


def memory_client(server: AsgiServer, key: str) -> MemoryClient:
    client = MemoryClient(base_url=f"{server.url}/memory", timeout=30)
    # The client has no key setting; its HTTP client carries the tenant's key on every call.
    client.http_client.headers["Authorization"] = f"Bearer {key}"
    return client


async def test_memory_client_records_searches_and_finds_the_diary(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    client = memory_client(asgi_server, api_key)
    try:
        await client.add_messages(
            character_id="mia",
            request=STSRequest(user_id="hana", context_id="ctx-1", text="My cat is named Tama."),
            response=STSResponse(type="final", voice_text="Tama is a lovely name!"),
        )
        turns = MemoryItem.objects.filter(kind=MemoryItem.Kind.TURN)
        await wait_until_async(turns.aexists, "the queued history to arrive")
        saved = await client.upsert_diary(
            character_id="mia",
            content="Walked along the Kamo river and watched the herons.",
            diary_date=datetime(2026, 8, 2),
        )
        assert saved == {"status": "diary upserted"}

        cat = await client.search(character_id="mia", user_id="hana", query="cat's name")
        herons = await client.search(character_id="mia", user_id="hana", query="Kamo river")
        stranger = await client.search(character_id="mia", user_id="yui", query="cat's name")
    finally:
        await client.close()

    assert cat.answer is not None and "My cat is named Tama." in cat.answer
    assert cat.retrieved_data is None  # the client does not ask for it
    assert herons.answer is not None and herons.answer.startswith("Diary (2026-08-02)")
    assert stranger.answer is not None and "Tama" not in stranger.answer
    turn = await MemoryItem.objects.select_related("end_user").aget(kind=MemoryItem.Kind.TURN)
    assert (turn.content, turn.reply, turn.session_id) == (
        "My cat is named Tama.",
        "Tama is a lovely name!",
        "ctx-1",
    )
    # "hana" is the person /chat knows as user_id "hana".
    identity = await sync_to_async(lambda: list(turn.end_user.identities.values_list()))()
    assert any("hana" in row for row in identity)
