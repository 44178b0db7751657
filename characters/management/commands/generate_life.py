"""`manage.py generate_life --character SLUG [--tenant SLUG] --from DATE --to DATE [--overwrite]`

Writes the schedules and diaries of a range of days, here and now (no worker needed): to seed
a new character's past, or to catch up after the beat was stopped for longer than the
backfill window. Goes on past a failed day, lists every failure at the end and exits non-zero
if there was one; a rerun only does what is still missing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG
from characters.life import days
from characters.models import Character

BAR_WIDTH = 30


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Generate a character's daily schedules and diaries for a range of dates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--character", required=True, help="the character's slug")
        parser.add_argument(
            "--tenant", default=DEFAULT_TENANT_SLUG, help="its tenant's slug (default: default)"
        )
        parser.add_argument("--from", dest="start", required=True, help="first date, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", required=True, help="last date, YYYY-MM-DD")
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="regenerate schedules and diaries that exist (manual ones included)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _date(options["start"]), _date(options["end"])
        if start > end:
            raise CommandError(f"--from {start} is after --to {end}.")
        dates = days.date_range(start, end)
        if len(dates) > days.MAX_RANGE_DAYS:
            raise CommandError(
                f"At most {days.MAX_RANGE_DAYS} days at once; this range has {len(dates)}."
            )
        character = Character.objects.filter(
            tenant__slug=options["tenant"], slug=options["character"]
        ).first()
        if character is None:
            raise CommandError(
                f"No character with the slug {options['character']!r} "
                f"in the tenant {options['tenant']!r}."
            )
        today = character.local_now(timezone.now()).date()
        if end > today:
            # A diary of a day that has not happened would be invented, not remembered.
            raise CommandError(f"--to {end} is after {character.slug}'s today ({today}).")

        overwrite = frozenset({days.SCHEDULE, days.DIARY}) if options["overwrite"] else frozenset()
        done = 0

        def progress(result: days.DayResult) -> None:
            nonlocal done
            done += 1
            filled = BAR_WIDTH * done // len(dates)
            mark = "failed" if result.error else "ok"
            self.stderr.write(
                f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{len(dates)} "
                f"{result.date} {mark}   ",
                ending="\n" if done == len(dates) else "",
            )
            self.stderr.flush()

        results = days.generate_dates(character, dates, overwrite=overwrite, on_day=progress)
        schedules = sum(r.schedule_generated for r in results)
        diaries = sum(r.diary_generated for r in results)
        self.stdout.write(
            f"{character.slug}: {schedules} schedule(s) and {diaries} diary(ies) generated "
            f"for {len(dates)} day(s), {start} to {end}."
        )
        failed = [r for r in results if r.error]
        if failed:
            for result in failed:
                self.stderr.write(f"  {result.date}: {result.code}: {result.error}")
            raise CommandError(f"{len(failed)} of {len(dates)} day(s) failed; rerun to retry them.")
