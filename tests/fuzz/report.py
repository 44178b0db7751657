"""The fuzz campaign's report and shards (docs/testing.md#fuzzing): inputs tried, answers by
status and failures per endpoint, written to var/fuzz-report.json after every test (a run
stopped part-way still reports what it sent) and printed at the end.

`FUZZ_SHARD=i/n` gives a run every n-th endpoint from the i-th (0-based) and its own report
file, var/fuzz-report-<i>of<n>.json; `python -m tests.fuzz.report n` merges the n shards'
files into var/fuzz-report.json. This module imports no Django, so merging needs no settings.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

VAR_DIR = Path(__file__).resolve().parent.parent.parent / "var"
KEPT_FAILURES = 5  # examples kept per endpoint; the count is exact


def shard() -> tuple[int, int]:
    """(index, count) from FUZZ_SHARD=i/n; (0, 1) when the run is not sharded."""
    value = os.environ.get("FUZZ_SHARD", "")
    if not value:
        return 0, 1
    index, count = (int(part) for part in value.split("/"))
    if not 0 <= index < count:
        raise ValueError(f"FUZZ_SHARD={value}: the index must be in 0..{count - 1}")
    return index, count


def in_shard(position: int) -> bool:
    """Whether this run fuzzes the endpoint at `position` of its test's list."""
    index, count = shard()
    return position % count == index


def only_in_shard(position: int) -> pytest.MarkDecorator:
    """Skip the test (before its fixtures start servers) unless it is this run's endpoint."""
    return pytest.mark.skipif(not in_shard(position), reason="another shard's endpoint")


def report_path() -> Path:
    index, count = shard()
    return VAR_DIR / ("fuzz-report.json" if count == 1 else f"fuzz-report-{index}of{count}.json")


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


def save() -> None:
    """This run's report so far, to its file."""
    if REPORT:
        write(REPORT, report_path())


def write(report: dict[str, Tally], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {name: asdict(counted) for name, counted in sorted(report.items())}
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False))


def lines(report: dict[str, Tally]) -> list[str]:
    """One line per endpoint (then its kept failures), for the terminal."""
    out = []
    for endpoint, counted in sorted(report.items()):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counted.statuses.items()))
        out.append(
            f"{endpoint:48} {counted.inputs:7} inputs {counted.failures:5} failures  ({statuses})"
        )
        out.extend(f"    {example}" for example in counted.examples)
    return out


def merge(paths: list[Path]) -> dict[str, Tally]:
    """The shards' reports as one (an endpoint that more than one shard sent adds up)."""
    merged: dict[str, Tally] = {}
    for path in paths:
        for name, row in json.loads(path.read_text()).items():
            counted = merged.setdefault(name, Tally())
            counted.inputs += row["inputs"]
            counted.failures += row["failures"]
            for status, number in row["statuses"].items():
                counted.statuses[status] = counted.statuses.get(status, 0) + number
            counted.examples.extend(row["examples"][: KEPT_FAILURES - len(counted.examples)])
    return merged


if __name__ == "__main__":
    count = int(sys.argv[1])
    shards = [VAR_DIR / f"fuzz-report-{index}of{count}.json" for index in range(count)]
    if missing := [path.name for path in shards if not path.exists()]:
        sys.exit(f"no report from {', '.join(missing)} in {VAR_DIR}")
    merged = merge(shards)
    write(merged, VAR_DIR / "fuzz-report.json")
    print("\n".join(lines(merged)))
    print(f"{len(shards)} shards merged into {VAR_DIR / 'fuzz-report.json'}")
