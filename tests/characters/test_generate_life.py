"""`manage.py generate_life`: ranges, failures reported at the end, reruns, bad input."""

from __future__ import annotations

from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from characters.models import Character, DailySchedule, Diary
from tests.characters.conftest import GARBLED, answers
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db

DAY = date(2026, 1, 10)


def generate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("generate_life", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def days(model: type[DailySchedule] | type[Diary], field: str) -> list[date]:
    return sorted(model.objects.values_list(field, flat=True))


def test_a_7_day_backfill_with_a_failing_day_does_the_other_six_and_exits_non_zero(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    # Each day costs 4 answers (day plan, table, topics, diary). Day 3's table never comes
    # right, so its schedule (and so its diary) fails.
    good = life_reply()
    fake_llm.script(answers(good, 9), answers(GARBLED, 3), answers(good, 16))
    err = StringIO()

    with pytest.raises(CommandError, match=r"1 of 7 day\(s\) failed"):
        call_command(
            "generate_life",
            "--character=hana",
            "--from=2026-01-10",
            "--to=2026-01-16",
            stdout=StringIO(),
            stderr=err,
        )

    week = [DAY + timedelta(days=n) for n in range(7)]
    failed = DAY + timedelta(days=2)
    assert days(DailySchedule, "schedule_date") == [d for d in week if d != failed]
    assert days(Diary, "diary_date") == [d for d in week if d != failed]
    report = err.getvalue()
    assert "7/7" in report and "[" + "#" * 30 + "]" in report
    assert f"{failed}: generation_failed: table: no valid answer in 3 attempts" in report

    # A rerun only does what is missing: the failed day (its day plan was already paid for).
    fake_llm.reset()
    fake_llm.script(answers(good, 3))
    out, _ = generate("--character", "hana", "--from", "2026-01-10", "--to", "2026-01-16")
    assert "1 schedule(s) and 1 diary(ies) generated for 7 day(s)" in out
    assert len(fake_llm.requests) == 3
    assert days(DailySchedule, "schedule_date") == week


def test_overwrite_regenerates_every_day(fake_llm: FakeOpenAI, living: Character) -> None:
    DailySchedule.objects.create(character=living, schedule_date=DAY, content="by hand")
    Diary.objects.create(character=living, diary_date=DAY, content="by hand")
    fake_llm.script(answers(life_reply("again"), 4))

    out, _ = generate("--character=hana", "--from=2026-01-10", "--to=2026-01-10", "--overwrite")

    assert "1 schedule(s) and 1 diary(ies)" in out
    assert "again activity" in DailySchedule.objects.get().content
    assert Diary.objects.get().content.startswith("again diary")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--character=hana", "--from=2026-13-01", "--to=2026-01-02"], "is not a date"),
        (["--character=hana", "--from=2026-01-05", "--to=2026-01-02"], "is after --to"),
        (["--character=hana", "--from=2024-01-01", "--to=2026-01-02"], "At most 366 days"),
        (["--character=nobody", "--from=2026-01-01", "--to=2026-01-02"], "No character"),
        (["--character=hana", "--from=2998-12-31", "--to=2999-01-01"], "after hana's today"),
    ],
    ids=["bad-date", "backwards", "too-long", "unknown-slug", "future"],
)
def test_it_refuses_bad_input_and_writes_nothing(
    fake_llm: FakeOpenAI, living: Character, args: list[str], error: str
) -> None:
    with pytest.raises(CommandError, match=error):
        generate(*args)

    assert fake_llm.requests == []
    assert not DailySchedule.objects.exists() and not Diary.objects.exists()
