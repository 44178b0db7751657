"""The viseme sequence of a sentence: phonemes from OpenJTalk for Japanese, from espeak-ng
(`-x`, its ASCII phoneme names) for every other language. Only the order matters here; the
animator spreads the sequence over the sentence's voiced audio. No phonemes (no espeak-ng,
an unknown language) leaves the mouth to the energy envelope alone."""

from __future__ import annotations

import asyncio
import logging

from conversations.speech.tts import espeak_binary, espeak_voice

logger = logging.getLogger(__name__)

PHONEME_TIMEOUT_SECONDS = 5.0
_MARKS = str.maketrans("", "", "'`,:#~;=!|^")

# Whole phoneme names that their first letter would place wrongly, per phoneme set.
_ESPEAK = {"tS": "CH", "dZ": "CH", "N": "kk"}
_OPENJTALK = {
    "sh": "CH", "ch": "CH", "j": "CH", "ts": "SS", "N": "nn", "cl": "PP", "pau": "sil", "y": "I",
}  # fmt: skip
_FIRST = {
    **dict.fromkeys("pbm", "PP"), **dict.fromkeys("fv", "FF"), **dict.fromkeys("TD", "TH"),
    **dict.fromkeys("td", "DD"), **dict.fromkeys("kgxqG", "kk"), **dict.fromkeys("SZ", "CH"),
    **dict.fromkeys("szC", "SS"), **dict.fromkeys("nlL", "nn"), **dict.fromkeys("rR", "RR"),
    **dict.fromkeys("aAV&", "aa"), **dict.fromkeys("eE@3", "E"), **dict.fromkeys("iIYj", "I"),
    **dict.fromkeys("oO0", "O"), **dict.fromkeys("uUwy", "U"),
}  # fmt: skip


def viseme_of(phoneme: str, *, openjtalk: bool = False) -> str | None:
    """The viseme of one phoneme name (espeak-ng ASCII, or OpenJTalk's when `openjtalk`),
    None when it has no mouth shape of its own (h, glottal stops)."""
    bare = phoneme.translate(_MARKS)
    if not bare:
        return None
    exact = _OPENJTALK if openjtalk else _ESPEAK
    if bare in exact:
        return exact[bare]
    # OpenJTalk writes devoiced vowels in capitals (desU): the same mouth.
    return _FIRST.get(bare[0] if not openjtalk else bare[0].lower())


def _openjtalk(text: str) -> list[str]:
    import pyopenjtalk  # the Japanese reading frontend of the local voice, when installed

    return str(pyopenjtalk.g2p(text)).split()


async def _espeak(binary: str, text: str, language: str) -> list[str]:
    # Text through stdin, never argv; -q: no audio, -x: phoneme names, separated by spaces.
    process = await asyncio.create_subprocess_exec(
        binary, "-q", "-x", "--sep= ", "-v", espeak_voice(language),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(
            process.communicate(text.encode(errors="replace")), PHONEME_TIMEOUT_SECONDS
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        return []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return out.decode(errors="replace").split() if process.returncode == 0 else []


async def visemes(text: str, language: str | None) -> list[str]:
    """Visemes of `text` in speaking order, pauses as "sil"; [] when none can be had."""
    text = text.strip()
    if not text:
        return []
    lang = (language or "en").lower()
    try:
        openjtalk = lang.startswith("ja")
        if openjtalk:
            phonemes = await asyncio.to_thread(_openjtalk, text)
        elif binary := espeak_binary():
            phonemes = await _espeak(binary, text, lang)
        else:
            return []
    except (ImportError, OSError, RuntimeError) as exc:
        logger.info("no phonemes for lip sync, energy only: %s", exc)
        return []
    found = (viseme_of(p, openjtalk=openjtalk) for p in phonemes)
    return [v for v in found if v is not None]
