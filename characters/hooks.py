"""Code an operator names by dotted path ("package.module.name"): speech-to-text hooks, turn
hooks and Python guardrails. Only modules a setting lists may be named, so an admin form can
never reach `os.system` or any other importable callable."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from django.conf import settings
from django.utils.module_loading import import_string


def named(path: str, setting: str) -> Any:
    """What `path` names, when its module is one of the modules `setting` lists; ValueError
    says why not."""
    module = path.rpartition(".")[0]
    if module not in getattr(settings, setting):
        raise ValueError(f"{module or path!r} is not one of the {setting}.")
    try:
        return import_string(path)
    except ImportError as exc:
        raise ValueError(f"{path!r} cannot be imported: {exc}") from exc


def async_function(path: str, setting: str) -> Callable[..., Awaitable[Any]]:
    """The async function at `path` (see `named`)."""
    function = named(path, setting)
    if not inspect.iscoroutinefunction(function):
        raise ValueError(f"{path!r} is not an async function.")
    return cast(Callable[..., Awaitable[Any]], function)
