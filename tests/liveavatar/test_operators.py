"""Live Avatar agents for operators: the admin and the REST API, walled off by tenant, and the
worker that starts and stops sessions as the agents' switch says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import Membership, ProviderSecret, Tenant
from channels_app.liveavatar.models import LiveAvatarAgent, State
from channels_app.liveavatar.worker import Supervisor
from characters.models import Character
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.liveavatar_platform import API_KEY, FakePlatform
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp
from tests.liveavatar.test_agent import make_agent
from tests.tenants.test_staff_access import staff
from tests.waiting import wait_until_async

URL = "https://platform.example/dispatcher"


def _agent(tenant: Tenant, slug: str) -> LiveAvatarAgent:
    character = Character.objects.create(tenant=tenant, slug=slug, name=slug.title())
    return make_agent(character, URL, enabled=False)


@pytest.mark.django_db
def test_the_admin_shows_and_switches_only_the_staff_users_tenants_agents() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    mine, theirs = _agent(acme, "mia"), _agent(globex, "kai")
    alice = staff("alice", acme, Membership.Role.ADMIN)

    listing = alice.get("/admin/liveavatar/liveavataragent/")
    assert listing.status_code == 200
    assert b"Mia" in listing.content and b"Kai" not in listing.content
    page = alice.get(f"/admin/liveavatar/liveavataragent/{mine.pk}/change/")
    assert page.status_code == 200 and b"LIVEAVATAR_KEY: tenant secret" in page.content
    assert API_KEY not in page.content.decode()
    answers = [
        alice.get(f"/admin/liveavatar/liveavataragent/{pk}/change/").status_code
        for pk in (theirs.pk, 999999)
    ]
    assert answers == [404, 404]  # another tenant's agent answers like a missing one

    for action, enabled in (("start", True), ("stop", False)):
        alice.post(
            "/admin/liveavatar/liveavataragent/",
            {"action": action, "_selected_action": [mine.pk, theirs.pk]},
        )
        mine.refresh_from_db()
        theirs.refresh_from_db()
        assert (mine.enabled, theirs.enabled) == (enabled, False)


@pytest.mark.django_db
def test_the_rest_api_keeps_agents_and_characters_within_the_tenant() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    theirs = _agent(globex, "kai")
    Character.objects.create(tenant=acme, slug="mia", name="Mia")
    secret = ProviderSecret(tenant=acme, name="ACME_LA")
    secret.set_value("acme-platform-key")
    secret.save()
    alice = staff("alice", acme, Membership.Role.ADMIN)

    def post(character: str, secret: str = "ACME_LA") -> tuple[int, dict[str, object]]:
        body = {"character": character, "base_url": URL, "api_key_env": secret, "avatar_id": "a1"}
        answer = alice.post(
            "/api/liveavatar-agents/", json.dumps(body), content_type="application/json"
        )
        return answer.status_code, answer.json()

    # Another tenant's character is as unknown as a slug nobody uses.
    foreign, unknown = post("kai"), post("nobody")
    assert foreign[0] == unknown[0] == 400
    assert str(foreign[1]["character"]).replace("kai", "?") == str(unknown[1]["character"]).replace(
        "nobody", "?"
    )
    # The key must be the tenant's own secret: the tenant chose the URL it is sent to.
    refused = post("mia", LLM_KEY_VARIABLE)
    assert refused[0] == 400 and "api_key_env" in refused[1]
    status, created = post("mia")
    assert status == 201 and created["enabled"] is False and created["state"] == "stopped"

    switched = alice.patch(
        f"/api/liveavatar-agents/{created['id']}/",
        json.dumps({"enabled": True}),
        content_type="application/json",
    )
    assert switched.status_code == 200 and switched.json()["enabled"] is True
    answers = [alice.get(f"/api/liveavatar-agents/{pk}/").status_code for pk in (theirs.pk, 999999)]
    assert answers == [404, 404]
    listed = alice.get("/api/liveavatar-agents/").json()
    assert [a["character"] for a in listed["results"]] == ["mia"]
    assert Client().get("/api/liveavatar-agents/").status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
async def test_the_worker_follows_the_agents_switch(
    app: InProcessApp,
    character: Character,
    fake_llm: FakeOpenAI,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    settings.LIVEAVATAR_POLL_SECONDS = 0.05
    settings.LIVEAVATAR_RESTART_SECONDS = 0.05
    async with FakePlatform() as platform:
        platform.start_error = (40002, "no renderer free")
        agent = await sync_to_async(make_agent)(character, platform.base_url)
        stop = asyncio.Event()
        worker = asyncio.create_task(Supervisor().run(stop))

        async def state() -> LiveAvatarAgent:
            return await LiveAvatarAgent.objects.aget(pk=agent.pk)

        # A refused start is reported, then tried again.
        await wait_until_async(
            lambda: _state_is(state, State.FAILED, "NO_RENDERER_POD"), "the failure"
        )
        platform.start_error = None
        await platform.connected()
        await wait_until_async(lambda: _state_is(state, State.RUNNING), "a running session")
        assert len(platform.starts) >= 2 and (await state()).user_token == "fake-rtc-user-token"

        # Switched off: the session ends with session.stop and the row forgets it.
        await LiveAvatarAgent.objects.filter(pk=agent.pk).aupdate(enabled=False)
        await wait_until_async(lambda: _state_is(state, State.STOPPED), "the stop")
        assert platform.sent("session.stop") and (await state()).session_id == ""
        assert platform.connections[0].ws.close_code == 1000

        # On again, then the worker itself stops: it closes the session on its way out.
        await LiveAvatarAgent.objects.filter(pk=agent.pk).aupdate(enabled=True)
        await platform.connected(2)
        stop.set()
        await asyncio.wait_for(worker, 30)
        assert len(platform.sent("session.stop")) == 2
        assert (await state()).state == State.STOPPED


async def _state_is(
    read: Callable[[], Awaitable[LiveAvatarAgent]], state: str, error: str = ""
) -> bool:
    agent = await read()
    return bool(agent.state == state and error in agent.last_error)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, 201),  # the body every other case spoils in one field
        ({"character": "mi\x00a"}, 400),
        ({"character": "\ud800"}, 400),
        ({"api_key_env": "ACME\x00LA"}, 400),
        ({"avatar_id": "a\x00"}, 400),
        ({"idle_prompt": "x" * 501}, 400),
        ({"base_url": "javascript:alert(1)"}, 400),
        ({"tts_sample_rate": 10**30}, 400),
        ({"enabled": "maybe"}, 400),
    ],
)
def test_bad_input_is_a_clear_400_and_writes_nothing(
    change: dict[str, object], status: int
) -> None:
    acme = Tenant.named("acme")
    Character.objects.create(tenant=acme, slug="mia", name="Mia")
    secret = ProviderSecret(tenant=acme, name="ACME_LA")
    secret.set_value("acme-platform-key")
    secret.save()
    alice = staff("alice", acme, Membership.Role.OWNER)
    body = {"character": "mia", "base_url": URL, "api_key_env": "ACME_LA", "avatar_id": "a1"}
    # json.dumps escapes a lone surrogate as \ud800, as a browser's JSON.stringify does.
    raw = json.dumps({**body, **change})
    answer = alice.post("/api/liveavatar-agents/", raw, content_type="application/json")
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json" and answer.json()
    assert LiveAvatarAgent.objects.count() == (status == 201)
