"""A character's Live Avatar agent: how to reach the platform, which side hears and speaks, the
switch the worker obeys, and what the worker last reported."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from avatarsite.tenants import crypto
from avatarsite.tenants.models import TenantOwned
from avatarsite.tenants.provider_secrets import check_references, resolve
from characters.models import ENV_VAR_NAME, Character


class Side(models.TextChoices):
    """Who does the listening (ASR) or the speaking (TTS): as set on the platform's avatar."""

    PLATFORM = "platform", "The platform"
    DEVELOPER = "developer", "avatarsite (developer)"


class State(models.TextChoices):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


TTS_RATES = [(16000, "16 kHz"), (24000, "24 kHz"), (48000, "48 kHz")]


class LiveAvatarAgent(TenantOwned):
    """One character as the agent of one avatar of a Live Avatar platform.

    `enabled` is the operator's switch: the `run_liveavatar_agents` worker keeps a platform
    session open for every enabled agent and closes the others. The platform's API key is
    named, like `Character.llm_api_key_env`: one of the tenant's provider secrets.
    """

    tenant_parent = "character"

    character = models.OneToOneField(
        Character, on_delete=models.CASCADE, related_name="liveavatar_agent"
    )
    base_url = models.URLField(
        "platform URL",
        help_text="The platform's REST base; sessions start at <platform URL>/v1/session/start.",
    )
    api_key_env = models.CharField(
        "API key secret",
        max_length=100,
        validators=[ENV_VAR_NAME],
        help_text="Name of the tenant's provider secret holding the platform API key.",
    )
    avatar_id = models.CharField(max_length=200)
    voice_id = models.CharField(
        max_length=200, blank=True, help_text="Optional: another voice of the platform."
    )
    asr_provider = models.CharField(
        "listening (ASR)",
        max_length=10,
        choices=Side.choices,
        default=Side.DEVELOPER,
        help_text="developer: the platform streams the user's audio and avatarsite's VAD and "
        "speech-to-text hear it. Must match the avatar's setting on the platform.",
    )
    tts_provider = models.CharField(
        "speaking (TTS)",
        max_length=10,
        choices=Side.choices,
        default=Side.DEVELOPER,
        help_text="developer: the character's own voice is sent as audio frames; platform: "
        "text is sent and the platform's voice speaks it. Must match the avatar's setting.",
    )
    tts_sample_rate = models.PositiveIntegerField(
        "TTS sample rate",
        choices=TTS_RATES,
        default=24000,
        help_text="The avatar's ttsSampleRate (developer TTS).",
    )
    sandbox = models.BooleanField(default=False, help_text="Sends X-Env-Sandbox: true.")
    idle_prompt = models.CharField(
        max_length=500,
        blank=True,
        help_text="Said once when the platform reports the user idle; empty: nothing.",
    )
    enabled = models.BooleanField(
        default=False,
        help_text="On: the worker (manage.py run_liveavatar_agents) keeps a session open.",
    )
    # Reported by the worker; never edited.
    state = models.CharField(max_length=12, choices=State.choices, default=State.STOPPED)
    session_id = models.CharField("platform session", max_length=200, blank=True)
    sfu_url = models.CharField("RTC room URL", max_length=500, blank=True)
    # The browser's token for the current session's RTC room, encrypted like provider secrets.
    user_token_ciphertext = models.TextField(blank=True, editable=False)
    last_error = models.TextField(blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Live Avatar agent"
        ordering = ["character__name"]

    def __str__(self) -> str:
        return f"{self.character} as {self.avatar_id}"

    def clean(self) -> None:
        character = getattr(self, "character", None)
        tenant_id = character.tenant_id if character is not None else None
        if tenant_id is not None and self.tenant_id not in (None, tenant_id):
            raise ValidationError({"character": "Choose a character of the agent's tenant."})
        # The tenant chose the URL, so only its own secret may be sent there.
        check_references(tenant_id, [self.api_key_env], endpoint=self.base_url, field="api_key_env")

    @property
    def api_key(self) -> str:
        return resolve(self.character, self.api_key_env)

    @property
    def user_token(self) -> str:
        return crypto.decrypt(self.user_token_ciphertext) if self.user_token_ciphertext else ""
