"""Operators' evaluation pages: scenarios (with an AIAvatarKit file import and a run action),
and runs with their progress, results next to the previous run's, and downloads.

Runs never happen inside an admin request: the action plans a run and a Celery worker does it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from avatarsite.tenants.scoping import TenantScopedAdmin, TenantScopedTabularInline, scoped
from characters.models import Character
from characters.times import with_zone

from .models import EvaluationRun, Scenario, ScenarioTurn
from .results import as_csv, as_json, compared
from .scenario_file import MAX_FILE_BYTES, ScenarioFileError, import_scenarios, parse
from .tasks import enqueue_run


class ScenarioTurnInline(TenantScopedTabularInline):
    model = ScenarioTurn
    extra = 1
    fields = (
        "position",
        "input_text",
        "expected_output_text",
        "evaluation_criteria",
        "evaluation_function",
    )


class ImportForm(forms.Form):
    character = forms.ModelChoiceField(queryset=Character.objects.none())
    file = forms.FileField(
        help_text='AIAvatarKit\'s scenario JSON: {"scenarios": [{"name", "goal", "turns": '
        '[{"input_text", "expected_output_text", "evaluation_criteria", '
        '"evaluation_function_name"}]}]}. A scenario of the same name is replaced.'
    )


@admin.register(Scenario)
class ScenarioAdmin(TenantScopedAdmin):
    list_display = ("name", "character", "turn_count", "last_run", "updated_at")
    list_filter = ("character",)
    search_fields = ("name", "goal", "turns__input_text")
    list_select_related = ("character",)
    fields = ("character", "name", "goal")
    inlines = (ScenarioTurnInline,)
    actions = ("run_evaluation",)
    change_list_template = "admin/evaluation/scenario/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Scenario]:
        return super().get_queryset(request).annotate(turn_count=Count("turns"))

    @admin.display(description="turns", ordering="turn_count")
    def turn_count(self, obj: Any) -> int:
        return int(obj.turn_count)

    @admin.display(description="last run")
    def last_run(self, obj: Scenario) -> str:
        result = obj.results.select_related("run").order_by("-run__created_at").first()
        if result is None:
            return "-"
        url = reverse("admin:evaluation_evaluationrun_change", args=[result.run_id])
        return format_html('<a href="{}">run {} ({})</a>', url, result.run_id, result.run.status)

    @admin.action(description="Run an evaluation of the selected scenarios", permissions=["change"])
    def run_evaluation(self, request: HttpRequest, queryset: QuerySet[Scenario]) -> None:
        by_character: dict[Character, list[Scenario]] = defaultdict(list)
        for scenario in queryset.select_related("character").prefetch_related("turns"):
            by_character[scenario.character].append(scenario)
        runs = [enqueue_run(character, found) for character, found in by_character.items()]
        self.message_user(
            request,
            f"{len(runs)} evaluation run(s) queued: "
            + ", ".join(f"{run.character} (run {run.pk})" for run in runs),
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        upload = path(
            "import/",
            self.admin_site.admin_view(self.import_file),
            name="evaluation_scenario_import",
        )
        return [upload, *super().get_urls()]

    def import_file(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        form = ImportForm(request.POST or None, request.FILES or None)
        characters = form.fields["character"]
        assert isinstance(characters, forms.ModelChoiceField)
        characters.queryset = scoped(Character.objects.all(), request.user)
        if request.method == "POST" and form.is_valid():
            character: Character = form.cleaned_data["character"]
            upload = form.cleaned_data["file"]
            if not self.has_add_permission(request, character):
                return HttpResponse(status=403)
            try:
                # One byte over the limit is enough to refuse it: never read a huge upload.
                content = upload.read(MAX_FILE_BYTES + 1)
                specs = parse(content, source=upload.name.rsplit(".", 1)[0])
            except ScenarioFileError as exc:
                form.add_error("file", str(exc))
            else:
                stored = import_scenarios(character, specs)
                self.message_user(
                    request,
                    f"{len(stored)} scenario(s) imported for {character}: "
                    + ", ".join(s.name for s in stored),
                    messages.SUCCESS,
                )
                changelist = reverse("admin:evaluation_scenario_changelist")
                return HttpResponseRedirect(f"{changelist}?character__id__exact={character.pk}")
        return TemplateResponse(
            request,
            "admin/evaluation/import.html",
            {
                **self.admin_site.each_context(request),
                "title": "Import AIAvatarKit scenarios",
                "opts": self.model._meta,
                "form": form,
            },
        )

    def has_add_permission(self, request: HttpRequest, character: Character | None = None) -> bool:
        if character is None or request.user.is_superuser:
            return super().has_add_permission(request)
        # Another tenant's character never gets this far (the form offers the user's only).
        return bool(request.user.has_perm("evaluation.add_scenario", character))


@admin.register(EvaluationRun)
class EvaluationRunAdmin(TenantScopedAdmin):
    list_display = (
        "run",
        "character",
        "status",
        "progress",
        "workers",
        "verdicts",
        "queued",
        "finished",
    )
    list_filter = ("status", "character")
    list_select_related = ("character",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[EvaluationRun]:
        judged = Q(results__turns__passed__isnull=False)
        return (
            super()
            .get_queryset(request)
            .annotate(
                turns_passed=Count("results__turns", filter=Q(results__turns__passed=True)),
                turns_judged=Count("results__turns", filter=judged),
                goals_passed=Count("results", filter=Q(results__goal_passed=True), distinct=True),
                goals_judged=Count(
                    "results", filter=Q(results__goal_passed__isnull=False), distinct=True
                ),
            )
        )

    @admin.display(description="run", ordering="pk")
    def run(self, obj: EvaluationRun) -> str:
        return f"Run {obj.pk}"

    @admin.display(description="workers", ordering="attempts")
    def workers(self, obj: EvaluationRun) -> str:
        """How many workers took the run on: more than one means one was lost mid-run."""
        if obj.attempts > 1:
            return f"{obj.attempts} (resumed after {obj.attempts - 1} lost)"
        return str(obj.attempts)

    @admin.display(description="passed")
    def verdicts(self, obj: Any) -> str:
        return (
            f"{obj.turns_passed}/{obj.turns_judged} turns, "
            f"{obj.goals_passed}/{obj.goals_judged} goals"
        )

    @admin.display(description="queued", ordering="created_at")
    def queued(self, obj: EvaluationRun) -> str:
        return with_zone(obj.created_at, obj.character.zone)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: EvaluationRun) -> str:
        return with_zone(obj.finished_at, obj.character.zone)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are started from the scenarios' action or `manage.py evaluate`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # results are what happened: read only

    def get_urls(self) -> list[URLPattern]:
        exports = [
            path(
                f"<int:object_id>/export.{kind}",
                self.admin_site.admin_view(self.export),
                {"kind": kind},
                name=f"evaluation_evaluationrun_export_{kind}",
            )
            for kind in ("json", "csv")
        ]
        return [*exports, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)  # another tenant's: 404
        if not self.has_view_permission(request, run):
            return HttpResponse(status=403)
        return TemplateResponse(
            request,
            "admin/evaluation/results.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Evaluation of {run.character}: run {run.pk}",
                "opts": self.model._meta,
                "original": run,
                "run": run,
                "rows": compared(run),
                "queued": with_zone(run.created_at, run.character.zone),
                "finished": with_zone(run.finished_at, run.character.zone),
                "unfinished": run.status
                in (EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING),
            },
        )

    def export(self, request: HttpRequest, object_id: int, kind: str) -> HttpResponse:
        run = self.get_object(request, str(object_id))
        if not self.has_view_permission(request, run):
            return HttpResponse(status=403)
        name = f"evaluation-{run.character.slug}-run-{run.pk}.{kind}"
        if kind == "json":
            body = json.dumps(as_json(run), ensure_ascii=False, indent=2)
            response = HttpResponse(body, content_type="application/json; charset=utf-8")
        else:
            # A byte-order mark: spreadsheet programs then read Japanese text as UTF-8.
            response = HttpResponse("\ufeff" + as_csv(run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
