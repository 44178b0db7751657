"""What the benchmarks share: their processes (fake servers, `manage.py`), fresh databases,
CPU accounting, percentiles, the machine's description and the smoke configuration.

Every benchmark takes `--smoke` (or BENCH_SMOKE=1, as `make bench-* BENCH_SMOKE=1`): a tiny
configuration that runs each part once in seconds. The test suite runs every `make bench-*`
that way (tests/test_benchmarks.py), so a benchmark that no longer starts fails CI.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.processes import BASE_DIR, free_port, stop_process, wait_for_port

# Where benchmarks write their SQLite files, logs and results: var/, or BENCH_VAR_DIR (the
# test suite gives each smoke run a directory of its own, so runs side by side never share one).
VAR_DIR_VARIABLE = "BENCH_VAR_DIR"
VAR_DIR = Path(os.environ.get(VAR_DIR_VARIABLE) or BASE_DIR / "var")
# The AIAvatarKit peer harness (its README: setup.sh makes .venv-peer and .venv-bench), where
# a benchmark compares against AIAvatarKit 0.9.2; unset: no comparison.
PEER_VARIABLE = "PEER_BENCH_DIR"
PEER_NAME = "AIAvatarKit"
LLM_KEY_VARIABLE = "FAKE_OPENAI_API_KEY"
DEFAULT_SECRET_KEY = "insecure-key-for-benchmarks-only"
START_TIMEOUT_SECONDS = 30.0
SMOKE_VARIABLE = "BENCH_SMOKE"


def shown(path: Path) -> Path:
    """`path` as a benchmark prints it: relative to the checkout when it is inside it."""
    return path.relative_to(BASE_DIR) if path.is_relative_to(BASE_DIR) else path


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    """`--smoke`: the benchmark's tiny configuration (also on with BENCH_SMOKE=1)."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get(SMOKE_VARIABLE, "") not in ("", "0"),
        help=f"a tiny run that only proves the benchmark works (also {SMOKE_VARIABLE}=1)",
    )


# --- Processes and databases --------------------------------------------------------------


def store_secrets(tenant: Any, names: Sequence[str]) -> None:
    """Store these environment variables' values as `tenant`'s provider secrets, as an operator
    stores real keys: a server reads no platform variable outside PROVIDER_ENV_ALLOWLIST.
    Run inside the benchmark's Django setup (it imports models)."""
    from avatarsite.tenants.models import ProviderSecret

    for name in names:
        secret = ProviderSecret.objects.filter(tenant=tenant, name=name).first()
        secret = secret or ProviderSecret(tenant=tenant, name=name)
        secret.set_value(os.environ[name])
        secret.save()


def peer_dir(given: Path | None) -> Path | None:
    """The peer harness to compare against (`given`, else PEER_BENCH_DIR), or None; exits
    with the reason when it is named but not set up."""
    named = given or (Path(os.environ[PEER_VARIABLE]) if os.environ.get(PEER_VARIABLE) else None)
    if named is not None and not (named / ".venv-peer" / "bin" / "python").exists():
        raise SystemExit(f"{named} has no .venv-peer: run the peer harness's setup.sh first")
    return named


def start_peer(
    directory: Path, llm_base_url: str, llm_api_key: str, api_key: str, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """AIAvatarKit's server from the peer harness (`peer_server.py`: one uvicorn worker, /chat
    and /ws), on the given fake LLM, requiring our API key."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(directory / ".venv-peer" / "bin" / "python"),
                "peer_server.py",
                "--port",
                str(port),
                "--openai-base-url",
                llm_base_url,
                "--openai-api-key",
                llm_api_key,
                "--api-key",
                api_key,
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(process, port, log_path, PEER_NAME)
    return process, f"http://127.0.0.1:{port}"


def start_fake_llm(
    env: dict[str, str], log_path: Path, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `bench.fake_llm` (with `options`)."""
    return start_fake(["bench.fake_llm", "--watch-stdin", *options], env, log_path)


def start_fake(
    module: list[str], env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a fake server module (`python -m ...`) and read its base URL, the first line it
    prints; it stops when its stdin closes."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *module],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,  # closed by the parent, or by the kernel if it dies
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
        line = process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"{module[0]} did not start:\n{log_path.read_text()}")
    except BaseException:
        stop_fake(process)
        raise
    return process, line


def stop_fake(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()
    stop_process(process)


def database_url(sqlite_name: str) -> tuple[str, bool]:
    """DATABASE_URL as given, or a fresh SQLite file `var/<sqlite_name>`; and whether it is
    that fresh SQLite file."""
    given = os.environ.get("DATABASE_URL", "")
    if given:
        return given, False
    path = VAR_DIR / sqlite_name
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    for stale in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    return f"sqlite:///{path}", True


def fresh_postgres(server: str, database: str) -> str | None:
    """The URL of database `database` on `server` (postgres://user@host:port), dropped and
    created anew; None, with a note, when the server is not there."""
    import psycopg

    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {database}")
            connection.execute(f"CREATE DATABASE {database}")
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL skipped: {exc}".strip(), file=sys.stderr)
        return None
    return f"{server}/{database}"


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` in a subprocess with the server's environment; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def library_versions() -> dict[str, str]:
    """The versions of what serves the benchmarks' requests, for their reports."""
    from importlib.metadata import version

    names = ("daphne", "uvicorn", "uvloop", "httptools", "websockets", "django", "openai")
    return {name: version(name) for name in names}


# --- Measuring ---------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    # Fields after the parenthesised command name start at field 3 (state); utime and
    # stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children_cpu_seconds(pid: int) -> float:
    """CPU of a process's finished, waited-for children (subprocesses such as espeak-ng)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def machine_description() -> dict[str, Any]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
