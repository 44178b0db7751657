"""Control tags in LLM output: `[face:joy]` and `<face name="joy" />`
(docs/wire-protocols.md#control-tags).

Three readings of the same chunk text, each with the rule the spec gives it:
- `control_tags`: every registered tag, both forms, source order;
- `avatar_control_request`: the stricter face/animation patterns older clients rely on;
- `voice_text`: the text with every tag removed, for speech and display.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

TAG_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
QUOTED_OR_PLAIN = r"""(?:[^<>"']|"[^"]*"|'[^']*')"""

BRACKET_TAG = re.compile(rf"\[({TAG_NAME}):([^\[\]]+)\]")
XML_TAG = re.compile(rf"<({TAG_NAME})((?:\s{QUOTED_OR_PLAIN}*?)?)\s*/?>")
XML_ATTRIBUTE = re.compile(r"""([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
ANY_TAG = re.compile(rf"{BRACKET_TAG.pattern}|{XML_TAG.pattern}")

# Registered tags and the attribute their bracket form's value fills.
VALUE_ATTRIBUTE = {"face": "name", "animation": "name", "artifact": "name", "vision": "source"}

# voice_text: any `[word:…]`, any opening tag with attributes, and a tag cut off at the end.
SPOKEN_TAG = re.compile(rf"\[\w+:[^\]]*\]|<{TAG_NAME}\s{QUOTED_OR_PLAIN}*>")
UNFINISHED_TAG = re.compile(
    r"(?:<(?:face|animation|vision|language|lang|artifact|tools|speed)\b[^>]*"
    r"|\[(?:face|animation|vision|language|lang|artifact|tools|speed):[^\]]*)\Z",
    re.IGNORECASE,
)

# The older, stricter patterns behind avatar_control_request (exact lower-case names,
# word-only values): `[Face:Joy]` is a control tag but does not move the face.
STRICT = {
    name: re.compile(rf"""\[{name}:(\w+)\]|<{name}\s[^>]*?name=["'](\w+)["'][^>]*>""")
    for name in ("face", "animation")
}
VISION = re.compile(r"""\[vision:(\w+)\]|<vision\s[^>]*?source=["'](\w+)["'][^>]*>""")
LANGUAGE = re.compile(
    r"""\[(?:language|lang):\s*([^\]\s]+)\s*\]|<(?:language|lang)\s[^>]*?code=["']([^"']+)["']""",
    re.IGNORECASE,
)
SPEED = re.compile(
    r"""\[speed:\s*([^\]\s]+)\s*\]|<speed\s[^>]*?value=["']([^"']+)["']""", re.IGNORECASE
)

CONTROL_DURATION = 4.0


@dataclass(frozen=True, slots=True)
class AvatarControl:
    animation_name: str | None = None
    animation_duration: float | None = None
    face_name: str | None = None
    face_duration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _xml_attributes(raw: str) -> dict[str, str] | None:
    """Attributes of an XML tag, or None when malformed (stray text, duplicate names)."""
    attributes: dict[str, str] = {}
    position = 0
    for match in XML_ATTRIBUTE.finditer(raw):
        if raw[position : match.start()].strip():
            return None
        name = match.group(1).lower()
        if name in attributes:
            return None
        attributes[name] = match.group(2) if match.group(2) is not None else match.group(3)
        position = match.end()
    if raw[position:].strip():
        return None
    return attributes


def _resolve_artifact(
    attributes: dict[str, Any], catalog: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """Catalog entry overlaid with the tag's attributes; its type and src cannot be overridden."""
    if "id" not in attributes:
        return attributes
    entry = catalog.get(attributes["id"])
    if entry is None:
        return None
    overlay = {k: v for k, v in attributes.items() if k not in ("id", "type", "src")}
    return {**entry, **overlay}


def control_tags(text: str, catalog: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Registered tags in source order, as `{"name", "attributes"}`; None when there are none."""
    found: list[dict[str, Any]] = []
    for match in ANY_TAG.finditer(text):
        if match.group(1) is not None:
            name = match.group(1).lower()
            if name not in VALUE_ATTRIBUTE:
                continue
            attributes: dict[str, Any] | None = {VALUE_ATTRIBUTE[name]: match.group(2).strip()}
        else:
            name = match.group(3).lower()
            if name not in VALUE_ATTRIBUTE:
                continue
            attributes = _xml_attributes(match.group(4))
            if attributes is None:
                continue
        if name == "artifact" and attributes is not None:
            attributes = _resolve_artifact(attributes, catalog)
            if attributes is None:
                continue
        found.append({"name": name, "attributes": attributes})
    return found or None


def avatar_control(text: str) -> AvatarControl:
    face = STRICT["face"].search(text)
    animation = STRICT["animation"].search(text)
    return AvatarControl(
        animation_name=(animation.group(1) or animation.group(2)) if animation else None,
        animation_duration=CONTROL_DURATION if animation else None,
        face_name=(face.group(1) or face.group(2)) if face else None,
        face_duration=CONTROL_DURATION if face else None,
    )


def without_tags(text: str) -> str:
    """The text with every tag removed (closing and bare tags such as `</answer>` stay)."""
    return SPOKEN_TAG.sub("", UNFINISHED_TAG.sub("", text))


def voice_text(text: str) -> str:
    """What is spoken: the text without tags, trimmed."""
    return without_tags(text).strip()


def language_of(text: str) -> str | None:
    match = LANGUAGE.search(text)
    return (match.group(1) or match.group(2)) if match else None


def speed_of(text: str) -> str | None:
    """The value of the last speech-speed tag (`[speed:1.5]`, `<speed value="1.5"/>`)."""
    found = [m.group(1) or m.group(2) for m in SPEED.finditer(text)]
    return found[-1] if found else None


def vision_source(text: str) -> str | None:
    """The source of the first vision request in a reply: the turn then ends with `vision`."""
    match = VISION.search(text)
    return (match.group(1) or match.group(2)) if match else None


class VoiceTags:
    """Speak only what is inside the character's voice tags.

    See docs/turn.md#thinking-aloud-voice-tags.

    With `names=["answer"]` and a reply `<think>plan</think><answer>Hi!</answer>`, only "Hi!"
    is spoken; segments outside every voice tag are shown (`text`) but not spoken
    (`voice_text` None). A `terminal` tag ends the reply at its first closing tag, so a model
    that repeats itself is not heard twice.
    """

    def __init__(self, names: list[str], terminal: str = "") -> None:
        self.names = names
        self.terminal = terminal
        self.open: str | None = None
        self.seen = False  # any voice tag at all in this reply
        self.ended = False  # the terminal tag closed: drop the rest

    def cut(self, segment: str) -> str:
        """The part of `segment` the reply keeps (nothing once the terminal tag closed)."""
        if self.ended:
            return ""
        if self.terminal:
            close = f"</{self.terminal}>"
            index = segment.find(close)
            if index >= 0:
                self.ended = True
                return segment[: index + len(close)]
        return segment

    def speak(self, segment: str) -> str | None:
        """The spoken part of `segment` (tags removed), or None when it is not to be spoken."""
        spoken: list[str] = []
        rest = segment
        while rest:
            if self.open is None:
                starts = [(rest.find(f"<{n}>"), n) for n in self.names if f"<{n}>" in rest]
                if not starts:
                    break
                index, name = min(starts)
                self.open, self.seen = name, True
                rest = rest[index + len(name) + 2 :]
            else:
                close = f"</{self.open}>"
                index = rest.find(close)
                if index < 0:
                    spoken.append(rest)
                    break
                spoken.append(rest[:index])
                rest = rest[index + len(close) :]
                self.open = None
        if not spoken:
            return None
        return voice_text("".join(spoken))
