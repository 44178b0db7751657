"""What can stop the generation of a piece of a character's life; `code` is machine-readable."""

from __future__ import annotations


class LifeError(Exception):
    """A generation that could not be done; `code` is machine-readable."""

    code = "life_error"


class WeeklyScheduleMissing(LifeError):
    code = "weekly_schedule_missing"


class DailyScheduleMissing(LifeError):
    code = "daily_schedule_missing"


class GenerationBusy(LifeError):
    """Another run holds the lease on this work; try again later (it may well be done)."""

    code = "generation_in_progress"


class GenerationFailed(LifeError):
    """The LLM failed, or gave no valid answer within the allowed attempts."""

    code = "generation_failed"
