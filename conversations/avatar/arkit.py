"""The 52 ARKit blendshape names, the mouth shape of each viseme and the expression of each
face tag, all as name -> weight tables."""

from __future__ import annotations

import numpy as np

# Alphabetical: the order audio-to-ARKit models emit and arrays on the wire use.
NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
INDEX = {name: i for i, name in enumerate(NAMES)}
COUNT = len(NAMES)


def vector(weights: dict[str, float]) -> np.ndarray:
    """A 52-float vector from a sparse table; `Left`/`Right` pairs may be written once as `*`."""
    out = np.zeros(COUNT, dtype=np.float32)
    for name, value in weights.items():
        for side in ("Left", "Right") if name.endswith("*") else ("",):
            out[INDEX[name.rstrip("*") + side]] = value
    return out


# Mouth shapes per viseme, jawOpen included: the energy envelope scales the whole shape,
# so a viseme never opens a silent mouth.
VISEMES: dict[str, np.ndarray] = {
    name: vector(table)
    for name, table in {
        "sil": {},
        "PP": {"mouthClose": 0.6, "mouthPress*": 0.5, "jawOpen": 0.05},
        "FF": {"mouthRollLower": 0.5, "mouthUpperUp*": 0.2, "jawOpen": 0.1},
        "TH": {"tongueOut": 0.3, "jawOpen": 0.15},
        "DD": {"jawOpen": 0.2, "mouthStretch*": 0.15},
        "kk": {"jawOpen": 0.25, "mouthStretch*": 0.1},
        "CH": {"mouthFunnel": 0.4, "mouthPucker": 0.2, "jawOpen": 0.2},
        "SS": {"jawOpen": 0.1, "mouthStretch*": 0.3, "mouthSmile*": 0.1},
        "nn": {"jawOpen": 0.2, "mouthClose": 0.1},
        "RR": {"mouthPucker": 0.3, "mouthFunnel": 0.2, "jawOpen": 0.15},
        "aa": {"jawOpen": 0.6, "mouthLowerDown*": 0.3},
        "E": {"jawOpen": 0.35, "mouthStretch*": 0.35, "mouthSmile*": 0.15},
        "I": {"jawOpen": 0.2, "mouthSmile*": 0.35, "mouthStretch*": 0.2},
        "O": {"jawOpen": 0.4, "mouthFunnel": 0.5, "mouthPucker": 0.2},
        "U": {"jawOpen": 0.15, "mouthPucker": 0.6, "mouthFunnel": 0.3},
    }.items()
}

# Face tags (`[face:joy]`) -> expression, added on top of the mouth. Names follow the faces
# characters are configured with; an unknown face leaves the expression neutral.
EXPRESSIONS: dict[str, np.ndarray] = {
    name: vector(table)
    for name, table in {
        "joy": {"mouthSmile*": 0.6, "cheekSquint*": 0.35, "eyeSquint*": 0.2, "mouthDimple*": 0.2},
        "fun": {"mouthSmile*": 0.45, "cheekSquint*": 0.25, "browOuterUp*": 0.15},
        "angry": {"browDown*": 0.6, "noseSneer*": 0.3, "mouthPress*": 0.2, "eyeSquint*": 0.2},
        "sorrow": {"browInnerUp": 0.6, "mouthFrown*": 0.45, "eyeLookDown*": 0.15},
        "surprised": {"eyeWide*": 0.6, "browInnerUp": 0.5, "browOuterUp*": 0.4},
        "think": {"browDown*": 0.25, "eyeLookUp*": 0.3, "mouthPress*": 0.15},
    }.items()
}
EXPRESSIONS["happy"] = EXPRESSIONS["joy"]
EXPRESSIONS["sad"] = EXPRESSIONS["sorrow"]
EXPRESSIONS["surprise"] = EXPRESSIONS["surprised"]
