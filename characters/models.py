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


DEFAULT_APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."


class LLMProvider(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible API"
    ECHO = "echo", "Development echo (no LLM)"


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
    llm_model = models.CharField("LLM model", max_length=100, default="gpt-4.1-mini")
    llm_temperature = models.FloatField(
        "LLM temperature",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Blank: the provider's default.",
    )
    llm_base_url = models.URLField(
        "LLM base URL",
        blank=True,
        help_text="Blank: the OPENAI_BASE_URL environment variable, else api.openai.com.",
    )
    llm_api_key_env = models.CharField(
        "LLM API key variable",
        max_length=100,
        default="OPENAI_API_KEY",
        validators=[ENV_VAR_NAME],
        help_text="Name of the environment variable holding the key; the key itself is never "
        "stored. When it is empty the character answers with the development echo provider.",
    )
    context_timeout_seconds = models.PositiveIntegerField(
        default=3600,
        help_text="A conversation idle for longer starts afresh with a new context id. "
        "0 keeps conversations forever.",
    )
    artifact_catalog = models.JSONField(
        default=dict,
        blank=True,
        help_text='Artifacts the LLM may show by id: {"about": {"type": "image", "src": "..."}}.',
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
    face_icons = models.JSONField(
        default=dict,
        blank=True,
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
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_character",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        catalog = self.artifact_catalog
        if not isinstance(catalog, dict) or not all(isinstance(v, dict) for v in catalog.values()):
            raise ValidationError({"artifact_catalog": "Expected an object of objects."})
        icons = self.face_icons
        if not isinstance(icons, dict) or not all(
            isinstance(url, str) and url.startswith("https://") for url in icons.values()
        ):
            # LINE only shows icons served over HTTPS.
            raise ValidationError(
                {"face_icons": 'Expected {"face": "https://..."} with HTTPS URLs.'}
            )
