"""What a session needs before its socket opens: the agent's configuration, read once, the REST
session start, and the worker's reports on the agent's row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from avatarsite.tenants.provider_secrets import load_secrets
from characters.models import Character

from .models import LiveAvatarAgent, Side, State
from .protocol import Started, StartError


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent's row as one session needs it, read once when the session starts."""

    agent_id: int
    character: Character  # with its tenant's secrets loaded
    base_url: str
    api_key: str
    avatar_id: str
    voice_id: str
    developer_asr: bool
    developer_tts: bool
    tts_rate: int
    sandbox: bool
    idle_prompt: str

    @classmethod
    def load(cls, agent_id: int) -> AgentConfig | None:
        """The enabled agent's configuration (synchronous ORM); None when it is not enabled."""
        agent = (
            LiveAvatarAgent.objects.select_related("character__voice")
            .filter(pk=agent_id, enabled=True, character__is_active=True)
            .first()
        )
        if agent is None:
            return None
        load_secrets(agent.character)
        return cls(
            agent_id=agent.pk,
            character=agent.character,
            base_url=agent.base_url.rstrip("/"),
            api_key=agent.api_key,
            avatar_id=agent.avatar_id,
            voice_id=agent.voice_id,
            developer_asr=agent.asr_provider == Side.DEVELOPER,
            developer_tts=agent.tts_provider == Side.DEVELOPER,
            tts_rate=agent.tts_sample_rate,
            sandbox=agent.sandbox,
            idle_prompt=agent.idle_prompt,
        )


async def report(agent_id: int, state: State, **fields: Any) -> None:
    """Write what the worker knows onto the agent's row (never its configuration)."""
    await LiveAvatarAgent.objects.filter(pk=agent_id).aupdate(
        state=state, reported_at=timezone.now(), **fields
    )


async def start_session(config: AgentConfig) -> Started:
    """POST /v1/session/start with the platform API key; `StartError` when refused."""
    if not config.api_key:
        raise StartError(0, "The API key secret is not set.")
    headers = {"Authorization": f"Bearer {config.api_key}"}
    if config.sandbox:
        headers["X-Env-Sandbox"] = "true"
    body: dict[str, Any] = {"avatarId": config.avatar_id, "mode": "websocketAgent"}
    if config.voice_id:
        body["voiceId"] = config.voice_id
    try:
        async with httpx.AsyncClient(timeout=settings.LIVEAVATAR_TIMEOUT_SECONDS) as client:
            answer = await client.post(
                f"{config.base_url}/v1/session/start", json=body, headers=headers
            )
            answer.raise_for_status()
            parsed = answer.json()
    except httpx.HTTPStatusError as exc:
        raise StartError(0, f"The platform answered HTTP {exc.response.status_code}.") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise StartError(0, f"The platform could not be reached: {exc}") from None
    return Started.parse(parsed)
