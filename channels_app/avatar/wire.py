"""avatar-chat-server's JSON messages, as this server writes them (docs/avatar.md#messages)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from conversations.avatar.animator import FPS, SAMPLE_RATE, FaceFrame

PCM_FORMAT = "audio/pcm16"


def now_ms() -> int:
    return int(time.time() * 1000)


def message(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields, "timestamp": now_ms()}, ensure_ascii=False)


def config(input_rate: int, engine: str) -> str:
    return message(
        "config",
        protocol="acs-1",
        audio={
            "inputSampleRate": input_rate,
            "outputSampleRate": SAMPLE_RATE,
            "format": PCM_FORMAT,
        },
        animation={
            "fps": FPS,
            "samplesPerFrame": SAMPLE_RATE // FPS,
            "weights": "arkit52-object",
            "engine": engine,
        },
        features=["interrupt.offsetMs", "transcript.turnRelativeOffsets"],
    )


def sync_frame(frame: FaceFrame, session_id: str, turn_id: str) -> str:
    return message(
        "sync_frame",
        weights=frame.weights_object(),
        audio=base64.b64encode(frame.pcm).decode(),
        sessionId=session_id,
        turnId=turn_id,
        frameIndex=frame.index,
        ptsMs=round(frame.pts_ms()),
        viseme=frame.viseme or "sil",
    )


def error(code: str, text: str, turn_id: str | None = None) -> str:
    extra = {"turnId": turn_id} if turn_id else {}
    return message("error", code=code, message=text, **extra)
