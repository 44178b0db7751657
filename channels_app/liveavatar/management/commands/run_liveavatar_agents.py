"""`manage.py run_liveavatar_agents`: the long-lived worker that keeps a Live Avatar session
open for every enabled agent (channels_app/liveavatar/worker.py). Run one per deployment;
SIGTERM or Ctrl-C stops every session (`session.stop`) before it exits."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from channels_app.liveavatar.worker import Supervisor


async def _supervise() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Supervisor().run(stop)


class Command(BaseCommand):
    help = "Keep a Live Avatar platform session open for every enabled Live Avatar agent."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Live Avatar agents: supervising (Ctrl-C stops every session).")
        asyncio.run(_supervise())
        self.stdout.write("Live Avatar agents: stopped.")
