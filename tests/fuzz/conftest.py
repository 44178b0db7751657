"""The fuzz campaign's size and its report: inputs tried and failures per endpoint, printed at
the end of the run and written to var/fuzz-report.json (docs/testing.md#fuzzing).

`FUZZ_EXAMPLES` sets how many inputs each endpoint gets; unset, the small slice `make test`
runs. `make fuzz` sets it to 10,000.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import pytest

from tests.conversations.line.conftest import (  # noqa: F401  (fixtures for the LINE fuzzer)
    fake_line,
    fake_line_server,
    line_channel,
    line_stack,
)
from tests.processes import BASE_DIR

REPORT_PATH = BASE_DIR / "var" / "fuzz-report.json"
KEPT_FAILURES = 5  # examples kept per endpoint; the count is exact


def examples(default: int) -> int:
    """Inputs per endpoint: FUZZ_EXAMPLES when set (the campaign), else `default`."""
    return int(os.environ.get("FUZZ_EXAMPLES") or default)


@dataclass
class Tally:
    inputs: int = 0
    failures: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def record(self, status: str, failure: str | None = None) -> None:
        self.inputs += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if failure is not None:
            self.failures += 1
            if len(self.examples) < KEPT_FAILURES:
                self.examples.append(failure[:500])


REPORT: dict[str, Tally] = {}


def tally(endpoint: str) -> Tally:
    return REPORT.setdefault(endpoint, Tally())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.section("fuzz report")
    for endpoint, counted in sorted(REPORT.items()):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counted.statuses.items()))
        terminalreporter.write_line(
            f"{endpoint:48} {counted.inputs:7} inputs {counted.failures:5} failures  ({statuses})"
        )
        for example in counted.examples:
            terminalreporter.write_line(f"    {example}")
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(
        json.dumps({name: asdict(t) for name, t in REPORT.items()}, indent=2, ensure_ascii=False)
    )
    terminalreporter.write_line(f"written to {REPORT_PATH}")
