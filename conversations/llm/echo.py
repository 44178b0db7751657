"""A provider for development without an LLM key: it repeats the user, and says so."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from .base import LLMRequest, ToolCallRequest

ECHO_MARK = "[development echo: no LLM configured]"


class EchoProvider:
    name = "echo"

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest]:
        said = request.messages[-1].content if request.messages else ""
        reply = f"{ECHO_MARK} You said: {said}" if said else f"{ECHO_MARK} I heard nothing."
        # Word-sized deltas so sentence splitting behaves as it would with a real model.
        for delta in re.findall(r"\S+\s*|\s+", reply):
            yield delta
            await asyncio.sleep(0)
