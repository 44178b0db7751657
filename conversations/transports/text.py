"""The one text-sanity rule every transport applies at the wire
(docs/wire-protocols.md#text-every-api-refuses).

JSON's `\\u` escapes can spell a lone UTF-16 surrogate, which no database or UTF-8 encoder
takes, and a NUL, which PostgreSQL refuses in text columns. Both are refused where a request
enters (a JSON body, a query string, a WebSocket frame, a LINE webhook), before anything is
written, so no such string reaches a query half-way through a turn. Ids are bounded here too:
an end user's channel id is stored with a short prefix in a 255-character column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Client-chosen ids (session_id, user_id, Dify's `user`, OpenAI's `user`). The identity column
# holds 255 characters; transports add at most a few dozen ("session:", "key-<id>:").
ID_MAX_LENGTH = 200

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """What makes `text` unstorable, or None. A well-formed string never holds a surrogate:
    JSON's escaped pairs already decode to one character."""
    found = _UNSAFE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    return "contains an unpaired UTF-16 surrogate"


def json_problem(value: Any, where: str) -> str | None:
    """The first unstorable string anywhere in a parsed JSON value (keys included), as
    `where.path: problem`, or None."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"{path}: {problem}"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if problem := text_problem(key):
                    return f"{path}: a key {problem}"
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None
