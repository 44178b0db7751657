"""People who talk to characters, their conversations, and what each turn cost; the API keys,
guardrails and MCP servers operators configure.

Over ~400 lines on purpose: one models module per app, as Django expects; LINE's and speech's
models live in their own apps.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from avatarsite.tenants.models import Tenant, TenantOwned
from avatarsite.tenants.provider_secrets import check_references, tenant_of
from characters.hooks import named
from characters.models import Character

from .rate_limits import KeyLimits

# The channel of dialog evaluation's turns (the evaluation app): real turns of a character, in
# contexts and end users of their own, that dashboards, usage and memory leave out.
EVALUATION_CHANNEL = "evaluation"


def validate_pattern(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"Not a valid regular expression: {exc}") from exc


def recording_name(record: TurnRecord, filename: str) -> str:
    """Where a turn's audio is stored: by tenant and month, under a random name (the files
    are only served through the admin, to the tenant's staff)."""
    tenant_id = record.tenant_id or record.inherited_tenant_id()
    return f"recordings/{tenant_id}/{record.started_at:%Y/%m}/{secrets.token_urlsafe(24)}.wav"


class EndUser(TenantOwned):
    """A person talking to one tenant's characters, whatever channel they come from."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    display_name = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.display_name or str(self.id)


class ChannelIdentity(TenantOwned):
    """How a channel (http, line, ...) names an end user: one external id, one user per tenant
    (tenant A's "u1" and tenant B's "u1" are two people)."""

    tenant_parent = "end_user"

    channel = models.CharField(max_length=32)
    external_id = models.CharField(max_length=255)
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="identities")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "channel identities"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "channel", "external_id"], name="unique_identity"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_id}"


class Context(TenantOwned):
    """One conversation thread between a character and an end user.

    Created together with the first completed turn, so an id only exists once it has history.
    """

    tenant_parent = "character"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="contexts")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="contexts")
    channel = models.CharField(max_length=32)
    # What Dify clients see: a name they may set, and the inputs it started with, which later
    # turns keep feeding to the system prompt (Dify's conversation variables).
    name = models.CharField(max_length=255, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    message_count = models.PositiveIntegerField(default=0, editable=False)
    provider_state = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What a provider that keeps its own history needs (Dify's conversation id).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return str(self.id)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Idle past the character's timeout: the next turn starts a new context."""
        timeout = self.character.context_timeout_seconds
        if not timeout:
            return False
        return (now or timezone.now()) - self.updated_at > timedelta(seconds=timeout)


class Message(TenantOwned):
    tenant_parent = "context"

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    files = models.JSONField(default=list, blank=True, help_text="Attachments: [{url, type}].")
    tool_calls = models.JSONField(
        default=list, blank=True, help_text="Assistant tool calls: [{id, name, arguments}]."
    )
    tool_call_id = models.CharField(max_length=100, blank=True)
    turn = models.ForeignKey(
        "TurnRecord", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["context", "position"]
        constraints = [
            models.UniqueConstraint(fields=["context", "position"], name="unique_message_position")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class TurnRecord(TenantOwned):
    """Every turn, completed or not, with per-phase timings in milliseconds."""

    tenant_parent = "character"

    class Status(models.TextChoices):
        COMPLETED = "completed"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        CANCELLED = "cancelled"  # refused before the LLM: a validator, or not awake

    class Rating(models.TextChoices):
        LIKE = "like"
        DISLIKE = "dislike"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="turns")
    end_user = models.ForeignKey(
        EndUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="turns"
    )
    # Not a foreign key: a failed first turn has an id on the wire but no Context row.
    context_id = models.UUIDField(db_index=True)
    session_id = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    request_text = models.TextField(blank=True)
    response_text = models.TextField(blank=True)
    provider = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=100, blank=True)
    llm_first_token_ms = models.FloatField("LLM first token (ms)", null=True, blank=True)
    first_chunk_ms = models.FloatField("first sentence (ms)", null=True, blank=True)
    tool_ms = models.FloatField("tools (ms)", null=True, blank=True)
    llm_ms = models.FloatField("LLM total (ms)", null=True, blank=True)
    stt_ms = models.FloatField("speech-to-text (ms)", null=True, blank=True)
    first_audio_ms = models.FloatField("first audio (ms)", null=True, blank=True)
    tts_ms = models.FloatField(
        "text-to-speech (ms)", null=True, blank=True, help_text="Synthesis time of all sentences."
    )
    total_ms = models.FloatField("total (ms)", null=True, blank=True)
    # Usage, where the provider reports it (null: not reported), and the audio heard and spoken.
    tokens_in = models.PositiveIntegerField("input tokens", null=True, blank=True)
    tokens_out = models.PositiveIntegerField("output tokens", null=True, blank=True)
    speech_in_seconds = models.FloatField("speech heard (s)", null=True, blank=True)
    speech_out_seconds = models.FloatField("speech spoken (s)", null=True, blank=True)
    api_key = models.ForeignKey(
        "ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="turns"
    )
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The guardrails that acted on the turn: [{"name", "on": "request" | "response", "action"}].
    guardrails = models.JSONField(default=list, blank=True)
    # What was heard and said aloud, when the character records audio (conversations/
    # recordings.py): WAV files in the default storage, under names nobody can guess.
    request_audio = models.FileField(upload_to=recording_name, blank=True, editable=False)
    response_audio = models.FileField(upload_to=recording_name, blank=True, editable=False)
    # The end user's verdict on the answer (Dify's message feedback, POST /feedback).
    feedback_rating = models.CharField(max_length=8, choices=Rating.choices, blank=True)
    feedback_content = models.TextField("feedback comment", blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        # The dashboard selects a tenant's or a character's turns in a window of time.
        indexes = [
            models.Index(fields=["tenant", "started_at"], name="turn_tenant_started"),
            models.Index(fields=["character", "started_at"], name="turn_character_started"),
        ]

    def __str__(self) -> str:
        return f"{self.character} {self.status} {self.started_at:%Y-%m-%d %H:%M:%S}"


class Guardrail(TenantOwned):
    """A check on what users ask or what a character answers, run by every turn of its
    character, or (without one) of every character of its tenant."""

    tenant_parent = "character"

    class AppliesTo(models.TextChoices):
        REQUEST = "request"
        RESPONSE = "response"
        BOTH = "both"

    class Kind(models.TextChoices):
        PATTERN = "pattern", "Regular expression"
        LLM = "llm", "Question to the character's LLM"
        PYTHON = "python", "Python class"

    class Action(models.TextChoices):
        BLOCK = "block", "Block: answer with the message instead"
        REPLACE = "replace", "Replace: use the message instead of the text"

    name = models.CharField(max_length=100)
    character = models.ForeignKey(
        Character,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="guardrails",
        help_text="Blank: every character.",
    )
    applies_to = models.CharField(max_length=10, choices=AppliesTo.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PATTERN)
    pattern = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_pattern],
        help_text="For a regular expression: matched case-insensitively anywhere in the text.",
    )
    question = models.TextField(
        blank=True,
        help_text="For an LLM check: a yes/no question about the text, e.g. 'Does it ask for "
        "medical advice?'. Yes triggers the guardrail.",
    )
    class_path = models.CharField(
        "Python class",
        max_length=200,
        blank=True,
        help_text="For a Python guardrail: module.Class in one of TURN_HOOK_MODULES, with "
        "`async def check(self, text, turn)` returning False (pass), True (trigger with the "
        "message below) or a text (trigger with that text as the message).",
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    message = models.TextField(help_text="What is said (block) or used (replace) instead.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == self.Kind.PATTERN and not self.pattern:
            raise ValidationError({"pattern": "A regular-expression guardrail needs a pattern."})
        if self.kind == self.Kind.LLM and not self.question.strip():
            raise ValidationError({"question": "An LLM guardrail needs a question."})
        if self.kind == self.Kind.PYTHON:
            try:
                guard_class(self.class_path)
            except ValueError as exc:
                raise ValidationError({"class_path": str(exc)}) from exc


def guard_class(path: str) -> type:
    """The class a Python guardrail names; ValueError says why it cannot be one."""
    if not path:
        raise ValueError("A Python guardrail needs a class.")
    found = named(path, "TURN_HOOK_MODULES")
    check = getattr(found, "check", None)
    if not isinstance(found, type) or not inspect.iscoroutinefunction(check):
        raise ValueError(f"{path!r} is not a class with an async check(self, text, turn).")
    return found


class SharedMessage(TenantOwned):
    """A message every conversation of its character sees (AIAvatarKit's shared context):
    news, the character's own doings. Staff add them (admin, REST), and so may tools; the
    character keeps its latest `shared_context_size`, for `shared_context_max_age_hours`."""

    tenant_parent = "character"

    class Source(models.TextChoices):
        STAFF = "staff"
        TOOL = "tool"

    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, related_name="shared_messages"
    )
    content = models.TextField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.STAFF)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "shared-context message"

    def __str__(self) -> str:
        return self.content[:60]


class SessionState(TenantOwned):
    """What a session remembers between requests, for the request-shaping features that need
    it (merging, wake words, timestamps); kept in the database so every server process sees it.
    """

    tenant_parent = "character"

    key = models.CharField(max_length=300, unique=True)  # TurnRequest.session_key
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="+")
    previous_request_at = models.DateTimeField(null=True, blank=True)
    previous_request_text = models.TextField(blank=True)
    previous_request_files = models.JSONField(default=list, blank=True)
    awake_at = models.DateTimeField(null=True, blank=True)
    timestamp_inserted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


def hash_key(raw_key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(TenantOwned):
    """A revocable Bearer key for one tenant's HTTP and WebSocket APIs; only its hash is
    stored."""

    PREFIX_LENGTH = 12

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    characters = models.ManyToManyField(
        Character,
        blank=True,
        related_name="+",
        help_text="Blank: every character of its tenant. Otherwise only these (another "
        "tenant's character on the list reaches nothing).",
    )
    openai_history = models.CharField(
        max_length=8,
        choices=[
            ("", "as the character says"),
            ("server", "server keeps it"),
            ("client", "client sends it"),
        ],
        blank=True,
        help_text="Who keeps the conversation on /v1/chat/completions for this key's requests; "
        "blank: the character's choice.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute, its browser tokens' included; more are answered with "
        "429. Blank: the server's RATE_LIMIT_REQUESTS_PER_MINUTE (0: unlimited).",
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Streaming replies and /ws sessions open at once. Blank: the server's "
        "RATE_LIMIT_CONCURRENT_STREAMS (0: unlimited).",
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def limits(self) -> KeyLimits:
        """What this key may do (conversations/rate_limits.py)."""

        def limit(own: int | None, default: int) -> int:
            return default if own is None else own

        return KeyLimits(
            key=self.prefix,
            requests_per_minute=limit(
                self.requests_per_minute, settings.RATE_LIMIT_REQUESTS_PER_MINUTE
            ),
            concurrent_streams=limit(
                self.concurrent_streams, settings.RATE_LIMIT_CONCURRENT_STREAMS
            ),
        )

    @classmethod
    def issue(cls, name: str, tenant: Tenant | None = None) -> tuple[ApiKey, str]:
        """Create a key of `tenant` (default: the default tenant) and return it with its raw
        value, which is never retrievable again."""
        raw_key = "ak_" + secrets.token_urlsafe(32)
        key = cls.objects.create(
            name=name,
            tenant=tenant or Tenant.default(),
            prefix=raw_key[: cls.PREFIX_LENGTH],
            key_hash=hash_key(raw_key),
        )
        return key, raw_key

    @classmethod
    def authenticate(cls, raw_key: str) -> ApiKey | None:
        """The active key matching `raw_key`, compared in constant time, or None."""
        candidate = cls.objects.filter(
            prefix=raw_key[: cls.PREFIX_LENGTH], revoked_at__isnull=True
        ).first()
        # Hash even when nothing matched so timing does not reveal which prefixes exist.
        presented = hash_key(raw_key)
        if candidate is None or not hmac.compare_digest(presented, candidate.key_hash):
            return None
        candidate.last_used_at = cls.mark_used(candidate.pk, candidate.last_used_at)
        return candidate

    @classmethod
    def mark_used(cls, pk: int, last_used_at: datetime | None) -> datetime | None:
        """Record that key `pk` (last marked at `last_used_at`) is used now; returns the time
        recorded. Writing on every request would put a DB write on the hot path; a minute is
        precise enough for "last used"."""
        now = timezone.now()
        if last_used_at is None or now - last_used_at > timedelta(minutes=1):
            cls.objects.filter(pk=pk).update(last_used_at=now)
            return now
        return last_used_at


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_header_variables(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(header, str) and isinstance(name, str) and ENV_NAME.match(name)
        for header, name in value.items()
    ):
        raise ValidationError(
            'Expected {"Header-Name": "ENV_VARIABLE_NAME"}: the names of environment variables, '
            "never the secrets themselves."
        )


def validate_variable_names(value: object) -> None:
    if not isinstance(value, list) or not all(
        isinstance(name, str) and ENV_NAME.match(name) for name in value
    ):
        raise ValidationError('Expected a list of environment variable names, e.g. ["GH_TOKEN"].')


def validate_arguments(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
        raise ValidationError('Expected a list of strings, e.g. ["-m", "my_server"].')


class McpServer(TenantOwned):
    """An MCP server whose tools characters may call (docs/turn.md#mcp-servers).

    Secrets never enter the database: headers and the stdio environment name environment
    variables, read when the server is connected. Without a character it serves every
    character of its tenant.
    """

    tenant_parent = "character"

    class Transport(models.TextChoices):
        STDIO = "stdio", "stdio: a command this server starts"
        HTTP = "http", "Streamable HTTP: a URL"

    name = models.CharField(
        max_length=32,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9_-]+$", "Letters, digits, '_' and '-' only: it prefixes tool names."
            )
        ],
        help_text="Its tools are offered as <name>__<tool>; unique per tenant.",
    )
    transport = models.CharField(max_length=10, choices=Transport.choices)
    command = models.CharField(
        max_length=500, blank=True, help_text="stdio: the program to start, e.g. 'npx' or 'uvx'."
    )
    args = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_arguments],
        help_text='stdio: its arguments, e.g. ["-y", "@modelcontextprotocol/server-everything"].',
    )
    environment = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_variable_names],
        help_text="stdio: names of environment variables passed on to the command (besides "
        "PATH, HOME and the like).",
    )
    url = models.URLField(
        max_length=500, blank=True, help_text="Streamable HTTP: the endpoint, e.g. https://…/mcp."
    )
    headers = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_header_variables],
        help_text='Streamable HTTP: {"Authorization": "MY_MCP_AUTH"} sends the value of the '
        "environment variable MY_MCP_AUTH (e.g. 'Bearer …') as that header.",
    )
    character = models.ForeignKey(
        Character,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="mcp_servers",
        help_text="Blank: every character.",
    )
    enabled = models.BooleanField(default=True)
    dynamic_tools = models.BooleanField(
        default=False,
        help_text="Offer its tools only once chosen for the conversation through "
        "execute_external_tool (dynamic tools), not on every request.",
    )
    instruction = models.TextField(
        blank=True,
        help_text="When and how to use its tools: added to the system prompt whenever one of "
        "them is offered.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="unique_mcp_name")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.transport == self.Transport.STDIO and not self.command.strip():
            raise ValidationError({"command": "A stdio server needs a command to start."})
        if self.transport == self.Transport.HTTP and not self.url:
            raise ValidationError({"url": "A streamable HTTP server needs a URL."})
        if isinstance(self.environment, list):
            check_references(tenant_of(self), self.environment, field="environment")
        if isinstance(self.headers, dict):
            # Header values travel to the server's URL, which the tenant chose.
            check_references(
                tenant_of(self), self.headers.values(), endpoint=self.url, field="headers"
            )
