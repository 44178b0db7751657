"""The character an operator creates: who it is and which LLM speaks for it; and the rows of
its life (week, days, diaries, news, generation jobs and claims).

Over ~400 lines on purpose: one models module per app, as Django expects, and Character's
fields carry the help texts operators read in the admin.
"""

import zoneinfo
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from avatarsite.tenants.models import TenantOwned
from avatarsite.tenants.provider_secrets import check_references, tenant_of
from characters.hooks import async_function

ENV_VAR_NAME = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "Enter the name of an environment variable, not its value."
)


def validate_timezone(value: str) -> None:
    """Accept only IANA names that zoneinfo can load, so local-time logic never fails later."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone {value!r}.") from exc


def validate_artifact_catalog(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValidationError("Expected an object of objects.")


def validate_tool_names(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Expected a list of tool names.")


TAG_NAMES = RegexValidator(
    r"^\s*[A-Za-z_][A-Za-z0-9_-]*\s*(,\s*[A-Za-z_][A-Za-z0-9_-]*\s*)*$",
    "Enter tag names separated by commas, e.g. 'answer' or 'ack, answer'.",
)


def validate_face_icons(value: object) -> None:
    # LINE only shows icons served over HTTPS.
    if not isinstance(value, dict) or not all(
        isinstance(url, str) and url.startswith("https://") for url in value.values()
    ):
        raise ValidationError('Expected {"face": "https://..."} with HTTPS URLs.')


# The fields naming the character's turn hooks (docs/turn.md#hooks).
TURN_HOOKS = ("on_error_hook", "response_hook", "on_finish_hook")

DEFAULT_APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."


class LLMProvider(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible API"
    ANTHROPIC = "anthropic", "Anthropic (Claude)"
    GEMINI = "gemini", "Google Gemini (OpenAI-compatible endpoint)"
    DIFY = "dify", "Dify app (its own prompt, memory and tools)"
    ECHO = "echo", "Development echo (no LLM)"


# The model field's default names an OpenAI model; other providers need one of their own.
DEFAULT_LLM_MODEL = "gpt-4.1-mini"


class Character(TenantOwned):
    slug = models.SlugField(help_text="Used in URLs and the X-Character header; unique per tenant.")
    name = models.CharField(max_length=100)
    persona = models.TextField(
        "persona prompt",
        blank=True,
        help_text="System prompt. {placeholders} are filled from the request's "
        "system_prompt_params; other braces are kept literally.",
    )
    language = models.CharField(max_length=16, default="en-US", help_text="BCP 47, e.g. ja-JP.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    llm_provider = models.CharField(
        "LLM provider", max_length=20, choices=LLMProvider.choices, default=LLMProvider.OPENAI
    )
    llm_model = models.CharField(
        "LLM model",
        max_length=100,
        default=DEFAULT_LLM_MODEL,
        help_text="e.g. gpt-4.1-mini, claude-haiku-4-5, gemini-2.5-flash.",
    )
    llm_temperature = models.FloatField(
        "LLM temperature",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Blank: the provider's default. Leave blank for Anthropic: its API takes "
        "no sampling parameters since version 2026-10-21.",
    )
    default_user_name = models.CharField(
        max_length=100,
        default="you",
        help_text="What {username} in the persona says while the user's name is unknown "
        "(e.g. あなた for a Japanese persona).",
    )
    llm_allowed_models = models.CharField(
        "LLM models requests may choose",
        max_length=500,
        blank=True,
        help_text="Comma-separated models a request may switch to for one answer (`model` in "
        "inline_llm_params); blank: only the LLM model above.",
    )
    llm_max_tokens = models.PositiveIntegerField(
        "Most LLM tokens a request may ask for",
        default=4096,
        validators=[MinValueValidator(1)],
        help_text="The largest max_tokens (or max_completion_tokens) a request may set.",
    )
    llm_base_url = models.URLField(
        "LLM base URL",
        blank=True,
        help_text="Blank: the provider's public API (OpenAI: the OPENAI_BASE_URL environment "
        "variable, else api.openai.com; Anthropic: ANTHROPIC_BASE_URL, else api.anthropic.com; "
        "Gemini: its OpenAI-compatible endpoint).",
    )
    llm_api_key_env = models.CharField(
        "LLM API key variable",
        max_length=100,
        default="OPENAI_API_KEY",
        validators=[ENV_VAR_NAME],
        help_text="Name of one of the tenant's provider secrets, or of a platform variable the "
        "server allows (its key is only sent to the provider's own endpoint, so a base URL of "
        "your own needs a secret of your own). Left at OPENAI_API_KEY it means the provider's "
        "own variable (ANTHROPIC_API_KEY, GEMINI_API_KEY). When nothing is found under the name "
        "the character answers with the development echo provider.",
    )
    context_timeout_seconds = models.PositiveIntegerField(
        default=3600,
        help_text="A conversation idle for longer starts afresh with a new context id. "
        "0 keeps conversations forever.",
    )
    artifact_catalog = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_artifact_catalog],
        help_text='Artifacts the LLM may show by id: {"about": {"type": "image", "src": "..."}}.',
    )
    schedule_hour = models.PositiveSmallIntegerField(
        default=6,
        validators=[MaxValueValidator(23)],
        help_text="Local hour (in the character's timezone) after which the day's schedule is "
        "written.",
    )
    diary_hour = models.PositiveSmallIntegerField(
        default=23,
        validators=[MaxValueValidator(23)],
        help_text="Local hour after which the day's diary is written.",
    )
    news_country = models.CharField(
        max_length=2,
        blank=True,
        validators=[RegexValidator(r"^[A-Z]{2}$", "Enter an ISO 3166-1 alpha-2 code, e.g. JP.")],
        help_text="Whose news the diary may mention (e.g. JP). Blank: diaries without news.",
    )
    use_turn_queue = models.BooleanField(
        "queue turns",
        default=False,
        help_text="Off: a new request in a session interrupts the answer in progress. On: it "
        "waits its turn when it asks to (wait_in_queue), else it interrupts and drops the "
        "requests still waiting.",
    )
    merge_window_seconds = models.FloatField(
        default=0,
        validators=[MinValueValidator(0.0)],
        help_text="A request arriving this soon after the previous one in its session is "
        "merged with it (the user went on talking). 0: off.",
    )
    wake_words = models.CharField(
        max_length=200,
        blank=True,
        help_text="Comma-separated: the character only answers a session after one of these "
        "(for always-listening devices). Blank: always answers.",
    )
    wake_timeout_seconds = models.PositiveIntegerField(
        default=60, help_text="How long a session stays awake after its last request."
    )
    timestamp_interval_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Tell the LLM the local date and time (in the character's timezone) at most "
        "this often per session, before the user's words. 0: off.",
    )
    voice_text_tags = models.CharField(
        max_length=100,
        blank=True,
        validators=[TAG_NAMES],
        help_text="Speak only inside these tags, comma-separated (e.g. 'answer' when the persona "
        "asks for <think>…</think><answer>…</answer>). Blank: speak everything.",
    )
    terminal_voice_tag = models.CharField(
        max_length=32,
        blank=True,
        help_text="One of the voice tags: the reply ends at its first closing tag.",
    )
    disabled_tools = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_tool_names],
        help_text='Names of tools this character must not use, e.g. ["get_diary"].',
    )
    dynamic_tools = models.BooleanField(
        default=False,
        help_text="Offer one tool, execute_external_tool, instead of every tool; when the model "
        "calls it, up to five fitting tools are chosen and offered. For characters with many "
        "tools (MCP servers).",
    )
    openai_history = models.CharField(
        max_length=8,
        choices=[("server", "server keeps it"), ("client", "client sends it")],
        default="server",
        help_text="On /v1/chat/completions: 'server' continues the user's latest conversation "
        "from the last user message; 'client' takes the request's messages as the whole "
        "conversation and keeps nothing but the turn record (OpenAI front-ends' New chat). "
        "An API key may choose for its own requests.",
    )
    record_audio = models.BooleanField(
        default=False,
        help_text="Keep what people say to the character by voice and what it answers aloud, "
        "to listen to in its conversations; deleted after the tenant's retention period.",
    )
    greeting = models.TextField(
        blank=True,
        help_text="Said when someone starts following the character (e.g. a LINE friend add). "
        "Control tags such as [face:joy] are allowed; blank: no greeting.",
    )
    apology = models.TextField(
        default=DEFAULT_APOLOGY,
        help_text="Sent instead of silence when a turn fails (LLM down, timeout...).",
    )
    invoke_timeout_seconds = models.FloatField(
        "turn time limit (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600.0)],
        help_text="A turn still answering this long after it began fails with the apology "
        "and an error event, and leaves no history (AIAvatarKit's invoke_timeout). Blank: no "
        "limit beyond the providers' own timeouts.",
    )
    shared_context_size = models.PositiveSmallIntegerField(
        "shared context messages",
        default=20,
        validators=[MaxValueValidator(200)],
        help_text="How many of the latest shared-context messages (news, the character's own "
        "doings, added by staff or tools) every conversation sees; older ones are deleted. "
        "0: none.",
    )
    shared_context_max_age_hours = models.PositiveIntegerField(
        "shared context age limit (h)",
        default=0,
        help_text="Shared-context messages older than this are no longer seen, and deleted. "
        "0: kept until newer ones push them out.",
    )
    on_error_hook = models.CharField(
        max_length=200,
        blank=True,
        help_text="module.function (async, in one of TURN_HOOK_MODULES) given (turn, error) "
        "when the LLM fails: error.status_code and error.body are the provider's answer. "
        "Returns the apology to say instead of the usual one, or None.",
    )
    response_hook = models.CharField(
        max_length=200,
        blank=True,
        help_text="module.function (async, in one of TURN_HOOK_MODULES) given (turn, sentence) "
        "for each sentence of the LLM's reply before it is shown and spoken. Returns the "
        "sentence to use instead, or None to keep it.",
    )
    on_finish_hook = models.CharField(
        max_length=200,
        blank=True,
        help_text="module.function (async, in one of TURN_HOOK_MODULES) given (turn, reply) "
        "after a turn completed and was recorded, before its final event.",
    )
    face_icons = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_face_icons],
        help_text="Icon per face for chat apps that show one (LINE): "
        '{"joy": "https://.../joy.png", "neutral": "https://.../neutral.png"}. '
        '"neutral" is used when a reply shows no face.',
    )
    is_default = models.BooleanField(
        default=False, help_text="Answers on /chat when the request names no character."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="unique_character_slug"),
            models.UniqueConstraint(
                fields=["tenant", "is_default"],
                condition=models.Q(is_default=True),
                name="one_default_character",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def local_now(self, now: datetime) -> datetime:
        """`now` (an aware datetime) on the character's own clock."""
        return now.astimezone(self.zone)

    def wake_word_list(self) -> list[str]:
        return [word.strip() for word in self.wake_words.split(",") if word.strip()]

    def choosable_models(self) -> set[str]:
        """The models a request may ask this character to answer with."""
        return {self.llm_model, *filter(None, map(str.strip, self.llm_allowed_models.split(",")))}

    def voice_tag_names(self) -> list[str]:
        return [name.strip() for name in self.voice_text_tags.split(",") if name.strip()]

    def clean(self) -> None:
        if self.terminal_voice_tag and self.terminal_voice_tag not in self.voice_tag_names():
            raise ValidationError({"terminal_voice_tag": "Must be one of the voice tags."})
        other_provider = self.llm_provider in (LLMProvider.ANTHROPIC, LLMProvider.GEMINI)
        if other_provider and self.llm_model == DEFAULT_LLM_MODEL:
            provider = self.get_llm_provider_display()
            raise ValidationError(
                {"llm_model": f"{DEFAULT_LLM_MODEL} is an OpenAI model; name a {provider} model."}
            )
        if self.llm_provider == LLMProvider.ANTHROPIC and self.llm_temperature is not None:
            raise ValidationError(
                {"llm_temperature": "Anthropic's API takes no temperature; leave it blank."}
            )
        hours = (self.schedule_hour, self.diary_hour)
        if None not in hours and self.diary_hour <= self.schedule_hour:
            raise ValidationError(
                {"diary_hour": "The diary is written after the schedule: pick a later hour."}
            )
        for name in TURN_HOOKS:
            if path := getattr(self, name):
                try:
                    async_function(path, "TURN_HOOK_MODULES")
                except ValueError as exc:
                    raise ValidationError({name: str(exc)}) from exc
        if self.llm_provider != LLMProvider.ECHO:
            check_references(
                tenant_of(self),
                [self.llm_api_key_env],
                endpoint=self.llm_base_url,
                field="llm_api_key_env",
            )


class Origin(models.TextChoices):
    GENERATED = "generated"
    MANUAL = "manual"
    IMPORTED = "imported"


class WeeklySchedule(TenantOwned):
    """The character's usual week, hour by hour: the pattern each daily schedule starts from."""

    tenant_parent = "character"

    character = models.OneToOneField(
        Character, on_delete=models.CASCADE, related_name="weekly_schedule"
    )
    content = models.TextField(help_text="A markdown table: one row per hour, one column per day.")
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.character} (weekly)"


class DailySchedule(TenantOwned):
    """What the character does on one date of its own calendar (its timezone's date)."""

    tenant_parent = "character"

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="schedules")
    schedule_date = models.DateField()
    content = models.TextField(help_text="A markdown table of 24 one-hour slots.")
    content_context = models.JSONField(
        default=dict, blank=True, help_text="What it was generated from: inputs and the day plan."
    )
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-schedule_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["character", "schedule_date"], name="one_schedule_per_character_and_date"
            )
        ]

    def __str__(self) -> str:
        return f"{self.character} {self.schedule_date}"


class NewsDigest(models.Model):
    """One day's news for a country and language, fetched once and shared by every character."""

    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. JP.")
    language = models.CharField(max_length=16, help_text="e.g. ja.")
    news_date = models.DateField()
    items = models.JSONField(default=list, help_text="One line per news item.")
    model = models.CharField(max_length=100, blank=True)
    fetched_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-news_date", "country", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["country", "language", "news_date"],
                name="one_digest_per_country_language_date",
            )
        ]

    def __str__(self) -> str:
        return f"{self.country}/{self.language} {self.news_date}"

    @property
    def content(self) -> str:
        return "\n".join(f"- {item}" for item in self.items)


class NewsStatus(models.TextChoices):
    USED = "used", "written with the day's news"
    NOT_CONFIGURED = "not_configured", "no news: no search provider is configured"
    NO_COUNTRY = "no_country", "no news: the character has no news country"
    FAILED = "failed", "no news: fetching it failed"
    MANUAL = "manual", "written by hand"


class Diary(TenantOwned):
    """What the character wrote at the end of one date, and what it was written from."""

    tenant_parent = "character"

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="diaries")
    diary_date = models.DateField()
    content = models.TextField()
    topics = models.JSONField(default=list, blank=True, help_text="The topics it was written from.")
    news_status = models.CharField(
        max_length=16, choices=NewsStatus.choices, default=NewsStatus.MANUAL
    )
    news_digest = models.ForeignKey(
        NewsDigest, on_delete=models.SET_NULL, null=True, blank=True, related_name="diaries"
    )
    content_context = models.JSONField(
        default=dict, blank=True, help_text="What it was generated from."
    )
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.MANUAL)
    memory_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-diary_date"]
        verbose_name_plural = "diaries"
        constraints = [
            models.UniqueConstraint(
                fields=["character", "diary_date"], name="one_diary_per_character_and_date"
            )
        ]

    def __str__(self) -> str:
        return f"{self.character} {self.diary_date}"


class GenerationClaim(models.Model):
    """A lease on one piece of paid generation work (a schedule, a diary, a news digest).

    Whoever holds an unexpired lease is the only one allowed to call the LLM for that key, so
    concurrent runs and redelivered tasks never pay twice. The LLM outputs paid for so far are
    kept in `steps`: a run that takes over after a crash resumes instead of paying again. The
    row disappears when its work is saved; a failed attempt leaves it with an error and the
    time before which the beat tick does not retry.
    """

    key = models.CharField(max_length=200, unique=True)
    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, null=True, blank=True, related_name="claims"
    )
    token = models.UUIDField(null=True, blank=True, editable=False)
    leased_until = models.DateTimeField(null=True, blank=True)
    steps = models.JSONField(default=dict, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    retry_after = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class GenerationJob(TenantOwned):
    """Generation work enqueued on Celery (by the beat tick or an operator), with its outcome."""

    tenant_parent = "character"

    class Kind(models.TextChoices):
        DAY = "day", "one day (beat tick)"
        SCHEDULE = "schedule", "daily schedule"
        DIARY = "diary", "diary"
        RANGE = "range", "range of days"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"

    UNFINISHED = (Status.QUEUED, Status.RUNNING)

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    date_from = models.DateField()
    date_to = models.DateField()
    overwrite = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField(default=list, blank=True, help_text="One entry per date.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["character", "status", "date_from"])]

    def __str__(self) -> str:
        return f"{self.character} {self.kind} {self.date_from}..{self.date_to} {self.status}"
