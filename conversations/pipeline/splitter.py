"""Sentence splitting of streamed LLM text (docs/turn.md#sentences).

Deltas go in; complete segments come out as soon as they are known to be complete, so the
first sentence can be shown and spoken while the model is still writing the second.
"""

from __future__ import annotations

import re

from .tags import BRACKET_TAG

SPLIT_TOKENS = ("。", "？", "！", ". ", "?", "!", "\n")
COMMA_TOKENS = ("、", ", ")
COMMA_SPLIT_THRESHOLD = 50

# Any markup: opening (with quoted attributes), closing, or self-closing tag.
MARKUP = re.compile(r"""</?[A-Za-z_][\w-]*(?:\s(?:[^<>"']|"[^"]*"|'[^']*')*)?/?>""")
# A tag whose opening has arrived but not its end: hold it back until it is complete.
PARTIAL_MARKUP = re.compile(r"</?(?:[A-Za-z_][^<>]*)?\Z")
PARTIAL_BRACKET = re.compile(r"\[(?:[A-Za-z_]\w*(?::[^\[\]]*)?)?\Z")
OPENING_WITH_ATTRIBUTES = re.compile(r"<[A-Za-z_][\w-]*\s")


def visible_length(text: str) -> int:
    return len(BRACKET_TAG.sub("", MARKUP.sub("", text)))


def _run_end(text: str, index: int, tokens: tuple[str, ...]) -> int:
    """End of the run of delimiter tokens starting at `index` (so "?!" stays together)."""
    end = index
    while True:
        token = next((t for t in tokens if text.startswith(t, end)), None)
        if token is None:
            return end
        end += len(token)


class SentenceSplitter:
    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        segments, self._buffer = self._split(self._buffer, final=False)
        return segments

    def flush(self) -> list[str]:
        segments, rest = self._split(self._buffer, final=True)
        self._buffer = ""
        return [*segments, rest] if rest else segments

    @staticmethod
    def _split(buffer: str, *, final: bool) -> tuple[list[str], str]:
        segments: list[str] = []
        start = index = 0
        last_comma_end = 0
        held = False  # something at the end may still grow: never split the remainder now
        length = len(buffer)

        def cut(at: int) -> None:
            nonlocal start, last_comma_end
            if at > start:
                segments.append(buffer[start:at])
                start = at
            last_comma_end = 0

        while index < length:
            char = buffer[index]
            if char == "<":
                markup = MARKUP.match(buffer, index)
                if markup is None:
                    if not final and PARTIAL_MARKUP.match(buffer, index):
                        held = True
                        break
                    index += 1
                    continue
                if OPENING_WITH_ATTRIBUTES.match(buffer, index):
                    cut(index)  # a control tag starts the chunk it applies to
                index = markup.end()
                continue
            if char == "[":
                bracket = BRACKET_TAG.match(buffer, index)
                if bracket is not None:
                    cut(index)
                    index = bracket.end()
                    continue
                if not final and PARTIAL_BRACKET.match(buffer, index):
                    held = True
                    break
                index += 1
                continue
            run_end = _run_end(buffer, index, SPLIT_TOKENS)
            if run_end > index:
                # The run may continue in the next delta ("?" then "!", or "." then " ").
                may_grow = run_end == length or (run_end == length - 1 and buffer[run_end] == ".")
                if not final and may_grow:
                    held = True
                    break
                cut(run_end)
                index = run_end
                continue
            comma_end = _run_end(buffer, index, COMMA_TOKENS)
            if comma_end > index:
                if buffer[comma_end - 1] != " " and buffer.startswith(" ", comma_end):
                    comma_end += 1
                last_comma_end = comma_end
                index = comma_end
                continue
            index += 1

        if (
            not final
            and not held
            and last_comma_end > start
            and visible_length(buffer[start:]) > COMMA_SPLIT_THRESHOLD
        ):
            cut(last_comma_end)
        return segments, buffer[start:]
