"""Every `make bench*` target runs in its smoke configuration (bench/harness.py): a benchmark
that no longer imports or starts fails here, not on the day someone measures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import SMOKE_VARIABLE, VAR_DIR_VARIABLE
from tests.processes import BASE_DIR

_TARGET = re.compile(r"^(bench[\w-]*):.*\n((?:\t.*\n)+)", re.MULTILINE)
_MODULE = re.compile(r"-m (bench\.\w+)")


def bench_modules() -> dict[str, str]:
    """Each bench target of the Makefile and the module its recipe runs."""
    makefile = (BASE_DIR / "Makefile").read_text()
    found: dict[str, str] = {}
    for target, recipe in _TARGET.findall(makefile):
        module = _MODULE.search(recipe)
        assert module, f"make {target} runs no bench module"
        found[target] = module.group(1)
    return found


def test_the_makefile_has_the_benchmarks() -> None:
    assert {"bench", "bench-life", "bench-line", "bench-realtime"} <= set(bench_modules())


@pytest.mark.live
@pytest.mark.parametrize("target", sorted(bench_modules()))
def test_the_benchmark_runs_in_its_smoke_configuration(target: str, tmp_path: Path) -> None:
    # Each benchmark's own fresh SQLite file, never the database DATABASE_URL names; it, the
    # logs and the results go to a directory of this run's own (pytest-xdist runs several
    # benchmarks at once, and two of them name their SQLite file alike).
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        SMOKE_VARIABLE: "1",
        VAR_DIR_VARIABLE: str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-m", bench_modules()[target]],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )

    assert run.returncode == 0, f"make {target}:\n{run.stdout}\n{run.stderr}"


def test_the_memory_benchmarks_data_is_what_its_generator_makes() -> None:
    from bench.memory_dataset import DATA_FILE, generate

    shipped = json.loads(DATA_FILE.read_text())
    assert shipped == generate()
    assert len(shipped["conversations"]) >= 50 and len(shipped["questions"]) >= 200
    assert {c["language"] for c in shipped["conversations"]} == {"en", "ja"}
