"""Face frames from real speech (espeak-ng), without a model, and with a tiny ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conversations.avatar import arkit
from conversations.avatar.animator import FPS, SAMPLE_RATE, FaceFrame, FaceTrack
from conversations.avatar.lipsync import EnergyMouth, OnnxMouth, mouth_engine, openness
from conversations.avatar.phonemes import viseme_of, visemes
from conversations.speech.audio import resample_pcm
from tests.speech.audio import RATE, silence, utterance

JAW = arkit.INDEX["jawOpen"]
SMILES = [arkit.INDEX["mouthSmileLeft"], arkit.INDEX["mouthSmileRight"]]
MOUTH = [i for i, name in enumerate(arkit.NAMES) if name.startswith(("mouth", "jaw", "tongue"))]
SENTENCE = "Well, I think the weather is lovely today, and tomorrow will be even better."


def _track(*sentences: tuple[bytes, list[str] | None, str | None]) -> list[FaceFrame]:
    track = FaceTrack(EnergyMouth(), seed=7)
    frames = []
    for pcm, shapes, face in sentences:
        frames += track.add(pcm, RATE, shapes, face, 4.0 if face else None)
    return frames + track.finish()


def _frame_openness(frames: list[FaceFrame]) -> np.ndarray:
    block = np.stack([np.frombuffer(f.pcm, "<i2") / 32768.0 for f in frames])
    return openness(block)


def _db(frames: list[FaceFrame]) -> np.ndarray:
    block = np.stack([np.frombuffer(f.pcm, "<i2") / 32768.0 for f in frames])
    return 20 * np.log10(np.sqrt(np.mean(block**2, axis=1)) + 1e-9)


async def test_it_opens_the_jaw_with_the_speech_energy() -> None:
    said = utterance(SENTENCE)
    frames = _track((said.pcm, await visemes(SENTENCE, "en-us"), None))
    jaw = np.array([f.weights[JAW] for f in frames])
    # The jaw is the smoothed loudness times a viseme factor between 0.33 (closed consonants)
    # and 0.81 (open vowels). Loudness must still explain most of its movement: a
    # correlation of 0.7 means about half the variance, the rest being the visemes' shape
    # (measured: 0.86 on this sentence); a face that ignored the voice would sit near 0.
    assert np.corrcoef(jaw, _frame_openness(frames))[0, 1] > 0.7
    speech = _db(frames) > -35
    assert speech.sum() > 30
    assert np.mean(jaw[speech] > 0.2) >= 0.6  # clearly open in most loud frames


async def test_it_rests_the_mouth_in_silence() -> None:
    said = utterance("Hello there.", before=0.0, after=0.0)
    frames = _track((said.pcm, None, None), (silence(1.0), None, None), (said.pcm, None, None))
    # Digital silence, allowing the resampler's one-LSB dither.
    silent = [i for i, f in enumerate(frames) if np.abs(np.frombuffer(f.pcm, "<i2")).max() <= 1]
    assert len(silent) >= 25
    # After 4 frames (133 ms) of digital silence every mouth shape is exactly zero.
    resting = [i for i in silent if all(j in silent for j in range(i - 4, i))]
    assert len(resting) >= 20
    assert all(not frames[i].weights[MOUTH].any() for i in resting)
    # The eyes keep living meanwhile: idle brows never stop.
    assert all(frames[i].weights[arkit.INDEX["browInnerUp"]] > 0 for i in resting)


async def test_joy_raises_the_smile() -> None:
    said = utterance("That is wonderful news!", before=0.1, after=0.3)
    shapes = await visemes("That is wonderful news!", "en")
    neutral = _track((said.pcm, shapes, None))
    joyful = _track((said.pcm, shapes, "joy"))
    smile = [np.mean([f.weights[SMILES].mean() for f in run]) for run in (neutral, joyful)]
    assert smile[1] > smile[0] + 0.3
    # An unknown face changes nothing; the mouth follows the voice either way.
    odd = _track((said.pcm, shapes, "no-such-face"))
    assert [f.weights.tolist() for f in odd] == [f.weights.tolist() for f in neutral]
    assert np.array_equal(
        [f.weights[JAW] > 0 for f in joyful], [f.weights[JAW] > 0 for f in neutral]
    )


@pytest.mark.parametrize("rate", [SAMPLE_RATE, RATE])
async def test_frames_cut_the_speech_on_the_frame_clock(rate: int) -> None:
    said = utterance("One. Two three.", before=0.0, after=0.05)
    first, second = said.pcm[: 2 * 12345], said.pcm[2 * 12345 :]  # odd, mid-frame cut
    track = FaceTrack(EnergyMouth(), sample_rate=rate)
    frames = track.add(first, RATE, None) + track.add(second, RATE, None) + track.finish()
    # Each sentence arrives as its own synthesis, resampled on its own to the track's rate.
    speech = resample_pcm(first, RATE, rate) + resample_pcm(second, RATE, rate)
    joined = b"".join(f.pcm for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert joined[: len(speech)] == speech
    assert not any(joined[len(speech) :])  # only silence after the speech
    total = len(speech) // 2
    assert len(frames) == -(-total * FPS // rate)  # ceil: no drift, nothing dropped
    # Frame i starts at round(i * rate / fps): each frame is one 30th of a second.
    sizes = {len(f.pcm) // 2 for f in frames}
    assert sizes <= {rate // FPS, rate // FPS + 1}


def test_it_blinks_every_few_seconds() -> None:
    frames = _track((silence(8.0), None, None))
    blink = np.array([f.weights[arkit.INDEX["eyeBlinkLeft"]] for f in frames])
    closed = np.flatnonzero(blink == 1.0)
    assert len(closed) >= 2 * 2  # at least two blinks of two closed frames in 8 s
    assert np.array_equal(blink, [f.weights[arkit.INDEX["eyeBlinkRight"]] for f in frames])
    assert not any(f.weights[JAW] for f in frames)


async def test_it_reads_visemes_in_english_and_japanese() -> None:
    # espeak-ng: p '0 p  m j 'u: z I k
    assert await visemes("Pop music", "en") == ["PP", "O", "PP", "PP", "I", "U", "SS", "I", "kk"]
    japanese = await visemes("こんにちは", "ja")
    assert japanese[:3] == ["kk", "O", "nn"]
    assert viseme_of("'oU") == "O" and viseme_of("tS") == "CH" and viseme_of("h") is None
    assert viseme_of("j", openjtalk=True) == "CH" and viseme_of("U", openjtalk=True) == "U"
    # Hostile text gives visemes or nothing, never an error.
    assert isinstance(await visemes("\ud800 \x00 ok", "en"), list)
    assert await visemes("  ", "en") == []


def _tiny_model(path: Path, outputs: int = 52) -> None:
    """An audio-to-ARKit model in the common signature: mean |x| of each 1/30 s of 16 kHz
    audio (533 samples), times a fixed vector that opens the jaw."""
    import onnx
    from onnx import TensorProto, helper

    scale = np.zeros((1, outputs), dtype=np.float32)
    scale[0, JAW if outputs == 52 else 0] = 4.0
    graph = helper.make_graph(
        [
            helper.make_node("Abs", ["audio"], ["magnitude"]),
            helper.make_node("Unsqueeze", ["magnitude", "axis1"], ["channels"]),
            helper.make_node(
                "AveragePool", ["channels"], ["pooled"], kernel_shape=[533], strides=[533]
            ),
            helper.make_node("Transpose", ["pooled"], ["frames"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["frames", "scale"], ["weights"]),
        ],
        "tiny-lipsync",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "N"])],
        [helper.make_tensor_value_info("weights", TensorProto.FLOAT, [1, "T", outputs])],
        [
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
            helper.make_tensor(
                "scale", TensorProto.FLOAT, list(scale.shape), scale.ravel().tolist()
            ),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_an_onnx_model_drives_the_mouth_through_the_same_track(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "lipsync.onnx"
    _tiny_model(path)
    engine = mouth_engine(str(path))
    assert isinstance(engine, OnnxMouth)
    said = utterance(SENTENCE)
    track = FaceTrack(engine, seed=1)
    frames = track.add(said.pcm, RATE, None, "joy") + track.finish()
    assert len(frames) == -(
        -len(resample_pcm(said.pcm, RATE, SAMPLE_RATE)) // 2 * FPS // SAMPLE_RATE
    )
    jaw = np.array([f.weights[JAW] for f in frames])
    assert np.corrcoef(jaw, _frame_openness(frames))[0, 1] > 0.5  # the model's own envelope
    assert min(f.weights[SMILES].min() for f in frames[6:-6]) > 0.5  # the tag still smiles


def test_a_model_of_the_wrong_shape_falls_back_to_energy(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "wrong.onnx"
    _tiny_model(path, outputs=10)
    assert isinstance(mouth_engine(str(path)), EnergyMouth)
    assert isinstance(mouth_engine(str(tmp_path / "absent.onnx")), EnergyMouth)
