"""The evaluation admin: an AIAvatarKit file uploaded, a run started and followed, its results
next to the previous run's, downloads; and the tenant wall around all of it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from evaluation.models import EvaluationRun, Scenario
from evaluation.scenario_file import parse
from tests.conftest import LLM_KEY_VARIABLE
from tests.evaluation.conftest import DOCUMENTED, character_says, verdict
from tests.fakes.openai_server import FakeOpenAI
from tests.tenants.test_staff_access import staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

SCENARIOS = "/admin/evaluation/scenario/"
RUNS = "/admin/evaluation/evaluationrun/"
Capture = Callable[..., Any]


@dataclass
class World:
    mia: Character  # acme's
    kai: Character  # globex's
    alice: Client  # acme's admin
    bob: Client  # globex's admin


@pytest.fixture
def world(fake_llm: FakeOpenAI) -> World:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")

    def character(tenant: Tenant, slug: str) -> Character:
        return Character.objects.create(
            tenant=tenant,
            slug=slug,
            name=slug.title(),
            llm_model="gpt-4o-mini",
            llm_base_url=fake_llm.base_url,
            llm_api_key_env=LLM_KEY_VARIABLE,
        )

    return World(
        mia=character(acme, "mia"),
        kai=character(globex, "kai"),
        alice=staff("alice", acme, Membership.Role.ADMIN),
        bob=staff("bob", globex, Membership.Role.ADMIN),
    )


def upload(client: Client, character: Character, content: Any = DOCUMENTED) -> Any:
    body = json.dumps(content, ensure_ascii=False).encode()
    file = SimpleUploadedFile("support.json", body, content_type="application/json")
    return client.post(f"{SCENARIOS}import/", {"character": character.pk, "file": file})


def run_all(client: Client, capture: Capture) -> Any:
    ids = list(Scenario.objects.values_list("pk", flat=True))
    with capture(execute=True):
        return client.post(
            SCENARIOS, {"action": "run_evaluation", "_selected_action": ids}, follow=True
        )


def test_an_uploaded_file_runs_from_the_admin_next_to_the_previous_run(
    world: World, fake_llm: FakeOpenAI, django_capture_on_commit_callbacks: Capture
) -> None:
    page = world.alice.get(SCENARIOS)
    assert b'id="import-scenarios"' in page.content

    imported = upload(world.alice, world.mia)
    assert imported.status_code == 302
    assert Scenario.objects.get().character == world.mia
    fake_llm.script(
        character_says(2), verdict(True, "Warm."), verdict(True, "Yes."), verdict(True, "Done.")
    )
    listed = run_all(world.alice, django_capture_on_commit_callbacks)
    assert "1 evaluation run(s) queued: Mia (run " in listed.content.decode()
    fake_llm.script(
        character_says(2), verdict(True, "Warm."), verdict(False, "No number."), verdict(False, "")
    )
    run_all(world.alice, django_capture_on_commit_callbacks)
    first, second = EvaluationRun.objects.order_by("created_at")

    page = world.alice.get(f"{RUNS}{second.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200
    assert f'Compared with <a href="{RUNS}{first.pk}/change/">run {first.pk}</a>' in html
    assert '<strong id="run-status">done</strong>' in html
    assert '<strong id="run-progress">5/5</strong>' in html
    rows = html.split('<tr class="turn">')[1:]
    assert rows[0].count("✓ PASS") == 2  # this run's verdict, then the previous run's
    this_run, previous_run = rows[1].split("</td>")[4:6]
    assert "✗ FAIL" in this_run and "No number." in this_run
    assert "✓ PASS" in previous_run
    assert "You said: My order number is 12345." in rows[1]
    listed_runs = world.alice.get(RUNS).content.decode()
    assert "2/2 turns, 1/1 goals" in listed_runs and "1/2 turns, 0/1 goals" in listed_runs
    first_page = world.alice.get(f"{RUNS}{first.pk}/change/").content.decode()
    assert "No earlier run of this scenario to compare with." in first_page


def test_results_download_as_json_that_imports_again_and_as_csv(
    world: World, fake_llm: FakeOpenAI, django_capture_on_commit_callbacks: Capture
) -> None:
    content = {"scenarios": [{"name": "日本語", "turns": [{"input_text": "=1+1"}]}]}
    upload(world.alice, world.mia, content)
    run_all(world.alice, django_capture_on_commit_callbacks)
    run = EvaluationRun.objects.get()

    exported = world.alice.get(f"{RUNS}{run.pk}/export.json")
    table = world.alice.get(f"{RUNS}{run.pk}/export.csv")

    assert exported["Content-Disposition"] == (
        f'attachment; filename="evaluation-mia-run-{run.pk}.json"'
    )
    data = json.loads(exported.content)
    turn = data["scenarios"][0]["turns"][0]
    assert turn["actual_output_text"] == "You said: =1+1. I have seen 1 user messages."
    assert turn["evaluation_result"] is None  # nothing to judge it by
    assert [s.name for s in parse(exported.content)] == ["日本語"]
    text = table.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["scenario", "turn", "input_text"]
    assert rows[1][:3] == ["日本語", "1", "'=1+1"]  # never a spreadsheet formula
    assert rows[2][:2] == ["日本語", "goal"]


def test_another_tenants_scenarios_and_runs_answer_like_unknown_ones(
    world: World, fake_llm: FakeOpenAI, django_capture_on_commit_callbacks: Capture
) -> None:
    upload(world.alice, world.mia)
    fake_llm.script(character_says(2))
    run_all(world.alice, django_capture_on_commit_callbacks)
    scenario, run = Scenario.objects.get(), EvaluationRun.objects.get()
    requests = len(fake_llm.requests)

    answers = [
        world.bob.get(f"{SCENARIOS}{scenario.pk}/change/").status_code,
        world.bob.get(f"{RUNS}{run.pk}/change/").status_code,
        world.bob.get(f"{RUNS}{run.pk}/export.json").status_code,
        world.bob.get(f"{RUNS}{run.pk}/export.csv").status_code,
        world.bob.get(f"{RUNS}999999/change/").status_code,
        world.bob.get(f"{RUNS}999999/export.json").status_code,
    ]
    refused = upload(world.bob, world.mia)
    with django_capture_on_commit_callbacks(execute=True):
        world.bob.post(SCENARIOS, {"action": "run_evaluation", "_selected_action": [scenario.pk]})

    assert answers == [404] * 6
    assert b"Mia" not in world.bob.get(SCENARIOS).content
    assert b"Mia" not in world.bob.get(RUNS).content
    assert b"Select a valid choice" in refused.content
    assert (Scenario.objects.count(), EvaluationRun.objects.count()) == (1, 1)
    assert len(fake_llm.requests) == requests


def test_a_viewer_sees_results_but_neither_imports_nor_runs(
    world: World, fake_llm: FakeOpenAI, django_capture_on_commit_callbacks: Capture
) -> None:
    upload(world.alice, world.mia)
    carol = staff("carol", world.mia.tenant, Membership.Role.VIEWER)

    assert carol.get(f"{SCENARIOS}import/").status_code == 403
    assert upload(carol, world.mia).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        carol.post(
            SCENARIOS,
            {"action": "run_evaluation", "_selected_action": [Scenario.objects.get().pk]},
        )
    assert EvaluationRun.objects.count() == 0
    assert carol.get(SCENARIOS).status_code == 200


def test_a_bad_file_is_refused_on_the_form_and_nothing_is_stored(world: World) -> None:
    page = upload(world.alice, world.mia, {"scenarios": [{"turns": [{"input_text": "\x00"}]}]})

    assert page.status_code == 200
    assert b"scenarios[0].turns[0].input_text contains a NUL character." in page.content
    assert Scenario.objects.count() == 0
