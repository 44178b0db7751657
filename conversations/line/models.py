"""A character's LINE channel, and the webhook events it has received (once each)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from avatarsite.tenants.models import TenantOwned
from avatarsite.tenants.provider_secrets import check_references, resolve
from characters.models import ENV_VAR_NAME, Character


def validate_loading_seconds(value: int) -> None:
    if value % 5:
        raise ValidationError("LINE takes the loading animation's duration in steps of 5 seconds.")


class LineChannel(TenantOwned):
    """A LINE Messaging API channel through which one character talks; it belongs to that
    character's tenant.

    The channel secret and access token are named, like `Character.llm_api_key_env`: the
    tenant's provider secrets, or allowed platform variables.
    """

    tenant_parent = "character"

    character = models.OneToOneField(
        Character, on_delete=models.CASCADE, related_name="line_channel"
    )
    slug = models.SlugField(
        unique=True, help_text="Webhook URL: https://<your host>/line/<slug>/webhook"
    )
    channel_secret_env = models.CharField(
        "channel secret variable",
        max_length=100,
        validators=[ENV_VAR_NAME],
        help_text="Name of the tenant's provider secret (or allowed platform variable) holding "
        "the channel secret (Basic settings).",
    )
    access_token_env = models.CharField(
        "access token variable",
        max_length=100,
        validators=[ENV_VAR_NAME],
        help_text="Name of the tenant's provider secret (or allowed platform variable) holding "
        "the channel access token (Messaging API tab, long-lived).",
    )
    loading_seconds = models.PositiveSmallIntegerField(
        default=20,
        validators=[MinValueValidator(5), MaxValueValidator(60), validate_loading_seconds],
        help_text="How long LINE shows the loading animation while the character thinks "
        "(5-60, steps of 5); it stops as soon as the reply arrives.",
    )
    is_default = models.BooleanField(
        default=False, help_text="Also answers on /webhook, AIAvatarKit's LINE webhook URL."
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive channels refuse webhooks (404) and pushes."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The tables were created when these models belonged to `conversations`; keeping their
        # names let the move to this app change no data (see migrations/0001_initial.py).
        db_table = "conversations_linechannel"
        verbose_name = "LINE channel"
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_line_channel",
            )
        ]

    def __str__(self) -> str:
        return f"{self.slug} ({self.character})"

    def clean(self) -> None:
        character = getattr(self, "character", None)
        tenant_id = character.tenant_id if character is not None else None
        if tenant_id is not None and self.tenant_id not in (None, tenant_id):
            # The webhook admits events as the channel's tenant, speaking for its character.
            raise ValidationError({"character": "Choose a character of the channel's tenant."})
        for field in ("channel_secret_env", "access_token_env"):
            check_references(tenant_id, [getattr(self, field)], field=field)

    @property
    def channel_secret(self) -> str:
        return resolve(self.character, self.channel_secret_env)

    @property
    def access_token(self) -> str:
        return resolve(self.character, self.access_token_env)


class LineEvent(TenantOwned):
    """One webhook event, inserted before it is handled: its unique id is the at-most-once lock.

    LINE redelivers events, and a Celery task with acks_late can reach a second worker; the
    insert that fails on the unique constraint is what tells them the event is taken.

    The worker handling the event holds a lease on it (`leased_until`, renewed while it works);
    `answer` says whether the user is owed a reply and whether it went out, so a worker lost
    mid-way (its lease ran out) is answered with the character's apology, once
    (conversations/line/lost.py).
    """

    class Answer(models.TextChoices):
        NONE = "", "not owed"
        OWED = "owed"
        SENT = "sent"

    class Status(models.TextChoices):
        PROCESSING = "processing"
        DONE = "done"
        IGNORED = "ignored"
        FAILED = "failed"

    tenant_parent = "channel"

    channel = models.ForeignKey(LineChannel, on_delete=models.CASCADE, related_name="events")
    webhook_event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=32)
    source_type = models.CharField(max_length=16, blank=True)
    source_id = models.CharField(max_length=64, blank=True, help_text="User, group or room id.")
    sender_id = models.CharField(
        "sender", max_length=64, blank=True, help_text="The LINE user who sent it (in a group too)."
    )
    text = models.TextField(blank=True, help_text="What was sent: the text, or what kind of thing.")
    is_redelivery = models.BooleanField(default=False)
    duplicates = models.PositiveIntegerField(
        default=0, help_text="Later deliveries of this event that were skipped."
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    outcome = models.TextField(blank=True, help_text="What was done, or why it failed.")
    answer = models.CharField(
        max_length=8,
        choices=Answer.choices,
        blank=True,
        default=Answer.NONE,
        help_text="Whether the user is owed a reply to this event, and whether it was sent.",
    )
    leased_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While processing: when the handling worker's lease runs out unless renewed.",
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "conversations_lineevent"
        verbose_name = "LINE event"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "webhook_event_id"], name="unique_line_webhook_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_event_id}"
