"""Scenarios a character is evaluated on, and the runs that try it on them.

A run keeps a copy of what each scenario asked (inputs, expectations, criteria, goal) next to
what the character answered and what the judge said, so results stay readable after the
scenario is edited or deleted, and two runs of one scenario can be set side by side.
"""

from __future__ import annotations

from django.db import models

from avatarsite.tenants.models import TenantOwned
from characters.models import Character
from conversations.models import EndUser

from .functions import validate_function_path


class Scenario(TenantOwned):
    """A conversation to try a character on: its turns in order, and what it should achieve."""

    tenant_parent = "character"

    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, related_name="evaluation_scenarios"
    )
    name = models.CharField(max_length=200)
    goal = models.TextField(
        blank=True, help_text="What the whole conversation should achieve; blank: not judged."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["character", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["character", "name"], name="unique_scenario_name_per_character"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ScenarioTurn(TenantOwned):
    """One thing the user says in a scenario, and how the answer is judged."""

    tenant_parent = "scenario"

    scenario = models.ForeignKey(Scenario, on_delete=models.CASCADE, related_name="turns")
    position = models.PositiveIntegerField()
    input_text = models.TextField()
    expected_output_text = models.TextField(
        blank=True, help_text="An example of a good answer, shown to the judge."
    )
    evaluation_criteria = models.TextField(
        blank=True,
        help_text="What the judge checks the answer against; blank (and no expected output): "
        "the turn is not judged.",
    )
    evaluation_function = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_function_path],
        help_text="Dotted path of a function that has the last word on the verdict "
        "(EVALUATION_FUNCTION_MODULES lists where they may live).",
    )

    class Meta:
        ordering = ["scenario", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["scenario", "position"], name="unique_scenario_turn_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.position}: {self.input_text[:60]}"


class EvaluationRun(TenantOwned):
    """One run of some of a character's scenarios, done by a Celery worker."""

    tenant_parent = "character"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, related_name="evaluation_runs"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    judge_model = models.CharField(
        max_length=100,
        blank=True,
        help_text="The model the judge asks (through the character's provider); blank: "
        "EVALUATION_JUDGE_MODEL, else the character's own model.",
    )
    # Progress: every turn said and every verdict asked for is a step.
    steps_total = models.PositiveIntegerField(default=0)
    steps_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The lease of the worker running it (evaluation/lease.py), renewed while it works.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    leased_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While running: when the worker's lease runs out unless renewed.",
    )
    attempts = models.PositiveIntegerField(
        default=0,
        help_text="Workers that took the run on; more than one: a worker was lost and the "
        "next one resumed where it stopped.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "evaluation run"

    def __str__(self) -> str:
        return f"{self.character} run {self.pk} ({self.status})"

    @property
    def progress(self) -> str:
        return f"{self.steps_done}/{self.steps_total}"


class ScenarioResult(TenantOwned):
    """How a scenario went in a run: its goal's verdict, and the evaluation user it ran as."""

    tenant_parent = "run"

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    scenario = models.ForeignKey(
        Scenario, on_delete=models.SET_NULL, null=True, blank=True, related_name="results"
    )
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    goal = models.TextField(blank=True)
    goal_passed = models.BooleanField(null=True, blank=True)  # None: not judged
    goal_reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # The end user the scenario spoke as: on the evaluation channel, its own per result.
    end_user = models.ForeignKey(
        EndUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    context_id = models.UUIDField(null=True, blank=True)
    # The provider's own memory of the conversation (a Dify conversation id), so a resumed
    # run continues the same one.
    provider_state = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["run", "position"]

    def __str__(self) -> str:
        return self.name


class TurnResult(TenantOwned):
    """One turn of a scenario in a run: what was asked and expected, what was answered, the
    verdict."""

    tenant_parent = "scenario_result"

    scenario_result = models.ForeignKey(
        ScenarioResult, on_delete=models.CASCADE, related_name="turns"
    )
    position = models.PositiveIntegerField()
    input_text = models.TextField()
    expected_output_text = models.TextField(blank=True)
    evaluation_criteria = models.TextField(blank=True)
    evaluation_function = models.CharField(max_length=200, blank=True)
    actual_output_text = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True)  # [{id, name, arguments, result}]
    passed = models.BooleanField(null=True, blank=True)  # None: not judged (or never said)
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    turn_record_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["scenario_result", "position"]

    def __str__(self) -> str:
        return f"{self.position}: {self.input_text[:60]}"
