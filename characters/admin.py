"""Operators' view of characters and their life: inlines, generation actions.

conversations/admin.py registers the character page built here with what conversations adds to
it (the voice, the system-prompt preview).

Generation never runs inside an admin request: the actions enqueue GenerationJobs for the
Celery workers, and the jobs' progress is visible under "Generation jobs".
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from avatarsite.tenants.scoping import (
    TenantScopedAdmin,
    TenantScopedStackedInline,
    TenantScopedTabularInline,
)

from .life.days import MAX_RANGE_DAYS
from .models import (
    Character,
    DailySchedule,
    Diary,
    GenerationClaim,
    GenerationJob,
    NewsDigest,
    Origin,
    WeeklySchedule,
)
from .rendering import markdown_tables, paragraphs, pretty_json
from .tasks import enqueue_job
from .times import with_zone

# Inlines on the character page show the recent past; the full history has its own pages.
INLINE_DAYS = 14


class ManualEditMixin:
    """A schedule or diary whose content an operator changed is marked `manual`."""

    def mark_manual(self, obj: DailySchedule | Diary | WeeklySchedule, changed: list[str]) -> None:
        if "content" in changed:
            obj.origin = Origin.MANUAL


class WeeklyScheduleInline(TenantScopedStackedInline):
    model = WeeklySchedule
    fields = ("content", "origin", "updated_at")
    readonly_fields = ("origin", "updated_at")
    extra = 0


class RecentInline(TenantScopedTabularInline):
    extra = 0
    date_field = ""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        since = timezone.now().date() - timedelta(days=INLINE_DAYS)
        return super().get_queryset(request).filter(**{f"{self.date_field}__gte": since})


class DailyScheduleInline(RecentInline):
    model = DailySchedule
    date_field = "schedule_date"
    fields = ("schedule_date", "content", "origin")
    readonly_fields = ("origin",)
    verbose_name_plural = f"daily schedules (last {INLINE_DAYS} days)"


class DiaryInline(RecentInline):
    model = Diary
    date_field = "diary_date"
    fields = ("diary_date", "content", "topics", "news_status", "origin")
    readonly_fields = ("topics", "news_status", "origin")
    verbose_name_plural = f"diaries (last {INLINE_DAYS} days)"


class BackfillForm(forms.Form):
    start = forms.DateField(label="From", help_text="YYYY-MM-DD, the characters' local dates")
    end = forms.DateField(label="To")
    overwrite = forms.BooleanField(
        required=False, help_text="Regenerate existing schedules and diaries, manual ones too."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                raise ValidationError("The range starts after it ends.")
            if (end - start).days + 1 > MAX_RANGE_DAYS:
                raise ValidationError(f"At most {MAX_RANGE_DAYS} days at once.")
        return data


def _local_today(character: Character) -> date:
    return character.local_now(timezone.now()).date()


@admin.register(Character)
class CharacterAdmin(ManualEditMixin, TenantScopedAdmin):
    list_display = (
        "name",
        "slug",
        "language",
        "timezone",
        "llm_provider",
        "llm_model",
        "is_default",
        "is_active",
    )
    list_filter = ("llm_provider", "language", "is_active", "is_default")
    search_fields = ("name", "slug", "persona")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at", "life_links")
    fieldsets = (
        (
            None,
            {"fields": ("name", "slug", "persona", "default_user_name", "language", "timezone")},
        ),
        (
            "LLM",
            {
                "fields": (
                    "llm_provider",
                    "llm_model",
                    "llm_temperature",
                    "llm_allowed_models",
                    "llm_max_tokens",
                    "llm_base_url",
                    "llm_api_key_env",
                )
            },
        ),
        (
            "Conversation",
            {
                "fields": (
                    "context_timeout_seconds",
                    "invoke_timeout_seconds",
                    "use_turn_queue",
                    "greeting",
                    "apology",
                    "face_icons",
                    "voice_text_tags",
                    "terminal_voice_tag",
                    "artifact_catalog",
                    "disabled_tools",
                    "dynamic_tools",
                    "openai_history",
                    "record_audio",
                )
            },
        ),
        (
            "Shared context",
            {"fields": ("shared_context_size", "shared_context_max_age_hours")},
        ),
        ("Hooks", {"fields": ("on_error_hook", "response_hook", "on_finish_hook")}),
        ("Life", {"fields": ("schedule_hour", "diary_hour", "news_country", "life_links")}),
        ("Status", {"fields": ("is_default", "is_active", "created_at", "updated_at")}),
    )
    inlines = (WeeklyScheduleInline, DailyScheduleInline, DiaryInline)
    actions = ("generate_todays_schedule", "write_todays_diary", "backfill_range")

    @admin.display(description="Tools")
    def life_links(self, obj: Character) -> str:
        if obj.pk is None:
            return "-"
        jobs = reverse("admin:characters_generationjob_changelist")
        return format_html('<a href="{}?character__id__exact={}">Generation jobs</a>', jobs, obj.pk)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for inline_form in formset.forms:
            if inline_form.has_changed() and hasattr(inline_form.instance, "origin"):
                self.mark_manual(inline_form.instance, inline_form.changed_data)
        super().save_formset(request, form, formset, change)

    def _enqueue(self, request: HttpRequest, queryset: QuerySet[Character], kind: str) -> None:
        jobs = [enqueue_job(c, kind, _local_today(c)) for c in queryset]
        self.message_user(
            request,
            f"{len(jobs)} job(s) enqueued; see Generation jobs for their status.",
            messages.SUCCESS,
        )

    @admin.action(description="Generate today's schedule (each character's local date)")
    def generate_todays_schedule(self, request: HttpRequest, queryset: QuerySet[Character]) -> None:
        self._enqueue(request, queryset, GenerationJob.Kind.SCHEDULE)

    @admin.action(description="Write today's diary (each character's local date)")
    def write_todays_diary(self, request: HttpRequest, queryset: QuerySet[Character]) -> None:
        self._enqueue(request, queryset, GenerationJob.Kind.DIARY)

    @admin.action(description="Backfill a range of days…")
    def backfill_range(
        self, request: HttpRequest, queryset: QuerySet[Character]
    ) -> HttpResponse | None:
        form = BackfillForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            ahead = [
                f"{c.name} (today {today})"
                for c in queryset
                if data["end"] > (today := _local_today(c))
            ]
            if ahead:
                # A diary of a day that has not happened would be invented, not remembered.
                form.add_error("end", f"After the character's today: {', '.join(ahead)}.")
        if form.is_valid():
            for character in queryset:
                enqueue_job(
                    character,
                    GenerationJob.Kind.RANGE,
                    data["start"],
                    data["end"],
                    overwrite=data["overwrite"],
                )
            self.message_user(
                request,
                f"{queryset.count()} backfill job(s) enqueued; see Generation jobs.",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/characters/backfill.html",
            {
                **self.admin_site.each_context(request),
                "title": "Backfill schedules and diaries",
                "opts": self.model._meta,
                "form": form,
                "characters": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


class LifeRowAdmin(ManualEditMixin, TenantScopedAdmin):
    """A schedule or diary: shown rendered (a table, paragraphs) above its editable text, its
    times on the character's clock with the zone."""

    list_select_related = ("character",)
    readonly_fields: ClassVar[tuple[str, ...]] = ("rendered", "origin", "created", "updated")
    exclude = ("content_context",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        self.mark_manual(obj, form.changed_data)
        super().save_model(request, obj, form, change)

    @admin.display(description="as shown")
    def rendered(self, obj: Any) -> SafeString | str:
        return markdown_tables(obj.content) if obj.pk else "-"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Any) -> SafeString | str:
        return with_zone(obj.created_at, obj.character.zone) if obj.pk else "-"

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: Any) -> SafeString | str:
        return with_zone(obj.updated_at, obj.character.zone) if obj.pk else "-"

    @admin.display(description="generated from")
    def generated_from(self, obj: Any) -> SafeString:
        return pretty_json(obj.content_context)


@admin.register(WeeklySchedule)
class WeeklyScheduleAdmin(LifeRowAdmin):
    list_display = ("character", "origin", "updated")
    fields = ("character", "rendered", "content", "origin", "created", "updated")
    search_fields = ("character__name", "character__slug")


@admin.register(DailySchedule)
class DailyScheduleAdmin(LifeRowAdmin):
    list_display = ("character", "schedule_date", "origin", "updated")
    list_filter = ("origin", "character")
    date_hierarchy = "schedule_date"
    search_fields = ("character__name", "character__slug", "content")
    readonly_fields = ("rendered", "origin", "generated_from", "created", "updated")
    fields = ("character", "schedule_date", "rendered", "content", *readonly_fields[1:])


@admin.register(Diary)
class DiaryAdmin(LifeRowAdmin):
    list_display = ("character", "diary_date", "excerpt", "origin", "news_status", "updated")
    list_filter = ("origin", "news_status", "character")
    date_hierarchy = "diary_date"
    search_fields = ("character__name", "character__slug", "content")
    readonly_fields = (
        "rendered",
        "origin",
        "news_status",
        "news_digest",
        "generated_from",
        "memory_synced",
        "created",
        "updated",
    )
    fields = ("character", "diary_date", "rendered", "content", "topics", *readonly_fields[1:])

    @admin.display(description="as shown")
    def rendered(self, obj: Any) -> SafeString | str:
        return paragraphs(obj.content) if obj.pk else "-"

    @admin.display(description="diary")
    def excerpt(self, diary: Diary) -> str:
        return Truncator(" ".join(diary.content.split())).chars(100)

    @admin.display(description="in memory since")
    def memory_synced(self, diary: Diary) -> SafeString | str:
        return with_zone(diary.memory_synced_at, diary.character.zone)


@admin.register(NewsDigest)
class NewsDigestAdmin(TenantScopedAdmin):
    list_display = ("news_date", "country", "language", "model", "fetched_at")
    list_filter = ("country", "language")
    date_hierarchy = "news_date"


@admin.register(GenerationJob)
class GenerationJobAdmin(TenantScopedAdmin):
    """Jobs with their progress (dates done of dates asked), their times on the character's
    clock, and their error."""

    list_display = (
        "character",
        "kind",
        "date_from",
        "date_to",
        "status",
        "progress",
        "started",
        "finished",
        "error_summary",
    )
    list_filter = ("status", "kind", "character")
    list_select_related = ("character",)
    date_hierarchy = "created_at"
    readonly_fields = [
        *(f.name for f in GenerationJob._meta.fields),
        "progress",
        "started",
        "finished",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, job: GenerationJob) -> str:
        asked = (job.date_to - job.date_from).days + 1
        done = len(job.result)
        return f"{done} / {asked} days ({100 * done // max(asked, 1)} %)"

    @admin.display(description="started", ordering="started_at")
    def started(self, job: GenerationJob) -> SafeString | str:
        return with_zone(job.started_at, job.character.zone)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: GenerationJob) -> SafeString | str:
        return with_zone(job.finished_at, job.character.zone)

    @admin.display(description="error")
    def error_summary(self, job: GenerationJob) -> str:
        return Truncator(job.error).chars(120) or "-"


@admin.register(GenerationClaim)
class GenerationClaimAdmin(TenantScopedAdmin):
    """Work in progress or waiting to be retried, with its last error."""

    list_display = ("key", "attempts", "leased_until", "retry_after", "last_error", "updated_at")
    search_fields = ("key",)
    readonly_fields = ("key", "character", "token", "attempts", "last_error", "updated_at")
    fields = (*readonly_fields, "leased_until", "retry_after")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
