"""Control tags, avatar_control_request and voice_text (docs/wire-protocols.md#control-tags)."""

from __future__ import annotations

from conversations.pipeline.tags import (
    VoiceTags,
    avatar_control,
    control_tags,
    language_of,
    vision_source,
    voice_text,
)


def test_it_reads_both_tag_forms_in_source_order() -> None:
    text = '<face name="joy" />Hi [animation:wave_hands] [vision:camera] <lang code="ja-JP" />'

    assert control_tags(text, {}) == [
        {"name": "face", "attributes": {"name": "joy"}},
        {"name": "animation", "attributes": {"name": "wave_hands"}},
        {"name": "vision", "attributes": {"source": "camera"}},
    ]


def test_it_keeps_loose_tags_out_of_avatar_control_request() -> None:
    text = "[Face:Joy]Hi [animation:very-happy]"

    assert control_tags(text, {}) == [
        {"name": "face", "attributes": {"name": "Joy"}},
        {"name": "animation", "attributes": {"name": "very-happy"}},
    ]
    assert avatar_control(text).as_dict() == {
        "animation_name": None,
        "animation_duration": None,
        "face_name": None,
        "face_duration": None,
    }


def test_it_fills_avatar_control_request_from_strict_tags() -> None:
    control = avatar_control("<animation name='wave' />[face:joy] and [face:sorrow]")

    assert (control.face_name, control.face_duration) == ("joy", 4.0)
    assert (control.animation_name, control.animation_duration) == ("wave", 4.0)


def test_it_ignores_malformed_xml_tags() -> None:
    assert control_tags('<face name="a" name="b" /><face oops name="c" />', {}) is None


def test_it_resolves_artifacts_from_the_catalog() -> None:
    catalog = {"known": {"type": "slides", "src": "/deck.pdf", "slide": 1}}
    text = (
        '<artifact id="known" slide="3" src="/evil" />'
        '<artifact id="unknown" /><artifact action="clear" />'
    )

    assert control_tags(text, catalog) == [
        {"name": "artifact", "attributes": {"type": "slides", "src": "/deck.pdf", "slide": "3"}},
        {"name": "artifact", "attributes": {"action": "clear"}},
    ]


def test_it_speaks_text_without_tags() -> None:
    assert voice_text(' [face:joy]Hello <face name="x" />there [any:thing]!  ') == "Hello there !"
    assert voice_text("<answer>Keep</answer> closing tags") == "<answer>Keep</answer> closing tags"
    assert voice_text("Cut the tail <animation name='wa") == "Cut the tail"


def test_it_finds_the_language_and_vision_request() -> None:
    assert language_of('Hi <language code="en-US" />') == "en-US"
    assert language_of("[lang:ja-JP]こんにちは") == "ja-JP"
    assert language_of("no tag") is None
    assert vision_source("Let me look. <vision source='camera' />") == "camera"
    assert vision_source("[vision:screen-shot]") is None


def test_voice_tags_speak_only_inside_them() -> None:
    tags = VoiceTags(["ack", "answer"])

    assert tags.speak("<think>plan. ") is None
    assert tags.speak("more plan</think><ack>Sure!</ack>") == "Sure!"
    assert tags.speak("<answer>[face:joy]It is ") == "It is"
    assert tags.speak("sunny.") == "sunny."
    assert tags.speak("</answer> trailing") == ""  # inside until the close: nothing left
    assert tags.seen


def test_a_terminal_voice_tag_ends_the_reply() -> None:
    tags = VoiceTags(["answer"], terminal="answer")

    assert tags.cut("<answer>Hi.</answer> <answer>Hi.") == "<answer>Hi.</answer>"
    assert tags.cut("</answer> more") == ""
