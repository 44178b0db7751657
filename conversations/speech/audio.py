"""PCM16 and WAV handling shared by speech-to-text, text-to-speech and the REST endpoints.

Uplink audio is raw PCM16LE mono at SPEECH_SAMPLE_RATE or a WAV file of that format
(docs/wire-protocols.md#audio); downlink audio is always one complete WAV file per chunk.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np
import soxr
from django.conf import settings

WAV_MAGIC = (b"RIFF", b"WAVE")


class AudioError(ValueError):
    """Audio a client sent that cannot be used; the message says why and is safe to show."""


@dataclass(frozen=True, slots=True)
class Wav:
    pcm: bytes  # PCM16LE
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.channels / self.sample_rate


def is_wav(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == WAV_MAGIC[0] and data[8:12] == WAV_MAGIC[1]


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A complete WAV file around PCM16LE samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def read_wav(data: bytes) -> Wav:
    """Parse a 16-bit PCM WAV file. Streamed WAVs whose header announces more data than
    follows (espeak-ng --stdout, ffmpeg pipes) are read up to what is there."""
    try:
        with wave.open(io.BytesIO(data), "rb") as source:
            if source.getsampwidth() != 2:
                raise AudioError("WAV audio must be 16-bit PCM.")
            pcm = source.readframes(source.getnframes())
            return Wav(pcm=pcm, sample_rate=source.getframerate(), channels=source.getnchannels())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"Audio is not a valid WAV file ({exc}).") from exc


def to_mono(wav: Wav) -> Wav:
    if wav.channels == 1:
        return wav
    frames = np.frombuffer(wav.pcm, dtype="<i2").reshape(-1, wav.channels)
    mono = frames.mean(axis=1).astype("<i2")
    return Wav(pcm=mono.tobytes(), sample_rate=wav.sample_rate, channels=1)


def resample_pcm(pcm: bytes, source_rate: int, target_rate: int) -> bytes:
    """Mono PCM16 at another sample rate (soxr's high-quality resampler)."""
    if source_rate == target_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    return soxr.resample(samples, source_rate, target_rate).astype("<i2").tobytes()


def resample_wav(data: bytes, target_rate: int) -> bytes:
    wav = to_mono(read_wav(data))
    if wav.sample_rate == target_rate:
        return data
    return wav_bytes(resample_pcm(wav.pcm, wav.sample_rate, target_rate), target_rate)


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


# Content types that announce raw PCM16LE (AIAvatarKit's own clients upload it as
# application/octet-stream); any other declared type is sniffed and decoded.
PCM_TYPES = {"audio/pcm", "audio/l16", "audio/x-raw", "application/octet-stream"}
WAV_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}


def speech_input(
    data: bytes,
    *,
    content_type: str | None = None,
    max_seconds: float | None = None,
) -> bytes:
    """Validate uploaded speech and return its PCM16LE mono samples at SPEECH_SAMPLE_RATE.

    A WAV file (found by its header) of any rate, width and channel count is converted.
    Otherwise `content_type` decides: None (the JSON and WebSocket payloads, which carry raw
    PCM or WAV) and the PCM types mean raw PCM; a WAV type on something else is an error;
    any other type, or none given over HTTP (""), is decoded by FFmpeg (ogg/opus, mp3, m4a,
    webm...), so bytes that are not audio are refused rather than heard as noise.
    """
    rate = settings.SPEECH_SAMPLE_RATE
    max_seconds = max_seconds or settings.STT_MAX_AUDIO_SECONDS
    if not data:
        raise AudioError("audio data is required.")
    declared = (content_type or "").split(";")[0].strip().lower()
    if is_wav(data):
        try:
            wav = to_mono(read_wav(data))
            pcm = resample_pcm(wav.pcm, wav.sample_rate, rate)
        except AudioError:  # 8/24/32-bit and float WAVs: FFmpeg reads those
            pcm = decode_compressed(data, max_seconds=max_seconds)
    elif declared in WAV_TYPES:
        raise AudioError("Audio was declared as audio/wav but is not a WAV file.")
    elif content_type is None or declared in PCM_TYPES:
        pcm = data
        if len(pcm) % 2:
            raise AudioError("Raw audio must be PCM16LE: an even number of bytes.")
    else:
        pcm = decode_compressed(data, max_seconds=max_seconds)
    if not pcm:
        raise AudioError("audio data is required.")
    seconds = len(pcm) / 2 / rate
    if seconds > max_seconds:
        raise AudioError(f"Audio is {seconds:.1f} s long; the limit is {max_seconds:g} s.")
    return pcm


def decode_compressed(data: bytes, *, max_seconds: float | None = None) -> bytes:
    """PCM16 mono at SPEECH_SAMPLE_RATE from compressed audio (m4a/AAC as LINE sends voice
    messages, MP3, Ogg/Opus, WebM, odd WAVs), decoded by FFmpeg through PyAV; AudioError when
    it cannot be read. Decoding stops just past `max_seconds`, so a tiny file that unpacks to
    hours costs no more than the limit."""
    import av  # FFmpeg is loaded only when a compressed file needs it

    rate = settings.SPEECH_SAMPLE_RATE
    limit = 2 * rate * (max_seconds or settings.STT_MAX_AUDIO_SECONDS) + 2 * rate
    pcm = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError("the file holds no audio track")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                for converted in resampler.resample(frame):
                    pcm += converted.to_ndarray().tobytes()
                if len(pcm) > limit:
                    break
            for converted in resampler.resample(None):
                pcm += converted.to_ndarray().tobytes()
    except (av.FFmpegError, ValueError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioError(f"Audio could not be decoded ({reason}).") from exc
    if not pcm:
        raise AudioError("Audio could not be decoded (it holds no samples).")
    return bytes(pcm)
