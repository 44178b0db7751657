"""The one path every turn takes, whatever transport it came from.

(Longer than our usual module: the turn's stages share its record, composer and timer, and
splitting them would pass those around everywhere; `announce` reuses the same composer.)

`run_turn` takes a TurnRequest and yields TurnEvents: started, chunk*, then finished (or
failed). History is written only for a completed turn, in one transaction with its
TurnRecord; failed and interrupted turns leave a TurnRecord and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from characters.models import Character
from conversations.avatar.speaking import chunk_face
from conversations.history import save_turn
from conversations.llm import (
    ChatMessage,
    LLMError,
    LLMRequest,
    ToolCallRequest,
    Usage,
    provider_for,
)
from conversations.models import Guardrail, Message, TurnRecord
from conversations.speech.stt import STTError, Transcript
from conversations.speech.tts import SpeechSynthesizer, TTSError
from conversations.speech.voices import recognizer_for, synthesizer_for
from conversations.tools.base import (
    Tool,
    ToolContext,
    ToolResult,
    parse_arguments,
    registry,
    run_tool,
)
from conversations.tools.guardrails import check, guardrails_for
from conversations.tools.offer import ToolOffer

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
from .prompt import compose_system_prompt
from .session_data import remember_speed, session_speed, valid_speed
from .shaping import ShapedRequest, needs_shaping, refusal, shape
from .speaking import speak_ahead
from .splitter import SentenceSplitter
from .tags import (
    VoiceTags,
    avatar_control,
    control_tags,
    language_of,
    speed_of,
    vision_source,
    voice_text,
)

logger = logging.getLogger("avatarsite.turn")

# Tool rounds per turn before the model must answer in words.
MAX_TOOL_ROUNDS = 8
# Languages written without spaces between sentences.
UNSPACED_LANGUAGES = ("ja", "zh", "ko", "th")


class _Timer:
    """Milliseconds since the turn began, for the per-phase timings of a TurnRecord."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000, 2)


class _ChunkComposer:
    """Turns split segments into chunks; remembers the turn's language once a tag sets it."""

    def __init__(self, character: Character, context_id: uuid.UUID | None) -> None:
        self.catalog = character.artifact_catalog
        self.context_id = context_id
        self.language: str | None = None
        self.speed: float | None = None  # the session's, until a speed tag changes it
        self.tag_speed: float | None = None  # the last speed a tag in this reply set
        self.texts: list[str] = []
        self.voice_texts: list[str] = []
        names = character.voice_tag_names()
        self.voice_tags = VoiceTags(names, character.terminal_voice_tag) if names else None

    def compose(self, segment: str) -> TurnChunk | None:
        """The chunk for a segment; None when the reply already ended at its terminal tag."""
        spoken: str | None
        if self.voice_tags is None:
            spoken = voice_text(segment)
        else:
            segment = self.voice_tags.cut(segment)
            if not segment:
                return None
            spoken = self.voice_tags.speak(segment)
        return self._chunk(segment, spoken)

    def said(self, segment: str, guardrail: str = "") -> TurnChunk:
        """A chunk of what the pipeline says itself: an apology, or a guardrail's message
        (flagged with the guardrail's name)."""
        chunk = self._chunk(segment, voice_text(segment))
        chunk.guardrail = guardrail
        return chunk

    def fallback(self) -> TurnChunk | None:
        """A reply that used none of the voice tags is spoken whole, in one extra chunk."""
        if self.voice_tags is None or self.voice_tags.seen or not self.texts:
            return None
        return self._chunk("", voice_text("".join(self.texts)))

    def _chunk(self, segment: str, spoken: str | None) -> TurnChunk:
        self.language = language_of(segment) or self.language
        if (tagged := valid_speed(speed_of(segment))) is not None:
            self.speed = self.tag_speed = tagged
        self.texts.append(segment)
        if spoken:
            self.voice_texts.append(spoken)
        return TurnChunk(
            context_id=self.context_id,
            text=segment,
            voice_text=spoken,
            language=self.language,
            control_tags=control_tags(segment, self.catalog),
            avatar_control=avatar_control(segment),
            is_first=len(self.texts) == 1,
            speed=self.speed,
        )

    def full_voice_text(self, character_language: str) -> str:
        language = (self.language or character_language).lower()
        separator = "" if language.startswith(UNSPACED_LANGUAGES) else " "
        return separator.join(self.voice_texts)


def _sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]


async def _call_tool(
    tool: Tool | None, call: ToolCallRequest, context: ToolContext
) -> AsyncIterator[ToolResult | str]:
    """Run one tool call; an unknown tool or unreadable arguments become an error result the
    model can explain, rather than a failed turn."""
    if tool is None:
        yield ToolResult({"error": f"There is no tool named {call.name!r}."})
        return
    try:
        arguments = parse_arguments(call.arguments)
    except ValueError as exc:
        yield ToolResult({"error": f"Arguments are not a JSON object: {exc}"})
        return
    async for output in run_tool(tool, context, arguments):
        yield output


async def run_turn(request: TurnRequest) -> AsyncIterator[TurnEvent]:
    timer = _Timer()
    character = request.character
    provider = provider_for(character)
    record = TurnRecord(
        id=request.turn_id,
        character=character,
        end_user=request.end_user,
        session_id=request.session_id,
        channel=request.channel,
        request_text=request.text,
        provider=provider.name,
        model=character.llm_model,
        started_at=timezone.now(),
    )

    opened = request.context
    record.context_id = opened.context_id
    splitter = SentenceSplitter()
    composer = _ChunkComposer(character, opened.context_id)

    async def finish(
        status: str, *, error: str = "", messages: list[ChatMessage] | None = None
    ) -> None:
        """Record the turn; a completed one also writes its messages and provider state."""
        record.status = status
        record.error = error
        record.response_text = "".join(composer.texts)
        record.total_ms = timer.ms()
        if composer.tag_speed is not None:  # later turns of the session keep it
            await remember_speed(request.session_key, composer.tag_speed)
        await sync_to_async(save_turn)(record, request.end_user, messages, opened.provider_state)
        logger.info(
            "turn id=%s character=%s status=%s provider=%s stt_ms=%s llm_first_token_ms=%s "
            "first_chunk_ms=%s first_audio_ms=%s tool_ms=%s llm_ms=%s tts_ms=%s total_ms=%s%s",
            record.id,
            character.slug,
            status,
            provider.name,
            record.stt_ms,
            record.llm_first_token_ms,
            record.first_chunk_ms,
            record.first_audio_ms,
            record.tool_ms,
            record.llm_ms,
            record.tts_ms,
            record.total_ms,
            f" error={error!r}" if error else "",
        )

    recognized = request.text
    synthesizer = None
    transcript = Transcript(text=None)
    try:
        if not recognized and request.audio:
            # PCM16 mono: two bytes a sample.
            record.speech_in_seconds = len(request.audio) / (2 * settings.SPEECH_SAMPLE_RATE)
            transcript = await _transcribe(request, record, timer)
            recognized = record.request_text = transcript.text or ""
            if not recognized:
                drop = "No speech recognized."
                await finish(TurnRecord.Status.CANCELLED, error=drop)
                yield TurnDropped(context_id=opened.context_id, reason=drop)
                return
        synthesizer = synthesizer_for(character) if request.speak else None
        if request.speech_speed is not None:  # set once, kept for the session's later turns
            await remember_speed(request.session_key, request.speech_speed)
        if synthesizer is not None:
            composer.speed = request.speech_speed or await session_speed(request.session_key)
        reason = await refusal(request, recognized)
        shaped = ShapedRequest(recognized, request.files, awake=True)
        if reason is None and needs_shaping(request):
            shaped = await sync_to_async(shape)(request, recognized, timezone.now())
    except (STTError, TTSError) as exc:
        await finish(TurnRecord.Status.FAILED, error=str(exc))
        yield TurnFailed(context_id=opened.context_id, error=str(exc))
        return
    except asyncio.CancelledError:
        await asyncio.shield(finish(TurnRecord.Status.INTERRUPTED))
        raise
    if reason is not None:
        await finish(TurnRecord.Status.CANCELLED, error=reason)
        yield TurnDropped(context_id=opened.context_id, reason=reason)
        return

    text = shaped.text
    record.request_text = text
    yield TurnStarted(
        context_id=opened.context_id,
        request_text=text,
        recognized_text=recognized,
        preprocess_metadata=transcript.preprocess_metadata,
        postprocess_metadata=transcript.postprocess_metadata,
    )
    if not shaped.awake:
        # Asleep: the turn is acknowledged but nothing is paid for, nothing remembered.
        await finish(TurnRecord.Status.CANCELLED, error="Not awake: no wake word yet.")
        yield TurnFinished(opened.context_id, text="", voice_text="", vision_source=None)
        return

    guardrails = await sync_to_async(guardrails_for)(character)
    hit = await check(guardrails, character, text, "request")
    if hit is not None and hit.action == Guardrail.Action.REPLACE:
        text = record.request_text = hit.message  # the corrected text is what is kept
    blocked = hit if hit is not None and hit.action == Guardrail.Action.BLOCK else None

    user_message = ChatMessage(role=Message.Role.USER, content=text, files=shaped.files)
    system = await compose_system_prompt(
        character, request.end_user, request.system_prompt_params, text=text
    )
    if request.client_system:
        system = f"{system}\n\n{request.client_system}" if system else request.client_system
    prompt = [*([ChatMessage(role="system", content=system)] if system else []), *opened.history]
    # What this turn adds to the history: the user message, any tool rounds, the answer.
    added: list[ChatMessage] = [user_message]
    offer = ToolOffer(character, await registry.for_character(character), lambda: [*prompt, *added])
    tools = offer.callable
    tool_context = ToolContext(
        character=character,
        end_user=request.end_user,
        context_id=opened.context_id,
        session_id=request.session_id,
        channel=request.channel,
    )

    def chunks_of(segments: list[str]) -> list[TurnChunk]:
        chunks = [c for c in map(composer.compose, segments) if c is not None]
        if chunks and record.first_chunk_ms is None:
            record.first_chunk_ms = timer.ms()
        return chunks

    usage: Usage | None = None

    async def llm_events() -> AsyncGenerator[TurnChunk | TurnToolCall, None]:
        """The reply as chunks, with tool rounds in between, until the model answers."""
        nonlocal usage
        for round_number in range(MAX_TOOL_ROUNDS + 1):
            # The last round offers no tools, so a model stuck calling them must answer.
            offered = offer.next_round() if round_number < MAX_TOOL_ROUNDS else []
            round_start = len(composer.texts)
            calls: list[ToolCallRequest] = []
            llm_request = LLMRequest(
                messages=[*prompt, *added],
                model=character.llm_model,
                temperature=character.llm_temperature,
                tools=offered,
                user=str(request.end_user.id),
                state=opened.provider_state,
                options=request.llm_params,
            )
            async for item in provider.stream(llm_request):
                if record.llm_first_token_ms is None:
                    record.llm_first_token_ms = timer.ms()
                if isinstance(item, ToolCallRequest):
                    calls.append(item)
                    continue
                if isinstance(item, Usage):
                    usage = item if usage is None else usage + item
                    record.tokens_in, record.tokens_out = (
                        usage.prompt_tokens,
                        usage.completion_tokens,
                    )
                    continue
                for chunk in chunks_of(splitter.feed(item)):
                    yield chunk
            for chunk in chunks_of(splitter.flush()):
                yield chunk
            if not calls:
                break
            tool_started = time.perf_counter()
            results: list[ChatMessage] = []
            for call in calls:
                yield TurnToolCall(opened.context_id, call.id, call.name, call.arguments)
                final: ToolResult | None = None
                async for output in _call_tool(tools.get(call.name), call, tool_context):
                    if isinstance(output, str):  # spoken at once, like the model's own text
                        for chunk in chunks_of([*splitter.feed(output), *splitter.flush()]):
                            yield chunk
                        continue
                    yield TurnToolCall(
                        opened.context_id, call.id, call.name, call.arguments, output
                    )
                    if final is None or not final.is_final:
                        final = output
                results.append(
                    ChatMessage(
                        role=Message.Role.TOOL,
                        content=json.dumps(final.data if final else {}, ensure_ascii=False),
                        tool_call_id=call.id,
                    )
                )
            record.tool_ms = (record.tool_ms or 0) + (time.perf_counter() - tool_started) * 1000
            added.append(
                ChatMessage(
                    role=Message.Role.ASSISTANT,
                    content="".join(composer.texts[round_start:]),
                    tool_calls=[
                        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
                    ],
                )
            )
            added.extend(results)
        if (spoken_whole := composer.fallback()) is not None:
            yield spoken_whole
        record.llm_ms = timer.ms()
        answer = "".join(composer.texts[round_start:]).strip()
        corrected = await check(guardrails, character, answer, "response")
        if corrected is not None:
            # Already streamed; say the correction, and keep only it in the history.
            for sentence in _sentences(corrected.message):
                yield composer.said(sentence, corrected.name)
            answer = corrected.message
        added.append(ChatMessage(role=Message.Role.ASSISTANT, content=answer))

    async def guardrail_answer() -> AsyncGenerator[TurnChunk | TurnToolCall, None]:
        """A blocked request is answered with the guardrail's message, and no LLM call."""
        assert blocked is not None
        for sentence in _sentences(blocked.message):
            yield composer.said(sentence, blocked.name)

    async def synthesize(chunk: TurnChunk) -> bytes:
        assert synthesizer is not None
        started = time.perf_counter()
        audio = await _speak(synthesizer, character, chunk)
        if request.face_frames:
            chunk.face = await chunk_face(chunk, audio)
        record.tts_ms = round((record.tts_ms or 0) + (time.perf_counter() - started) * 1000, 2)
        return audio

    events = llm_events() if blocked is None else guardrail_answer()
    if synthesizer is not None:
        events = speak_ahead(events, synthesize, settings.TTS_LOOKAHEAD)
    try:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, TurnChunk) and event.audio and record.first_audio_ms is None:
                    record.first_audio_ms = timer.ms()
                yield event
    except (LLMError, TTSError) as exc:
        await finish(TurnRecord.Status.FAILED, error=str(exc))
        if isinstance(exc, LLMError):
            # Say sorry rather than fall silent; the apology is not kept in the history.
            for sentence in _sentences(character.apology):
                chunk = composer.said(sentence)
                if synthesizer is not None and chunk.voice_text:
                    with contextlib.suppress(TTSError):
                        chunk.audio = await _speak(synthesizer, character, chunk)
                yield chunk
        yield TurnFailed(context_id=opened.context_id, error=str(exc))
        return
    except Exception as exc:
        logger.exception("turn id=%s failed unexpectedly", record.id)
        error = f"Internal error in the conversation pipeline ({type(exc).__name__})"
        await finish(TurnRecord.Status.FAILED, error=error)
        yield TurnFailed(context_id=opened.context_id, error=error)
        return
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away or the turn was interrupted: record it, keep history clean.
        await asyncio.shield(finish(TurnRecord.Status.INTERRUPTED))
        raise

    reply = "".join(composer.texts)
    if blocked is not None:  # nothing of a blocked request enters the history
        await finish(TurnRecord.Status.CANCELLED, error=f"Blocked by guardrail {blocked.name}")
    else:
        await finish(TurnRecord.Status.COMPLETED, messages=added if request.keep_history else None)
    yield TurnFinished(
        context_id=opened.context_id,
        text=reply,
        voice_text=composer.full_voice_text(character.language),
        vision_source=vision_source(reply),
        usage=usage,
    )


async def _speak(synthesizer: SpeechSynthesizer, character: Character, chunk: TurnChunk) -> bytes:
    assert chunk.voice_text is not None  # speak_ahead synthesizes spoken chunks only
    return await synthesizer.synthesize(
        chunk.voice_text,
        styled_text=chunk.text,
        language=chunk.language or character.language,
        speed=chunk.speed,
    )


async def announce(
    character: Character, text: str, context_id: uuid.UUID | None = None
) -> AsyncIterator[TurnEvent]:
    """Say `text` in the character's voice, without asking the LLM (an operator speaking
    through a live session): chunks with tags and audio exactly as a reply has them, then
    `finished`. It is not the user's conversation, so nothing enters the history."""
    composer = _ChunkComposer(character, context_id)
    splitter = SentenceSplitter()

    async def chunks() -> AsyncGenerator[TurnChunk | TurnToolCall, None]:
        for segment in [*splitter.feed(text), *splitter.flush()]:
            if (chunk := composer.compose(segment)) is not None:
                yield chunk

    try:
        synthesizer = synthesizer_for(character)
    except TTSError as exc:
        yield TurnFailed(context_id=context_id, error=str(exc))
        return

    async def synthesize(chunk: TurnChunk) -> bytes:
        assert synthesizer is not None
        return await _speak(synthesizer, character, chunk)

    events = chunks()
    if synthesizer is not None:
        events = speak_ahead(events, synthesize, settings.TTS_LOOKAHEAD)
    try:
        async with aclosing(events):
            async for event in events:
                yield event
    except TTSError as exc:
        yield TurnFailed(context_id=context_id, error=str(exc))
        return
    yield TurnFinished(
        context_id=context_id,
        text="".join(composer.texts),
        voice_text=composer.full_voice_text(character.language),
        vision_source=None,
    )


async def _transcribe(request: TurnRequest, record: TurnRecord, timer: _Timer) -> Transcript:
    """The words in the request's audio (no text when it holds none); STTError when they
    cannot be had (an outage is not silence)."""
    assert request.audio is not None
    recognizer = recognizer_for(request.character)
    if recognizer is None:
        raise STTError("Speech-to-text is not configured on this server; send text instead.")
    started = timer.ms()
    transcript = await recognizer.recognize(request.session_id, request.audio)
    record.stt_ms = round(timer.ms() - started, 2)
    return transcript
