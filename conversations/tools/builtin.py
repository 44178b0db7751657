"""Tools every character has (each can be switched off per character): its diary and the
user's name. Names, parameters and result shapes are AIAvatarKit's, so prompts written for it
keep working; the schemas are valid (`required` inside `parameters`) and the results truthful.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from django.utils import timezone

from characters.models import DailySchedule, Diary

from ..models import EndUser
from .base import ToolContext, tool

NO_ENTRIES = {"message": "No entries."}
MAX_DIARY_DAYS = 7
USERNAME_MAX = 32
# Control characters, and anything that looks like a link: a name is neither.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]|://|www\.", re.IGNORECASE)


def _parse_day(value: object, today: date) -> date:
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return date.fromisoformat(value)


@tool(
    name="get_diary",
    description="Retrieve your diary entry, and your schedule, of a past day. Use it to recall "
    "what you did or felt on a date.",
    parameters={
        "type": "object",
        "properties": {
            "diary_date": {
                "type": "string",
                "description": "The date: YYYY-MM-DD, 'today' or 'yesterday'.",
            },
            "end_date": {
                "type": "string",
                "description": f"Optional last date (YYYY-MM-DD) to read up to "
                f"{MAX_DIARY_DAYS} days from diary_date.",
            },
        },
        "required": ["diary_date"],
    },
)
def get_diary(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """The diary and schedule of a date (or up to a week of dates) on the character's clock.

    Dates after the character's today give nothing: a diary written ahead of time (by a
    backfill) must not leak the future.
    """
    character = context.character
    today = character.local_now(timezone.now()).date()
    try:
        start = _parse_day(arguments.get("diary_date"), today)
        end = _parse_day(arguments["end_date"], today) if arguments.get("end_date") else None
    except ValueError:
        return {"error": "Dates must be YYYY-MM-DD, 'today' or 'yesterday'."}
    if end is not None and not 0 <= (end - start).days < MAX_DIARY_DAYS:
        return {"error": f"end_date must be within {MAX_DIARY_DAYS} days after diary_date."}
    last = min(end or start, today)
    if start > last:
        return NO_ENTRIES
    diaries = dict(
        Diary.objects.filter(character=character, diary_date__range=(start, last)).values_list(
            "diary_date", "content"
        )
    )
    schedules = dict(
        DailySchedule.objects.filter(
            character=character, schedule_date__range=(start, last)
        ).values_list("schedule_date", "content")
    )
    entries = []
    for offset in range((last - start).days + 1):
        day = start + timedelta(days=offset)
        entry = {
            **({"diary": diaries[day]} if day in diaries else {}),
            **({"schedule": schedules[day]} if day in schedules else {}),
        }
        if entry:
            entries.append({"date": day.isoformat(), **entry})
    if not entries:
        return NO_ENTRIES
    if end is None:
        return {key: value for key, value in entries[0].items() if key != "date"}
    return {"entries": entries}


@tool(
    name="update_username",
    description="Update the user's name. Use it when the user tells you their name or asks "
    "you to call them something else.",
    parameters={
        "type": "object",
        "properties": {
            "username": {
                "type": "string",
                "description": f"The name to call the user by (1 to {USERNAME_MAX} characters).",
            }
        },
        "required": ["username"],
    },
)
def update_username(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Save the user's name; the result says exactly what happened."""
    raw = arguments.get("username")
    name = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not name or len(name) > USERNAME_MAX or _BAD_NAME.search(raw or ""):
        return {
            "error": f"Not saved: a name is 1 to {USERNAME_MAX} characters, without links.",
            "username": context.end_user.display_name,
        }
    saved = EndUser.objects.filter(pk=context.end_user.pk).update(
        display_name=name, updated_at=timezone.now()
    )
    if not saved:
        return {"error": "Not saved: this user no longer exists."}
    context.end_user.display_name = name
    return {"username": name}
