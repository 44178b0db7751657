"""LINE events, handled once each, off the request path (called by the Celery tasks).

Every event first gets its `LineEvent` row: the insert that loses on the unique
`webhookEventId` means another delivery (LINE's redelivery, or the same task on a second
worker) has it, so this one does nothing. Then the event becomes a turn of the one pipeline
and its outcome goes back through the reply token, or by push when the token has expired.

Who a conversation is with: in a one-to-one chat the LINE user (identity channel `line`); in
a group or room the group itself (`line-group` / `line-room`), so everyone there shares one
conversation. In groups and rooms the character only answers text that mentions it, postbacks
and its own joining; everything else said there is left alone.

Over ~400 lines on purpose: each kind of LINE event takes a few lines, and all of them share
the claim, the chat's scope and the reply-or-push path.
"""

from __future__ import annotations

import base64
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone
from linebot.v3.messaging import Message
from linebot.v3.webhooks import (
    AudioMessageContent,
    Event,
    FileMessageContent,
    FollowEvent,
    GroupSource,
    ImageMessageContent,
    JoinEvent,
    LeaveEvent,
    LocationMessageContent,
    MessageEvent,
    PostbackEvent,
    RoomSource,
    StickerMessageContent,
    TextMessageContent,
    UnfollowEvent,
    UserSource,
    VideoMessageContent,
)

from avatarsite.tenants.provider_secrets import load_secrets
from characters import thread_loops
from characters.life.lease import heartbeat
from conversations.admission import Caller, admit, admit_session
from conversations.models import EndUser
from conversations.pipeline.events import TurnDropped, TurnFailed, TurnFinished, TurnRequest
from conversations.pipeline.turn import run_turn
from conversations.speech.audio import AudioError, decode_compressed
from conversations.speech.voices import recognizer_for

from .client import LineApi, ReplyTokenInvalid
from .models import LineChannel, LineEvent
from .reading import sender_of, text_of
from .replies import batches, compose, verbatim

logger = logging.getLogger(__name__)

CHANNEL = "line"  # the channel of LINE turns and contexts
IDENTITY_CHANNELS = {"user": "line", "group": "line-group", "room": "line-room"}
# LINE ids start with U (user), C (group) or R (room).
KIND_OF_PREFIX = {"U": "user", "C": "group", "R": "room"}
RETRY_KEYS = uuid.UUID("6f0d2a4e-8f43-4c1b-9a57-3d1f6b0c2e91")  # namespace of push retry keys

UNREADABLE_AUDIO = "Sorry, I couldn't play that voice message. Could you send it again?"
NOTHING_HEARD = "I couldn't hear any words in that voice message. Could you try again?"
STT_NOT_CONFIGURED = (
    "Sorry, I can't listen to voice messages here yet: speech-to-text is not configured on "
    "this server. Could you send me text instead?"
)

Status = LineEvent.Status
Outcome = tuple[str, str]  # (LineEvent.Status, what happened)


@dataclass(frozen=True, slots=True)
class Chat:
    """Where an event came from, and how answers get back there."""

    kind: str  # user | group | room
    id: str  # the LINE id pushes go to
    reply_token: str | None
    key: str  # seeds push retry keys, so a repeated push is accepted once

    @classmethod
    def with_id(cls, line_id: str, key: str | None = None) -> Chat:
        """A chat the operator opens: no reply token; pushes keyed by `key` (default: new)."""
        return cls(KIND_OF_PREFIX[line_id[:1]], line_id, None, key or str(uuid.uuid4()))

    @property
    def identity_channel(self) -> str:
        return IDENTITY_CHANNELS[self.kind]

    @property
    def session_id(self) -> str:
        return f"line:{self.key}"


def process_events(channel_id: int, events: list[dict[str, Any]]) -> None:
    """Handle one webhook's events in order, each at most once."""
    channel = (
        LineChannel.objects.select_related("character__voice").filter(pk=channel_id, is_active=True)
    ).first()
    if channel is None:
        logger.warning(
            "LINE channel %s is gone or inactive; %d event(s) dropped", channel_id, len(events)
        )
        return
    load_secrets(channel.character)  # the turns' providers read them on the event loop
    for raw in events:
        try:
            row = _claim(channel, raw)
        except Exception:
            # One event the database cannot take must not cost the webhook's later events.
            logger.exception("LINE event could not be recorded (type %r)", raw.get("type"))
            continue
        if row is None:
            continue
        try:
            with heartbeat(functools.partial(_renew, row.pk), every=_lease().total_seconds() / 3):
                status, outcome = handle_event(channel, raw, row)
        except Exception as exc:
            logger.exception("LINE event %s failed", row.webhook_event_id)
            status, outcome = Status.FAILED, f"{type(exc).__name__}: {exc}"
        # Only while still ours: an event whose lease ran out was failed by the beat.
        LineEvent.objects.filter(pk=row.pk, status=Status.PROCESSING).update(
            status=status, outcome=outcome, finished_at=timezone.now(), leased_until=None
        )
        logger.info(
            "line event id=%s type=%s status=%s outcome=%s",
            row.webhook_event_id,
            row.event_type,
            status,
            outcome,
        )


def _claim(channel: LineChannel, raw: dict[str, Any]) -> LineEvent | None:
    """Insert the event's row, or None when another delivery already did."""
    event_id = raw.get("webhookEventId")
    if not isinstance(event_id, str) or not event_id:
        logger.warning("LINE event without webhookEventId ignored (type %r)", raw.get("type"))
        return None
    source: dict[str, Any] = raw["source"] if isinstance(raw.get("source"), dict) else {}
    delivery: dict[str, Any] = (
        raw["deliveryContext"] if isinstance(raw.get("deliveryContext"), dict) else {}
    )
    try:
        with transaction.atomic():
            return LineEvent.objects.create(
                channel=channel,
                webhook_event_id=event_id[:64],
                event_type=str(raw.get("type", ""))[:32],
                source_type=str(source.get("type", ""))[:16],
                source_id=str(
                    source.get("groupId") or source.get("roomId") or source.get("userId") or ""
                )[:64],
                sender_id=sender_of(raw),
                text=text_of(raw),
                is_redelivery=bool(delivery.get("isRedelivery")),
                status=Status.PROCESSING,
                leased_until=timezone.now() + _lease(),
            )
    except IntegrityError:
        LineEvent.objects.filter(channel=channel, webhook_event_id=event_id[:64]).update(
            duplicates=F("duplicates") + 1
        )
        logger.info("LINE event %s already taken; skipped", event_id)
        return None


def _lease() -> timedelta:
    return timedelta(seconds=settings.LINE_EVENT_LEASE_SECONDS)


def _renew(pk: int) -> None:
    LineEvent.objects.filter(pk=pk, status=Status.PROCESSING).update(
        leased_until=timezone.now() + _lease()
    )


def _chat_of(event: Event) -> Chat | None:
    source = event.source
    reply_token = getattr(event, "reply_token", None)
    match source:
        case GroupSource():
            kind, line_id = "group", source.group_id
        case RoomSource():
            kind, line_id = "room", source.room_id
        case UserSource() if source.user_id:
            kind, line_id = "user", source.user_id
        case _:
            return None
    return Chat(kind, line_id, reply_token, event.webhook_event_id)


def handle_event(
    channel: LineChannel, raw: dict[str, Any], row: LineEvent | None = None
) -> Outcome:
    if raw.get("mode") == "standby":
        # Another module (a chat handover) holds the chat: the event is seen, not answered.
        return Status.IGNORED, "standby mode: the channel is not the active responder"
    try:
        event = Event.from_dict(raw)
    except ValueError:  # unknown type, or a known one missing fields (pydantic errors)
        return Status.IGNORED, f"unsupported or malformed {raw.get('type')!r} event"
    chat = _chat_of(event)
    if chat is None:
        return Status.IGNORED, "event without a user, group or room"
    if isinstance(event, UnfollowEvent):
        _set_following(channel, chat, False)
        return Status.DONE, "unfollowed"
    if not isinstance(event, MessageEvent | PostbackEvent | FollowEvent | JoinEvent):
        kind = "left the group" if isinstance(event, LeaveEvent) else f"{event.type} event"
        return Status.IGNORED, f"{kind}: nothing to answer"
    scope = Scope(channel, LineApi(channel), chat, row)
    if isinstance(event, MessageEvent):
        return scope.on_message(event)
    if isinstance(event, PostbackEvent):
        return scope.converse(_postback_text(event))
    return scope.greet(following=isinstance(event, FollowEvent))


@dataclass(slots=True)
class Scope:
    """One event's (or operator request's) channel, API client and chat; `event` is the
    webhook event's row, which records whether its answer is owed or sent."""

    channel: LineChannel
    api: LineApi
    chat: Chat
    event: LineEvent | None = None

    def _answer(self, answer: LineEvent.Answer) -> None:
        if self.event is not None:
            LineEvent.objects.filter(pk=self.event.pk).update(answer=answer)

    def on_message(self, event: MessageEvent) -> Outcome:
        message = event.message
        if self.chat.kind != "user" and not _mentions_bot(message):
            return Status.IGNORED, f"{self.chat.kind} message not addressed to the character"
        match message:
            case TextMessageContent():
                return self.converse(_without_bot_mention(message))
            case ImageMessageContent():
                return self.converse("", files=[self._image(message)])
            case StickerMessageContent():
                return self.converse(_sticker_text(message))
            case LocationMessageContent():
                return self.converse(_location_text(message))
            case AudioMessageContent():
                data, _ = self.api.content(message.id)
                if recognizer_for(self.channel.character) is None:
                    sent = self.send(compose(self.channel.character, STT_NOT_CONFIGURED))
                    return Status.DONE, f"voice message: speech-to-text not configured; {sent}"
                try:
                    speech = decode_compressed(data)  # LINE sends m4a (AAC)
                except AudioError as exc:
                    sent = self.send(compose(self.channel.character, UNREADABLE_AUDIO))
                    return Status.DONE, f"voice message: {exc}; {sent}"
                return self.converse("", audio=speech)
            case VideoMessageContent() | FileMessageContent():
                return self.converse(f"(The user sent a {message.type} you cannot open.)")
        return Status.IGNORED, f"{message.type} messages are not handled"

    def _image(self, message: ImageMessageContent) -> dict[str, str]:
        provider = message.content_provider
        if provider and provider.type == "external" and provider.original_content_url:
            return {"type": "image", "url": provider.original_content_url}
        data, content_type = self.api.content(message.id)
        return {"type": "image", "url": _data_url(data, content_type)}

    def greet(self, *, following: bool) -> Outcome:
        character = self.channel.character
        if following:
            _set_following(self.channel, self.chat, True)
        if not character.greeting.strip():
            return Status.DONE, "followed; the character has no greeting"
        return Status.DONE, f"greeted; {self.send(compose(character, character.greeting))}"

    def converse(
        self,
        text: str,
        files: list[dict[str, str]] | None = None,
        *,
        audio: bytes | None = None,
        initiated: bool = False,
    ) -> Outcome:
        """A turn of the pipeline, its answer sent back; a failed turn sends the character's
        apology (except when the operator started it: nobody is waiting for an answer)."""
        character = self.channel.character
        if not initiated:
            self._answer(LineEvent.Answer.OWED)  # an apology, should this worker be lost
        if self.chat.kind == "user" and not initiated:
            self.api.show_loading(self.chat.id, self.channel.loading_seconds)
        session, context = admit(
            line_caller(self.channel),
            character,
            channel=CHANNEL,
            identity_channel=self.chat.identity_channel,
            user_id=self.chat.id,
            session_id=self.chat.session_id,
            resume=True,
        )
        request = session.turn(
            context,
            text=text,
            audio=audio,
            files=files or [],
            speak=False,
        )
        # On the worker thread's kept loop: the turn's provider clients and their
        # connections carry over from one task to the next (characters/thread_loops.py).
        status, outcome, messages = thread_loops.run(_take_turn(request, apologize=not initiated))
        return status, f"{outcome}; {self.send(messages)}"

    def send(self, messages: list[Message]) -> str:
        """Reply with the token when there is one and it still works; push the rest."""
        if not messages:
            return "nothing to send"
        groups = batches(messages)
        how: list[str] = []
        pending = list(enumerate(groups))
        if self.chat.reply_token:
            try:
                self.api.reply(self.chat.reply_token, groups[0])
                pending = pending[1:]
                how.append("replied")
            except ReplyTokenInvalid as exc:
                how.append(f"reply refused ({exc.message})")
        for index, group in pending:
            key = uuid.uuid5(RETRY_KEYS, f"{self.chat.key}:{index}")
            self.api.push(self.chat.id, group, key)
        if pending:
            how.append(f"pushed {len(pending)} request(s)")
        self._answer(LineEvent.Answer.SENT)
        return ", ".join(how)


async def _take_turn(request: TurnRequest, *, apologize: bool) -> tuple[str, str, list[Message]]:
    """The pipeline's turn (the one async part of handling an event) as LINE messages: the
    answer, or the character's apology when the turn failed."""
    character = request.character
    result: tuple[str, str, list[Message]] = (Status.FAILED, "turn ended without a result", [])
    # The turn's database work runs on asgiref's thread for thread-sensitive code, which no
    # task boundary cleans up: the housekeeping Celery does on its own thread, done there
    # before and after the turn (as Channels' database_sync_to_async does around its calls).
    await sync_to_async(close_old_connections)()
    try:
        async for event in run_turn(request):
            if isinstance(event, TurnFinished):
                text, voice_text = event.text, event.voice_text
                result = (Status.DONE, "answered", compose(character, text, voice_text))
            elif isinstance(event, TurnDropped):  # a voice message with no words in it
                result = (Status.DONE, event.reason, compose(character, NOTHING_HEARD))
            elif isinstance(event, TurnFailed) and apologize:
                apology = compose(character, character.apology)
                result = (Status.FAILED, f"turn failed: {event.error}; apology", apology)
            elif isinstance(event, TurnFailed):
                result = (Status.FAILED, f"turn failed: {event.error}", [])
    finally:
        await sync_to_async(close_old_connections)()
    return result


def line_caller(channel: LineChannel) -> Caller:
    """Who a verified webhook event speaks for: the channel's tenant, and its character only."""
    return Caller(tenant_id=channel.tenant_id, character_ids=frozenset({channel.character_id}))


def _set_following(channel: LineChannel, chat: Chat, following: bool) -> None:
    """Kept on the end user per channel, so operators can see who blocked the character."""
    session = admit_session(
        line_caller(channel),
        channel.character,
        channel=CHANNEL,
        identity_channel=chat.identity_channel,
        user_id=chat.id,
        session_id=chat.session_id,
    )
    with transaction.atomic():
        end_user = EndUser.objects.select_for_update().get(pk=session.end_user.pk)
        line = end_user.metadata.setdefault("line", {})
        line[channel.slug] = {"following": following, "since": timezone.now().isoformat()}
        end_user.save(update_fields=["metadata", "updated_at"])


def _mentions_bot(message: Any) -> bool:
    mention = getattr(message, "mention", None)
    return bool(mention and any(getattr(m, "is_self", False) for m in mention.mentionees))


def _without_bot_mention(message: TextMessageContent) -> str:
    """The text without the `@Character` mention itself (LINE gives its position)."""
    text = message.text
    if message.mention:
        spans = sorted(
            (
                (m.index, m.length)
                for m in message.mention.mentionees
                if getattr(m, "is_self", False)
            ),
            reverse=True,
        )
        for index, length in spans:
            text = text[:index] + text[index + length :]
    return text.strip()


def _sticker_text(message: StickerMessageContent) -> str:
    keywords = ", ".join(message.keywords or []) or "no description"
    said = f' with the words "{message.text}"' if message.text else ""
    return f"(The user sent a sticker{said}: {keywords}.)"


def _location_text(message: LocationMessageContent) -> str:
    place = ", ".join(part for part in (message.title, message.address) if part)
    where = f"{place} " if place else ""
    return (
        f"(The user shared a location: {where}"
        f"at latitude {message.latitude}, longitude {message.longitude}.)"
    )


def _postback_text(event: PostbackEvent) -> str:
    params = event.postback.params or {}
    extra = "".join(f", {name}={value}" for name, value in params.items())
    return f"(The user chose: {event.postback.data}{extra}.)"


def _data_url(data: bytes, content_type: str) -> str:
    kind = content_type.split(";")[0].strip() or "image/jpeg"
    if not kind.startswith("image/"):
        kind = "image/jpeg"  # LINE serves users' images as JPEG
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def push_text(channel: LineChannel, to: str, text: str) -> str:
    """An operator's message, sent exactly as written."""
    return Scope(channel, LineApi(channel), Chat.with_id(to)).send(verbatim(text))


def start_conversation(channel_id: int, to: str, instruction: str, key: str) -> Outcome:
    """The character speaks first: a turn on the operator's instruction, its answer pushed."""
    channel = LineChannel.objects.select_related("character__voice").get(pk=channel_id)
    load_secrets(channel.character)
    scope = Scope(channel, LineApi(channel), Chat.with_id(to, key))
    return scope.converse(instruction, initiated=True)
