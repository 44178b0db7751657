"""How replies are cut to LINE's limits, and which icon they carry."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from characters.models import Character
from conversations.line.replies import compose, split_text, utf16_length


def test_it_keeps_short_text_whole() -> None:
    assert split_text("  Hello there.  ") == ["Hello there."]
    assert split_text("") == []


def test_it_cuts_at_a_line_break_then_a_sentence_then_a_space() -> None:
    assert split_text("aaaa bbbb\ncc dd", limit=12) == ["aaaa bbbb", "cc dd"]
    assert split_text("One two. Three four five", limit=14) == ["One two.", "Three four", "five"]
    assert split_text("一二三四。五六七八。", limit=7) == ["一二三四。", "五六七八。"]


def test_it_cuts_hard_when_there_is_no_break_and_never_splits_an_emoji() -> None:
    assert split_text("x" * 12, limit=5) == ["xxxxx", "xxxxx", "xx"]
    pieces = split_text("😀" * 5, limit=5)  # each emoji is two UTF-16 units
    assert pieces == ["😀😀", "😀😀", "😀"]
    assert all(utf16_length(p) <= 5 for p in pieces)


def test_it_uses_the_neutral_icon_when_the_face_has_none() -> None:
    mia = Character(name="Mia", face_icons={"neutral": "https://x/n.png", "joy": "https://x/j.png"})

    [joy] = compose(mia, "[face:joy]Yay!")
    [angry] = compose(mia, "[face:angry]Hmph.")
    [plain] = compose(Character(name="Mia"), "[face:joy]Yay!")

    assert joy.sender.icon_url == "https://x/j.png" and joy.text == "Yay!"
    assert angry.sender.icon_url == "https://x/n.png"
    assert plain.sender is None


def test_it_leaves_out_images_line_cannot_fetch() -> None:
    mia = Character(
        name="Mia", artifact_catalog={"map": {"type": "image", "src": "http://x/m.png"}}
    )

    messages = compose(mia, 'Here. <artifact id="map" />')

    assert [m.type for m in messages] == ["text"]


def test_it_accepts_only_https_face_icons() -> None:
    mia = Character(slug="mia", name="Mia", face_icons={"joy": "http://x/j.png"})

    with pytest.raises(ValidationError) as excinfo:
        mia.clean_fields()

    assert "face_icons" in excinfo.value.message_dict
