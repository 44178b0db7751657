"""Schedules and diaries as operators read them: a schedule's markdown table rendered as a
table, a diary as paragraphs, everything escaped; times on the character's clock with the
zone, and every other time in the admin with its zone."""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth.models import User
from django.test import Client

from avatarsite.tenants.models import Membership
from characters.models import Character, DailySchedule, Diary
from characters.rendering import markdown_tables, paragraphs
from conversations.models import EndUser

pytestmark = pytest.mark.django_db

TABLE = "Plan:\n| Time | Activity |\n|---|:-:|\n| 07:00 | 起床 <script> |\n| 08:00 | walk |"


def test_a_markdown_table_becomes_an_html_table_and_the_rest_paragraphs() -> None:
    html = str(markdown_tables(TABLE))

    assert html.startswith("<p>Plan:</p><table")
    assert html.count("<th ") == 2 and html.count("<tr>") == 3
    assert "起床 &lt;script&gt;" in html and "<script>" not in html
    # Rows without a rule under the first are all data.
    assert str(markdown_tables("| a | b |")).count("<th") == 0
    assert str(paragraphs("one\n\ntwo <i>")) == "<p>one</p>\n\n<p>two &lt;i&gt;</p>"


@pytest.fixture
def operator(character: Character) -> Client:
    user = User.objects.create_user("ann", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=character.tenant, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def test_schedule_and_diary_pages_show_them_rendered_on_the_characters_clock(
    character: Character, operator: Client
) -> None:
    character.timezone = "Asia/Tokyo"
    character.save()
    schedule = DailySchedule.objects.create(
        character=character, schedule_date=date(2026, 1, 17), content=TABLE
    )
    diary = Diary.objects.create(
        character=character, diary_date=date(2026, 1, 17), content="パンを焼いた。\n\n楽しかった。"
    )

    schedule_page = operator.get(f"/admin/characters/dailyschedule/{schedule.pk}/change/")
    diary_page = operator.get(f"/admin/characters/diary/{diary.pk}/change/")
    diaries = operator.get("/admin/characters/diary/").content.decode()

    html = schedule_page.content.decode()
    assert '<table class="rendered"' in html and "起床 &lt;script&gt;" in html
    assert html.index('class="rendered"') < html.index('name="content"')  # above the text
    assert "JST" in html
    assert "<p>パンを焼いた。</p>" in diary_page.content.decode()
    assert "パンを焼いた。 楽しかった。" in diaries  # the list's excerpt


def test_times_not_about_a_character_name_their_zone(operator: Client) -> None:
    end_user = EndUser.objects.create(display_name="Ken")

    page = operator.get(f"/admin/conversations/enduser/{end_user.pk}/change/").content.decode()

    assert " UTC" in page
