"""The one path every turn takes, whatever transport it came from (docs/turn.md#inside-run_turn).

`run_turn` takes a TurnRequest and yields TurnEvents: started, chunk*, then finished (or
failed), through the stages of the `Turn` it hands on: prepare (one database hop), listen,
admit, guard, generate (tool rounds in conversations/tools/rounds.py), speak and record. Only
a completed turn writes history, with its TurnRecord; the others leave only their TurnRecord.
The character's hooks (hooks.py) run at the stage boundaries: each sentence between generate
and speak, on_error where a failed turn apologises, on_finish after record; its time limit
(invoke_timeout_seconds) bounds generate and speak, counted from the turn's start.

Over ~400 lines on purpose: the stages read top to bottom in one module, as one turn runs;
what each stage calls lives beside it (composing, speaking, hooks, tools, recordings).
`announce` speaks an operator's text with the same speak stage and closing event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from characters.models import Character
from conversations.history import save_turn
from conversations.llm import (
    ChatMessage,
    LLMError,
    LLMProvider,
    LLMRequest,
    ToolCallRequest,
    Usage,
    provider_for,
)
from conversations.models import Guardrail, Message, TurnRecord
from conversations.recordings import Tape, delete_files
from conversations.speech.stt import STTError, Transcript
from conversations.speech.tts import TTSError
from conversations.speech.voices import recognizer_for
from conversations.tools.base import CharacterTools, Tool, ToolContext, registry
from conversations.tools.guardrails import GuardrailHit, check, guardrails_for
from conversations.tools.offer import ToolOffer, with_instructions
from conversations.tools.rounds import MAX_TOOL_ROUNDS, ToolRound, offered

from .composing import ChunkComposer, sentences
from .events import (
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFailed,
    TurnFinished,
    TurnRequest,
    TurnStarted,
    TurnToolCall,
)
from .hooks import HookRefused, TurnHooks
from .prompt import PromptSection, prompt_sections, system_prompt, with_sections
from .session_data import remember_speed
from .shaping import ShapedRequest, needs_shaping, refusal, shape
from .speaking import Events, Voice
from .splitter import SentenceSplitter
from .tags import vision_source

logger = logging.getLogger("avatarsite.turn")
# The TurnRecord's timings, in the order the turn's log line gives them.
TIMINGS = "stt_ms llm_first_token_ms first_chunk_ms first_audio_ms tool_ms llm_ms tts_ms total_ms"


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a turn reads from the database before it starts, in one hop. The character, its
    voice settings and its tenant's secrets arrive loaded with the admitted request."""

    guardrails: list[Guardrail]
    system_prompt: str
    # What other apps add to the system prompt once the user's words are known (memory).
    sections: list[PromptSection]
    tools: CharacterTools
    hooks: TurnHooks


@dataclass(slots=True)
class Turn:
    """One turn's state, handed from stage to stage."""

    request: TurnRequest
    provider: LLMProvider
    record: TurnRecord
    composer: ChunkComposer
    started: float  # time.perf_counter() when the turn began
    splitter: SentenceSplitter = field(default_factory=SentenceSplitter)
    voice: Voice | None = None  # None: the turn is not spoken
    transcript: Transcript = field(default_factory=lambda: Transcript(text=None))
    usage: Usage | None = None  # tokens of all the turn's LLM calls, when the provider counts
    tape: Tape = field(default_factory=lambda: Tape(keep=False))  # the audio heard and spoken
    # What this turn adds to the history: the user message, any tool rounds, the answer.
    added: list[ChatMessage] = field(default_factory=list)
    hooks: TurnHooks = field(default_factory=TurnHooks)  # the character's, once prepared

    @classmethod
    def begin(cls, request: TurnRequest) -> Turn:
        started = time.perf_counter()
        character = request.character
        provider = provider_for(character)
        context_id = request.context.context_id
        record = TurnRecord(
            id=request.turn_id,
            character=character,
            end_user=request.end_user,
            session_id=request.session_id,
            channel=request.channel,
            context_id=context_id,
            request_text=request.text,
            provider=provider.name,
            model=character.llm_model,
            api_key_id=request.api_key_id,
            started_at=timezone.now(),
        )
        composer = ChunkComposer(character, context_id)
        return cls(request, provider, record, composer, started, tape=Tape(character.record_audio))

    @property
    def who(self) -> ToolContext:
        """Who talks to whom, as tools, hooks and Python guardrails get it."""
        request = self.request
        return ToolContext(
            character=request.character,
            end_user=request.end_user,
            context_id=self.context_id,
            session_id=request.session_id,
            channel=request.channel,
        )

    def deadline(self) -> float | None:
        """When (time.perf_counter()) the character's time limit ends the turn, if it has one."""
        limit = self.character.invoke_timeout_seconds
        return None if limit is None else self.started + limit

    def ms(self) -> float:
        """Milliseconds since the turn began, for the TurnRecord's timings."""
        return round((time.perf_counter() - self.started) * 1000, 2)

    @property
    def character(self) -> Character:
        return self.request.character

    @property
    def context_id(self) -> uuid.UUID:
        return self.request.context.context_id

    def heard_audio(self, event: TurnEvent) -> None:
        if not (isinstance(event, TurnChunk) and event.audio):
            return
        if self.record.first_audio_ms is None:
            self.record.first_audio_ms = self.ms()
        self.tape.said(event.audio)
        self.record.speech_out_seconds = self.tape.seconds_spoken

    def guarded(self, hit: GuardrailHit, on: str) -> None:
        """Note a guardrail that acted on the request or the answer."""
        self.record.guardrails.append({"name": hit.name, "on": on, "action": hit.action})

    async def chunks_of(self, segments: list[str]) -> list[TurnChunk]:
        """The chunks of the reply's segments, each as the response hook has it said."""
        if self.hooks.response is not None:
            segments = [await self.hooks.rewrite(self.who, segment) for segment in segments]
        chunks = [c for c in map(self.composer.compose, segments) if c is not None]
        if chunks and self.record.first_chunk_ms is None:
            self.record.first_chunk_ms = self.ms()
        return chunks


async def run_turn(request: TurnRequest) -> AsyncIterator[TurnEvent]:
    turn = Turn.begin(request)
    try:
        prepared = await prepare(request)
        turn.hooks = prepared.hooks
        turn.hooks.check()
        heard = await listen(turn)
        if heard is None:
            drop = "No speech recognized."
            await record(turn, TurnRecord.Status.CANCELLED, error=drop)
            yield TurnDropped(context_id=turn.context_id, reason=drop)
            return
        turn.voice = await Voice.for_turn(request, turn.composer)
        admitted = await admit(turn, heard)
    except (STTError, TTSError, HookRefused) as exc:
        await record(turn, TurnRecord.Status.FAILED, error=str(exc))
        yield TurnFailed(context_id=turn.context_id, error=str(exc))
        return
    except asyncio.CancelledError:
        await asyncio.shield(record(turn, TurnRecord.Status.INTERRUPTED))
        raise
    except Exception as exc:
        yield await failed_unexpectedly(turn, exc)
        return
    if isinstance(admitted, str):  # a validator's reason to refuse
        await record(turn, TurnRecord.Status.CANCELLED, error=admitted)
        yield TurnDropped(context_id=turn.context_id, reason=admitted)
        return

    turn.record.request_text = admitted.text
    yield TurnStarted(
        turn.context_id,
        request_text=admitted.text,
        recognized_text=heard,
        preprocess_metadata=turn.transcript.preprocess_metadata,
        postprocess_metadata=turn.transcript.postprocess_metadata,
    )
    if not admitted.awake:
        # Asleep: the turn is acknowledged but nothing is paid for, nothing remembered.
        await record(turn, TurnRecord.Status.CANCELLED, error="Not awake: no wake word yet.")
        yield TurnFinished(turn.context_id, text="", voice_text="", vision_source=None)
        return

    try:
        blocked = await guard(turn, prepared, admitted)
        events = generate(turn, prepared) if blocked is None else say(turn, blocked)
        async with aclosing(speak(turn.voice, events)) as spoken:
            deadline = turn.deadline()
            while (event := await next_event(spoken, deadline)) is not None:
                turn.heard_audio(event)
                yield event
    except (LLMError, TurnTimedOut, TTSError) as exc:
        async for failure in apologise(turn, exc):
            yield failure
        return
    except Exception as exc:
        yield await failed_unexpectedly(turn, exc)
        return
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away or the turn was interrupted: record it, keep history clean.
        await asyncio.shield(record(turn, TurnRecord.Status.INTERRUPTED))
        raise

    if blocked is not None:  # nothing of a blocked request enters the history
        error = f"Blocked by guardrail {blocked.name}"
        await record(turn, TurnRecord.Status.CANCELLED, error=error)
    else:
        kept = turn.added if turn.request.keep_history else None
        await record(turn, TurnRecord.Status.COMPLETED, messages=kept)
        await turn.hooks.finished(turn.who, turn.composer.text)
    yield finished(turn.composer, turn.character, vision=True, usage=turn.usage)


async def failed_unexpectedly(turn: Turn, exc: Exception) -> TurnFailed:
    """A bug or an unforeseen fault at any stage: logged, the turn recorded as failed, and the
    error event that ends its stream (never a stream that just stops)."""
    logger.exception("turn id=%s failed unexpectedly", turn.record.id, exc_info=exc)
    error = f"Internal error in the conversation pipeline ({type(exc).__name__})"
    await record(turn, TurnRecord.Status.FAILED, error=error)
    return TurnFailed(context_id=turn.context_id, error=error)


class TurnTimedOut(Exception):
    """The turn outlived its character's time limit; the message is safe to show a client."""


async def next_event(events: Events, deadline: float | None) -> TurnEvent | None:
    """The next of `events` (None after the last), or TurnTimedOut once `deadline` passes;
    the events' stream is then cancelled where it waits (its tasks with it)."""
    if deadline is None:
        return await anext(events, None)
    try:
        return await asyncio.wait_for(anext(events, None), deadline - time.perf_counter())
    except TimeoutError:
        raise TurnTimedOut("The turn took longer than the character's time limit.") from None


def prepare_now(request: TurnRequest) -> Prepared:
    """The character's guardrails, its system prompt (with today's schedule and its shared
    context), its tools' rows and its hooks (plain ORM, mostly from the tenant's cached
    configuration): HTTP transports call it in their admission hop and hand it on as
    `request.prepared`."""
    character = request.character
    return Prepared(
        guardrails=guardrails_for(character),
        system_prompt=system_prompt(character, request.end_user, request.system_prompt_params),
        sections=prompt_sections(character),
        tools=registry.load(character),
        hooks=TurnHooks.of(character),
    )


async def prepare(request: TurnRequest) -> Prepared:
    """What the transport prepared, else `prepare_now` in one trip to the database thread."""
    if request.prepared is not None:
        return request.prepared
    return await sync_to_async(prepare_now)(request)


async def listen(turn: Turn) -> str | None:
    """The user's words: the request's text, else its audio transcribed (None when the audio
    holds no speech). STTError when they cannot be had: an outage is not silence."""
    request = turn.request
    if request.text or not request.audio:
        return request.text
    # PCM16 mono: two bytes a sample.
    turn.record.speech_in_seconds = len(request.audio) / (2 * settings.SPEECH_SAMPLE_RATE)
    recognizer = recognizer_for(request.character)
    if recognizer is None:
        raise STTError("Speech-to-text is not configured on this server; send text instead.")
    started = turn.ms()
    transcript = turn.transcript = await recognizer.recognize(request.session_id, request.audio)
    turn.record.stt_ms = round(turn.ms() - started, 2)
    turn.record.request_text = transcript.text or ""
    return transcript.text or None


async def admit(turn: Turn, heard: str) -> ShapedRequest | str:
    """The request as the LLM is to get it (merged, woken, timestamped), or the reason a
    request validator refuses it."""
    request = turn.request
    reason = await refusal(request, heard)
    if reason is not None:
        return reason
    if not needs_shaping(request):
        return ShapedRequest(heard, request.files, awake=True)
    return await sync_to_async(shape)(request, heard, timezone.now())


async def guard(turn: Turn, prepared: Prepared, admitted: ShapedRequest) -> GuardrailHit | None:
    """Check the request against the guardrails and add the user's message to the turn;
    *replace* swaps the text for the guardrail's message (which is what is kept). Returns the
    guardrail that blocks the request, if one does."""
    text = admitted.text
    hit = await check(prepared.guardrails, turn.who, text, "request")
    if hit is not None:
        turn.guarded(hit, "request")
    if hit is not None and hit.action == Guardrail.Action.REPLACE:
        text = turn.record.request_text = hit.message
    turn.added.append(ChatMessage(role=Message.Role.USER, content=text, files=admitted.files))
    return hit if hit is not None and hit.action == Guardrail.Action.BLOCK else None


async def generate(turn: Turn, prepared: Prepared) -> Events:
    """The reply as chunks, with tool rounds in between until the model answers in words;
    then the answer's guardrails."""
    request, record, composer = turn.request, turn.record, turn.composer
    asked = turn.added[0].content  # the user's message, as guarded
    system = await with_sections(prepared.system_prompt, prepared.sections, request.end_user, asked)
    if request.client_system:  # a client that keeps the conversation adds its own
        system = f"{system}\n\n{request.client_system}"
    history = request.context.history
    offer = ToolOffer(
        turn.character,
        await prepared.tools.list(),
        lambda: [ChatMessage(role="system", content=system), *history, *turn.added],
    )
    tool_context = turn.who
    for round_number in range(MAX_TOOL_ROUNDS + 1):
        round_start = len(composer.texts)
        calls: list[ToolCallRequest] = []
        tools_offered = offered(offer, round_number)
        instructed = ChatMessage(role="system", content=with_instructions(system, tools_offered))
        async for chunk in _reply(turn, [instructed, *history, *turn.added], tools_offered, calls):
            yield chunk
        if not calls:
            break
        tools = ToolRound(calls, offer.callable, tool_context)
        started = time.perf_counter()
        async for output in tools.run():
            if isinstance(output, str):  # spoken at once, like the model's own text
                said = [*turn.splitter.feed(output), *turn.splitter.flush()]
                for chunk in await turn.chunks_of(said):
                    yield chunk
                continue
            call = output.call
            yield TurnToolCall(turn.context_id, call.id, call.name, call.arguments, output.result)
        record.tool_ms = (record.tool_ms or 0) + (time.perf_counter() - started) * 1000
        turn.added.extend(tools.messages("".join(composer.texts[round_start:])))
    if (spoken_whole := composer.fallback()) is not None:
        yield spoken_whole
    record.llm_ms = turn.ms()
    answer = "".join(composer.texts[round_start:]).strip()
    corrected = await check(prepared.guardrails, turn.who, answer, "response")
    if corrected is not None:
        turn.guarded(corrected, "response")
        # Already streamed; say the correction, and keep only it in the history.
        async for chunk in say(turn, corrected):
            yield chunk
        answer = corrected.message
    turn.added.append(ChatMessage(role=Message.Role.ASSISTANT, content=answer))


async def _reply(
    turn: Turn, messages: list[ChatMessage], tools: list[Tool], calls: list[ToolCallRequest]
) -> Events:
    """One LLM call: its text as chunks, its tool calls collected in `calls`."""
    character, request = turn.character, turn.request
    llm_request = LLMRequest(
        messages=messages,
        model=character.llm_model,
        temperature=character.llm_temperature,
        tools=tools,
        user=str(request.end_user.id),
        state=request.context.provider_state,
        options=request.llm_params,
    )
    async for item in turn.provider.stream(llm_request):
        if turn.record.llm_first_token_ms is None:
            turn.record.llm_first_token_ms = turn.ms()
        if isinstance(item, ToolCallRequest):
            calls.append(item)
            continue
        if isinstance(item, Usage):
            turn.usage = item if turn.usage is None else turn.usage + item
            turn.record.tokens_in = turn.usage.prompt_tokens
            turn.record.tokens_out = turn.usage.completion_tokens
            continue
        for chunk in await turn.chunks_of(turn.splitter.feed(item)):
            yield chunk
    for chunk in await turn.chunks_of(turn.splitter.flush()):
        yield chunk


async def say(turn: Turn, hit: GuardrailHit) -> Events:
    """A guardrail's message as chunks flagged with its name: the whole answer to a blocked
    request (no LLM call), or the correction of an answer."""
    for sentence in sentences(hit.message):
        yield turn.composer.said(sentence, hit.name)


def speak(voice: Voice | None, events: Events) -> Events:
    """The events with each chunk's audio when there is a voice, synthesised ahead."""
    return voice.speak(events) if voice is not None else events


async def apologise(
    turn: Turn, exc: LLMError | TurnTimedOut | TTSError
) -> AsyncIterator[TurnEvent]:
    """A failed turn is recorded; after an LLM failure or a timeout the character says sorry
    rather than fall silent (the on_error hook may choose the words; not kept in the history),
    then `failed`."""
    await record(turn, TurnRecord.Status.FAILED, error=str(exc))
    if not isinstance(exc, TTSError):
        for sentence in sentences(await turn.hooks.apology(turn.who, exc)):
            chunk = turn.composer.said(sentence)
            if turn.voice is not None and chunk.voice_text:
                with contextlib.suppress(TTSError):
                    chunk.audio = await turn.voice.say(chunk)
            yield chunk
    yield TurnFailed(context_id=turn.context_id, error=str(exc))


async def record(
    turn: Turn, status: str, *, error: str = "", messages: list[ChatMessage] | None = None
) -> None:
    """Record the turn and log its line; a completed one also writes its messages and the
    provider's state."""
    row = turn.record
    row.status = status
    row.error = error
    row.response_text = turn.composer.text
    row.tts_ms = turn.voice.ms if turn.voice is not None else None
    row.total_ms = turn.ms()
    if turn.composer.tag_speed is not None:  # later turns of the session keep it
        await remember_speed(turn.request.session_key, turn.composer.tag_speed)
    state = turn.request.context.provider_state

    def write() -> None:
        turn.tape.store(row, turn.request.audio)
        try:
            save_turn(row, turn.request.end_user, messages, state)
        except BaseException:
            delete_files(row)  # no recording without its turn record
            raise

    await sync_to_async(write)()
    timings = " ".join(f"{name}={getattr(row, name)}" for name in TIMINGS.split())
    failure = f" error={error!r}" if error else ""
    facts = f"character={turn.character.slug} status={status} provider={turn.provider.name}"
    logger.info("turn id=%s %s %s%s", row.id, facts, timings, failure)


def finished(
    composer: ChunkComposer, character: Character, *, vision: bool, usage: Usage | None = None
) -> TurnFinished:
    """The closing event: the whole reply as said and spoken."""
    reply = composer.text
    return TurnFinished(
        context_id=composer.context_id,
        text=reply,
        voice_text=composer.full_voice_text(character.language),
        vision_source=vision_source(reply) if vision else None,
        usage=usage,
    )
