"""AIAvatarKit's utility endpoints (docs/wire-protocols.md#speech-endpoints): `/transcribe`
and `/stt`, `/synthesize` and `/tts`. Same Bearer keys as /chat; the character (X-Character
header, else the default) decides which recognizer and voice are used."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from characters.models import Character

from ..admission import find_character, identify
from ..pipeline.tags import language_of, voice_text
from ..speech.audio import AudioError, speech_input
from ..speech.stt import STTError, UnsupportedLanguage
from ..speech.tts import NoVoiceForLanguage, TTSError
from ..speech.voices import recognizer_for, synthesizer_for
from .aiavatar_wire import error_response
from .base import Rejected, methods, read_json, too_large

# One request is one utterance; a whole book would outlast the synthesizer's timeout (a 502).
MAX_SYNTHESIS_CHARS = 5000
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")


def _admit(headers: Mapping[str, str]) -> Character:
    return find_character(identify(headers), headers.get("X-Character"))


def _invalid(loc: list[str], message: str) -> Rejected:
    return Rejected(
        422, message, code="validation", body={"detail": [{"loc": loc, "msg": message}]}
    )


def _uploaded_audio(request: HttpRequest, *, raw_body_allowed: bool) -> tuple[bytes, str]:
    """The bytes of a multipart `audio` part or, for /stt, of the raw body, and the content
    type they were declared with ("" for none)."""
    content_type = request.content_type or ""
    try:
        if content_type == "multipart/form-data":
            upload = request.FILES.get("audio")
            if upload is None:
                raise _invalid(["body", "audio"], "Field required")
            return upload.read(), upload.content_type or ""
        if raw_body_allowed:
            return request.body, content_type
    except RequestDataTooBig:
        raise too_large() from None
    message = "Send multipart/form-data with an `audio` file."
    raise Rejected(422, message, code="validation", body={"detail": message})


async def _decoded(data: bytes, content_type: str) -> bytes:
    """PCM16 mono of an upload; decoding compressed audio runs off the event loop."""
    try:
        return await asyncio.to_thread(speech_input, data, content_type=content_type)
    except AudioError as exc:
        raise Rejected(400, str(exc), code="audio") from None


async def _transcribe(request: HttpRequest, *, raw_body_allowed: bool) -> HttpResponse:
    try:
        character = await sync_to_async(_admit)(request.headers)
        pcm = await _decoded(*_uploaded_audio(request, raw_body_allowed=raw_body_allowed))
        recognizer = recognizer_for(character)
        if recognizer is None:
            raise Rejected(503, "Speech-to-text is not configured on this server.", code="no_stt")
        session_id = request.POST.get("session_id", "") if request.FILES else ""
        transcript = await recognizer.recognize(session_id, pcm)
    except UnsupportedLanguage as exc:
        return error_response(Rejected(422, str(exc), code="language"))
    except STTError as exc:
        return error_response(Rejected(502, str(exc), code="stt_failed"))
    except Rejected as rejected:
        return error_response(rejected)
    return JsonResponse(
        {
            "text": transcript.text,
            "preprocess_metadata": transcript.preprocess_metadata,
            "postprocess_metadata": transcript.postprocess_metadata,
            "speakers": None,
        }
    )


@csrf_exempt
@methods("POST", refuse=error_response)
async def transcribe(request: HttpRequest) -> HttpResponse:
    """AIAvatarKit's code: multipart `audio` (raw PCM16 when declared
    application/octet-stream, else any audio file), optional `session_id`."""
    return await _transcribe(request, raw_body_allowed=False)


@csrf_exempt
@methods("POST", refuse=error_response)
async def stt(request: HttpRequest) -> HttpResponse:
    """AIAvatarKit's README: the audio as the raw body (an audio file, or PCM declared as
    such), or the multipart form."""
    return await _transcribe(request, raw_body_allowed=True)


def _synthesis_request(request: HttpRequest) -> tuple[str, str, str | None, float | None]:
    body = read_json(request)
    if not isinstance(body, dict):
        raise _invalid(["body"], "Expected an object")
    text, language = body.get("text"), body.get("language")
    if not isinstance(text, str) or not text.strip():
        raise Rejected(400, "text is required.", code="text")
    if len(text) > MAX_SYNTHESIS_CHARS:
        raise _invalid(["body", "text"], f"At most {MAX_SYNTHESIS_CHARS} characters per request")
    if language is not None and not (
        isinstance(language, str) and LANGUAGE_TAG.fullmatch(language)
    ):
        raise _invalid(["body", "language"], "Expected a language tag such as en-US or ja-JP")
    style: Any = body.get("style_info") or {}
    if not isinstance(style, dict):
        raise _invalid(["body", "style_info"], "Expected object")
    styled_text = style.get("styled_text") or text
    info: dict[str, Any] = style["info"] if isinstance(style.get("info"), dict) else style
    speed = info.get("speed")
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4
    ):
        raise _invalid(["body", "style_info", "speed"], "Expected 0.25 to 4")
    return text, str(styled_text), language, speed


@csrf_exempt
@methods("POST", refuse=error_response)
async def synthesize(request: HttpRequest) -> HttpResponse:
    """`/synthesize` (AIAvatarKit's code) and `/tts` (its README): JSON in, one WAV out."""
    try:
        character = await sync_to_async(_admit)(request.headers)
        text, styled_text, language, speed = _synthesis_request(request)
        # Control tags are not read aloud, exactly as in /chat; a [language:xx] tag counts.
        spoken = voice_text(text)
        if not spoken:
            raise Rejected(400, "Nothing to say: the text holds only control tags.", code="text")
        synthesizer = synthesizer_for(character)
        if synthesizer is None:
            raise Rejected(503, "Text-to-speech is not configured on this server.", code="no_tts")
        audio = await synthesizer.synthesize(
            spoken,
            styled_text=styled_text,
            language=language or language_of(text) or character.language,
            speed=speed,
        )
        if not audio:  # only preprocessors can empty a non-blank text
            raise Rejected(400, "Nothing to say after preprocessing.", code="text")
    except NoVoiceForLanguage as exc:
        return error_response(Rejected(422, str(exc), code="language"))
    except TTSError as exc:
        return error_response(Rejected(502, str(exc), code="tts_failed"))
    except Rejected as rejected:
        return error_response(rejected)
    response = HttpResponse(audio, content_type="audio/wav")
    response["Content-Disposition"] = "attachment; filename=voice.wav"
    return response
