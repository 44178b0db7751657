"""Starting avatarsite's own processes on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.waiting import wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
# Importing Django and the app takes a second on an idle machine and minutes on a crowded one.
START_SECONDS = 300.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The ASGI servers the product runs, with scripts/run.sh's flags: the WebSocket ceiling above
# REALTIME_MAX_MESSAGE_BYTES, so the consumer's own limit is what clients meet.
ASGI_SERVERS: dict[str, list[str]] = {
    "daphne": [
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        "{port}",
        "--websocket-max-message-size",
        "33554432",
        "--websocket-max-frame-size",
        "33554432",
    ],
    "uvicorn": [
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        "websockets-sansio",
        "--ws-max-size",
        "33554432",
        "--ws-per-message-deflate",
        "false",
        "--no-access-log",
    ],
}


# What `make run` serves with (scripts/run.sh's ASGI_SERVER default); benchmarks measure it.
DEFAULT_ASGI_SERVER = "uvicorn"


def start_daphne(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start daphne on a free loopback port and wait until it accepts connections."""
    return start_asgi_server("daphne", env, log_path)


def start_asgi_server(
    server: str, env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start one of ASGI_SERVERS on a free loopback port and wait until it accepts
    connections."""
    port = free_port()
    arguments = [part.format(port=port) for part in ASGI_SERVERS[server]]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *arguments, "avatarsite.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(process, port, log_path, server)
    return process, f"http://127.0.0.1:{port}"


def wait_for_start(
    process: subprocess.Popen[bytes], started: Callable[[], bool], log_path: Path, what: str
) -> None:
    """Wait until `started()`; fail with the log if `process` exits first or never starts."""

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log_path.read_text()}")
        return started()

    try:
        wait_until(up, f"{what} to start", within=START_SECONDS)
    except AssertionError:
        stop_process(process)
        raise RuntimeError(f"{what} did not start:\n{log_path.read_text()}") from None


def wait_for_port(process: subprocess.Popen[bytes], port: int, log_path: Path, what: str) -> None:
    """Wait until `process` accepts connections on loopback `port`."""

    def accepting() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for_start(process, accepting, log_path, what)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_celery_worker(
    env: dict[str, str],
    log_path: Path,
    concurrency: int = 2,
    niceness: int = 0,
    pool: str = "prefork",
) -> subprocess.Popen[bytes]:
    """Start a Celery worker (prefork, as in production) and wait until it is ready;
    `niceness` lowers its CPU priority below the web server's. The `solo` pool runs tasks in
    the worker's own process, so killing that one process kills the task with it."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "avatarsite",
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
        )
    wait_for_start(process, lambda: b" ready." in log_path.read_bytes(), log_path, "Celery worker")
    return process


def start_redis(directory: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis server of the test's own on a free loopback port (never the shared one), or on
    `port` (to bring back one that was stopped), with nothing saved to disk; returns it and
    its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = port or free_port()
    log_path = directory / f"redis-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(process, port, log_path, "Redis")
    return process, f"redis://127.0.0.1:{port}/0"


class RedisServer:
    """A Redis server of the test's own (start_redis) that can be stopped and brought back on
    the same port, as a Redis outage and its end look to the clients."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process, self.url = start_redis(directory)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        self.process, _ = start_redis(self.directory, self.port)
