"""Admission: one path from "who is calling" to the conversation a request belongs to.

credential → tenant → character → end user → context → session. Every transport (/chat,
/start, /chat-messages, /v1/chat/completions, /stt and /tts, /ws, /ws/sessions, live control
and the LINE task) parses its wire format, calls these steps, and renders `Rejected` in its own
error shape; the pipeline only ever receives an admitted session (docs/tenants.md).

Two rules hold throughout: a foreign id (another tenant's, another end user's, a character the
credential does not reach) answers exactly like an unknown one, and nothing is written (no end
user, no identity) until every check has passed.

Synchronous ORM code: transports call it through one `sync_to_async` hop.

Over ~400 lines on purpose: the steps are one path, read in order, and splitting them would
scatter the rule that a foreign id answers like an unknown one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from avatarsite.tenants.config_cache import cached
from avatarsite.tenants.models import TenantOrigin
from avatarsite.tenants.provider_secrets import load_secrets
from characters.models import Character

from .browser_tokens import TokenRefused, is_browser_token, verify
from .history import (
    OpenedContext,
    UnknownContext,
    find_end_user,
    latest_context_id,
    new_end_user,
    open_context,
    resolve_end_user,
)
from .models import ApiKey, EndUser, hash_key
from .pipeline.events import TurnRequest
from .rate_limits import KeyLimits, RateLimited, StreamSlot, count_request, open_stream
from .transports.base import Rejected, bearer_token


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as a credential proves it."""

    tenant_id: int
    api_key_id: int | None = None
    # The only characters the credential reaches; None: every character of its tenant.
    character_ids: frozenset[int] | None = None
    # The end user a browser token speaks for; None: whoever the request names.
    user_id: str | None = None
    # The API key's rate limits (a browser token counts against the key that minted it).
    limits: KeyLimits | None = None
    # The site a browser token is bound to; None for an API key.
    origin: str | None = None
    # What a request naming no character talks to: a browser token's own; None: the default.
    named_character_id: int | None = None

    def reaches(self, character: Character) -> bool:
        return character.tenant_id == self.tenant_id and (
            self.character_ids is None or character.pk in self.character_ids
        )

    def user(self, requested: str | None) -> str | None:
        """The end user a request speaks for: a browser token's own when it names one (a
        request naming another is refused with 403), else the one requested."""
        if self.user_id is None:
            return requested
        if requested and requested != self.user_id:
            raise Rejected(403, "This browser token is for another user.", code="wrong_user")
        return self.user_id

    def open_stream(self) -> StreamSlot:
        """One of the key's concurrent streams (docs/security.md), held until released."""
        try:
            return open_stream(self.limits) if self.limits else StreamSlot(counter=None)
        except RateLimited as limited:
            raise rate_limited(limited) from None


@dataclass(frozen=True, slots=True)
class Presented:
    """A credential as a request presents it, with what binds a browser token to its page."""

    token: str
    origin: str | None = None  # the request's Origin header
    host: str | None = None  # this server's own host: its pages may use any token
    in_url: bool = False  # `?token=`: browser tokens only, API keys never travel in URLs
    page: bool = False  # a page load (no Origin): the page's frame-ancestors bind the token


def rate_limited(limited: RateLimited) -> Rejected:
    return Rejected(429, limited.message, code="rate_limited", retry_after=limited.retry_after)


@dataclass(slots=True)
class _KnownKey:
    """An API key that authenticated, as this process keeps it (avatarsite/tenants/
    config_cache.py): dropped when its tenant's configuration changes, revoking included."""

    caller: Caller
    last_used_at: datetime | None


# The hash of each key that authenticated here → its tenant, whose cache holds the key.
_key_tenants: dict[str, int] = {}


def _authenticated(raw_key: str) -> _KnownKey | None:
    key = ApiKey.authenticate(raw_key)
    if key is None:
        return None
    limited = frozenset(key.characters.values_list("pk", flat=True))
    caller = Caller(
        tenant_id=key.tenant_id,
        api_key_id=key.pk,
        character_ids=limited or None,
        limits=key.limits(),
    )
    return _KnownKey(caller, key.last_used_at)


def api_key_caller(presented: Presented) -> Caller | None:
    """The caller an API key proves, or None when it is not an active key."""
    if presented.in_url or presented.page or is_browser_token(presented.token):
        return None
    # Looked up by the key's SHA-256: a lookup reveals nothing about keys one does not hold.
    digest = hash_key(presented.token)
    tenant_id = _key_tenants.get(digest)
    if tenant_id is None:
        known = _authenticated(presented.token)
        if known is not None:
            tenant_id = _key_tenants[digest] = known.caller.tenant_id
            cached(tenant_id, ("api_key", digest), lambda: known)
    else:
        known = cached(tenant_id, ("api_key", digest), lambda: _authenticated(presented.token))
    if known is None:
        _key_tenants.pop(digest, None)
        return None
    assert known.caller.api_key_id is not None
    known.last_used_at = ApiKey.mark_used(known.caller.api_key_id, known.last_used_at)
    return known.caller


def browser_token_caller(presented: Presented) -> Caller | None:
    """The caller a browser token proves (conversations/browser_tokens.py): its key's tenant,
    its one character, its end user. A bad one is refused with 401 here, with the reason."""
    if not is_browser_token(presented.token):
        return None
    try:
        token = verify(
            presented.token, presented.origin, server_host=presented.host, any_origin=presented.page
        )
    except TokenRefused as refused:
        raise Rejected(401, str(refused), code="invalid_token") from None
    key = ApiKey.objects.filter(prefix=token.key_prefix, revoked_at__isnull=True).first()
    if (
        key is None
        or not TenantOrigin.objects.filter(tenant_id=key.tenant_id, origin=token.origin).exists()
    ):
        # Revoking the key, or removing the origin, ends its tokens at once.
        raise Rejected(401, "This browser token is no longer valid.", code="invalid_token")
    limited = frozenset(key.characters.values_list("pk", flat=True))
    reached = {token.character_id} & limited if limited else {token.character_id}
    return Caller(
        tenant_id=key.tenant_id,
        api_key_id=key.pk,
        character_ids=frozenset(reached),
        user_id=token.user_id,
        limits=key.limits(),
        origin=token.origin,
        named_character_id=token.character_id,
    )


# Every kind of credential the APIs accept, tried in order on a presented token.
CREDENTIAL_KINDS: list[Callable[[Presented], Caller | None]] = [
    api_key_caller,
    browser_token_caller,
]

INVALID_CREDENTIAL = "Invalid or missing API Key"
# Longer than any key or browser token this server issues.
MAX_CREDENTIAL_LENGTH = 2048
# A character's slug as its SlugField stores it.
SLUG = re.compile(r"[-\w]{1,50}", re.ASCII)


def identify(
    headers: Mapping[str, str], query_token: str | None = None, *, browser: bool = True
) -> Caller:
    """Step 1, credential → tenant: who presents the `Authorization: Bearer` credential (or,
    for a browser token, `query_token`), counted against its key's request rate. Rejected
    with 401 otherwise, 429 over the rate; `browser=False` (operator endpoints, minting) takes
    API keys only."""
    header = bearer_token(headers)
    presented = Presented(
        token=header or query_token or "",
        origin=headers.get("Origin") or None,
        host=headers.get("Host") or None,
        in_url=not header and bool(query_token),
    )
    return _identify(presented, browser=browser)


def identify_page(raw: str) -> Caller:
    """A browser token opening one of this server's pages (the voice client) in a frame of its
    origin's site: page loads carry no Origin header, so the page is served with
    `frame-ancestors <origin>` and the browser enforces the binding."""
    return _identify(Presented(token=raw, in_url=True, page=True), browser=True)


def _identify(presented: Presented, *, browser: bool) -> Caller:
    kinds = CREDENTIAL_KINDS if browser else [api_key_caller]
    # Keys and tokens are printable ASCII: anything else (a NUL from `?token=%00`) is no
    # credential, and never reaches a query.
    token = presented.token
    presentable = token.isascii() and token.isprintable() and len(token) <= MAX_CREDENTIAL_LENGTH
    caller = next((c for kind in kinds if presentable and token and (c := kind(presented))), None)
    if caller is None:
        raise Rejected(401, INVALID_CREDENTIAL, code="invalid_api_key")
    if caller.limits is not None:
        try:
            count_request(caller.limits)
        except RateLimited as limited:
            raise rate_limited(limited) from None
    return caller


def reachable_characters(caller: Caller) -> QuerySet[Character]:
    """The active characters the caller may talk to: its tenant's, narrowed to those its
    credential is limited to."""
    characters = Character.objects.filter(tenant_id=caller.tenant_id, is_active=True)
    if caller.character_ids is not None:
        characters = characters.filter(pk__in=caller.character_ids)
    return characters


def find_character(caller: Caller, slug: str | None) -> Character:
    """Step 2: the caller's active character named by `slug`, or its tenant's default one.

    Another tenant's character, or one the credential is not limited to, is as unknown as a
    slug nobody uses. Its voice settings and its tenant's secrets come along, so the async
    pipeline never queries for them. The instance is cached (avatarsite/tenants/config_cache.py)
    and shared by every turn that talks to it: read it, never change it."""
    named = slug if slug and SLUG.fullmatch(slug) else None
    key = ("character", caller.character_ids, caller.named_character_id, named)
    character = None
    if named or not slug:  # a name no slug can have (a NUL, 5,000 characters) is simply unknown
        character = cached(caller.tenant_id, key, lambda: _read_character(caller, named))
    if character is not None:
        return character
    if slug:
        raise Rejected(404, f"Unknown character {slug[:60]!r}.", code="character_not_found")
    raise Rejected(
        404,
        "No default character. Mark one as default in the admin, or name one with the "
        "X-Character header or /characters/<slug>/....",
        code="character_not_found",
    )


def _read_character(caller: Caller, slug: str | None) -> Character | None:
    characters = reachable_characters(caller).select_related("voice")
    if slug:
        chosen = characters.filter(slug=slug)
    elif caller.named_character_id is not None:
        chosen = characters.filter(pk=caller.named_character_id)
    else:
        chosen = characters.filter(is_default=True)
    character = chosen.first()
    if character is not None:
        load_secrets(character)  # its providers read them on the event loop
    return character


def session_key(tenant_id: int, character_id: int, end_user_id: uuid.UUID, session_id: str) -> str:
    """What interruptions, queues, merge windows, wake words and timestamps are kept by: two
    tenants' (or two users') equal session ids are two sessions. The client's session id is
    digested, so the key has a bounded length whatever the client sends."""
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    return f"{tenant_id}:{character_id}:{end_user_id}:{digest}"


@dataclass(slots=True)
class AdmittedSession:
    """A caller's end user talking to one of its characters in one session: what the
    pipeline receives, and the only thing that builds turn requests."""

    caller: Caller
    character: Character
    end_user: EndUser
    channel: str
    session_id: str
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = session_key(
            self.caller.tenant_id, self.character.pk, self.end_user.pk, self.session_id
        )

    def turn(self, context: OpenedContext, **inputs: Any) -> TurnRequest:
        """A turn of this session in `context`, with the request's inputs (text, audio,
        files, options); 422 for LLM parameters beyond what the character allows."""
        _within_character(self.character, inputs.get("llm_params") or {})
        return TurnRequest(
            character=self.character,
            end_user=self.end_user,
            channel=self.channel,
            session_id=self.session_id,
            session_key=self.key,
            context=context,
            api_key_id=self.caller.api_key_id,
            **inputs,
        )

    def reopen(self, context_id: uuid.UUID | None) -> OpenedContext:
        """The conversation a realtime turn continues: as `conversation`, except that an id
        with nothing behind it is silently replaced (AIAvatarKit's WebSocket has no response
        to hang a 404 on)."""
        try:
            return open_context(self.character, self.end_user, context_id)
        except UnknownContext:
            return OpenedContext(uuid.uuid4(), [])


def _within_character(character: Character, params: dict[str, Any]) -> None:
    """A request's own LLM parameters (already type-checked) stay within the character's
    limits: one of its choosable models, no more tokens than it allows."""
    model = params.get("model")
    if model is not None and model not in (choosable := character.choosable_models()):
        raise Rejected(
            422,
            f"model {str(model)[:100]!r} is not one this character may use "
            f"({', '.join(sorted(choosable))}).",
            code="invalid_llm_params",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        if params.get(name, 0) > character.llm_max_tokens:
            raise Rejected(
                422,
                f"{name} may be at most {character.llm_max_tokens} for this character.",
                code="invalid_llm_params",
            )


def _not_found(field_name: str, raw_id: str | None) -> Rejected:
    return Rejected(
        404,
        f"Unknown {field_name} {raw_id!r}: send none to start a conversation, then reuse the "
        "one the server returns.",
        code="not_found",
    )


def conversation(
    character: Character,
    end_user: EndUser | None,
    raw_id: str | None,
    *,
    field_name: str = "context_id",
    resume_on: str | None = None,
) -> OpenedContext:
    """Step 4, the one rule that picks a conversation: the one `raw_id` names, which must be
    this end user's with this character (else 404, the same for a foreign id as for a
    made-up one); with no id, the user's latest one on channel `resume_on` for transports
    whose clients keep no id (LINE, OpenAI), else a new one."""
    requested: uuid.UUID | None = None
    if raw_id:
        try:
            requested = uuid.UUID(raw_id)
        except ValueError:
            raise _not_found(field_name, raw_id) from None
    elif resume_on is not None:
        requested = latest_context_id(character, end_user, resume_on)
    try:
        return open_context(character, end_user, requested)
    except UnknownContext:
        raise _not_found(field_name, raw_id) from None


def admit(
    caller: Caller,
    character: Character,
    *,
    channel: str,
    user_id: str | None,
    session_id: str,
    context_id: str | None = None,
    context_field: str = "context_id",
    resume: bool = False,
    identity_channel: str | None = None,
) -> tuple[AdmittedSession, OpenedContext]:
    """Steps 3 to 5 for a request with a conversation: the end user `user_id` names on
    `identity_channel` (default: `channel`) within the caller's tenant (None: a new one,
    named by its own id), the conversation (see `conversation`) and the session. The end
    user is only created once the conversation check has passed."""
    if not caller.reaches(character):
        raise Rejected(404, f"Unknown character {character.slug!r}.", code="character_not_found")
    identities = identity_channel or channel
    existing = find_end_user(caller.tenant_id, identities, user_id) if user_id else None
    context = conversation(
        character,
        existing,
        context_id,
        field_name=context_field,
        resume_on=channel if resume else None,
    )
    end_user = existing or _create_end_user(caller.tenant_id, identities, user_id)
    return AdmittedSession(caller, character, end_user, channel, session_id), context


def admit_session(
    caller: Caller,
    character: Character,
    *,
    channel: str,
    user_id: str | None,
    session_id: str,
    identity_channel: str | None = None,
) -> AdmittedSession:
    """Steps 3 and 5 for a session that opens its conversations turn by turn (/start, /ws) or
    has none (a LINE follow event)."""
    session, _ = admit(
        caller,
        character,
        channel=channel,
        user_id=user_id,
        session_id=session_id,
        identity_channel=identity_channel,
    )
    return session


def _create_end_user(tenant_id: int, channel: str, user_id: str | None) -> EndUser:
    if user_id:
        return resolve_end_user(tenant_id, channel, user_id)
    return new_end_user(tenant_id, channel)


def known_end_user(caller: Caller, channel: str, user_id: str) -> EndUser | None:
    """The caller's end user `user_id` names on `channel`, for look-ups that must not create
    one (/ws/sessions): None for another tenant's user as for an unknown one."""
    return find_end_user(caller.tenant_id, channel, user_id)
