"""The operator dashboard: its figures equal a direct computation on the same turn records
(on SQLite by ranks, on PostgreSQL by percentile_cont), and staff see only their tenants'."""

from __future__ import annotations

import random
import statistics
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.console.figures import PHASES, QUANTILES, figures
from conversations.console.usage import MEASURES, daily_usage
from conversations.models import TurnRecord
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply, message_text
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

END = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)  # a Sunday: Europe's clocks changed at 01:00
DASHBOARD = "/admin/conversations/turnrecord/dashboard/"
CHANNELS = ("http", "websocket", "line", "dify", "openai")
STATUSES = [s.value for s in TurnRecord.Status]


@dataclass
class World:
    acme: Tenant
    globex: Tenant
    mia: Character  # acme's
    ren: Character  # acme's, in Tokyo
    kai: Character  # globex's


def turn(character: Character, rng: random.Random, at: datetime) -> TurnRecord:
    phases = {
        column: (None if rng.random() < 0.2 else round(rng.lognormvariate(5, 1), 3))
        for column, _ in PHASES
    }
    reported = rng.random() < 0.7  # some providers report no usage
    return TurnRecord(
        tenant_id=character.tenant_id,
        character=character,
        tokens_in=rng.randrange(10, 4000) if reported else None,
        tokens_out=rng.randrange(1, 800) if reported else None,
        speech_in_seconds=round(rng.uniform(0.5, 9), 2) if rng.random() < 0.3 else None,
        speech_out_seconds=round(rng.uniform(0.5, 20), 2) if rng.random() < 0.5 else None,
        context_id=uuid.uuid4(),
        channel=rng.choice(CHANNELS),
        status=rng.choice(STATUSES),
        started_at=at,
        **phases,
    )


@pytest.fixture
def world() -> World:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    world = World(
        acme=acme,
        globex=globex,
        mia=Character.objects.create(tenant=acme, slug="mia", name="Mia"),
        ren=Character.objects.create(tenant=acme, slug="ren", name="蓮", timezone="Asia/Tokyo"),
        kai=Character.objects.create(tenant=globex, slug="kai", name="Kai"),
    )
    rng = random.Random(16)
    records = [
        turn(rng.choice([world.mia, world.ren, world.kai]), rng, END - timedelta(minutes=m))
        for m in (rng.uniform(-120, 60 * 30) for _ in range(900))
    ]
    # Ties, a single value and an empty phase: the edges of interpolation.
    records += [turn(world.mia, rng, END - timedelta(hours=1)) for _ in range(3)]
    for record in records[-3:]:
        record.channel, record.stt_ms, record.tool_ms = "dify", 250.0, None
    TurnRecord.objects.bulk_create(records)
    return world


def direct(records: list[TurnRecord], column: str, q: float) -> float | None:
    values = sorted(v for r in records if (v := getattr(r, column)) is not None)
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@pytest.mark.parametrize("scope", ["tenant", "character"])
def test_the_figures_equal_a_direct_computation(world: World, scope: str) -> None:
    start, end = END - timedelta(hours=24), END
    turns = TurnRecord.objects.filter(tenant=world.acme)
    if scope == "character":
        turns = turns.filter(character=world.mia)
    records = [r for r in turns if start <= r.started_at < end]
    zone = ZoneInfo("Europe/Berlin")

    got = figures(turns, start, end, zone)

    assert got.turns == len(records) > 100
    assert got.failed == sum(r.status == "failed" for r in records)
    assert [c.channel for c in got.channels] == sorted({r.channel for r in records})
    for channel in got.channels:
        mine = [r for r in records if r.channel == channel.channel]
        assert (channel.turns, channel.failed) == (
            len(mine),
            sum(r.status == "failed" for r in mine),
        )
        for column, _ in PHASES:
            for q in QUANTILES:
                expected = direct(mine, column, q)
                assert channel.percentiles[column][q] == pytest.approx(expected), (
                    channel.channel,
                    column,
                    q,
                )
    # Hours on Berlin's clock, the hour that did not exist (02:00 on 29 March) absent.
    assert len(got.hours) == 24
    assert [h.start.hour for h in got.hours].count(2) == 0
    for hour in got.hours:
        inside = [
            r for r in records if hour.start <= r.started_at < hour.start + timedelta(hours=1)
        ]
        assert (hour.turns, hour.failed) == (
            len(inside),
            sum(r.status == "failed" for r in inside),
        ), hour.start


def staff(name: str, tenant: Tenant, role: str = Membership.Role.VIEWER) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


def recent(world: World) -> None:
    """Turns of the last hour, so the page's windows (which end now) see them."""
    now = timezone.now()
    TurnRecord.objects.filter(character=world.mia).update(started_at=now - timedelta(minutes=5))
    TurnRecord.objects.filter(character=world.kai).update(
        started_at=now - timedelta(minutes=5), channel="kai-only-channel"
    )


def test_the_page_shows_the_tenants_figures_and_charts(world: World) -> None:
    recent(world)
    alice = staff("alice", world.acme)
    mine = TurnRecord.objects.filter(character=world.mia)

    page = alice.get(DASHBOARD, {"character": str(world.mia.pk), "window": "1h"})

    assert page.status_code == 200
    html = page.content.decode()
    assert f'<strong id="total-turns">{mine.count()}</strong>' in html
    assert (
        html.count('<svg xmlns="http://www.w3.org/2000/svg" width')
        == 1 + mine.values("channel").distinct().count()
    )
    assert "kai-only-channel" not in html
    assert "UTC" in html


def test_hours_are_on_the_characters_clock(world: World) -> None:
    alice = staff("alice", world.acme)

    page = alice.get(DASHBOARD, {"character": world.ren.pk})

    assert page.status_code == 200
    assert "Asia/Tokyo" in page.content.decode()


def test_another_tenants_tenant_or_character_answers_like_an_unknown_one(world: World) -> None:
    recent(world)
    alice = staff("alice", world.acme)

    answers = [
        alice.get(DASHBOARD, {"character": world.kai.pk}).status_code,
        alice.get(DASHBOARD, {"tenant": world.globex.pk}).status_code,
        alice.get(DASHBOARD, {"character": 999999}).status_code,
        alice.get(DASHBOARD, {"tenant": 999999}).status_code,
    ]
    everything = alice.get(DASHBOARD, {"window": "1h"}).content.decode()

    assert answers == [404] * 4
    assert "kai-only-channel" not in everything


def test_bad_input_is_refused_in_the_forms_own_way(world: World) -> None:
    alice = staff("alice", world.acme)

    answers = [
        alice.get(f"{DASHBOARD}?character=1%00").status_code,
        alice.get(f"{DASHBOARD}?window=%ED%A0%80").status_code,
        alice.get(f"{DASHBOARD}?character=99999999999999999999999").status_code,
    ]
    unknown_window = alice.get(DASHBOARD, {"window": "10y"})

    # The wire text rule refuses NUL; undecodable bytes are an unknown window, like "10y".
    assert answers == [400, 200, 404]
    assert unknown_window.status_code == 200
    assert "Select a valid choice" in unknown_window.content.decode()


def test_only_staff_with_a_view_role_see_it(world: World) -> None:
    outsider = Client()
    outsider.force_login(User.objects.create_user("bob", password="pw", is_staff=True))

    assert outsider.get(DASHBOARD).status_code == 403
    assert Client().get(DASHBOARD).status_code == 302  # to the login page


def test_daily_usage_equals_a_direct_sum_per_day_and_character(world: World) -> None:
    start, end = END - timedelta(days=2), END
    zone = ZoneInfo("Asia/Tokyo")
    turns = TurnRecord.objects.filter(tenant=world.acme)
    records = [r for r in turns if start <= r.started_at < end]

    rows = daily_usage(turns, start, end, zone, "character")

    expected: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        key = (r.started_at.astimezone(zone).date().isoformat(), str(r.character_id))
        sums = expected.setdefault(key, {"turns": 0, **{m: 0 for m in MEASURES}})
        sums["turns"] += 1
        for m in MEASURES:
            sums[m] += getattr(r, m) or 0
    assert {(row["day"], row["character"]): row for row in rows}.keys() == expected.keys()
    for row in rows:
        want = expected[(row["day"], row["character"])]
        assert row["turns"] == want["turns"]
        for m in MEASURES:
            assert row[m] == pytest.approx(want[m])


def test_the_usage_api_counts_only_the_staff_users_tenant(world: World) -> None:
    recent(world)
    alice = staff("alice", world.acme)
    mine = list(TurnRecord.objects.filter(tenant=world.acme))  # all within the last 366 days

    everything = alice.get("/api/usage/", {"days": "366"}).json()
    per_key = alice.get("/api/usage/", {"days": "366", "group": "api_key"}).json()
    foreign = alice.get("/api/usage/", {"character": "kai", "days": "366"}).json()
    tokyo = alice.get("/api/usage/", {"character": "ren"}).json()

    assert everything["totals"]["turns"] == len(mine)
    assert everything["totals"]["tokens_in"] == sum(r.tokens_in or 0 for r in mine)
    assert {row["api_key"] for row in per_key["days"]} == {None}
    assert foreign["totals"]["turns"] == 0 and foreign["days"] == []
    assert tokyo["timezone"] == "Asia/Tokyo"


def test_the_usage_api_refuses_bad_parameters(world: World) -> None:
    alice = staff("alice", world.acme)

    answers = [
        alice.get("/api/usage/", {"days": "0"}),
        alice.get("/api/usage/", {"days": "99999999999999999999"}),
        alice.get("/api/usage/", {"group": "everything"}),
    ]

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert [next(iter(a.json())) for a in answers] == ["days", "days", "group"]


def test_a_turn_records_the_tokens_its_provider_reported(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=["Hello ", "there, ", "friend."]))

    result = app.post_sse(
        "/chat",
        {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Count my tokens"},
        key=api_key,
    )

    assert result.status == 200
    record = TurnRecord.objects.get()
    sent = fake_llm.requests[-1]["messages"]
    # The fake counts words of what it was sent, and one token per streamed piece.
    assert record.tokens_in == sum(len(message_text(m).split()) for m in sent) > 0
    assert record.tokens_out == 3
    assert record.speech_in_seconds is None  # a text turn heard nothing
