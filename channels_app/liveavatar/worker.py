"""The Live Avatar worker: one supervised session per enabled agent
(docs/avatar.md#starting-and-stopping).

Every LIVEAVATAR_POLL_SECONDS the supervisor reads which agents are enabled (the admin's Start
and Stop actions, or the REST API, set the flag): it starts a session for each enabled agent
that has none, stops the sessions of agents switched off (or deleted, or whose character was
deactivated), and starts a new session when one ended or failed, after
LIVEAVATAR_RESTART_SECONDS, doubling while sessions keep failing (at most
LIVEAVATAR_RECONNECT_MAX_SECONDS). What happened is written on the agent's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from .models import LiveAvatarAgent, State
from .platform import AgentConfig, report
from .protocol import StartError
from .session import AgentSession, SessionFailed

logger = logging.getLogger(__name__)

# A session that ended leaves nothing a browser could still use.
ENDED = {"session_id": "", "sfu_url": "", "user_token_ciphertext": ""}


@dataclass(slots=True)
class _Supervised:
    session: AgentSession
    task: asyncio.Task[None]


def _enabled() -> set[int]:
    close_old_connections()  # a long-lived process: never reuse a connection the server dropped
    return set(
        LiveAvatarAgent.objects.filter(enabled=True, character__is_active=True).values_list(
            "pk", flat=True
        )
    )


class Supervisor:
    def __init__(self) -> None:
        self.running: dict[int, _Supervised] = {}
        self.failures: dict[int, int] = {}  # sessions in a row that ended in failure
        self.not_before: dict[int, float] = {}  # when an agent's next session may start

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise until `stop` is set, then stop every session."""
        try:
            while not stop.is_set():
                await self.reconcile()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.LIVEAVATAR_POLL_SECONDS)
        finally:
            await asyncio.gather(*(self._stop(agent_id) for agent_id in list(self.running)))

    async def reconcile(self) -> None:
        enabled = await sync_to_async(_enabled)()
        for agent_id in [a for a in self.running if a not in enabled]:
            await self._stop(agent_id)
        now = time.monotonic()
        for agent_id in enabled:
            if agent_id not in self.running and self.not_before.get(agent_id, 0.0) <= now:
                await self._start(agent_id)

    async def _start(self, agent_id: int) -> None:
        config = await sync_to_async(AgentConfig.load)(agent_id)
        if config is None:
            return
        session = AgentSession(config)
        task = asyncio.create_task(self._serve(agent_id, session))
        self.running[agent_id] = _Supervised(session, task)

    async def _serve(self, agent_id: int, session: AgentSession) -> None:
        """Run one session and write how it ended; the next poll starts another."""
        failed = True
        try:
            try:
                ended = await session.run()
                failed = False
                state, error = State.STOPPED, f"Session ended: {ended}."
            except (StartError, SessionFailed) as exc:
                logger.warning("Live Avatar agent %s: %s", agent_id, exc)
                state, error = State.FAILED, str(exc)
            except Exception as exc:
                logger.exception("Live Avatar agent %s failed", agent_id)
                state, error = State.FAILED, f"Internal error: {exc}"
            await report(agent_id, state, last_error=error[:2000], **ENDED)
        finally:
            self.running.pop(agent_id, None)
            failures = self.failures.get(agent_id, 0) + 1 if failed else 0
            self.failures[agent_id] = failures
            delay = min(
                settings.LIVEAVATAR_RESTART_SECONDS * 2 ** max(0, failures - 1),
                settings.LIVEAVATAR_RECONNECT_MAX_SECONDS,
            )
            self.not_before[agent_id] = time.monotonic() + delay

    async def _stop(self, agent_id: int) -> None:
        supervised = self.running.get(agent_id)
        if supervised is None:
            return
        await supervised.session.stop()
        try:
            await asyncio.wait_for(
                asyncio.shield(supervised.task), settings.LIVEAVATAR_TIMEOUT_SECONDS
            )
        except TimeoutError:
            supervised.task.cancel()
            await asyncio.gather(supervised.task, return_exceptions=True)
            await report(agent_id, State.STOPPED, last_error="Session ended: stopped.", **ENDED)
        self.not_before.pop(agent_id, None)
        self.failures.pop(agent_id, None)
