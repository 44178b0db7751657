"""Answers for the fake LLM when it plays the writer of a character's life (characters/life/).

One JSON object satisfies every life schema at once (pydantic ignores keys a schema does not
name), so a script of answers does not depend on which generation step asks first.
"""

from __future__ import annotations

import json

from characters.life.prompts import WEEKDAYS


def life_reply(marker: str = "m") -> str:
    """A valid answer to every life step; `marker` shows up in whatever is saved from it."""
    slots = [
        {
            "time": f"{hour}:00-{hour + 1}:00",
            "activity": f"{marker} activity {hour}",
            "notes": "",
            **{day: f"{marker} {day} {hour}" for day in WEEKDAYS},
        }
        for hour in range(24)
    ]
    return json.dumps(
        {
            "plan": f"{marker} plan",
            "slots": slots,
            "topics": [f"{marker} topic"],
            "diary": f"{marker} diary: a quiet day, and I liked it.",
            "items": [f"{marker} news"],
        }
    )
