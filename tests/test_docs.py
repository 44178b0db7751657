"""The documentation stays true to the repository: what code cites exists, links resolve, the
paths the docs name exist, and every setting is described
(docs/testing.md#checks-on-the-repository-itself)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Directories that are not the project's own source: tools, caches, generated state.
SKIPPED_DIRS = {"var", "node_modules", "__pycache__"}

# `docs/turn.md`, `../README.md`, `docs/turn.md#guardrails`, not preceded by a path character.
MD_REFERENCE = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*(?:[\w.-]+/)*[\w-]+\.md)(?:#([\w-]+))?")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
# `conversations/pipeline/turn.py`, `tests/fakes/`: a path into one of the project's own folders.
TOP_LEVEL = (
    "avatarsite characters conversations channels_app memory evaluation templates tests bench "
    "scripts docs"
)
CODE_PATH = re.compile(rf"`((?:{'|'.join(TOP_LEVEL.split())})/[\w./-]*)`")
# env.str("NAME", ...), env.int(...), env.db_url(...), env.path(...) and the like.
SETTING = re.compile(r"""\benv\.\w+\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def _project_files(suffix: str) -> Iterator[Path]:
    for path in ROOT.rglob(f"*{suffix}"):
        parts = path.relative_to(ROOT).parts[:-1]
        if any(p.startswith(".") or p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        yield path


def _code_files() -> list[Path]:
    """Python files outside tests/ (test data may hold any text)."""
    return [p for p in _project_files(".py") if p.relative_to(ROOT).parts[0] != "tests"]


def _markdown_files() -> list[Path]:
    return sorted(_project_files(".md"))


def slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"`|\*|\[|\]\([^)]*\)", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            base = slug(match.group(1))
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def _broken(target: Path, anchor: str | None) -> str | None:
    """Why a reference to `target` (and its `#anchor`) does not resolve, or None."""
    if not target.is_file():
        return "no such file in the repository"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no section #{anchor} in {target.relative_to(ROOT)}"
    return None


def _resolve(source: Path, reference: str) -> Path:
    """A cited path, read from the repository root or, failing that, from the citing file."""
    from_root = (ROOT / reference).resolve()
    return from_root if from_root.exists() else (source.parent / reference).resolve()


def test_slug_follows_the_renderers_rules() -> None:
    assert slug("Realtime voice: /ws") == "realtime-voice-ws"
    assert slug("Inside run_turn") == "inside-run_turn"
    assert slug("`POST /chat` (server-sent events)") == "post-chat-server-sent-events"
    assert slug("Before the LLM: shaping the request") == "before-the-llm-shaping-the-request"


def test_code_cites_only_files_and_sections_that_exist() -> None:
    broken = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        for match in MD_REFERENCE.finditer(text):
            reference, anchor = match.group(1), match.group(2)
            reason = _broken(_resolve(path, reference), anchor)
            if reason:
                line = text.count("\n", 0, match.start()) + 1
                where = f"{path.relative_to(ROOT)}:{line}"
                broken.append(f"{where} cites {match.group(0)}: {reason}")
    assert not broken, "\n".join(broken)


def test_code_cites_no_numbered_sections_of_outside_documents() -> None:
    """A `§` citation points into a document that is not here; cite docs/<page>.md#<section>."""
    citing = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _code_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "§" in line
    ]
    assert not citing, "\n".join(citing)


def test_markdown_links_resolve() -> None:
    broken = []
    for path in _markdown_files():
        for match in MD_LINK.finditer(path.read_text(encoding="utf-8")):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            reason = _broken(resolved, anchor or None)
            if reason:
                broken.append(f"{path.relative_to(ROOT)} links to {target}: {reason}")
    assert not broken, "\n".join(broken)


def test_paths_the_docs_name_exist() -> None:
    """A file or folder named in backticks (`conversations/history.py`) must still be there: when
    code moves, the page that describes it moves with it."""
    missing = []
    for path in _markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for named in CODE_PATH.findall(line):
                if "*" not in named and not (ROOT / named).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{number} names {named}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(
    "name",
    sorted(set(SETTING.findall((ROOT / "avatarsite" / "settings.py").read_text(encoding="utf-8")))),
)
def test_every_setting_is_in_the_configuration_reference(name: str) -> None:
    reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"`{name}`" in reference, f"{name} is read in avatarsite/settings.py"


def test_the_settings_scan_finds_the_settings() -> None:
    """Guards the scan itself: a pattern that matched nothing would make the test above vacuous."""
    names = SETTING.findall((ROOT / "avatarsite" / "settings.py").read_text(encoding="utf-8"))
    assert {"DATABASE_URL", "REDIS_URL", "LIFE_NEWS_MODEL", "REALTIME_VAD"} <= set(names)
