"""The character an operator creates: who it is and which LLM speaks for it."""

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

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


class LLMProvider(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible API"
    ANTHROPIC = "anthropic", "Anthropic (Claude)"
    GEMINI = "gemini", "Google Gemini (OpenAI-compatible endpoint)"
    ECHO = "echo", "Development echo (no LLM)"


# The model field's default names an OpenAI model; other providers need one of their own.
DEFAULT_LLM_MODEL = "gpt-4.1-mini"


class Character(models.Model):
    slug = models.SlugField(unique=True, help_text="Used in URLs and the X-Character header.")
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
        help_text="Name of the environment variable holding the key; the key itself is never "
        "stored. Left at OPENAI_API_KEY it means the provider's own variable (ANTHROPIC_API_KEY, "
        "GEMINI_API_KEY). When it is empty the character answers with the development echo "
        "provider.",
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
    is_default = models.BooleanField(
        default=False, help_text="Answers on /chat when the request names no character."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_character",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def wake_word_list(self) -> list[str]:
        return [word.strip() for word in self.wake_words.split(",") if word.strip()]

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
