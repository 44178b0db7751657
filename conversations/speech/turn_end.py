"""Semantic end of turn: whether a pause ends what the user is saying
(docs/turn.md#semantic-end-of-turn).

The voice activity detector proposes an end after REALTIME_VAD_SILENCE_SECONDS of silence; a
character's *turn-end hook* (`VoiceSettings.turn_end_hook`, a dotted path) may answer "not
yet", and the detector keeps listening until the user speaks again (then the next pause is
asked about) or REALTIME_TURN_END_WAIT_SECONDS more of silence have passed.

A hook is `async def hook(session_id: str, audio: bytes) -> bool`: `audio` is the utterance so
far (PCM16LE, mono, 16 kHz, the pause included); True ends the turn. The built-in one,
`smart_turn`, asks pipecat's Smart Turn v3 model: its ONNX file ships in the `pipecat-ai`
wheel (installed without its dependencies, as silero-vad is) and runs on ONNX Runtime with
Whisper's log-mel features from faster-whisper's own extractor.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, cast

import numpy as np
import onnxruntime
from django.utils.module_loading import import_string

from characters.hooks import async_function

from .audio import pcm_to_float

TurnEndHook = Callable[[str, bytes], Awaitable[bool]]

SMART_TURN = "conversations.speech.turn_end.smart_turn"
BUILT_IN_HOOKS = (SMART_TURN,)

SMART_TURN_SECONDS = 8  # the model hears the last 8 s (zeros before shorter audio)
SMART_TURN_RATE = 16000
SMART_TURN_THRESHOLD = 0.5  # probability of "complete" above which the turn ends

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")


def turn_end_hook(path: str) -> TurnEndHook:
    """The hook at `path`: a built-in one, or an async function of one of the modules
    STT_HOOK_MODULES lists (operators' own code); ValueError says why not."""
    if path in BUILT_IN_HOOKS:
        return cast(TurnEndHook, import_string(path))
    try:
        return cast(TurnEndHook, async_function(path, "STT_HOOK_MODULES"))
    except ValueError as exc:
        raise ValueError(f"{exc} The built-in {SMART_TURN} may be named too.") from exc


def smart_turn_model_path() -> str:
    """The Smart Turn ONNX file in the pipecat-ai wheel, found without importing pipecat."""
    try:
        dist = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            "Smart Turn needs the pipecat-ai package: `pip install --no-deps pipecat-ai` "
            "(make run and make test do)."
        ) from exc
    models = sorted(
        str(file)
        for file in dist.files or ()
        if "/smart_turn/data/" in str(file) and str(file).endswith(".onnx")
    )
    if not models:
        raise RuntimeError("The installed pipecat-ai ships no Smart Turn model.")
    return str(dist.locate_file(models[-1]))


@cache
def _model() -> tuple[onnxruntime.InferenceSession, Any]:
    from faster_whisper.feature_extractor import FeatureExtractor

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        smart_turn_model_path(), options, providers=["CPUExecutionProvider"]
    )
    return session, FeatureExtractor(feature_size=80, chunk_length=SMART_TURN_SECONDS)


def smart_turn_probability(pcm: bytes) -> float:
    """How likely the speech in `pcm` (PCM16LE, 16 kHz) is a finished turn, 0 to 1."""
    session, extractor = _model()
    samples = SMART_TURN_SECONDS * SMART_TURN_RATE
    audio = pcm_to_float(pcm)[-samples:]
    audio = np.pad(audio, (samples - len(audio), 0))
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)  # Whisper's normalisation
    features = extractor(audio, padding=0)[:, : samples // extractor.hop_length]
    (probabilities,) = session.run(None, {"input_features": features[None].astype(np.float32)})
    return float(probabilities[0, 0])


async def smart_turn(session_id: str, audio: bytes) -> bool:
    """The built-in hook: Smart Turn v3 says the turn is complete."""
    loop = asyncio.get_running_loop()
    probability = await loop.run_in_executor(_executor, smart_turn_probability, audio)
    return probability > SMART_TURN_THRESHOLD
