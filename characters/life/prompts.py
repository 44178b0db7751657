"""What the LLM is asked when a character's life is written, and the JSON it must answer with.

Every answer is a JSON object validated by one of the pydantic models below; the prompts name
the exact shape, so a model that drifts gets told what was wrong and asked again (bridge.py).
"""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, Field, field_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# "0:00-1:00" or "00:00 - 01:00"; the 24th slot ends at 24:00.
_SLOT = re.compile(r"^\s*(\d{1,2}):00\s*[-–~]\s*(\d{1,2}):00\s*$")
NO_RECORD = "(no record)"


def _slot_times(times: list[str]) -> list[str]:
    """Check that `times` are the 24 one-hour slots of a day in order; normalise them."""
    if len(times) != 24:
        raise ValueError(f"expected exactly 24 one-hour slots, got {len(times)}")
    normalised = []
    for hour, time in enumerate(times):
        match = _SLOT.match(time)
        if not match or (int(match[1]), int(match[2])) != (hour, hour + 1):
            raise ValueError(f"slot {hour + 1} must be '{hour}:00-{hour + 1}:00', got {time!r}")
        normalised.append(f"{hour}:00-{hour + 1}:00")
    return normalised


class DaySlot(BaseModel):
    time: str
    activity: str = Field(min_length=1)
    notes: str = ""


class DayTable(BaseModel):
    slots: list[DaySlot]

    @field_validator("slots")
    @classmethod
    def _day(cls, slots: list[DaySlot]) -> list[DaySlot]:
        for slot, time in zip(slots, _slot_times([s.time for s in slots]), strict=True):
            slot.time = time
        return slots

    def markdown(self) -> str:
        rows = [f"| {s.time} | {_cell(s.activity)} | {_cell(s.notes)} |" for s in self.slots]
        return "\n".join(["| Time | Activity | Notes |", "|---|---|---|", *rows])


class WeekSlot(BaseModel):
    time: str
    monday: str = Field(min_length=1)
    tuesday: str = Field(min_length=1)
    wednesday: str = Field(min_length=1)
    thursday: str = Field(min_length=1)
    friday: str = Field(min_length=1)
    saturday: str = Field(min_length=1)
    sunday: str = Field(min_length=1)


class WeekTable(BaseModel):
    slots: list[WeekSlot]

    @field_validator("slots")
    @classmethod
    def _week(cls, slots: list[WeekSlot]) -> list[WeekSlot]:
        for slot, time in zip(slots, _slot_times([s.time for s in slots]), strict=True):
            slot.time = time
        return slots

    def markdown(self) -> str:
        header = "| Time | " + " | ".join(day.capitalize() for day in WEEKDAYS) + " |"
        rule = "|---" * (len(WEEKDAYS) + 1) + "|"
        rows = [
            f"| {s.time} | " + " | ".join(_cell(getattr(s, day)) for day in WEEKDAYS) + " |"
            for s in self.slots
        ]
        return "\n".join([header, rule, *rows])


class DayPlan(BaseModel):
    plan: str = Field(min_length=1)


class DiaryTopics(BaseModel):
    topics: list[str] = Field(min_length=1, max_length=12)

    @field_validator("topics")
    @classmethod
    def _non_empty(cls, topics: list[str]) -> list[str]:
        cleaned = [t.strip() for t in topics if t.strip()]
        if not cleaned:
            raise ValueError("topics must not be empty")
        return cleaned


class DiaryText(BaseModel):
    diary: str = Field(min_length=20)


class NewsItems(BaseModel):
    items: list[str] = Field(max_length=12)


def _cell(text: str) -> str:
    """Keep a markdown table intact whatever the LLM wrote into a cell."""
    return " ".join(text.replace("|", "/").split())


def date_label(day: date) -> str:
    return f"{day:%Y-%m-%d} ({WEEKDAYS[day.weekday()].capitalize()})"


JSON_ONLY = "Reply with only the JSON object, no code fences and no other text."

WEEKLY_SYSTEM = f"""You plan the usual week of a fictional character, hour by hour.
Fit the plan to who the character is (work or school, habits, hobbies, sleep). Be concrete yet
terse. Where an hour's activity changes from week to week, write "free time".
Write the activities in the character's language ({{language}}).
Answer with a JSON object: {{{{"slots": [{{{{"time": "0:00-1:00", "monday": "...",
"tuesday": "...", "wednesday": "...", "thursday": "...", "friday": "...", "saturday": "...",
"sunday": "..."}}}}, ...]}}}}
with exactly 24 slots, "0:00-1:00" to "23:00-24:00" in order. {JSON_ONLY}"""

WEEKLY_USER = """# The character
{persona}"""

DAILY_SYSTEM = f"""You write the schedule of one day in the life of a fictional character, from
who the character is and its usual week. If the previous day is given, carry over what should
continue but avoid repeating it. Replace "free time" and anything undecided with concrete plans.
One-hour slots. Write in the character's language ({{language}}). {JSON_ONLY}"""

DAILY_PLAN = """First think about the day; do not write the timetable yet.
- Is it a special day (a birthday, a holiday, the season, an event)?
- Are there promises or appointments from the previous day to keep?
- What of the usual week applies today, and what changes?
- What is the overall shape of the day?
Answer with {{"plan": "<your plan for the day, free text>"}}.

# Date
{date}

# The character
{persona}

# The usual week
{weekly}

# The previous day's schedule
{previous_schedule}

# The previous day's diary
{previous_diary}

# Cautions
- Do not push the character's traits into every day: a favourite food is not eaten daily. This
  is one ordinary day in a long life.
- On special days the schedule may depart from the usual week."""

DAILY_TABLE = """Now write the schedule for {date} from your plan. Answer with
{{"slots": [{{"time": "0:00-1:00", "activity": "...", "notes": "feelings or notes, may be
empty"}}, ...]}}
with exactly 24 slots, "0:00-1:00" to "23:00-24:00" in order."""

DIARY_SYSTEM = f"""You write the diary of a fictional character from what happened to it on one
day. Write in the character's language ({{language}}). {JSON_ONLY}"""

DIARY_TOPICS = """List the main events and topics of the day worth writing about, chosen by
what this character, with its values, would have felt or thought about. Never name or quote the
people the character talked with: they are private; write about the topics. Answer with
{{"topics": ["...", ...]}} (at most 8).

# The character
{persona}

# Date
{date}

# The day's schedule
{schedule}

# What the character talked about today
{conversations}{news}"""

DIARY_NEWS = """

# Today's main news
{news}"""

DIARY_WRITE = """Now write the diary of {date} following the topics, about {length} characters:
the body only, no title; for each topic a short account of what happened and what the
character felt or thought. Yesterday's diary is below so the new one may refer to it, but it
must not read like it. Answer with {{"diary": "..."}}.

# Yesterday's diary
{previous_diary}"""

NEWS_SYSTEM = (
    """Answer strictly from web search results, with no opinions of your own. Write in
{language}. """
    + JSON_ONLY
)

NEWS_USER = """Find the news of {date} in the country {country}: up to three items each about
politics and the economy, entertainment and sports, and daily life. One sentence per item, no
URLs, no preamble. Answer with {{"items": ["...", ...]}}."""

INVALID_REPLY = (
    "That reply was not valid: {error}. Answer again with the corrected JSON object only."
)
