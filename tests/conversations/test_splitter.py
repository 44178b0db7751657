"""Sentence splitting of streamed text (docs/turn.md#sentences)."""

from __future__ import annotations

import re

import pytest

from conversations.pipeline.splitter import SentenceSplitter


def split(deltas: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    segments = [segment for delta in deltas for segment in splitter.feed(delta)]
    return segments + splitter.flush()


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def characters(text: str) -> list[str]:
    return list(text)


@pytest.mark.parametrize("chop", [words, characters], ids=["word-deltas", "char-deltas"])
def test_it_splits_sentences_and_before_control_tags(chop) -> None:
    text = '[face:joy]Hello! <animation name="wave" />Nice to meet you. [language:en-US]Bye.'

    assert split(chop(text)) == [
        "[face:joy]Hello!",
        " ",
        '<animation name="wave" />Nice to meet you. ',
        "[language:en-US]Bye.",
    ]


@pytest.mark.parametrize("chop", [words, characters], ids=["word-deltas", "char-deltas"])
def test_it_passes_the_specs_acceptance_stream(chop) -> None:
    text = (
        "<think>plan</think><answer>[face:joy]Hi there! The URL is <artifact src='a?b'/> ok. "
        "Long sentence, with commas, that exceeds fifty visible characters, really</answer>"
    )

    segments = split(chop(text))

    assert "".join(segments) == text
    assert "[face:joy]Hi there!" in segments
    assert "<artifact src='a?b'/> ok. " in segments
    assert segments[segments.index("<artifact src='a?b'/> ok. ") + 1].endswith("with commas, ")


def test_it_keeps_a_run_of_delimiters_together() -> None:
    assert split(["Really?", "!", " Yes", "。。", "Next"]) == [
        "Really?!",
        " Yes。。",
        "Next",
    ]


def test_it_does_not_split_decimal_points() -> None:
    assert split(["Pi is 3", ".", "14 exactly. ", "Ok"]) == ["Pi is 3.14 exactly. ", "Ok"]


def test_it_splits_japanese_punctuation() -> None:
    assert split(["こんにちは。元気", "ですか？", "はい！"]) == [
        "こんにちは。",
        "元気ですか？",
        "はい！",
    ]


def test_it_holds_an_unfinished_tag_until_it_closes() -> None:
    splitter = SentenceSplitter()

    assert splitter.feed("Look <artifact src='https://x/?a=1") == []
    assert splitter.feed("!' /> here. Done") == [
        "Look ",
        "<artifact src='https://x/?a=1!' /> here. ",
    ]
    assert splitter.flush() == ["Done"]


def test_it_falls_back_to_the_last_comma_in_a_long_sentence() -> None:
    long = "This clause is long, and this one is longer still, so it must break somewhere soon"

    segments = split(words(long))

    assert segments[0] == "This clause is long, and this one is longer still, "
    assert "".join(segments) == long


def test_it_ignores_lone_angle_brackets_and_brackets() -> None:
    assert split(["1 < 2 and [x] is fine. ", "End"]) == ["1 < 2 and [x] is fine. ", "End"]
