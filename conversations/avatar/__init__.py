"""Faces that move with the voice: ARKit blendshape frames at a fixed clock, cut from the
turn's synthesized speech (docs/avatar.md)."""
