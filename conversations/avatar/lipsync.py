"""Mouth engines: 52 ARKit weights per frame of speech.

`EnergyMouth` needs no model: the loudness of each frame opens the mouth (gate at -55 dBFS,
fully open at -20 dBFS, fast attack, slower release that speeds up in digital silence so the
mouth shuts within about 100 ms), and the viseme of the phoneme being spoken shapes it.
`OnnxMouth` runs any audio-to-ARKit model the operator provides: float32 16 kHz audio
`[1, N]` in, `[1, T, 52]` out (the common Wav2Arkit-style signature)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime
import soxr

from . import arkit

logger = logging.getLogger(__name__)

GATE_DB = -55.0
FULL_DB = -20.0
ATTACK = 0.6
RELEASE = 0.5
SILENT_RELEASE = 0.7  # below the gate: close faster, so silence really rests
REST = 0.01  # openness under this is a closed mouth
ONNX_RATE = 16000

# Mouth opening common to every sound; a viseme adds its own shape on top.
_OPEN = arkit.vector({"jawOpen": 0.325, "mouthLowerDown*": 0.15, "mouthUpperUp*": 0.05})
_VISEME_GAIN = 0.8


class MouthEngine(Protocol):
    name: str

    def shapes(self, frames: np.ndarray, sample_rate: int, visemes: list[str | None]) -> np.ndarray:
        """`frames`: (n, samples) float32 in [-1, 1]; visemes: one per frame, None when
        unknown. Returns (n, 52) float32 weights in [0, 1]."""
        ...


def openness(frames: np.ndarray) -> np.ndarray:
    """Per frame: 0 at or below the gate, 1 at full loudness, perceptually curved."""
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    db = 20.0 * np.log10(rms + 1e-9)
    return np.asarray(np.clip((db - GATE_DB) / (FULL_DB - GATE_DB), 0.0, 1.0) ** 0.8)


class EnergyMouth:
    """Stateful across calls within one turn (the smoothing carries over sentence joins)."""

    name = "energy"

    def __init__(self) -> None:
        self.level = 0.0

    def shapes(self, frames: np.ndarray, sample_rate: int, visemes: list[str | None]) -> np.ndarray:
        out = np.zeros((len(frames), arkit.COUNT), dtype=np.float32)
        for i, target in enumerate(openness(frames)):
            falling = SILENT_RELEASE if target == 0.0 else RELEASE
            rate = ATTACK if target > self.level else falling
            self.level += rate * (float(target) - self.level)
            if self.level < REST:
                self.level = 0.0
                continue
            viseme = visemes[i]
            shape = _OPEN + _VISEME_GAIN * arkit.VISEMES[viseme] if viseme else 2.0 * _OPEN
            out[i] = self.level * shape
        return np.clip(out, 0.0, 1.0)


class ModelError(Exception):
    """The ONNX file is missing, unreadable or not an audio-to-ARKit model."""


@functools.cache
def _session(path: str) -> Any:
    if not Path(path).is_file():
        raise ModelError(f"no lip-sync model at {path}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one core per inference: other sessions share the box
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"the lip-sync model at {path} does not load: {exc}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (
        len(inputs) != 1
        or len(inputs[0].shape) != 2
        or len(outputs[0].shape) != 3
        or outputs[0].shape[2] != arkit.COUNT
    ):
        raise ModelError(f"the lip-sync model at {path} must take audio [1, N] and give [1, T, 52]")
    return session


class OnnxMouth:
    name = "onnx"

    def __init__(self, path: str) -> None:
        self.session = _session(path)
        self.input_name = self.session.get_inputs()[0].name

    def shapes(self, frames: np.ndarray, sample_rate: int, visemes: list[str | None]) -> np.ndarray:
        if not len(frames):
            return np.zeros((0, arkit.COUNT), dtype=np.float32)
        audio = soxr.resample(frames.reshape(-1), sample_rate, ONNX_RATE).astype(np.float32)
        (raw,) = self.session.run(None, {self.input_name: audio[np.newaxis, :]})[:1]
        weights = np.asarray(raw, dtype=np.float32).reshape(-1, arkit.COUNT)
        if len(weights) < len(frames):  # a model that emits fewer frames holds its last one
            last = weights[-1:] if len(weights) else np.zeros((1, arkit.COUNT), np.float32)
            weights = np.concatenate([weights, np.repeat(last, len(frames) - len(weights), 0)])
        return np.clip(weights[: len(frames)], 0.0, 1.0)


def mouth_engine(model_path: str = "") -> MouthEngine:
    """A fresh engine for one turn: the ONNX model when one is configured and loads, else
    energy (a broken model file costs the face its model, never the voice)."""
    if model_path:
        try:
            return OnnxMouth(model_path)
        except ModelError as exc:
            logger.warning("lip sync falls back to the energy engine: %s", exc)
    return EnergyMouth()
