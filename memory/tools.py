"""`search_memory`: the character's LLM looks up what it remembers of the person it talks to.

AIAvatarKit's name, parameter and result shape (`{"answer", "retrieved_data"}`), with a valid
schema, optional dates read on the character's clock, and the character's diaries searched
along with the person's memories.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from conversations.tools import ToolContext, tool

from .search import Window, describe, search
from .store import character_key, user_key

TOP_K = 5
NOTHING = "Nothing relevant is remembered."


def _day(value: object) -> date | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("not a string")
    return date.fromisoformat(value)


@tool(
    name="search_memory",
    description="Search your long-term memory of this user: past conversations, what you "
    "know about them, and your own diary. Use it when the user refers to something from "
    "before, or asks whether you remember.",
    parameters={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "description": "What to recall, in a few words (e.g. 'the name of my dog').",
            },
            "since": {
                "type": "string",
                "description": "Optional first date to search (YYYY-MM-DD, your local date).",
            },
            "until": {
                "type": "string",
                "description": "Optional last date to search (YYYY-MM-DD, your local date).",
            },
        },
        "required": ["query"],
    },
)
def search_memory(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return {"answer": None, "retrieved_data": None}
    character = context.character
    try:
        window = Window(_day(arguments.get("since")), _day(arguments.get("until")), character.zone)
    except ValueError:
        return {"error": "since and until must be dates, YYYY-MM-DD."}
    hits = search(
        character.tenant_id,
        [user_key(context.end_user, character), character_key(character)],
        query,
        top_k=TOP_K,
        window=window,
    )
    if not hits:
        return {"answer": NOTHING, "retrieved_data": None}
    lines = [describe(hit.item, character.zone, character.name) for hit in hits]
    # The memories are the answer: the character's own LLM reads them, no second LLM phrases
    # them first (AIAvatarKit's client leaves retrieved_data out too).
    return {"answer": "\n".join(lines), "retrieved_data": None}
