"""From reply segments to chunks: what each one shows, says aloud and signals to the avatar."""

from __future__ import annotations

import uuid

from characters.models import Character

from .events import TurnChunk
from .session_data import valid_speed
from .splitter import SentenceSplitter
from .tags import VoiceTags, avatar_control, control_tags, language_of, speed_of, voice_text

# Languages written without spaces between sentences.
UNSPACED_LANGUAGES = ("ja", "zh", "ko", "th")


def sentences(text: str) -> list[str]:
    """A whole text cut as the splitter cuts a stream."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]


class ChunkComposer:
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

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def full_voice_text(self, character_language: str) -> str:
        language = (self.language or character_language).lower()
        separator = "" if language.startswith(UNSPACED_LANGUAGES) else " "
        return separator.join(self.voice_texts)
