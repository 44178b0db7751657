"""The Live Avatar Channel protocol's pieces without a platform: the audio frame header against
the protocol's golden vectors, the session start's answers, and the jitter buffer."""

from __future__ import annotations

import pytest

from channels_app.liveavatar.protocol import AudioFrame, FrameError, Reorder, Started, StartError


@pytest.mark.parametrize(
    ("frame", "header"),
    [
        (AudioFrame(0, 0, 24000, 960, bytes(1920), key=True), "50 00 00 00 04 f0 00 07 80"),
        (AudioFrame(1, 40, 24000, 960, bytes(1920)), "40 01 00 02 84 f0 00 07 80"),
        (AudioFrame(4095, 1048575, 16000, 640, bytes(1280)), "4f ff ff ff f0 a0 00 05 00"),
    ],
)
def test_audio_frame_headers_match_the_golden_vectors(frame: AudioFrame, header: str) -> None:
    packed = frame.pack()
    assert packed[:9].hex(" ") == header
    assert AudioFrame.unpack(packed + b"trailing bytes are ignored") == frame


def test_sequence_numbers_and_timestamps_wrap() -> None:
    frame = AudioFrame(4096 + 5, (1 << 20) + 7, 48000, 1920, bytes(3840))
    unpacked = AudioFrame.unpack(frame.pack())
    assert (unpacked.seq, unpacked.timestamp, unpacked.sample_rate) == (5, 7, 48000)


@pytest.mark.parametrize(
    "data",
    [
        b"\x40\x00",  # shorter than a header
        bytes.fromhex("80 55 00 01 05 00 02 d0 00 00 03 e8"),  # an image frame
        bytes.fromhex("40 00 00 00 0c f0 00 07 80"),  # rate code 11
        bytes.fromhex("40 00 00 00 04 f0 00 07 80") + bytes(10),  # payload short of L
    ],
)
def test_a_malformed_frame_is_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        AudioFrame.unpack(data)


def test_session_start_answers() -> None:
    data = {"sessionId": "s", "userToken": "t", "sfuUrl": "wss://x", "agentWsUrl": "ws://y"}
    assert Started.parse({"code": 0, "data": data}) == Started("s", "t", "wss://x", "ws://y")
    for code, name, retry in (
        (40002, "NO_RENDERER_POD", True),
        (40004, "PRINCIPAL_UNIDENTIFIED", False),
    ):
        with pytest.raises(StartError) as refused:
            Started.parse({"code": code, "message": "no"})
        assert (refused.value.name, refused.value.retry) == (name, retry)
    # No agentWsUrl: the avatar is not set up for a WebSocket agent.
    with pytest.raises(StartError, match="agentWsUrl"):
        Started.parse({"code": 0, "data": {**data, "agentWsUrl": None}})
    with pytest.raises(StartError):
        Started.parse(["not", "an", "object"])


def _frame(seq: int, timestamp: int) -> AudioFrame:
    return AudioFrame(seq, timestamp, 16000, 1, b"\x00\x00")


def test_the_jitter_buffer_orders_frames_drops_repeats_and_late_ones() -> None:
    reorder = Reorder(depth=2)
    out: list[AudioFrame] = []
    # Across the timestamp wrap, one frame late, one repeated.
    for seq, ts in ((0, 1048500), (2, 4), (1, 1048540), (1, 1048540), (3, 44), (4, 84)):
        out += reorder.push(_frame(seq, ts))
    assert [f.seq for f in out] == [0, 1, 2]
    # A frame older than one already passed on is too late to be used.
    assert reorder.push(_frame(9, 1048520)) == []
