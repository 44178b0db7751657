"""The system prompt a character speaks from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_persona(persona: str, params: Mapping[str, Any] | None) -> str:
    """Fill `{name}` placeholders that `params` provides; keep every other brace literally.

    AIAvatarKit calls `str.format`, so a persona holding JSON, or a placeholder the request
    did not fill, fails the whole turn. Here unknown placeholders and stray braces stay as
    written.
    """
    if not params:
        return persona
    return PLACEHOLDER.sub(
        lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0), persona
    )
