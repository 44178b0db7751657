"""The system prompt a character speaks from."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from avatarsite.tenants.config_cache import cached
from characters.life.prompts import date_label
from characters.models import Character, DailySchedule
from conversations.models import EndUser
from conversations.shared_context import section as shared_section
from conversations.shared_context import shared_messages

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Placeholders the server fills itself (compose_system_prompt); any other is the request's.
BUILT_IN_PLACEHOLDERS = frozenset({"username", "charactername", "today", "now"})

SCHEDULE_INTRO = (
    "Your schedule for today. Compare it with the current time to know what you are doing "
    "now; if asked about your plans, mention one or two things casually rather than reciting "
    "the timetable."
)
NO_SCHEDULE = "You have no written schedule for today; improvise in character."

# What other apps add to the end of a turn's system prompt from the user's message (long-term
# memory's recall). An app registers a reader: called with the character in the turn's
# preparation (plain ORM, on the thread that prepares the turn; best read from the tenant's
# cached configuration), it returns the turn's section writer, (end user, text) -> a section or
# "" for none, or None when the character gets no such section at all. So a character without
# the feature costs its turns no trip to the database thread.
PromptSection = Callable[[EndUser | None, str], Awaitable[str]]
SectionReader = Callable[[Character], PromptSection | None]
_readers: list[SectionReader] = []


def add_prompt_section(reader: SectionReader) -> None:
    """Register a section's reader (once per process; registering it again is a no-op)."""
    if reader not in _readers:
        _readers.append(reader)


def prompt_sections(character: Character) -> list[PromptSection]:
    """The sections the character's turns get (plain ORM, in the preparation)."""
    return [section for read in _readers if (section := read(character)) is not None]


def render_persona(persona: str, params: Mapping[str, Any] | None) -> str:
    """Fill `{name}` placeholders that `params` provides; keep every other brace literally.

    AIAvatarKit calls `str.format`, so a persona holding JSON, or a placeholder the request
    did not fill, fails the whole turn. Here unknown placeholders and stray braces stay as
    written.
    """
    if not params:
        return persona
    return PLACEHOLDER.sub(
        lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0), persona
    )


def system_prompt(
    character: Character,
    end_user: EndUser | None,
    params: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> str:
    """Persona, today's schedule, the shared context, the user's name and the local time,
    read fresh every turn (plain ORM: the schedule and the shared context, cached with the
    tenant's configuration).

    "Today" and the time are the character's own (its timezone), not the server's. An edit in
    the admin shows on the next turn (the cache follows the tenant's configuration version).
    The parts are ordered from the most to the least stable (persona, the day's schedule, the
    shared context, the user, the minute) so providers that cache prompt prefixes keep caching
    the persona and the schedule. The persona may use
    `{username}` (the character's default user name while the user's is unknown),
    `{charactername}`, `{today}` and `{now}`; the request's params win.
    """
    local = character.local_now(now or timezone.now())

    def read_schedule() -> str:
        schedules = DailySchedule.objects.filter(character=character, schedule_date=local.date())
        return schedules.values_list("content", flat=True).first() or ""

    key = ("schedule", character.pk, local.date())
    schedule = cached(character.tenant_id, key, read_schedule)
    username = end_user.display_name if end_user else ""
    filled = {
        "charactername": character.name,
        "today": local.date().isoformat(),
        "now": f"{local:%H:%M}",
        "username": username or character.default_user_name,
        **(params or {}),
    }
    parts = [render_persona(character.persona, filled).strip()]
    parts.append(f"{SCHEDULE_INTRO}\n\n{schedule}" if schedule else NO_SCHEDULE)
    parts.append(shared_section(shared_messages(character, now), character))
    if username:
        parts.append(
            f"The user's name is {username}. Follow any request about how to address them."
        )
    parts.append(f"It is now {date_label(local.date())} {local:%H:%M} ({character.timezone}).")
    return "\n\n".join(part for part in parts if part)


async def with_sections(
    prompt: str, sections: list[PromptSection], end_user: EndUser | None, text: str
) -> str:
    """`prompt` with the turn's `sections` (prompt_sections) about the user's `text` after it."""
    parts = [prompt, *[await section(end_user, text) for section in sections]]
    return "\n\n".join(part for part in parts if part)


async def compose_system_prompt(
    character: Character,
    end_user: EndUser | None,
    params: Mapping[str, Any] | None,
    now: datetime | None = None,
    text: str = "",
) -> str:
    """The whole system prompt for a user's `text`, from async code."""

    def read() -> tuple[str, list[PromptSection]]:
        return system_prompt(character, end_user, params, now), prompt_sections(character)

    prompt, sections = await sync_to_async(read)()
    return await with_sections(prompt, sections, end_user, text)
