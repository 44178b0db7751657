"""LINE webhooks end to end: daphne, a Celery worker, the real line-bot-sdk and a fake LINE.

Over ~400 lines on purpose: the webhook's end-to-end behaviours (event kinds, groups,
redelivery, replies and pushes) are one surface, tested through one live stack.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from typing import Any

import av
import httpx
import numpy as np
import pytest
from django.utils import timezone

from characters.models import Character
from conversations.line.handling import STT_NOT_CONFIGURED, UNREADABLE_AUDIO
from conversations.line.models import LineChannel, LineEvent
from conversations.models import ChannelIdentity, Context, EndUser, Message, TurnRecord
from conversations.speech.models import STTProvider, VoiceSettings
from tests.conversations.line.conftest import LineStack, wait_for_events
from tests.fakes.line_server import (
    FakeLine,
    event,
    message_event,
    post_webhook,
    text_event,
    user_id,
    webhook_body,
)
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.speech.audio import utterance
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TAGGED = '[face:joy]Hello there! <animation name="wave" />Nice to meet you.'


def last_user_content(fake_llm: FakeOpenAI) -> Any:
    return fake_llm.requests[-1]["messages"][-1]["content"]


def test_it_replies_once_with_the_llm_text_without_tags(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text=TAGGED))

    response = post_webhook(line_stack.webhook_url(), [text_event("こんにちは", reply_token="rt1")])

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "queued": 1}
    calls = fake_line.wait_for(lambda calls: len(calls.delivered()) == 1)
    [reply] = calls.replies()
    assert reply.body["replyToken"] == "rt1"
    assert reply.texts == ["Hello there! Nice to meet you."]
    assert reply.headers["Authorization"] == "Bearer fake-line-channel-access-token"
    assert [c.body for c in calls.loadings()] == [{"chatId": user_id(), "loadingSeconds": 20}]
    assert last_user_content(fake_llm) == "こんにちは"
    [row] = wait_for_events(1)
    assert row.status == LineEvent.Status.DONE and row.source_id == user_id()
    assert ChannelIdentity.objects.get().external_id == user_id()
    record = TurnRecord.objects.get()
    assert record.channel == "line" and record.status == TurnRecord.Status.COMPLETED


def test_it_does_not_answer_a_redelivered_event_twice(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    first = text_event("Hi", event_id="01REDELIVERED0000000000000")
    post_webhook(line_stack.webhook_url(), [first])
    fake_line.wait_for(lambda calls: len(calls.replies()) == 1)

    again = {**first, "deliveryContext": {"isRedelivery": True}}
    assert post_webhook(line_stack.webhook_url(), [again]).status_code == 200

    wait_until(lambda: LineEvent.objects.filter(duplicates=1).exists(), "the duplicate")
    assert len(fake_line.calls.delivered()) == 1
    assert len(fake_llm.requests) == 1
    assert TurnRecord.objects.count() == 1


def test_it_answers_once_when_two_workers_get_the_same_event_at_once(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    # The LLM is slow (within the tests' 1 s LLM timeout), so the second delivery reaches the
    # other worker process while the first is still in its turn.
    fake_llm.script(ScriptedReply(text="Only once.", delay=0.5))
    same = text_event("Hi")

    for _ in range(2):
        assert post_webhook(line_stack.webhook_url(), [same]).status_code == 200

    wait_until(lambda: LineEvent.objects.filter(duplicates=1).exists(), "the duplicate")
    [row] = wait_for_events(1)
    assert row.status == LineEvent.Status.DONE
    assert [c.texts for c in fake_line.calls.delivered()] == [["Only once."]]


def test_it_pushes_when_the_reply_token_has_expired(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:sad]Sorry I am late."))
    fake_line.expire("rt-old")

    post_webhook(line_stack.webhook_url(), [text_event("Are you there?", reply_token="rt-old")])

    calls = fake_line.wait_for(lambda calls: len(calls.pushes()) == 1)
    assert calls.to("/v2/bot/message/reply", status=400)[0].body["replyToken"] == "rt-old"
    [push] = calls.pushes()
    assert push.body["to"] == user_id()
    assert push.texts == ["Sorry I am late."]
    assert push.headers["X-Line-Retry-Key"]
    [row] = wait_for_events(1)
    assert "reply refused (Invalid reply token)" in row.outcome


@pytest.mark.parametrize(
    "signature",
    [None, "", "bm90IHRoZSBzaWduYXR1cmU=", "wrong"],
    ids=["missing", "empty", "other", "garbage"],
)
def test_it_refuses_a_bad_signature_and_queues_nothing(
    line_stack: LineStack,
    line_channel: LineChannel,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
    signature: str | None,
) -> None:
    forged = text_event("forged", event_id="01FORGED000000000000000000")
    body = webhook_body([forged])
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Line-Signature"] = signature

    response = httpx.post(line_stack.webhook_url(), content=body, headers=headers)

    assert response.status_code == 400
    assert response.json() == {"detail": "Missing or invalid X-Line-Signature header."}
    # A genuine event sent afterwards is handled; the forged one, queued first, would have
    # reached the worker before it.
    post_webhook(line_stack.webhook_url(), [text_event("genuine")])
    fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    [row] = wait_for_events(1)
    assert row.webhook_event_id != forged["webhookEventId"]
    assert [m["messages"][-1]["content"] for m in fake_llm.requests] == ["genuine"]


def test_it_refuses_a_body_signed_with_another_secret(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    response = post_webhook(line_stack.webhook_url(), [text_event("hi")], secret="not-ours")

    assert response.status_code == 400
    assert "X-Line-Signature" in response.json()["detail"]


def test_it_acknowledges_the_consoles_verify_request_and_knows_its_channels(
    line_stack: LineStack, line_channel: LineChannel
) -> None:
    assert post_webhook(line_stack.webhook_url(), []).json() == {"status": "ok", "queued": 0}
    # AIAvatarKit's /webhook reaches the default channel.
    assert post_webhook(line_stack.webhook_url(None), []).status_code == 200
    unknown = post_webhook(line_stack.webhook_url("nobody"), [])
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Unknown LINE channel 'nobody'."}


def test_it_rejects_a_signed_body_that_is_not_a_webhook(
    line_stack: LineStack, line_channel: LineChannel
) -> None:
    from tests.fakes.line_server import CHANNEL_SECRET, signature

    body = b'{"events": "nope"}'
    response = httpx.post(
        line_stack.webhook_url(),
        content=body,
        headers={"X-Line-Signature": signature(CHANNEL_SECRET, body)},
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "Expected a JSON object with an `events` array."}


def test_it_refuses_a_signed_body_with_text_no_column_can_store(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    from tests.fakes.line_server import CHANNEL_SECRET, signature

    # Escaped, as JSON on the wire spells a lone surrogate.
    body = json.dumps({"events": [text_event("\udfff \x00")]}).encode()
    response = httpx.post(
        line_stack.webhook_url(),
        content=body,
        headers={"X-Line-Signature": signature(CHANNEL_SECRET, body)},
    )

    assert response.status_code == 400
    assert "contains" in response.json()["detail"]
    assert not LineEvent.objects.exists()


def test_it_gives_the_llm_the_image_the_user_sent(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
    fake_line.add_content("9001", jpeg, "image/jpeg")
    image = message_event({"type": "image", "id": "9001", "contentProvider": {"type": "line"}})

    post_webhook(line_stack.webhook_url(), [image])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    assert [c.path for c in calls.contents()] == ["/v2/bot/message/9001/content"]
    [part] = [p for p in last_user_content(fake_llm) if p["type"] == "image_url"]
    assert part["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def voice_event(message_id: str) -> dict:
    return message_event(
        {"type": "audio", "id": message_id, "duration": 900, "contentProvider": {"type": "line"}}
    )


def m4a(pcm: bytes, rate: int = 16000) -> bytes:
    """AAC in an MP4 container, as the LINE app records voice messages."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def test_it_transcribes_a_voice_message_and_answers_it(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    fake_line.add_content("9003", m4a(utterance().pcm), "audio/m4a")

    post_webhook(line_stack.webhook_url(), [voice_event("9003")])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    heard = fake_llm.requests[-1]["messages"][-1]["content"]
    assert "capital of france" in heard.lower()  # espeak-ng's question, heard by whisper
    assert calls.replies()[0].texts[0].startswith("You said:")


def test_it_says_when_a_voice_message_cannot_be_read(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    fake_line.add_content("9004", b"not audio at all", "audio/m4a")

    post_webhook(line_stack.webhook_url(), [voice_event("9004")])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    assert calls.replies()[0].texts == [UNREADABLE_AUDIO]
    assert fake_llm.requests == []


def test_it_answers_a_voice_message_saying_speech_to_text_is_not_configured(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    VoiceSettings.objects.create(character=character, stt_provider=STTProvider.NONE)
    fake_line.add_content("9002", b"fake-m4a", "audio/m4a")

    post_webhook(
        line_stack.webhook_url(),
        [
            message_event(
                {
                    "type": "audio",
                    "id": "9002",
                    "duration": 900,
                    "contentProvider": {"type": "line"},
                }
            )
        ],
    )

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    assert [c.path for c in calls.contents()] == ["/v2/bot/message/9002/content"]
    assert calls.replies()[0].texts == [STT_NOT_CONFIGURED]
    assert fake_llm.requests == []


def test_it_creates_the_end_user_and_greets_on_follow(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    character.greeting = "[face:joy]Welcome! I'm Mia."
    character.save()
    follow = event("follow", user=user_id(7), follow={"isUnblocked": False})

    post_webhook(line_stack.webhook_url(), [follow])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    assert calls.replies()[0].texts == ["Welcome! I'm Mia."]
    identity = ChannelIdentity.objects.get(channel="line", external_id=user_id(7))
    assert identity.end_user.metadata["line"]["mia"]["following"] is True
    assert fake_llm.requests == []

    post_webhook(line_stack.webhook_url(), [event("unfollow", user=user_id(7))])

    wait_for_events(2)
    identity.end_user.refresh_from_db()
    assert identity.end_user.metadata["line"]["mia"]["following"] is False
    assert EndUser.objects.count() == 1


def test_it_sends_the_apology_when_the_provider_fails(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    character.apology = "Oops, my head is foggy. Try again?"
    character.save()
    fake_llm.script(ScriptedReply(status=500, repeat=5))

    post_webhook(line_stack.webhook_url(), [text_event("Hello?")])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 1)
    assert calls.replies()[0].texts == ["Oops, my head is foggy. Try again?"]
    [row] = wait_for_events(1)
    assert row.status == LineEvent.Status.FAILED and "apology" in row.outcome
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED
    assert not Message.objects.exists()


def test_it_continues_the_conversation_until_it_has_been_idle_too_long(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    post_webhook(line_stack.webhook_url(), [text_event("My name is Ada.")])
    wait_for_events(1)
    post_webhook(line_stack.webhook_url(), [text_event("What is my name?")])
    wait_for_events(2)

    context = Context.objects.get()
    assert context.message_count == 4 and context.channel == "line"
    assert fake_line.calls.replies()[-1].texts == [
        "You said: What is my name?. I have seen 2 user messages."
    ]

    Context.objects.update(updated_at=timezone.now() - timedelta(seconds=3601))
    post_webhook(line_stack.webhook_url(), [text_event("Hello again.")])
    wait_for_events(3)

    assert Context.objects.count() == 2
    assert fake_line.calls.replies()[-1].texts == [
        "You said: Hello again.. I have seen 1 user messages."
    ]


def test_it_reads_stickers_locations_and_postbacks_to_the_llm(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    sticker = message_event(
        {
            "type": "sticker",
            "packageId": "1",
            "stickerId": "2",
            "stickerResourceType": "STATIC",
            "keywords": ["happy", "cat"],
        }
    )
    location = message_event(
        {
            "type": "location",
            "title": "Tokyo Tower",
            "address": "Minato, Tokyo",
            "latitude": 35.6586,
            "longitude": 139.7454,
        }
    )
    postback = event("postback", postback={"data": "action=menu&item=tea"})

    post_webhook(line_stack.webhook_url(), [sticker, location, postback])

    fake_line.wait_for(lambda calls: len(calls.replies()) == 3)
    prompts = [r["messages"][-1]["content"] for r in fake_llm.requests]
    assert prompts == [
        "(The user sent a sticker: happy, cat.)",
        "(The user shared a location: Tokyo Tower, Minato, Tokyo at latitude 35.6586, "
        "longitude 139.7454.)",
        "(The user chose: action=menu&item=tea.)",
    ]


def test_it_splits_long_replies_and_pushes_past_five_messages(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    sentence = "This sentence is exactly fifty characters long ok. "
    fake_llm.script(ScriptedReply(chunks=[sentence * 60] * 10))  # 30,000 characters

    post_webhook(line_stack.webhook_url(), [text_event("Tell me everything.")])

    calls = fake_line.wait_for(lambda calls: len(calls.delivered()) == 2)
    [reply], [push] = calls.replies(), calls.pushes()
    texts = reply.texts + push.texts
    assert len(reply.texts) == 5 and len(push.texts) == 2
    assert all(len(t) <= 5000 for t in texts)
    assert all(t.endswith("long ok.") for t in texts)
    assert " ".join(texts) == (sentence * 600).strip()


def test_it_picks_the_icon_by_face_and_sends_images_the_character_shows(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    character.face_icons = {
        "joy": "https://cdn.example.com/mia-joy.png",
        "neutral": "https://cdn.example.com/mia.png",
    }
    character.save()
    fake_llm.script(
        ScriptedReply(
            text='[face:joy]Look at my cat! <artifact type="image" '
            'src="https://cdn.example.com/cat.jpg" />'
        ),
        ScriptedReply(text="Nothing special."),
    )

    post_webhook(line_stack.webhook_url(), [text_event("Show me")])
    post_webhook(line_stack.webhook_url(), [text_event("And now?")])

    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 2)
    first, second = (c.body["messages"] for c in calls.replies())
    assert first == [
        {
            "type": "text",
            "text": "Look at my cat!",
            "sender": {"name": "Mia", "iconUrl": "https://cdn.example.com/mia-joy.png"},
        },
        {
            "type": "image",
            "originalContentUrl": "https://cdn.example.com/cat.jpg",
            "previewImageUrl": "https://cdn.example.com/cat.jpg",
            "sender": {"name": "Mia", "iconUrl": "https://cdn.example.com/mia-joy.png"},
        },
    ]
    assert second[0]["sender"]["iconUrl"] == "https://cdn.example.com/mia.png"


def test_it_answers_in_groups_only_when_mentioned(
    line_stack: LineStack,
    line_channel: LineChannel,
    character: Character,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    character.greeting = "Hello everyone!"
    character.save()
    group = {"type": "group", "groupId": "C" + "1" * 32, "userId": user_id(2)}
    join = event("join", source=group)
    chatter = message_event({"type": "text", "text": "lunch?"}, source=group)
    mention = {"mentionees": [{"type": "user", "index": 0, "length": 4, "isSelf": True}]}
    asked = message_event(
        {"type": "text", "text": "@Mia what's up?", "mention": mention}, source=group
    )

    post_webhook(line_stack.webhook_url(), [join, chatter, asked])

    rows = wait_for_events(3)
    calls = fake_line.wait_for(lambda calls: len(calls.replies()) == 2)
    assert [r.status for r in rows] == ["done", "ignored", "done"]
    assert calls.replies()[0].texts == ["Hello everyone!"]
    assert last_user_content(fake_llm) == "what's up?"
    assert calls.loadings() == []  # LINE shows it in one-to-one chats only
    assert ChannelIdentity.objects.get().channel == "line-group"


def test_it_records_events_it_does_not_handle(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    unknown = event("somethingNew")
    broken = {**text_event("x"), "message": {"type": "text"}}  # no id, text or quoteToken
    standby = {**text_event("handed over"), "mode": "standby"}  # another module answers

    response = post_webhook(line_stack.webhook_url(), [unknown, broken, standby])

    assert response.status_code == 200
    rows = wait_for_events(3)
    assert [r.status for r in rows] == ["ignored", "ignored", "ignored"]
    assert rows[2].outcome.startswith("standby mode")
    assert fake_line.calls == []


def test_it_pushes_with_a_retry_key_that_survives_a_lost_answer(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, fake_llm: FakeOpenAI
) -> None:
    fake_line.expire("rt-gone")
    fake_line.fail("/v2/bot/message/push", 500)

    post_webhook(line_stack.webhook_url(), [text_event("Hi", reply_token="rt-gone")])

    calls = fake_line.wait_for(lambda calls: len(calls.pushes()) == 1)
    failed = calls.to("/v2/bot/message/push", status=500)
    assert failed[0].headers["X-Line-Retry-Key"] == calls.pushes()[0].headers["X-Line-Retry-Key"]
    assert wait_for_events(1)[0].status == LineEvent.Status.DONE


def test_it_keeps_secrets_and_tracebacks_out_of_the_logs(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    post_webhook(line_stack.webhook_url(), [text_event("Hi")])
    wait_for_events(1)

    # Whatever ran before in this session, nothing crashed inside daphne or the worker.
    assert "Traceback" not in line_stack.logs()
    assert "fake-line-channel-access-token" not in line_stack.logs()
    assert "fake-line-channel-secret" not in line_stack.logs()
    assert "fake-line" not in str(list(LineChannel.objects.values()))
