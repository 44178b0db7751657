"""The apps import each other in one direction only: no cycle between apps (within one app,
modules may import each other freely).

Every Django app of the project is a unit, and so is the project package, avatarsite (settings,
URLs, ASGI). `conversations.llm` counts as a unit of its own although it is no Django app: it is the
provider layer under conversations and its speech app (both speak through it, and speech
shares its failure wording and SDK clients); it may import only characters, whose choice of
provider it reads.

The graph is read from the source with `ast`, so an import inside a function counts as much as
one at the top of a module. Migrations are left out: they are history, loaded by Django once
every app is, and may name any app's code as it was.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from django.apps import apps

from tests.processes import BASE_DIR

# The project's own apps (avatarsite is the project package), and the provider layer.
APPS = (
    "avatarsite",
    *(config.name for config in apps.get_app_configs() if BASE_DIR in Path(config.path).parents),
    "conversations.llm",
)


def app_of(module: str) -> str | None:
    """The app a dotted module belongs to: the longest app name that prefixes it."""
    owners = [app for app in APPS if module == app or module.startswith(f"{app}.")]
    return max(owners, key=len, default=None)


def _modules() -> Iterator[tuple[str, Path]]:
    for root in {app.split(".")[0] for app in APPS}:
        for path in sorted((BASE_DIR / root).rglob("*.py")):
            parts = path.relative_to(BASE_DIR).with_suffix("").parts
            if "migrations" not in parts:
                yield ".".join(parts).removesuffix(".__init__"), path


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module `module` imports, as dotted names, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import name` may name a submodule: count both.
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def app_imports() -> dict[tuple[str, str], list[str]]:
    """(importing app, imported app) -> the modules where that happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, path in _modules():
        source = app_of(module)
        for target in {app_of(name) for name in _imported(module, path)}:
            if source and target and target != source:
                edges.setdefault((source, target), []).append(module)
    return edges


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one app (Tarjan)."""
    graph: dict[str, set[str]] = {app: set() for app in APPS}
    for source, target in edges:
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(app: str) -> None:
        index[app] = low[app] = len(index)
        stack.append(app)
        for target in graph[app]:
            if target not in index:
                visit(target)
                low[app] = min(low[app], low[target])
            elif target in stack:
                low[app] = min(low[app], index[target])
        if low[app] == index[app]:
            group = []
            while (member := stack.pop()) != app:
                group.append(member)
            group.append(app)
            if len(group) > 1:
                groups.append(sorted(group))

    for app in APPS:
        if app not in index:
            visit(app)
    return groups


def test_no_two_apps_import_each_other() -> None:
    edges = app_imports()
    found = cycles(edges)

    def where(group: list[str]) -> list[str]:
        return [
            f"{source} -> {target}: {', '.join(sorted(set(modules)))}"
            for (source, target), modules in sorted(edges.items())
            if source in group and target in group
        ]

    assert not found, "\n".join(line for group in found for line in where(group))


def test_the_graph_sees_relative_and_nested_imports() -> None:
    edges = app_imports()

    # conversations/transports/aiavatar.py: `from ..speech.audio import ...` (relative, two up).
    assert "conversations.transports.aiavatar" in edges[("conversations", "conversations.speech")]
    assert {"characters", "conversations.line", "conversations.speech", "memory"} <= set(APPS)
    assert app_of("conversations.line.models") == "conversations.line"
    assert app_of("conversations.llm.base") == "conversations.llm"
    assert app_of("conversations.history") == "conversations"
    assert cycles({("characters", "memory"): [], ("memory", "characters"): []}) == [
        ["characters", "memory"]
    ]
